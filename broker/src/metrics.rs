//! Metrics: the table of every metric the broker exports, the Prometheus recorder
//! behind the `metrics` facade, and the rendering of `GET /metrics`.
//!
//! Code records metrics where they happen with `metrics::counter!` and friends; this
//! module says what each one means ([`METRICS`], also listed in `docs/metrics.md`) and
//! turns them into the Prometheus text format.
//!
//! Two kinds of values are rendered:
//!
//! - Event metrics (counters, histograms, the active-connection gauge) go to one
//!   process-wide recorder, installed once ([`install`]): the `metrics` facade allows
//!   only one global recorder per process, and tests run several brokers in one.
//! - State gauges (per-partition offsets and sizes, uptime) are sampled from the broker
//!   at scrape time into a recorder made for that scrape alone. Sampling keeps them off
//!   the produce path, and a fresh recorder per scrape means a deleted partition's
//!   series disappears with it instead of lingering at its last value.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::group::GroupService;
use crate::metadata::MetadataImage;
use crate::metadata::metadata_log::{QuorumStatus, Role};
use crate::replication::Replicas;
use crate::storage::LogManager;

/// What kind of value a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// How a metric's value is measured; the name ends with the unit where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    /// A number of things (requests, records, segments, connections).
    Count,
    Bytes,
    Seconds,
    /// An offset in a partition log: a position, not an amount.
    Offset,
}

impl MetricUnit {
    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Bytes => "bytes",
            Self::Seconds => "seconds",
            Self::Offset => "offset",
        }
    }

    fn facade_unit(self) -> Option<::metrics::Unit> {
        match self {
            Self::Count => Some(::metrics::Unit::Count),
            Self::Bytes => Some(::metrics::Unit::Bytes),
            Self::Seconds => Some(::metrics::Unit::Seconds),
            Self::Offset => None,
        }
    }
}

/// When a metric gets its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Recorded where the event happens, into the process-wide recorder.
    Event,
    /// Read from the broker when `/metrics` is scraped.
    Scrape,
}

/// One exported metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDescription {
    pub name: &'static str,
    pub kind: MetricKind,
    pub unit: MetricUnit,
    pub labels: &'static [&'static str],
    pub sampling: Sampling,
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: MetricKind,
    unit: MetricUnit,
    labels: &'static [&'static str],
    sampling: Sampling,
    help: &'static str,
) -> MetricDescription {
    MetricDescription {
        name,
        kind,
        unit,
        labels,
        sampling,
        help,
    }
}

use MetricKind::{Counter, Gauge, Histogram};
use MetricUnit::{Bytes, Count, Offset, Seconds};
use Sampling::{Event, Scrape};

const PARTITION_LABELS: &[&str] = &["topic", "partition"];
const FOLLOWER_LABELS: &[&str] = &["topic", "partition", "replica"];
const GROUP_PARTITION_LABELS: &[&str] = &["group", "topic", "partition"];

