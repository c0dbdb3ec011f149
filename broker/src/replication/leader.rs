//! What the leader of one partition knows and decides, as a pure state machine: events
//! in ([`Event`]), effects out ([`Effect`]), time given as milliseconds in the events.
//!
//! The leader tracks, for every follower, how far it has fetched and what it has made
//! durable, and from that:
//! - the **high watermark**: the lowest durable end over the in-sync replicas, the
//!   leader included. It only moves forward, and not at all until every in-sync
//!   follower has fetched once in this leader epoch (before that, the leader does not
//!   know what they hold), nor while the in-sync set has fewer than
//!   `min.insync.replicas` members (as in Kafka's KIP-966): the replicas that left it
//!   then may be elected (the controller's eligible leader replicas), and they must
//!   hold everything below the high watermark, which consumers have seen.
//! - **in-sync set changes**, proposed to the controller with the partition epoch they
//!   start from: a follower that has not caught up with the leader's log end for
//!   `replica_lag_ms` is proposed out; one that has reached the high watermark (and the
//!   start of this leader epoch) is proposed in. One proposal at a time. Until the
//!   controller accepts a change (it comes back as [`Event::Metadata`]) the leader counts
//!   the larger of the two sets, so that it never counts a change the controller might
//!   refuse: a replica being added must already hold what the high watermark covers,
//!   and a replica being removed still holds it back.
//!
//! "Caught up" is Kafka's rule: a fetch at or past the leader's log end catches the
//! follower up at the time of the fetch; a fetch at or past the log end the leader had at
//! the follower's previous fetch catches it up at the time of that previous fetch.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

/// Something that happened to the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The leader's log now ends at `log_end`.
    Appended { log_end: i64 },
    /// Everything below `durable_end` of the leader's log is durable (fsynced under the
    /// `fsync` policy; written, under `interval`).
    Durable { durable_end: i64 },
    /// A follower fetched from `fetch_offset`, its log matching the leader's below it,
    /// and has everything below `durable_end` durable.
    FollowerFetched {
        replica: i32,
        fetch_offset: i64,
        durable_end: i64,
        now_ms: i64,
    },
    /// Time passed; lagging followers may leave the in-sync set.
    Tick { now_ms: i64 },
    /// The metadata now has this replica set and in-sync set at `partition_epoch` (the
    /// same leader epoch: another leader epoch means another state machine), and the
    /// topic needs `min_insync` in-sync replicas.
    Metadata {
        replicas: Vec<i32>,
        isr: Vec<i32>,
        min_insync: usize,
        partition_epoch: i32,
        now_ms: i64,
    },
    /// The controller refused or never answered the last proposal: a new one may go.
    ProposalFailed,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Readers may see everything below this offset, and acks=all produce requests
    /// whose records end below it are complete.
    HighWatermark(i64),
    /// Ask the controller to make `isr` the in-sync set, on the condition that the
    /// partition is still at `leader_epoch` and `partition_epoch`.
    ProposeIsr {
        isr: Vec<i32>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
}

/// Why a follower's fetch is not taken into account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchRefused {
    #[error("broker {0} is not a replica of this partition")]
    NotAReplica(i32),
}

/// The leader's view of one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Follower {
    /// Where it fetched and what it has durable, once it fetched in this leader epoch.
    position: Option<Position>,
    last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// The leader's log end at the follower's last fetch.
    log_end_at_last_fetch: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    fetch_offset: i64,
    durable_end: i64,
}

/// How a leader is set up when it takes over a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderStart {
    pub node_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// In-sync replicas the high watermark needs to move.
    pub min_insync: usize,
    /// The leader's log end when it took over: the first offset of its epoch.
    pub log_end: i64,
    pub durable_end: i64,
    /// The high watermark its log had (checkpointed, or learned as a follower).
    pub high_watermark: i64,
    pub replica_lag_ms: i64,
    pub now_ms: i64,
}

