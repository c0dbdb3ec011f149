//! The leader's side of replica fetches: answers a follower's
//! [`FetchRequest`](super::wire::FetchRequest) for every partition it names.
//!
//! For each partition it checks the follower's leader epoch against its own (an older
//! one is fenced, a newer one unknown), then whether the follower's log still matches
//! its own: the end of the follower's last epoch in the leader's log must not be below
//! the follower's log end. When it is, the answer is where the logs part
//! ([`Diverging`]) and the follower truncates there. Otherwise the fetch tells the
//! partition's leader what the follower holds (which may move the high watermark) and
//! the answer carries the records from the follower's log end, up to the leader's log
//! end (not the high watermark: followers hold what is not committed yet).
//!
//! When no partition has anything new for the follower (records, a higher high
//! watermark, an error or a divergence) the request waits, up to its `max_wait_ms`,
//! until some led partition's log end or high watermark moves.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Replicas;
use super::wire::{self, Diverging, FetchError, FetchRequest, PartitionData, PartitionFetch};
use crate::internal::frame::{RESPONSE_BIT, kind};
use crate::internal::{Frame, InternalService, ServiceError};
use crate::storage::TopicPartition;

/// Longest a replica fetch may wait for news, whatever it asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(10);

/// Answers replica fetches on the internal listener.
#[derive(Debug, Default)]
pub struct FetchService {
    /// Weak: set once the broker's partitions exist (the internal listener starts
    /// before them); a fetch before then is answered with NotLeader everywhere.
    replicas: std::sync::OnceLock<Weak<Replicas>>,
}

impl FetchService {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on fetches are answered from `replicas`.
    pub fn serve(&self, replicas: &Arc<Replicas>) {
        if self.replicas.set(Arc::downgrade(replicas)).is_err() {
            tracing::error!("the replica fetch service was bound twice; keeping the first");
        }
    }

    async fn answer(&self, request: FetchRequest) -> Vec<PartitionData> {
        let Some(replicas) = self.replicas.get().and_then(Weak::upgrade) else {
            return request
                .partitions
                .iter()
                .map(|fetch| {
                    PartitionData::failed(&fetch.topic, fetch.partition, FetchError::NotLeader)
                })
                .collect();
        };
        let wait = Duration::from_millis(request.max_wait_ms).min(MAX_WAIT_CAP);
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = replicas.subscribe_changes();
        let request = Arc::new(request);
        loop {
            changes.borrow_and_update();
            let serving = replicas.clone();
            let fetch = request.clone();
            let answers = tokio::task::spawn_blocking(move || serve(&serving, &fetch))
                .await
                .expect("serving a replica fetch panicked");
            let news = answers
                .iter()
                .zip(&request.partitions)
                .any(|(answer, fetch)| {
                    !answer.records.is_empty()
                        || answer.error.is_some()
                        || answer.diverging.is_some()
                        || answer.high_watermark != fetch.high_watermark
                });
            if news || tokio::time::Instant::now() >= deadline {
                return answers;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return answers;
            }
        }
    }
}

/// One pass over the request's partitions (blocking: it reads the logs).
fn serve(replicas: &Replicas, request: &FetchRequest) -> Vec<PartitionData> {
    let mut budget = request.max_bytes;
    request
        .partitions
        .iter()
        .map(|fetch| {
            let data = serve_partition(replicas, request.replica_id, fetch, budget);
            budget = budget.saturating_sub(data.records.len() as u64);
            data
        })
        .collect()
}

fn serve_partition(
    replicas: &Replicas,
    replica_id: i32,
    fetch: &PartitionFetch,
    max_bytes: u64,
) -> PartitionData {
    let failed = |error| PartitionData::failed(&fetch.topic, fetch.partition, error);
    let id = TopicPartition::new(fetch.topic.clone(), fetch.partition);
    let Some(leader) = replicas
        .leader(&id)
        .filter(|leader| leader.topic_id() == fetch.topic_id)
    else {
        return failed(FetchError::NotLeader);
    };
    let epoch = leader.leader_epoch();
    if fetch.leader_epoch < epoch {
        return failed(FetchError::FencedLeaderEpoch {
            follower: fetch.leader_epoch,
            leader: epoch,
        });
    }
    if fetch.leader_epoch > epoch {
        return failed(FetchError::UnknownLeaderEpoch {
            follower: fetch.leader_epoch,
            leader: epoch,
        });
    }
    let log = leader.log();
    let mut data = PartitionData::empty(&fetch.topic, fetch.partition);
    let log_end = log.log_end_offset();
    data.log_start_offset = log.log_start_offset();
    data.log_end_offset = log_end;
    // A follower whose log ends below this one's start has nothing to keep: it
    // starts over at this log's start, whatever its epochs say.
    if fetch.fetch_offset < data.log_start_offset {
        return failed(FetchError::OffsetOutOfRange {
            fetch_offset: fetch.fetch_offset,
            log_start_offset: data.log_start_offset,
        });
    }
    if let Some(last_epoch) = fetch.last_fetched_epoch {
        let diverging = match log.end_offset_for_epoch(last_epoch) {
            Some((found, end)) if found == last_epoch && end >= fetch.fetch_offset => None,
            Some((found, end)) => Some(Diverging {
                epoch: found,
                end_offset: end.min(fetch.fetch_offset),
            }),
            // The leader has no epoch that old: nothing of the follower's is known to
            // match, down to the leader's log start.
            None => Some(Diverging {
                epoch: -1,
                end_offset: data.log_start_offset.min(fetch.fetch_offset),
            }),
        };
        if diverging.is_some() {
            data.diverging = diverging;
            data.high_watermark = log.high_watermark();
            return data;
        }
    } else if fetch.fetch_offset > log_end {
        // An empty follower log that starts past the leader's end.
        data.diverging = Some(Diverging {
            epoch: -1,
            end_offset: log_end,
        });
        data.high_watermark = log.high_watermark();
        return data;
    }
    if let Err(refused) = leader.follower_fetched(replica_id, fetch.fetch_offset, fetch.durable_end)
    {
        tracing::debug!(partition = %id, %refused, "replica fetch refused");
        return failed(FetchError::NotAReplica(replica_id));
    }
    data.high_watermark = log.high_watermark();
    if fetch.fetch_offset < log_end && max_bytes > 0 {
        match log.read(fetch.fetch_offset, max_bytes, log_end) {
            Ok(read) => data.records = read.records,
            Err(error) => return failed(FetchError::Storage(error.to_string())),
        }
    }
    data
}

impl InternalService for FetchService {
    async fn handle(&self, request: Frame) -> Result<Frame, ServiceError> {
        if request.kind != kind::REPLICA_FETCH {
            return Err(ServiceError::UnknownKind { kind: request.kind });
        }
        let fetch: FetchRequest =
            serde_json::from_slice(&request.body).map_err(|error| ServiceError::BadBody {
                kind: request.kind,
                reason: error.to_string(),
            })?;
        let answers = self.answer(fetch).await;
        Ok(Frame {
            kind: request.kind | RESPONSE_BIT,
            request_id: request.request_id,
            body: wire::encode_response(answers),
        })
    }
}
