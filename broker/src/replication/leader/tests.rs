//! The leader's state machine, event by event.

use super::*;

const LAG_MS: i64 = 10_000;

/// Leader 1 of replicas 1, 2, 3, all in sync, taking over at offset 10 with the high
/// watermark at 8, at time 0.
fn three_replicas() -> LeaderState {
    let (state, effects) = LeaderState::new(LeaderStart {
        node_id: 1,
        leader_epoch: 5,
        partition_epoch: 7,
        replicas: vec![1, 2, 3],
        isr: vec![1, 2, 3],
        min_insync: 1,
        log_end: 10,
        durable_end: 10,
        high_watermark: 8,
        replica_lag_ms: LAG_MS,
        now_ms: 0,
    });
    assert_eq!(effects, vec![], "followers have not fetched yet");
    state
}

fn fetched(replica: i32, fetch_offset: i64, durable_end: i64, now_ms: i64) -> Event {
    Event::FollowerFetched {
        replica,
        fetch_offset,
        durable_end,
        now_ms,
    }
}

fn handle(state: &mut LeaderState, event: Event) -> Vec<Effect> {
    state.handle(event).expect("event accepted")
}

fn propose(isr: &[i32], partition_epoch: i32) -> Effect {
    Effect::ProposeIsr {
        isr: isr.to_vec(),
        leader_epoch: 5,
        partition_epoch,
    }
}

#[test]
fn a_leader_alone_commits_what_it_has_durable() {
    let (mut state, effects) = LeaderState::new(LeaderStart {
        node_id: 1,
        leader_epoch: 0,
        partition_epoch: 0,
        replicas: vec![1],
        isr: vec![1],
        min_insync: 1,
        log_end: 10,
        durable_end: 10,
        high_watermark: 0,
        replica_lag_ms: LAG_MS,
        now_ms: 0,
    });
    assert_eq!(effects, vec![Effect::HighWatermark(10)]);
    assert_eq!(handle(&mut state, Event::Appended { log_end: 15 }), vec![]);
    assert_eq!(state.high_watermark(), 10, "appended is not durable");
    assert_eq!(
        handle(&mut state, Event::Durable { durable_end: 15 }),
        vec![Effect::HighWatermark(15)]
    );
    assert_eq!(
        handle(&mut state, Event::Durable { durable_end: 12 }),
        vec![],
        "an older durable report changes nothing"
    );
    assert_eq!(state.high_watermark(), 15);
}

#[test]
fn the_high_watermark_waits_for_every_in_sync_follower() {
    let mut state = three_replicas();
    handle(&mut state, Event::Appended { log_end: 20 });
    handle(&mut state, Event::Durable { durable_end: 20 });
    assert_eq!(handle(&mut state, fetched(2, 20, 20, 1)), vec![]);
    assert_eq!(state.high_watermark(), 8, "follower 3 has not fetched");
    assert_eq!(
        handle(&mut state, fetched(3, 15, 12, 1)),
        vec![Effect::HighWatermark(12)],
        "the lowest durable end counts, not the fetch offset"
    );
    assert_eq!(
        handle(&mut state, fetched(3, 20, 20, 2)),
        vec![Effect::HighWatermark(20)]
    );
}

#[test]
fn the_leaders_own_durable_end_holds_the_high_watermark_back() {
    let mut state = three_replicas();
    handle(&mut state, Event::Appended { log_end: 20 });
    handle(&mut state, fetched(2, 20, 20, 1));
    assert_eq!(
        handle(&mut state, fetched(3, 20, 20, 1)),
        vec![Effect::HighWatermark(10)]
    );
    assert_eq!(
        handle(&mut state, Event::Durable { durable_end: 20 }),
        vec![Effect::HighWatermark(20)]
    );
}

#[test]
fn the_high_watermark_never_goes_back() {
    let mut state = three_replicas();
    handle(&mut state, Event::Appended { log_end: 20 });
    handle(&mut state, Event::Durable { durable_end: 20 });
    handle(&mut state, fetched(2, 20, 20, 1));
    handle(&mut state, fetched(3, 20, 20, 1));
    assert_eq!(state.high_watermark(), 20);
    // A follower that truncated and fetches from lower down.
    assert_eq!(handle(&mut state, fetched(3, 5, 5, 2)), vec![]);
    assert_eq!(state.high_watermark(), 20);
}

#[test]
fn a_follower_ahead_of_the_leader_counts_only_up_to_the_leaders_end() {
    let mut state = three_replicas();
    handle(&mut state, fetched(2, 50, 50, 1));
    assert_eq!(
        handle(&mut state, fetched(3, 50, 50, 1)),
        vec![Effect::HighWatermark(10)]
    );
    assert_eq!(state.follower_fetch_offset(2), Some(10));
}

