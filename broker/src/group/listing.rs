//! The coordinator's answers to ListGroups and DescribeGroups.

use fjord_protocol::ErrorCode;
use fjord_protocol::messages::{DescribedGroup, DescribedMember, ListedGroup};

use super::assignor::PartitionSet;
use super::consumer_group::{ConsumerGroup, GroupState};
use super::coordinator::{GroupCoordinator, to_wire};

impl GroupCoordinator {
    /// ListGroups: every group, or those in one of `states` (by wire name).
    pub fn list_groups(&self, states: &[String]) -> Vec<ListedGroup> {
        self.groups
            .values()
            .filter(|group| {
                states.is_empty() || states.iter().any(|state| state == group.state().name())
            })
            .map(|group| ListedGroup {
                group_id: group.group_id.clone(),
                group_state: group.state().name().to_owned(),
                member_count: i32::try_from(group.members.len()).unwrap_or(i32::MAX),
            })
            .collect()
    }

    /// DescribeGroups for one group.
    pub fn describe_group(&self, group_id: &str) -> DescribedGroup {
        if group_id.is_empty() {
            return DescribedGroup::error(group_id, ErrorCode::InvalidGroupId);
        }
        let Some(group) = self.groups.get(group_id) else {
            return DescribedGroup::error(group_id, ErrorCode::GroupIdNotFound);
        };
        let empty = PartitionSet::new();
        DescribedGroup {
            error_code: ErrorCode::None,
            group_id: group_id.to_owned(),
            group_state: group.state().name().to_owned(),
            group_epoch: group.group_epoch,
            assignment_epoch: group.target_epoch,
            assignor_name: self.assignor.name().to_owned(),
            members: group
                .members
                .values()
                .map(|member| DescribedMember {
                    member_id: member.member_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    member_epoch: member.member_epoch,
                    subscribed_topic_names: member.subscribed_topics.iter().cloned().collect(),
                    assignment: to_wire(&member.assigned),
                    target_assignment: to_wire(
                        group.target.get(&member.member_id).unwrap_or(&empty),
                    ),
                })
                .collect(),
        }
    }

    /// The state of a group, if it exists.
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(ConsumerGroup::state)
    }
}