/// Every metric the broker exports. A unit test checks that every metric the source
/// records is in this table and that `docs/metrics.md` lists every entry.
// One line per metric reads as a table; rustfmt would spread each over eight lines.
#[rustfmt::skip]
pub const METRICS: &[MetricDescription] = &[
    // Client listener and connections (server/).
    metric("fjord_requests_total", Counter, Count, &["api"], Event,
        "Requests received on the client listener, by API."),
    metric("fjord_request_errors_total", Counter, Count, &["api", "code"], Event,
        "Requests answered with a request-level error code (undecodable, timed out), by API and code."),
    metric("fjord_request_duration_seconds", Histogram, Seconds, &["api"], Event,
        "Time from a request's arrival to its response being ready, including long-poll waits, by API."),
    metric("fjord_connections_active", Gauge, Count, &[], Event,
        "Client connections open now."),
    metric("fjord_connections_accepted_total", Counter, Count, &[], Event,
        "Client connections accepted."),
    metric("fjord_connections_rejected_total", Counter, Count, &[], Event,
        "Client connections closed on accept because max_connections was reached."),
    metric("fjord_network_received_bytes_total", Counter, Bytes, &[], Event,
        "Bytes read from client connections."),
    metric("fjord_network_sent_bytes_total", Counter, Bytes, &[], Event,
        "Bytes of responses written to client connections."),
    // Produce and fetch (server/handlers/).
    metric("fjord_produce_bytes_total", Counter, Bytes, &[], Event,
        "Bytes of record batches appended by produce requests."),
    metric("fjord_produce_records_total", Counter, Count, &[], Event,
        "Records appended by produce requests."),
    metric("fjord_produce_partition_errors_total", Counter, Count, &["code"], Event,
        "Partitions of produce requests that failed, by error code."),
    metric("fjord_fetch_bytes_total", Counter, Bytes, &[], Event,
        "Bytes of record batches returned by fetch requests."),
    metric("fjord_fetch_records_total", Counter, Count, &[], Event,
        "Records in the batches returned by fetch requests, counted from batch headers (whole batches, so records before the fetch offset in a batch count too)."),
    // Storage (storage/).
    metric("fjord_storage_fsync_duration_seconds", Histogram, Seconds, &[], Event,
        "Duration of partition log flushes: the fsyncs of one group commit or interval flush (sealed segments, directory, active segment), failed ones included."),
    metric("fjord_storage_fsyncs_total", Counter, Count, &[], Event,
        "Partition log flushes, failed ones included; each may fsync several files."),
    metric("fjord_storage_segment_rolls_total", Counter, Count, &[], Event,
        "Active segments sealed and replaced by a new one."),
    metric("fjord_storage_retention_deleted_segments_total", Counter, Count, &[], Event,
        "Sealed segments deleted by retention (age or size)."),
    metric("fjord_storage_open_segment_files", Gauge, Count, &[], Event,
        "Sealed-segment files open for reads now, at most max_open_segment_files."),
    metric("fjord_storage_segment_file_opens_total", Counter, Count, &[], Event,
        "Sealed-segment files opened for reads because the bounded set of open files did not hold them."),
    // Consumer groups (group/).
    metric("fjord_group_rebalances_total", Counter, Count, &["group", "reason"], Event,
        "Consumer group rebalances (group epoch increases, each computing a new target assignment), by group and reason."),
    // Replication (replication/).
    metric("fjord_replication_waiting_requests", Gauge, Count, &[], Event,
        "Requests (acks=all produce, offset commits) waiting now for the in-sync replicas to have their records."),
    metric("fjord_replication_isr_shrinks_total", Counter, Count, &[], Event,
        "In-sync set changes that removed a replica, of partitions this broker leads."),
    metric("fjord_replication_isr_expands_total", Counter, Count, &[], Event,
        "In-sync set changes that added a replica, of partitions this broker leads."),
    metric("fjord_replication_leaderships_started_total", Counter, Count, &[], Event,
        "Partition leaderships this broker took: a new leader epoch (a topic's creation, a failover to this broker, a preferred leader's return) or its own start-up. Summed over the brokers, failovers show as increases outside restarts."),
    metric("fjord_replication_lost_replicas_total", Counter, Count, &[], Event,
        "Replicas of replicated partitions this broker held by its metadata but found without a directory at start-up (a replaced disk, a deleted directory), recreated empty to copy the log from their leader."),
    metric("fjord_controller_unclean_leader_elections_total", Counter, Count, &[], Event,
        "Partition leaders this broker, as active controller, elected from outside their in-sync sets and eligible leader replicas (topics with unclean.leader.election.enable); each may have lost acknowledged records."),
    // Broker membership (metadata/heartbeats.rs).
    metric("fjord_broker_heartbeats_total", Counter, Count, &["outcome"], Event,
        "Heartbeats this broker sent to the active controller, by outcome: ok, refused (by membership, such as a stale broker epoch) or failed (the controller could not answer)."),
    // Sampled at scrape time.
    metric("fjord_partition_log_start_offset", Gauge, Offset, PARTITION_LABELS, Scrape,
        "First offset still stored in the partition log."),
    metric("fjord_partition_log_end_offset", Gauge, Offset, PARTITION_LABELS, Scrape,
        "Offset the next record appended to the partition gets."),
    metric("fjord_partition_high_watermark", Gauge, Offset, PARTITION_LABELS, Scrape,
        "Offset up to which records are committed and visible to consumers."),
    metric("fjord_partition_size_bytes", Gauge, Bytes, PARTITION_LABELS, Scrape,
        "Bytes of the partition's segment files."),
    metric("fjord_storage_offline_partitions", Gauge, Count, &[], Scrape,
        "Partitions this broker cannot serve: a log that could not be opened (lost or damaged data, awaiting an operator's recovery) or a failed write or fsync."),
    metric("fjord_process_uptime_seconds", Gauge, Seconds, &[], Scrape,
        "Seconds since the broker started."),
    metric("fjord_group_members", Gauge, Count, &["group"], Scrape,
        "Members of each consumer group this broker coordinates."),
    metric("fjord_group_lag", Gauge, Count, GROUP_PARTITION_LABELS, Scrape,
        "Records between a consumer group's committed offset and the partition's high watermark, for each partition the group has committed and this broker holds."),
    metric("fjord_replication_under_replicated_partitions", Gauge, Count, &[], Scrape,
        "Partitions this broker leads whose in-sync set lacks some of their replicas."),
    metric("fjord_replication_follower_lag", Gauge, Offset, FOLLOWER_LABELS, Scrape,
        "Offsets between a follower's last fetch and the leader's log end, by partition and follower; exported by the leader."),
    metric("fjord_replication_follower_lag_seconds", Gauge, Seconds, FOLLOWER_LABELS, Scrape,
        "Seconds since a follower was last caught up with the leader's log end (it leaves the in-sync set past replica_lag_ms), by partition and follower; exported by the leader."),
    metric("fjord_metadata_quorum_term", Gauge, Count, &[], Scrape,
        "The metadata quorum's current term, as this broker's member sees it; it grows with every election."),
    metric("fjord_brokers_fenced", Gauge, Count, &[], Scrape,
        "Registered brokers that are fenced (they lead nothing), in this broker's metadata image."),
    metric("fjord_metadata_is_leader", Gauge, Count, &[], Scrape,
        "1 when this broker's member leads the metadata quorum (it is the active controller), else 0."),
    metric("fjord_metadata_applied_index", Gauge, Count, &[], Scrape,
        "Position in the metadata log of the last entry applied to this broker's metadata image."),
    metric("fjord_metadata_apply_lag", Gauge, Count, &[], Scrape,
        "Entries of the metadata log this broker knows committed but has not applied to its image yet."),
    metric("fjord_metadata_voter_lag", Gauge, Count, &["voter"], Scrape,
        "Entries of the leader's metadata log a voter lacks, by voter node id; exported by the leader only."),
];

