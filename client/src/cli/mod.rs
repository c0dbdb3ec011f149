//! The `fjord` command-line tool: arguments and dispatch.
//!
//! - `topic`: `fjord topic create|list|describe|delete`.
//! - `produce`: `fjord produce`, lines from stdin or a file become records.
//! - `consume`: `fjord consume`, records printed as text or JSON lines, optionally as
//!   a member of a consumer group.
//! - `group`: `fjord group list|describe|reset-offsets`.
//! - `table`: aligned plain-text tables for human-readable output.
//!
//! Every command prints its result on stdout; errors are returned to `main`, which
//! prints them as one line on stderr and exits non-zero.

mod consume;
mod group;
mod produce;
mod table;
mod topic;

use clap::{Parser, Subcommand, ValueEnum};
use fjord_client::config::DEFAULT_BOOTSTRAP;
use fjord_client::{Client, ClientConfig};

/// The Fjord command-line tool: create and inspect topics, produce and consume
/// records, and manage consumer groups of a Fjord cluster.
///
/// Brokers are given with --bootstrap or FJORD_BOOTSTRAP (default 127.0.0.1:9192).
#[derive(Debug, Parser)]
#[command(name = "fjord", version)]
pub struct Cli {
    /// Brokers to bootstrap from: comma-separated host:port addresses.
    #[arg(long, global = true, env = "FJORD_BOOTSTRAP", default_value = DEFAULT_BOOTSTRAP)]
    bootstrap: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    Topic(topic::TopicArgs),
    /// Send lines from stdin or a file as records.
    Produce(produce::ProduceArgs),
    /// Print the records of a topic.
    Consume(consume::ConsumeArgs),
    /// List, describe and reset consumer groups.
    Group(group::GroupArgs),
}

/// How topic commands print their result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = ClientConfig::from_bootstrap_list(&cli.bootstrap);
    let client = Client::connect(config).await?;
    match cli.command {
        Command::Topic(args) => topic::run(&client, args).await,
        Command::Produce(args) => produce::run(&client, args).await,
        Command::Consume(args) => consume::run(&client, args).await,
        Command::Group(args) => group::run(&client, args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The argument definitions are consistent (clap's own checks).
    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    /// `fjord --help` opens by saying what the tool does (not the library crate's
    /// description) and names the bootstrap setting.
    #[test]
    fn help_says_what_the_tool_does() {
        let help = Cli::command().render_help().to_string();
        assert!(
            help.starts_with("The Fjord command-line tool: create and inspect topics"),
            "{help}"
        );
        assert!(!help.contains("library"), "{help}");
        let long_help = Cli::command().render_long_help().to_string();
        assert!(long_help.contains("FJORD_BOOTSTRAP"), "{long_help}");
    }

    /// The spellings of the issue parse.
    #[test]
    fn documented_invocations_parse() {
        for line in [
            "fjord topic create orders --partitions 3 --replication-factor 1 --config retention.ms=1000 --config segment.bytes=1048576",
            "fjord topic list --output json",
            "fjord --bootstrap a:1,b:2 topic describe orders",
            "fjord topic delete orders",
            "fjord produce orders --file in.txt --key-separator : --acks leader",
            "fjord consume orders --from-beginning --partition 0 --max-messages 10 --format json",
            "fjord consume orders --offset 5 --follow",
            "fjord consume orders --group shipping --from-beginning --max-messages 10",
            "fjord topic list --include-internal",
            "fjord group list --output json",
            "fjord group describe shipping",
            "fjord group reset-offsets shipping --topic orders --to-earliest",
            "fjord group reset-offsets shipping --topic orders --to-timestamp 1700000000000",
        ] {
            let words = line.split_whitespace();
            if let Err(error) = Cli::try_parse_from(words) {
                panic!("{line}: {error}");
            }
        }
        assert!(
            Cli::try_parse_from(["fjord", "consume", "t", "--offset", "1", "--from-beginning"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["fjord", "produce", "t", "--acks", "some"]).is_err());
        assert!(
            Cli::try_parse_from(["fjord", "consume", "t", "--group", "g", "--partition", "1"])
                .is_err()
        );
        let reset = ["fjord", "group", "reset-offsets", "g", "--topic", "t"];
        assert!(Cli::try_parse_from(reset).is_err(), "a target is required");
        assert!(
            Cli::try_parse_from([&reset[..], &["--to-earliest", "--to-latest"]].concat()).is_err()
        );
    }
}
