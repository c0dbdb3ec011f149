//! `fjord topic create|list|describe|delete`.

use clap::{Args, Subcommand};
use fjord_client::{Admin, Client, ErrorCode, NewTopic, TopicDescription, TopicSummary};
use serde_json::json;

use super::OutputFormat;
use super::table;

#[derive(Debug, Args)]
pub struct TopicArgs {
    /// How to print the result.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,

    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions; by default the broker's (`default_partitions`).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true, hide_default_value = true)]
        partitions: i32,
        /// Replicas per partition; by default the broker's (`default_replication_factor`:
        /// three, or one per broker on a smaller cluster).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true, hide_default_value = true)]
        replication_factor: i16,
        /// A topic config override KEY=VALUE; repeat for several.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// List the topics (without the broker's internal ones unless asked).
    List {
        /// Also list internal topics, such as `__consumer_offsets`.
        #[arg(long)]
        include_internal: bool,
    },
    /// Show a topic's partitions, leaders and replicas.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
}

fn parse_config(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

pub async fn run(client: &Client, args: TopicArgs) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    let output = args.output;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut topic = NewTopic::new(&name, partitions, replication_factor);
            topic.configs.extend(configs);
            admin.create_topics(&[topic]).await?;
            match output {
                OutputFormat::Table => println!("created topic '{name}'"),
                OutputFormat::Json => println!("{}", json!({ "created": name })),
            }
        }
        TopicCommand::List { include_internal } => {
            let mut topics = admin.list_topics().await?;
            // Internal topics belong to the broker (committed offsets); listing them
            // by default would only invite mistakes.
            topics.retain(|topic| include_internal || !topic.is_internal);
            match output {
                OutputFormat::Table => print!("{}", list_table(&topics)),
                OutputFormat::Json => println!("{}", list_json(&topics)),
            }
        }
        TopicCommand::Describe { name } => {
            let topic = admin.describe_topic(&name).await?;
            match output {
                OutputFormat::Table => print!("{}", describe_table(&topic)),
                OutputFormat::Json => println!("{}", describe_json(&topic)),
            }
        }
        TopicCommand::Delete { name } => {
            admin.delete_topics(std::slice::from_ref(&name)).await?;
            match output {
                OutputFormat::Table => println!("deleted topic '{name}'"),
                OutputFormat::Json => println!("{}", json!({ "deleted": name })),
            }
        }
    }
    Ok(())
}

fn list_table(topics: &[TopicSummary]) -> String {
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|topic| {
            vec![
                topic.name.clone(),
                topic.partitions.to_string(),
                topic.replication_factor.to_string(),
            ]
        })
        .collect();
    table::render(&["NAME", "PARTITIONS", "REPLICATION FACTOR"], &rows)
}

fn list_json(topics: &[TopicSummary]) -> serde_json::Value {
    let topics: Vec<serde_json::Value> = topics
        .iter()
        .map(|topic| {
            json!({
                "name": topic.name,
                "partitions": topic.partitions,
                "replication_factor": topic.replication_factor,
                "internal": topic.is_internal,
            })
        })
        .collect();
    json!({ "topics": topics })
}

fn ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// `online`, `offline` (the leader's log cannot serve: `KAFKA_STORAGE_ERROR`; the
/// admin HTTP API's topic JSON says why), or the partition's error, such as
/// `LEADER_NOT_AVAILABLE` while no replica can lead it.
fn partition_state(error_code: ErrorCode) -> String {
    match error_code {
        ErrorCode::None => "online".to_owned(),
        ErrorCode::StorageError => "offline".to_owned(),
        code => code.name().to_owned(),
    }
}

fn describe_table(topic: &TopicDescription) -> String {
    let rows: Vec<Vec<String>> = topic
        .partitions
        .iter()
        .map(|partition| {
            vec![
                partition.partition.to_string(),
                partition
                    .leader
                    .map_or_else(|| "none".to_owned(), |leader| leader.to_string()),
                partition.leader_epoch.to_string(),
                ids(&partition.replicas),
                ids(&partition.isr),
                partition_state(partition.error_code),
            ]
        })
        .collect();
    format!(
        "topic: {}\nid: {}\npartitions: {}\n\n{}",
        topic.name,
        topic.topic_id,
        topic.partitions.len(),
        table::render(
            &["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "STATE"],
            &rows
        )
    )
}

fn describe_json(topic: &TopicDescription) -> serde_json::Value {
    let partitions: Vec<serde_json::Value> = topic
        .partitions
        .iter()
        .map(|partition| {
            json!({
                "partition": partition.partition,
                "leader": partition.leader,
                "leader_epoch": partition.leader_epoch,
                "replicas": partition.replicas,
                "isr": partition.isr,
                "error": partition.error_code.name(),
                "state": partition_state(partition.error_code),
            })
        })
        .collect();
    json!({
        "name": topic.name,
        "id": topic.topic_id,
        "internal": topic.is_internal,
        "partitions": partitions,
    })
}

#[cfg(test)]
mod tests {
    use fjord_client::PartitionDescription;

    use super::*;

    fn description() -> TopicDescription {
        TopicDescription {
            name: "orders".into(),
            topic_id: "00112233-4455-6677-8899-aabbccddeeff".into(),
            is_internal: false,
            partitions: vec![
                PartitionDescription {
                    partition: 0,
                    leader: Some(1),
                    leader_epoch: 4,
                    replicas: vec![1, 2],
                    isr: vec![1],
                    error_code: ErrorCode::None,
                },
                PartitionDescription {
                    partition: 1,
                    leader: None,
                    leader_epoch: 2,
                    replicas: vec![2],
                    isr: vec![],
                    error_code: ErrorCode::LeaderNotAvailable,
                },
            ],
        }
    }

    /// The human-readable description shows leaders, epochs, replicas and ISR.
    #[test]
    fn describe_table_layout() {
        assert_eq!(
            describe_table(&description()),
            "topic: orders\n\
             id: 00112233-4455-6677-8899-aabbccddeeff\n\
             partitions: 2\n\
             \n\
             PARTITION  LEADER  EPOCH  REPLICAS  ISR  STATE\n\
             0          1       4      1,2       1    online\n\
             1          none    2      2              LEADER_NOT_AVAILABLE\n"
        );
    }

    /// The JSON description has a null leader for a leaderless partition.
    #[test]
    fn describe_json_layout() {
        let value = describe_json(&description());
        assert_eq!(value["partitions"][1]["leader"], serde_json::Value::Null);
        assert_eq!(value["partitions"][0]["isr"], json!([1]));
    }

    /// Configs must be KEY=VALUE with a key.
    #[test]
    fn config_parsing() {
        assert_eq!(
            parse_config("retention.ms=10=x"),
            Ok(("retention.ms".into(), "10=x".into()))
        );
        assert!(parse_config("=1").is_err());
        assert!(parse_config("nothing").is_err());
    }
}