#[test]
fn a_fetch_from_a_non_replica_is_refused() {
    let mut state = three_replicas();
    assert_eq!(
        state.handle(fetched(9, 10, 10, 1)),
        Err(FetchRefused::NotAReplica(9))
    );
    assert_eq!(
        state.handle(fetched(1, 10, 10, 1)),
        Err(FetchRefused::NotAReplica(1)),
        "the leader does not fetch from itself"
    );
}

#[test]
fn a_follower_that_lags_too_long_is_proposed_out_once() {
    let mut state = three_replicas();
    handle(&mut state, Event::Appended { log_end: 20 });
    handle(&mut state, fetched(2, 20, 20, 9_000));
    handle(&mut state, fetched(3, 12, 12, 9_000));
    assert_eq!(handle(&mut state, Event::Tick { now_ms: LAG_MS }), vec![]);
    assert_eq!(
        handle(&mut state, Event::Tick { now_ms: LAG_MS + 1 }),
        vec![propose(&[1, 2], 7)],
        "3 was last caught up at time 0 (the takeover)"
    );
    assert_eq!(
        handle(&mut state, Event::Tick { now_ms: LAG_MS + 2 }),
        vec![],
        "one proposal at a time"
    );
    // Until the controller accepts it, 3 still holds the high watermark back.
    handle(&mut state, Event::Durable { durable_end: 20 });
    assert_eq!(state.high_watermark(), 12);
    assert_eq!(
        handle(
            &mut state,
            Event::Metadata {
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                min_insync: 1,
                partition_epoch: 8,
                now_ms: LAG_MS + 3,
            }
        ),
        vec![Effect::HighWatermark(20)]
    );
    assert_eq!(state.isr(), &[1, 2]);
}

#[test]
fn a_fetch_at_the_previous_log_end_catches_up_at_the_previous_fetch() {
    let mut state = three_replicas();
    handle(&mut state, Event::Appended { log_end: 20 });
    handle(&mut state, fetched(2, 20, 20, 1));
    // 3 fetches at 9 s while the leader is at 20; appends continue to 30; 3 then
    // fetches at 20 at 19 s: it had caught up with the end as of 9 s.
    handle(&mut state, fetched(3, 15, 15, 9_000));
    handle(&mut state, Event::Appended { log_end: 30 });
    handle(&mut state, fetched(2, 30, 30, 19_000));
    handle(&mut state, fetched(3, 20, 20, 19_000));
    assert_eq!(
        handle(&mut state, Event::Tick { now_ms: 19_000 }),
        vec![],
        "3 caught up at 9 s (with the end of its fetch before), which is within the lag"
    );
    assert_eq!(
        handle(&mut state, Event::Tick { now_ms: 19_001 }),
        vec![propose(&[1, 2], 7)],
        "one more millisecond and it lags; 2, caught up at 19 s, does not",
    );
}

#[test]
fn a_refused_proposal_lets_the_next_one_go() {
    let mut state = three_replicas();
    let first = handle(&mut state, Event::Tick { now_ms: LAG_MS + 1 });
    assert_eq!(first, vec![propose(&[1], 7)]);
    handle(&mut state, Event::ProposalFailed);
    assert_eq!(
        handle(&mut state, Event::Tick { now_ms: LAG_MS + 2 }),
        vec![propose(&[1], 7)]
    );
}

#[test]
fn a_caught_up_replica_is_proposed_in_and_counted_at_once() {
    let (mut state, _) = LeaderState::new(LeaderStart {
        isr: vec![1, 2],
        min_insync: 1,
        ..start_of(&three_replicas())
    });
    handle(&mut state, Event::Appended { log_end: 20 });
    handle(&mut state, Event::Durable { durable_end: 20 });
    assert_eq!(
        handle(&mut state, fetched(2, 20, 20, 1)),
        vec![Effect::HighWatermark(20)]
    );
    assert_eq!(
        handle(&mut state, fetched(3, 15, 15, 2)),
        vec![],
        "below the high watermark: not yet"
    );
    assert_eq!(
        handle(&mut state, fetched(3, 20, 18, 3)),
        vec![propose(&[1, 2, 3], 7)]
    );
    assert_eq!(state.counted_isr(), vec![1, 2, 3]);
    handle(&mut state, Event::Appended { log_end: 25 });
    handle(&mut state, Event::Durable { durable_end: 25 });
    handle(&mut state, fetched(2, 25, 25, 4));
    assert_eq!(
        state.high_watermark(),
        20,
        "3, being added, holds the high watermark back"
    );
    // The controller refuses (another change came first): 3 is no longer counted once
    // the metadata says so.
    handle(&mut state, Event::ProposalFailed);
    assert_eq!(
        handle(
            &mut state,
            Event::Metadata {
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                min_insync: 1,
                partition_epoch: 8,
                now_ms: 5,
            }
        ),
        vec![Effect::HighWatermark(25)]
    );
}