/// Histogram buckets of every `_seconds` histogram: 100 µs (an fsync on fast storage,
/// a small request) to 30 s (a long-polling fetch at a generous `max_wait_ms`).
const DURATION_BUCKETS_SECONDS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes;
/// until then the recorder keeps every sample.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &DURATION_BUCKETS_SECONDS,
        )
        .expect("the duration buckets are not empty")
}

/// Registers every description of `sampling` with the current recorder.
fn describe(sampling: Sampling) {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    for metric in METRICS.iter().filter(|metric| metric.sampling == sampling) {
        let (name, help) = (metric.name, metric.help);
        match (metric.kind, metric.unit.facade_unit()) {
            (Counter, Some(unit)) => describe_counter!(name, unit, help),
            (Counter, None) => describe_counter!(name, help),
            (Gauge, Some(unit)) => describe_gauge!(name, unit, help),
            (Gauge, None) => describe_gauge!(name, help),
            (Histogram, Some(unit)) => describe_histogram!(name, unit, help),
            (Histogram, None) => describe_histogram!(name, help),
        }
    }
}

/// Installs the process-wide recorder (once; later calls return the same handle) and
/// registers the descriptions of every event metric. Label-less counters and
/// histograms start at zero, so that they are scraped before their first event and a
/// rate over them starts at the right place.
pub fn install() -> &'static PrometheusHandle {
    RECORDER.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        if let Err(error) = ::metrics::set_global_recorder(recorder) {
            tracing::warn!(%error, "another metrics recorder is installed; /metrics shows only scrape-time gauges");
        }
        describe(Event);
        for metric in METRICS
            .iter()
            .filter(|metric| metric.sampling == Event && metric.labels.is_empty())
        {
            match metric.kind {
                Counter => ::metrics::counter!(metric.name).increment(0),
                // Registering is the point: the histogram shows with empty buckets.
                Histogram => drop(::metrics::histogram!(metric.name)),
                Gauge => ::metrics::gauge!(metric.name).increment(0.0),
            }
        }
        handle
    })
}

