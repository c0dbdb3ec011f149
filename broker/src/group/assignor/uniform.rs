//! The uniform assignor: spreads the partitions of all subscribed topics as evenly as
//! the subscriptions allow, and keeps each partition with its current member unless
//! balance needs it elsewhere, so that a rebalance moves as few partitions as it can.
//!
//! Three steps:
//! 1. *Keep*: every member keeps the partitions of its previous target that still exist
//!    and that it still subscribes to.
//! 2. *Place*: each partition without an owner goes to the subscribed member with the
//!    fewest partitions (ties: the smallest member id).
//! 3. *Balance*: while a member has at least two partitions more than a member that
//!    subscribes to one of its topics, one such partition moves over. Each move lowers
//!    the sum of the squared counts, so the loop ends.
//!
//! With identical subscriptions this reaches counts that differ by at most one while
//! moving the fewest partitions: a fourth member joining three members of a
//! six-partition topic takes one partition from one member, and nothing else moves.

use std::collections::BTreeMap;

use super::{AssignmentSpec, Assignor, PartitionSet, TargetAssignment};
use crate::storage::TopicPartition;

#[derive(Debug, Clone, Copy, Default)]
pub struct UniformAssignor;

impl Assignor for UniformAssignor {
    fn name(&self) -> &'static str {
        "uniform"
    }

    fn assign(&self, spec: &AssignmentSpec<'_>) -> TargetAssignment {
        let subscribed = spec.subscribed_partitions();
        let subscribes = |member: &str, partition: &TopicPartition| {
            spec.members[member]
                .subscribed_topics
                .contains(&partition.topic)
        };
        let mut target: BTreeMap<&str, PartitionSet> = spec
            .members
            .keys()
            .map(|id| (*id, PartitionSet::new()))
            .collect();

        let mut owned = PartitionSet::new();
        for (id, member) in &spec.members {
            for partition in member.current {
                if subscribed.contains(partition)
                    && subscribes(id, partition)
                    && owned.insert(partition.clone())
                {
                    target
                        .get_mut(id)
                        .expect("member")
                        .insert(partition.clone());
                }
            }
        }

        for partition in subscribed.difference(&owned) {
            let least_loaded = target
                .iter()
                .filter(|(id, _)| subscribes(id, partition))
                .min_by_key(|(id, partitions)| (partitions.len(), **id))
                .map(|(id, _)| *id)
                .expect("a subscribed partition has a subscriber");
            target
                .get_mut(least_loaded)
                .expect("member")
                .insert(partition.clone());
        }

        while let Some((donor, receiver, partition)) = next_move(&target, &subscribes) {
            target.get_mut(donor).expect("member").remove(&partition);
            target.get_mut(receiver).expect("member").insert(partition);
        }

        target
            .into_iter()
            .map(|(id, partitions)| (id.to_owned(), partitions))
            .collect()
    }
}

/// A move that improves balance: from a member to one with at least two partitions
/// fewer that subscribes to the moved partition's topic. The most loaded donors are
/// tried first, and from a donor its last partition the receiver can take.
fn next_move<'a>(
    target: &BTreeMap<&'a str, PartitionSet>,
    subscribes: &impl Fn(&str, &TopicPartition) -> bool,
) -> Option<(&'a str, &'a str, TopicPartition)> {
    let mut by_load: Vec<(usize, &'a str)> = target
        .iter()
        .map(|(id, partitions)| (partitions.len(), *id))
        .collect();
    by_load.sort_unstable();
    for &(donor_count, donor) in by_load.iter().rev() {
        for &(receiver_count, receiver) in &by_load {
            if donor_count < receiver_count + 2 {
                break;
            }
            if let Some(partition) = target[donor]
                .iter()
                .rev()
                .find(|partition| subscribes(receiver, partition))
            {
                return Some((donor, receiver, partition.clone()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Input, check_contract, counts};
    use super::*;

    fn moved(before: &TargetAssignment, after: &TargetAssignment) -> usize {
        after
            .iter()
            .map(|(member, partitions)| {
                let previous = before.get(member).cloned().unwrap_or_default();
                partitions.difference(&previous).count()
            })
            .sum()
    }

    /// Three members of a six-partition topic get two each; a fourth takes exactly one
    /// partition; when it leaves again, only its partition moves back.
    #[test]
    fn even_and_sticky_as_members_come_and_go() {
        let three = Input::default()
            .topic("orders", 6)
            .member("m1", &["orders"])
            .member("m2", &["orders"])
            .member("m3", &["orders"]);
        let first = UniformAssignor.assign(&three.spec());
        check_contract(&three.spec(), &first);
        assert_eq!(counts(&first), [2, 2, 2]);

        let four = Input::default()
            .topic("orders", 6)
            .member("m1", &["orders"])
            .member("m2", &["orders"])
            .member("m3", &["orders"])
            .member("m4", &["orders"])
            .with_current(&first);
        let second = UniformAssignor.assign(&four.spec());
        check_contract(&four.spec(), &second);
        let mut sorted = counts(&second);
        sorted.sort_unstable();
        assert_eq!(sorted, [1, 1, 2, 2]);
        assert_eq!(moved(&first, &second), 1, "{first:?} -> {second:?}");

        let back = three.with_current(&second);
        let third = UniformAssignor.assign(&back.spec());
        check_contract(&back.spec(), &third);
        assert_eq!(counts(&third), [2, 2, 2]);
        assert_eq!(moved(&second, &third), 1);
    }

    /// New partitions of a subscribed topic go to the least loaded members, and the
    /// existing ones stay where they were.
    #[test]
    fn added_partitions_fill_the_least_loaded() {
        let before = Input::default()
            .topic("orders", 3)
            .member("m1", &["orders"])
            .member("m2", &["orders"]);
        let first = UniformAssignor.assign(&before.spec());
        let after = Input::default()
            .topic("orders", 6)
            .member("m1", &["orders"])
            .member("m2", &["orders"])
            .with_current(&first);
        let second = UniformAssignor.assign(&after.spec());
        check_contract(&after.spec(), &second);
        assert_eq!(counts(&second), [3, 3]);
        for (member, partitions) in &first {
            assert!(
                partitions.is_subset(&second[member]),
                "{member} lost a partition"
            );
        }
    }

    /// With different subscriptions, balance counts over all topics: m2 alone reads
    /// `b`, so m1 ends up with all of `a` and both own four partitions.
    #[test]
    fn heterogeneous_subscriptions() {
        let input = Input::default()
            .topic("a", 4)
            .topic("b", 4)
            .member("m1", &["a"])
            .member("m2", &["a", "b"]);
        let target = UniformAssignor.assign(&input.spec());
        check_contract(&input.spec(), &target);
        assert!(target["m1"].iter().all(|partition| partition.topic == "a"));
        assert_eq!(counts(&target), [4, 4]);
    }
}