#[test]
fn a_replica_rejoins_only_from_the_start_of_the_leader_epoch() {
    // The high watermark (8) is below the epoch's start (10): reaching 8 is not enough.
    let (mut state, _) = LeaderState::new(LeaderStart {
        isr: vec![1],
        min_insync: 1,
        replicas: vec![1, 2],
        high_watermark: 8,
        ..start_of(&three_replicas())
    });
    assert_eq!(
        state.high_watermark(),
        10,
        "alone, the leader commits its end"
    );
    assert_eq!(handle(&mut state, fetched(2, 9, 9, 1)), vec![]);
    assert_eq!(
        handle(&mut state, fetched(2, 10, 10, 2)),
        vec![propose(&[1, 2], 7)]
    );
}

#[test]
fn stale_metadata_is_ignored_and_new_replicas_are_tracked() {
    let mut state = three_replicas();
    assert_eq!(
        handle(
            &mut state,
            Event::Metadata {
                replicas: vec![1, 2],
                isr: vec![1],
                min_insync: 1,
                partition_epoch: 6,
                now_ms: 1,
            }
        ),
        vec![]
    );
    assert_eq!(
        state.isr(),
        &[1, 2, 3],
        "an older partition epoch is ignored"
    );
    handle(
        &mut state,
        Event::Metadata {
            replicas: vec![1, 2, 4],
            isr: vec![1, 2],
            min_insync: 1,
            partition_epoch: 8,
            now_ms: 1,
        },
    );
    assert!(state.follower_lag(4, 1).is_some());
    assert!(state.follower_lag(3, 1).is_none());
    assert_eq!(
        state.handle(fetched(3, 10, 10, 2)),
        Err(FetchRefused::NotAReplica(3))
    );
}

#[test]
fn lag_is_reported_in_offsets_and_time() {
    let mut state = three_replicas();
    handle(&mut state, Event::Appended { log_end: 30 });
    handle(&mut state, fetched(2, 25, 25, 4_000));
    assert_eq!(state.follower_lag(2, 5_000), Some((5, 5_000)));
    handle(&mut state, fetched(2, 30, 30, 6_000));
    assert_eq!(state.follower_lag(2, 7_000), Some((0, 1_000)));
}

/// The start that made `state` (for variations of it).
fn start_of(state: &LeaderState) -> LeaderStart {
    LeaderStart {
        node_id: state.node_id,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        replicas: state.replicas.clone(),
        isr: state.isr.clone(),
        min_insync: state.min_insync,
        log_end: state.log_end,
        durable_end: state.durable_end,
        high_watermark: state.high_watermark,
        replica_lag_ms: state.replica_lag_ms,
        now_ms: 0,
    }
}

/// Below `min.insync.replicas` in-sync members the high watermark stands still, even
/// for a leader that holds everything alone (KIP-966): the replicas that left may be
/// elected, and they lack what came after. Back at the minimum, it moves again.
#[test]
fn the_high_watermark_waits_for_min_insync_members() {
    let mut state = three_replicas();
    let metadata = |isr: &[i32], min_insync: usize, partition_epoch: i32| Event::Metadata {
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        min_insync,
        partition_epoch,
        now_ms: 1,
    };
    handle(&mut state, fetched(2, 10, 10, 1));
    handle(&mut state, fetched(3, 10, 10, 1));
    assert_eq!(state.high_watermark(), 10);
    assert_eq!(handle(&mut state, metadata(&[1], 2, 8)), vec![]);
    handle(&mut state, Event::Appended { log_end: 20 });
    assert_eq!(
        handle(&mut state, Event::Durable { durable_end: 20 }),
        vec![],
        "one in-sync replica of the two needed: the high watermark stays"
    );
    assert_eq!(state.high_watermark(), 10);
    assert_eq!(
        handle(&mut state, metadata(&[1], 1, 8)),
        vec![Effect::HighWatermark(20)],
        "a topic whose minimum drops to one lets it move"
    );
    handle(&mut state, metadata(&[1], 2, 8));
    handle(&mut state, Event::Appended { log_end: 30 });
    handle(&mut state, Event::Durable { durable_end: 30 });
    handle(&mut state, fetched(2, 30, 30, 2));
    assert_eq!(state.high_watermark(), 20);
    assert_eq!(
        handle(&mut state, metadata(&[1, 2], 2, 9)),
        vec![Effect::HighWatermark(30)],
        "back at two in-sync replicas, it moves to what both hold"
    );
}