/// What the scrape-time gauges are sampled from.
#[derive(Debug, Clone, Copy)]
pub struct ScrapeSources<'a> {
    /// When the broker started (`fjord_process_uptime_seconds`).
    pub started_at: Instant,
    /// The partition logs (offsets, sizes, offline partitions, group lag).
    pub logs: &'a LogManager,
    /// The consumer groups (members, committed offsets).
    pub groups: &'a GroupService,
    /// The metadata quorum as this broker's member sees it.
    pub quorum: &'a QuorumStatus,
    /// The metadata image now (`fjord_brokers_fenced`).
    pub metadata: &'a MetadataImage,
    /// The partitions this broker leads (in-sync sets, follower lag).
    pub replicas: &'a Replicas,
}

/// The Prometheus text of every metric: the process-wide ones, then the gauges sampled
/// from `sources` now (none before the broker has built them).
pub fn render(sources: Option<ScrapeSources<'_>>) -> String {
    let mut text = install().render();
    let Some(sources) = sources else {
        return text;
    };
    let scrape = builder().build_recorder();
    ::metrics::with_local_recorder(&scrape, || {
        describe(Scrape);
        ::metrics::gauge!("fjord_process_uptime_seconds")
            .set(sources.started_at.elapsed().as_secs_f64());
        ::metrics::gauge!("fjord_storage_offline_partitions")
            .set(sources.logs.offline_partitions().len() as f64);
        for (partition, log) in sources.logs.logs() {
            let labels = [
                ("topic", partition.topic.clone()),
                ("partition", partition.partition.to_string()),
            ];
            ::metrics::gauge!("fjord_partition_log_start_offset", &labels)
                .set(log.log_start_offset() as f64);
            ::metrics::gauge!("fjord_partition_log_end_offset", &labels)
                .set(log.log_end_offset() as f64);
            ::metrics::gauge!("fjord_partition_high_watermark", &labels)
                .set(log.high_watermark() as f64);
            ::metrics::gauge!("fjord_partition_size_bytes", &labels).set(log.size_bytes() as f64);
        }
        crate::group::gauges::record(sources.groups, sources.logs);
        record_quorum(sources.quorum);
        record_replication(sources.replicas);
        let fenced = sources
            .metadata
            .brokers
            .values()
            .filter(|broker| broker.fenced);
        ::metrics::gauge!("fjord_brokers_fenced").set(fenced.count() as f64);
    });
    text.push_str(&scrape.handle().render());
    text
}

/// The gauges of the partitions this broker leads.
fn record_replication(replicas: &Replicas) {
    let mut under_replicated = 0;
    for (partition, leader) in replicas.leaders() {
        under_replicated += usize::from(leader.under_replicated());
        for follower in leader.followers() {
            let labels = [
                ("topic", partition.topic.clone()),
                ("partition", partition.partition.to_string()),
                ("replica", follower.replica.to_string()),
            ];
            ::metrics::gauge!("fjord_replication_follower_lag", &labels)
                .set(follower.lag_offsets as f64);
            ::metrics::gauge!("fjord_replication_follower_lag_seconds", &labels)
                .set(follower.since_caught_up_ms as f64 / 1000.0);
        }
    }
    ::metrics::gauge!("fjord_replication_under_replicated_partitions").set(under_replicated as f64);
}