/// The leader of one partition, for one leader epoch.
#[derive(Debug, Clone)]
pub struct LeaderState {
    node_id: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    epoch_start_offset: i64,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    min_insync: usize,
    /// The in-sync set proposed to the controller and not yet seen in the metadata.
    proposed: Option<Vec<i32>>,
    followers: BTreeMap<i32, Follower>,
    log_end: i64,
    durable_end: i64,
    high_watermark: i64,
    replica_lag_ms: i64,
}

impl LeaderState {
    /// A leader that took over at `start.log_end`; followers get `replica_lag_ms` from
    /// now to fetch before they count as lagging. The effects bring the high watermark
    /// up to what the in-sync set already holds (a leader alone in it: its durable end).
    pub fn new(start: LeaderStart) -> (Self, Vec<Effect>) {
        let followers = start
            .replicas
            .iter()
            .filter(|&&replica| replica != start.node_id)
            .map(|&replica| (replica, Follower::new(start.now_ms, start.log_end)))
            .collect();
        let mut state = Self {
            node_id: start.node_id,
            leader_epoch: start.leader_epoch,
            partition_epoch: start.partition_epoch,
            epoch_start_offset: start.log_end,
            replicas: start.replicas,
            isr: start.isr,
            min_insync: start.min_insync,
            proposed: None,
            followers,
            log_end: start.log_end,
            durable_end: start.durable_end.min(start.log_end),
            high_watermark: start.high_watermark.min(start.log_end),
            replica_lag_ms: start.replica_lag_ms,
        };
        let mut effects = Vec::new();
        state.advance_high_watermark(&mut effects);
        (state, effects)
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The replicas other than the leader.
    pub fn followers(&self) -> impl Iterator<Item = i32> + '_ {
        self.followers.keys().copied()
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// The in-sync set as the metadata has it.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    /// The set the high watermark waits for: the metadata's in-sync set and a
    /// proposed one together.
    pub fn counted_isr(&self) -> Vec<i32> {
        let mut counted = self.isr.clone();
        for replica in self.proposed.iter().flatten() {
            if !counted.contains(replica) {
                counted.push(*replica);
            }
        }
        counted
    }

    /// A follower's lag behind the leader's log end in offsets, and how long since it
    /// was last caught up; `None` for a replica that is not a follower.
    pub fn follower_lag(&self, replica: i32, now_ms: i64) -> Option<(i64, i64)> {
        self.followers.get(&replica).map(|follower| {
            let fetched = follower.position.map_or(0, |p| p.fetch_offset);
            (
                (self.log_end - fetched).max(0),
                (now_ms - follower.last_caught_up_ms).max(0),
            )
        })
    }

    /// A follower's fetch position, once it fetched in this leader epoch.
    pub fn follower_fetch_offset(&self, replica: i32) -> Option<i64> {
        self.followers
            .get(&replica)
            .and_then(|follower| follower.position)
            .map(|position| position.fetch_offset)
    }

    /// Applies one event; returns what the shell must do, in order.
    pub fn handle(&mut self, event: Event) -> Result<Vec<Effect>, FetchRefused> {
        let mut effects = Vec::new();
        match event {
            Event::Appended { log_end } => {
                self.log_end = self.log_end.max(log_end);
            }
            Event::Durable { durable_end } => {
                self.durable_end = self.durable_end.max(durable_end.min(self.log_end));
                self.advance_high_watermark(&mut effects);
            }
            Event::FollowerFetched {
                replica,
                fetch_offset,
                durable_end,
                now_ms,
            } => {
                let log_end = self.log_end;
                let follower = self
                    .followers
                    .get_mut(&replica)
                    .ok_or(FetchRefused::NotAReplica(replica))?;
                // A follower never holds more than the leader: whatever it claims past
                // the leader's end is not counted.
                let fetch_offset = fetch_offset.min(log_end);
                if fetch_offset >= log_end {
                    follower.last_caught_up_ms = follower.last_caught_up_ms.max(now_ms);
                } else if fetch_offset >= follower.log_end_at_last_fetch {
                    follower.last_caught_up_ms =
                        follower.last_caught_up_ms.max(follower.last_fetch_ms);
                }
                follower.last_fetch_ms = now_ms;
                follower.log_end_at_last_fetch = log_end;
                follower.position = Some(Position {
                    fetch_offset,
                    durable_end: durable_end.min(fetch_offset),
                });
                self.advance_high_watermark(&mut effects);
                self.maybe_expand(replica, fetch_offset, &mut effects);
            }
            Event::Tick { now_ms } => self.maybe_shrink(now_ms, &mut effects),
            Event::Metadata {
                replicas,
                isr,
                min_insync,
                partition_epoch,
                now_ms,
            } => {
                if partition_epoch < self.partition_epoch {
                    return Ok(effects);
                }
                self.min_insync = min_insync;
                for &replica in &replicas {
                    if replica != self.node_id {
                        self.followers
                            .entry(replica)
                            .or_insert_with(|| Follower::new(now_ms, self.log_end));
                    }
                }
                self.followers
                    .retain(|replica, _| replicas.contains(replica));
                if partition_epoch > self.partition_epoch || self.proposed.as_ref() == Some(&isr) {
                    self.proposed = None;
                }
                self.replicas = replicas;
                self.isr = isr;
                self.partition_epoch = partition_epoch;
                self.advance_high_watermark(&mut effects);
            }
            Event::ProposalFailed => self.proposed = None,
        }
        Ok(effects)
    }

    /// The lowest durable end over the counted in-sync set, if every member's is known.
    fn committable(&self) -> Option<i64> {
        let mut lowest = self.durable_end;
        for replica in self.counted_isr() {
            if replica == self.node_id {
                continue;
            }
            // A member that is no replica any more (a reassignment the metadata made
            // while a proposal was out) holds nothing back.
            let Some(follower) = self.followers.get(&replica) else {
                continue;
            };
            lowest = lowest.min(follower.position?.durable_end);
        }
        Some(lowest)
    }

    fn advance_high_watermark(&mut self, effects: &mut Vec<Effect>) {
        if self.isr.len() < self.min_insync {
            return;
        }
        if let Some(committable) = self.committable()
            && committable > self.high_watermark
        {
            self.high_watermark = committable;
            effects.push(Effect::HighWatermark(committable));
        }
    }

    /// Proposes `replica` into the in-sync set once it has everything committed and has
    /// reached this leader epoch.
    fn maybe_expand(&mut self, replica: i32, fetch_offset: i64, effects: &mut Vec<Effect>) {
        if self.proposed.is_some()
            || self.isr.contains(&replica)
            || fetch_offset < self.high_watermark
            || fetch_offset < self.epoch_start_offset
        {
            return;
        }
        let isr: Vec<i32> = self
            .replicas
            .iter()
            .copied()
            .filter(|member| self.isr.contains(member) || *member == replica)
            .collect();
        self.propose(isr, effects);
    }

    /// Proposes the followers that have lagged for longer than `replica_lag_ms` out of
    /// the in-sync set.
    fn maybe_shrink(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        if self.proposed.is_some() {
            return;
        }
        let lagging = |replica: &i32| {
            self.followers
                .get(replica)
                .is_some_and(|follower| now_ms - follower.last_caught_up_ms > self.replica_lag_ms)
        };
        if !self.isr.iter().any(lagging) {
            return;
        }
        let isr: Vec<i32> = self.isr.iter().copied().filter(|r| !lagging(r)).collect();
        self.propose(isr, effects);
    }

    fn propose(&mut self, isr: Vec<i32>, effects: &mut Vec<Effect>) {
        self.proposed = Some(isr.clone());
        effects.push(Effect::ProposeIsr {
            isr,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
        });
    }
}

impl Follower {
    fn new(now_ms: i64, log_end: i64) -> Self {
        Self {
            position: None,
            last_caught_up_ms: now_ms,
            last_fetch_ms: now_ms,
            log_end_at_last_fetch: log_end,
        }
    }
}
