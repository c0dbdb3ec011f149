//! The range assignor: for each topic, the members subscribed to it, in member id
//! order, get contiguous ranges of its partitions; the first `count % members` get one
//! partition more. Members that subscribe to the same topics with the same partition
//! counts get the same partition indexes of each (useful to co-partitioned topics).

use std::collections::BTreeMap;

use super::{AssignmentSpec, Assignor, PartitionSet, TargetAssignment};
use crate::storage::TopicPartition;

#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(&self, spec: &AssignmentSpec<'_>) -> TargetAssignment {
        let mut target: TargetAssignment = spec
            .members
            .keys()
            .map(|id| ((*id).to_owned(), PartitionSet::new()))
            .collect();
        let mut subscribers: BTreeMap<&String, Vec<&str>> = BTreeMap::new();
        for (id, member) in &spec.members {
            for topic in member.subscribed_topics {
                subscribers.entry(topic).or_default().push(id);
            }
        }
        for (topic, members) in subscribers {
            let Some(&count) = spec.topic_partitions.get(topic) else {
                continue;
            };
            let count = usize::try_from(count).unwrap_or(0);
            let (per_member, extra) = (count / members.len(), count % members.len());
            let mut next = 0usize;
            for (index, member) in members.iter().enumerate() {
                let take = per_member + usize::from(index < extra);
                let partitions = target.get_mut(*member).expect("every member has an entry");
                for partition in next..next + take {
                    partitions.insert(TopicPartition::new(topic.clone(), partition as i32));
                }
                next += take;
            }
        }
        target
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Input, check_contract, counts};
    use super::*;

    /// Six partitions over three members: 0-1, 2-3, 4-5 in member id order; seven over
    /// three: the first member gets the extra one.
    #[test]
    fn contiguous_ranges_in_member_order() {
        let input = Input::default()
            .topic("orders", 6)
            .member("b", &["orders"])
            .member("a", &["orders"])
            .member("c", &["orders"]);
        let target = RangeAssignor.assign(&input.spec());
        check_contract(&input.spec(), &target);
        let indexes = |member: &str| -> Vec<i32> {
            target[member]
                .iter()
                .map(|partition| partition.partition)
                .collect()
        };
        assert_eq!(indexes("a"), [0, 1]);
        assert_eq!(indexes("b"), [2, 3]);
        assert_eq!(indexes("c"), [4, 5]);

        let input = Input::default()
            .topic("orders", 7)
            .member("a", &["orders"])
            .member("b", &["orders"])
            .member("c", &["orders"]);
        assert_eq!(counts(&RangeAssignor.assign(&input.spec())), [3, 2, 2]);
    }
}
