//! `fjord group list|describe|reset-offsets`.
//!
//! `describe` shows the members with what they own, then every partition the group
//! has committed or subscribes to: the committed offset, the partition's end (high
//! watermark), the lag between them, and the member that owns it. `reset-offsets`
//! moves the committed offsets of one topic; the coordinator refuses it while the
//! group has members, so nobody's position changes under them.

use std::collections::{BTreeMap, BTreeSet};

use clap::{ArgGroup, Args, Subcommand};
use fjord_client::{
    Admin, Client, GroupDescription, GroupListing, GroupOffsetReset, OffsetSpec, TopicPartition,
};
use serde_json::json;

use super::OutputFormat;
use super::table;

#[derive(Debug, Args)]
pub struct GroupArgs {
    /// How to print the result.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,

    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// List every consumer group.
    List,
    /// Show a group's members, assignments, committed offsets and lag.
    Describe { group: String },
    /// Move a group's committed offsets of a topic (only while the group is empty).
    #[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_timestamp"])))]
    ResetOffsets {
        group: String,
        /// The topic whose offsets move.
        #[arg(long)]
        topic: String,
        /// To the oldest record of each partition.
        #[arg(long)]
        to_earliest: bool,
        /// To the end of each partition.
        #[arg(long)]
        to_latest: bool,
        /// To the first record at or after this time (ms since the Unix epoch).
        #[arg(long, value_name = "MS")]
        to_timestamp: Option<i64>,
    },
}

pub async fn run(client: &Client, args: GroupArgs) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    match args.command {
        GroupCommand::List => {
            let groups = admin.list_groups().await?;
            match args.output {
                OutputFormat::Table => print!("{}", list_table(&groups)),
                OutputFormat::Json => println!("{}", list_json(&groups)),
            }
        }
        GroupCommand::Describe { group } => {
            let description = admin.describe_group(&group).await?;
            let lags = lags(&admin, &description).await?;
            match args.output {
                OutputFormat::Table => print!("{}", describe_table(&description, &lags)),
                OutputFormat::Json => println!("{}", describe_json(&description, &lags)),
            }
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_timestamp,
        } => {
            let to = match (to_earliest, to_latest, to_timestamp) {
                (true, _, _) => GroupOffsetReset::Earliest,
                (_, true, _) => GroupOffsetReset::Latest,
                (_, _, Some(timestamp_ms)) if timestamp_ms >= 0 => {
                    GroupOffsetReset::Timestamp(timestamp_ms)
                }
                (_, _, timestamp) => anyhow::bail!("invalid --to-timestamp {timestamp:?}"),
            };
            let offsets = admin.reset_group_offsets(&group, &topic, to).await?;
            match args.output {
                OutputFormat::Table => {
                    let rows: Vec<Vec<String>> = offsets
                        .iter()
                        .map(|(partition, offset)| {
                            vec![
                                partition.topic.clone(),
                                partition.partition.to_string(),
                                offset.to_string(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table::render(&["TOPIC", "PARTITION", "NEW OFFSET"], &rows)
                    );
                }
                OutputFormat::Json => {
                    let offsets: Vec<serde_json::Value> = offsets
                        .iter()
                        .map(|(partition, offset)| {
                            json!({
                                "topic": partition.topic,
                                "partition": partition.partition,
                                "offset": offset,
                            })
                        })
                        .collect();
                    println!("{}", json!({ "group": group, "offsets": offsets }));
                }
            }
        }
    }
    Ok(())
}

/// One partition of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionLag {
    partition: TopicPartition,
    committed: Option<i64>,
    end_offset: i64,
    /// The member that owns the partition now.
    owner: Option<String>,
}

impl PartitionLag {
    /// Records between the committed offset and the end; everything from the start
    /// of the log is not known here, so no committed offset means no lag figure.
    fn lag(&self) -> Option<i64> {
        self.committed
            .map(|committed| (self.end_offset - committed).max(0))
    }
}

/// Committed offsets, ends and owners of every partition the group committed or
/// subscribes to.
async fn lags(admin: &Admin, group: &GroupDescription) -> anyhow::Result<Vec<PartitionLag>> {
    let committed = admin.group_offsets(&group.group_id).await?;
    let mut partitions: BTreeSet<TopicPartition> = committed.keys().cloned().collect();
    let subscribed: BTreeSet<&String> = group
        .members
        .iter()
        .flat_map(|member| &member.subscribed_topics)
        .collect();
    for topic in subscribed {
        if let Ok(description) = admin.describe_topic(topic).await {
            partitions.extend(
                description
                    .partitions
                    .iter()
                    .map(|partition| TopicPartition::new(topic.clone(), partition.partition)),
            );
        }
    }
    let owners: BTreeMap<&TopicPartition, &String> = group
        .members
        .iter()
        .flat_map(|member| {
            member
                .assignment
                .iter()
                .map(move |partition| (partition, &member.member_id))
        })
        .collect();
    let queries: Vec<(TopicPartition, OffsetSpec)> = partitions
        .iter()
        .map(|partition| (partition.clone(), OffsetSpec::Latest))
        .collect();
    let ends = admin.list_offsets(&queries).await?;
    Ok(partitions
        .iter()
        .map(|partition| PartitionLag {
            partition: partition.clone(),
            committed: committed.get(partition).copied(),
            end_offset: ends.get(partition).map_or(-1, |listed| listed.offset),
            owner: owners.get(partition).map(|owner| (*owner).clone()),
        })
        .collect())
}

fn list_table(groups: &[GroupListing]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|group| {
            vec![
                group.group_id.clone(),
                group.state.clone(),
                group.members.to_string(),
            ]
        })
        .collect();
    table::render(&["GROUP", "STATE", "MEMBERS"], &rows)
}