/// The metadata quorum's gauges.
fn record_quorum(quorum: &QuorumStatus) {
    ::metrics::gauge!("fjord_metadata_quorum_term").set(quorum.term as f64);
    let leads = quorum.role == Role::Leader;
    ::metrics::gauge!("fjord_metadata_is_leader").set(if leads { 1.0 } else { 0.0 });
    if let Some(applied) = quorum.applied_index {
        ::metrics::gauge!("fjord_metadata_applied_index").set(applied as f64);
    }
    let apply_lag = quorum
        .committed_index
        .unwrap_or(0)
        .saturating_sub(quorum.applied_index.unwrap_or(0));
    ::metrics::gauge!("fjord_metadata_apply_lag").set(apply_lag as f64);
    for voter in &quorum.voters {
        if let Some(lag) = quorum.lag(voter) {
            let labels = [("voter", voter.node_id.to_string())];
            ::metrics::gauge!("fjord_metadata_voter_lag", &labels).set(lag as f64);
        }
    }
}

/// Folds histogram samples into buckets every [`UPKEEP_INTERVAL`] until `shutdown`, so
/// that memory stays bounded however rarely `/metrics` is scraped.
pub async fn run_upkeep(mut shutdown: watch::Receiver<bool>) {
    let handle = install();
    let mut timer = tokio::time::interval(UPKEEP_INTERVAL);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = timer.tick() => handle.run_upkeep(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every metric name the broker's source records (a `counter!`, `gauge!` or
    /// `histogram!` with a literal name) is described in [`METRICS`], so no metric is
    /// exported undocumented.
    #[test]
    fn every_recorded_metric_is_described() {
        let mut recorded = Vec::new();
        collect_recorded(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut recorded,
        );
        assert!(
            recorded.len() > 10,
            "the scan found too little: {recorded:?}"
        );
        for name in recorded {
            assert!(
                METRICS.iter().any(|metric| metric.name == name),
                "{name} is recorded but not in METRICS"
            );
        }
    }

    fn collect_recorded(dir: &Path, names: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                collect_recorded(&path, names);
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            for macro_name in ["counter!(\"", "gauge!(\"", "histogram!(\""] {
                for (start, _) in source.match_indices(macro_name) {
                    let rest = &source[start + macro_name.len()..];
                    let name = &rest[..rest.find('"').unwrap()];
                    names.push(name.to_owned());
                }
            }
        }
    }

    /// `docs/metrics.md` has a row for every metric, with its type, and metric names
    /// follow the Prometheus conventions for their unit and kind.
    #[test]
    fn docs_list_every_metric_and_names_follow_conventions() {
        let docs = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md"),
        )
        .unwrap();
        for metric in METRICS {
            let row = docs
                .lines()
                .find(|line| line.starts_with(&format!("| `{}`", metric.name)))
                .unwrap_or_else(|| panic!("docs/metrics.md has no row for {}", metric.name));
            assert!(row.contains(metric.kind.name()), "{row}");
            assert!(metric.name.starts_with("fjord_"), "{}", metric.name);
            assert_eq!(
                metric.kind == Counter,
                metric.name.ends_with("_total"),
                "only counters end in _total: {}",
                metric.name
            );
            let base = metric.name.trim_end_matches("_total");
            match metric.unit {
                Bytes => assert!(base.ends_with("_bytes"), "{}", metric.name),
                Seconds => assert!(base.ends_with("_seconds"), "{}", metric.name),
                Count | Offset => assert!(
                    !base.ends_with("_bytes") && !base.ends_with("_seconds"),
                    "{}",
                    metric.name
                ),
            }
        }
    }
}
