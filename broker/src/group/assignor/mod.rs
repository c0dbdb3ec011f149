//! Server-side assignors: given the members of a group, their subscriptions and the
//! partition counts of the topics, which member should own which partition.
//!
//! An assignor is pure and deterministic (the same input gives the same output), so
//! that the coordinator's state machine stays testable step by step. The coordinator
//! computes a new *target* assignment with it whenever the group epoch increases; the
//! members then move to the target incrementally ([`super::consumer_group`]).
//!
//! - [`range`]: per topic, contiguous ranges of partitions to the subscribed members in
//!   member id order; like Kafka's range assignor.
//! - [`uniform`]: as even as the subscriptions allow over all topics, keeping every
//!   partition where it was unless balance needs it elsewhere (sticky).

pub mod range;
pub mod uniform;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::storage::TopicPartition;

pub use range::RangeAssignor;
pub use uniform::UniformAssignor;

/// A set of partitions, ordered by topic then index.
pub type PartitionSet = BTreeSet<TopicPartition>;

/// What an assignor knows of one member.
#[derive(Debug, Clone, Copy)]
pub struct MemberSpec<'a> {
    pub subscribed_topics: &'a BTreeSet<String>,
    /// The member's previous target, for assignors that keep partitions in place.
    pub current: &'a PartitionSet,
}

/// The input of an assignment.
#[derive(Debug, Clone)]
pub struct AssignmentSpec<'a> {
    /// Member id → member.
    pub members: BTreeMap<&'a str, MemberSpec<'a>>,
    /// Topic → partition count, for (at least) every subscribed topic that exists.
    pub topic_partitions: &'a BTreeMap<String, i32>,
}

impl AssignmentSpec<'_> {
    /// Every partition some member subscribes to, in order.
    pub fn subscribed_partitions(&self) -> PartitionSet {
        let topics: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|member| member.subscribed_topics)
            .collect();
        topics
            .into_iter()
            .filter_map(|topic| Some((topic, *self.topic_partitions.get(topic)?)))
            .flat_map(|(topic, count)| {
                (0..count).map(|partition| TopicPartition::new(topic.clone(), partition))
            })
            .collect()
    }
}

/// Member id → the partitions it should own. Every member of the spec has an entry.
pub type TargetAssignment = BTreeMap<String, PartitionSet>;

/// Computes target assignments.
///
/// The contract, checked for both implementations by [`tests::check_contract`]: every
/// partition of a subscribed, existing topic goes to exactly one member subscribed to
/// that topic, nothing else is assigned, and every member has an entry.
pub trait Assignor: Debug + Send + Sync {
    /// The name operators choose it by (`group_assignor`) and DescribeGroups reports.
    fn name(&self) -> &'static str;
    fn assign(&self, spec: &AssignmentSpec<'_>) -> TargetAssignment;
}

/// The assignor names of the `group_assignor` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AssignorName {
    /// Even over all topics, sticky.
    Uniform,
    /// Contiguous ranges per topic.
    Range,
}

impl AssignorName {
    pub fn build(self) -> Arc<dyn Assignor> {
        match self {
            Self::Uniform => Arc::new(UniformAssignor),
            Self::Range => Arc::new(RangeAssignor),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Owned inputs for building an [`AssignmentSpec`] in tests.
    #[derive(Debug, Default)]
    pub struct Input {
        pub members: BTreeMap<String, (BTreeSet<String>, PartitionSet)>,
        pub topics: BTreeMap<String, i32>,
    }

    impl Input {
        pub fn topic(mut self, name: &str, partitions: i32) -> Self {
            self.topics.insert(name.into(), partitions);
            self
        }

        pub fn member(mut self, id: &str, topics: &[&str]) -> Self {
            self.members.insert(
                id.into(),
                (
                    topics.iter().map(|t| (*t).to_owned()).collect(),
                    PartitionSet::new(),
                ),
            );
            self
        }

        /// Sets every member's `current` to `previous`.
        pub fn with_current(mut self, previous: &TargetAssignment) -> Self {
            for (id, (_, current)) in &mut self.members {
                *current = previous.get(id).cloned().unwrap_or_default();
            }
            self
        }

        pub fn spec(&self) -> AssignmentSpec<'_> {
            AssignmentSpec {
                members: self
                    .members
                    .iter()
                    .map(|(id, (topics, current))| {
                        (
                            id.as_str(),
                            MemberSpec {
                                subscribed_topics: topics,
                                current,
                            },
                        )
                    })
                    .collect(),
                topic_partitions: &self.topics,
            }
        }
    }

    /// The [`Assignor`] contract.
    pub fn check_contract(spec: &AssignmentSpec<'_>, target: &TargetAssignment) {
        let ids: BTreeSet<&str> = target.keys().map(String::as_str).collect();
        let members: BTreeSet<&str> = spec.members.keys().copied().collect();
        assert_eq!(ids, members, "every member has an entry, and only members");
        let mut seen = PartitionSet::new();
        for (member, partitions) in target {
            for partition in partitions {
                assert!(seen.insert(partition.clone()), "{partition} assigned twice");
                assert!(
                    spec.members[member.as_str()]
                        .subscribed_topics
                        .contains(&partition.topic),
                    "{partition} given to {member}, which does not subscribe to it"
                );
            }
        }
        assert_eq!(
            seen,
            spec.subscribed_partitions(),
            "exactly the subscribed partitions"
        );
    }

    pub fn counts(target: &TargetAssignment) -> Vec<usize> {
        target.values().map(BTreeSet::len).collect()
    }

    /// Both assignors honour the contract on a mix of shapes, including members without
    /// subscriptions, topics nobody subscribes to and subscriptions to missing topics.
    #[test]
    fn both_assignors_honour_the_contract() {
        let inputs = [
            Input::default()
                .topic("a", 6)
                .member("m1", &["a"])
                .member("m2", &["a"]),
            Input::default()
                .topic("a", 5)
                .topic("b", 3)
                .topic("unused", 4)
                .member("m1", &["a", "b"])
                .member("m2", &["b"])
                .member("m3", &[])
                .member("m4", &["a", "missing"]),
            Input::default()
                .topic("a", 1)
                .member("m1", &["a"])
                .member("m2", &["a"])
                .member("m3", &["a"]),
            Input::default().member("m1", &["a"]),
        ];
        for assignor in [AssignorName::Uniform.build(), AssignorName::Range.build()] {
            for input in &inputs {
                let spec = input.spec();
                check_contract(&spec, &assignor.assign(&spec));
            }
        }
    }
}