fn list_json(groups: &[GroupListing]) -> serde_json::Value {
    let groups: Vec<serde_json::Value> = groups
        .iter()
        .map(|group| json!({"group": group.group_id, "state": group.state, "members": group.members}))
        .collect();
    json!({ "groups": groups })
}

fn partitions_text(partitions: &[TopicPartition]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for partition in partitions {
        by_topic
            .entry(&partition.topic)
            .or_default()
            .push(partition.partition.to_string());
    }
    by_topic
        .into_iter()
        .map(|(topic, indexes)| format!("{topic}:{}", indexes.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn optional(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

fn describe_table(group: &GroupDescription, lags: &[PartitionLag]) -> String {
    let mut out = format!(
        "group {}: {} at epoch {} (assignment epoch {}, assignor {}), {} member(s)\n\n",
        group.group_id,
        group.state,
        group.group_epoch,
        group.assignment_epoch,
        group.assignor,
        group.members.len()
    );
    if !group.members.is_empty() {
        let rows: Vec<Vec<String>> = group
            .members
            .iter()
            .map(|member| {
                vec![
                    member.member_id.clone(),
                    member.client_id.clone(),
                    member.client_host.clone(),
                    member.member_epoch.to_string(),
                    partitions_text(&member.assignment),
                ]
            })
            .collect();
        out.push_str(&table::render(
            &["MEMBER", "CLIENT", "HOST", "EPOCH", "ASSIGNMENT"],
            &rows,
        ));
        out.push('\n');
    }
    let rows: Vec<Vec<String>> = lags
        .iter()
        .map(|lag| {
            vec![
                lag.partition.topic.clone(),
                lag.partition.partition.to_string(),
                optional(lag.committed),
                lag.end_offset.to_string(),
                optional(lag.lag()),
                lag.owner.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "OWNER"],
        &rows,
    ));
    out
}

fn describe_json(group: &GroupDescription, lags: &[PartitionLag]) -> serde_json::Value {
    let partitions = |partitions: &[TopicPartition]| -> Vec<serde_json::Value> {
        partitions
            .iter()
            .map(|partition| json!({"topic": partition.topic, "partition": partition.partition}))
            .collect()
    };
    let members: Vec<serde_json::Value> = group
        .members
        .iter()
        .map(|member| {
            json!({
                "member_id": member.member_id,
                "client_id": member.client_id,
                "client_host": member.client_host,
                "member_epoch": member.member_epoch,
                "subscribed_topics": member.subscribed_topics,
                "assignment": partitions(&member.assignment),
                "target_assignment": partitions(&member.target_assignment),
            })
        })
        .collect();
    let offsets: Vec<serde_json::Value> = lags
        .iter()
        .map(|lag| {
            json!({
                "topic": lag.partition.topic,
                "partition": lag.partition.partition,
                "committed_offset": lag.committed,
                "end_offset": lag.end_offset,
                "lag": lag.lag(),
                "owner": lag.owner,
            })
        })
        .collect();
    json!({
        "group": group.group_id,
        "state": group.state,
        "group_epoch": group.group_epoch,
        "assignment_epoch": group.assignment_epoch,
        "assignor": group.assignor,
        "members": members,
        "offsets": offsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lag is end minus committed, never negative, and unknown without a commit; the
    /// table shows `-` for unknowns.
    #[test]
    fn lag_and_table() {
        let group = GroupDescription {
            group_id: "shipping".into(),
            state: "Stable".into(),
            group_epoch: 3,
            assignment_epoch: 3,
            assignor: "uniform".into(),
            members: Vec::new(),
        };
        let lags = [
            PartitionLag {
                partition: TopicPartition::new("orders", 0),
                committed: Some(7),
                end_offset: 10,
                owner: Some("m1".into()),
            },
            PartitionLag {
                partition: TopicPartition::new("orders", 1),
                committed: None,
                end_offset: 4,
                owner: None,
            },
        ];
        assert_eq!(lags[0].lag(), Some(3));
        assert_eq!(lags[1].lag(), None);
        let text = describe_table(&group, &lags);
        assert!(
            text.contains("orders  0          7          10   3    m1"),
            "{text}"
        );
        assert!(
            text.contains("orders  1          -          4    -    -"),
            "{text}"
        );
        assert_eq!(describe_json(&group, &lags)["offsets"][0]["lag"], 3);
    }
}
