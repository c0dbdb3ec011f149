//! openraft's storage conformance suite on Fjord's files, and the crash cases of the
//! files themselves: torn tails, damaged bytes, truncation and purge across reopening,
//! foreign files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{Entry, EntryPayload, Membership, RaftLogReader, RaftSnapshotBuilder, Vote};
use tempfile::TempDir;

use super::log_file::{LOG_FILE_NAME, RaftLogFile};
use super::stored::{LogPosition, StoredEntry, StoredMembership, StoredNode, StoredPayload};
use super::vote_file::{VOTE_FILE_NAME, VoteFile};
use super::*;
use crate::metadata::records::MetadataRecord;
use crate::storage::file_format::{FILE_HEADER_BYTES, FileKind, encode_file_header};

/// Builds a log store and a state machine in a fresh temporary directory.
struct TempDirStores;

impl StoreBuilder<MetadataRaft, LogStore, ImageStateMachine, TempDir> for TempDirStores {
    async fn build(&self) -> Result<(TempDir, LogStore, ImageStateMachine), RaftStorageError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let open = || {
            Ok((
                LogStore::open(dir.path())?,
                ImageStateMachine::open(dir.path())?,
            ))
        };
        let (log, state_machine) =
            open().map_err(|error| storage_error(openraft::StorageIOError::read, error))?;
        Ok((dir, log, state_machine))
    }
}

/// openraft's own storage tests (logs, votes, purge, truncation, membership, snapshot
/// transfer), each on real files in a fresh directory.
#[test]
fn openraft_storage_conformance_suite() {
    tracing_subscriber::fmt().with_test_writer().try_init().ok();
    Suite::test_all(TempDirStores).unwrap();
}

fn position(term: u64, index: u64) -> LogPosition {
    LogPosition {
        term,
        leader: 1,
        index,
    }
}

fn record_entry(term: u64, index: u64) -> StoredEntry {
    StoredEntry {
        position: position(term, index),
        payload: StoredPayload::Records {
            records: vec![MetadataRecord::TopicDeleted {
                topic_id: format!("topic-{index}"),
            }],
        },
    }
}

fn entries(terms_and_indexes: impl IntoIterator<Item = (u64, u64)>) -> Vec<StoredEntry> {
    terms_and_indexes
        .into_iter()
        .map(|(term, index)| record_entry(term, index))
        .collect()
}

fn indexes(log: &RaftLogFile) -> Vec<u64> {
    log.entries(0, u64::MAX)
        .iter()
        .map(|entry| entry.position.index)
        .collect()
}

/// Appends survive reopening, with every kind of payload.
#[test]
fn entries_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    let membership = StoredEntry {
        position: position(1, 2),
        payload: StoredPayload::Membership {
            membership: StoredMembership {
                voter_sets: vec![BTreeSet::from([1, 2, 3])],
                nodes: (1..=3)
                    .map(|node_id| StoredNode {
                        node_id,
                        address: format!("127.0.0.1:9{node_id}94"),
                    })
                    .collect(),
            },
        },
    };
    let written = vec![
        StoredEntry {
            position: position(1, 1),
            payload: StoredPayload::Blank,
        },
        membership,
        record_entry(1, 3),
    ];
    log.append(written.clone()).unwrap();
    drop(log);
    let log = RaftLogFile::open(dir.path()).unwrap();
    assert_eq!(log.entries(0, u64::MAX), written);
    assert_eq!(log.entries(2, 3), written[1..2]);
    assert_eq!(log.last_position(), Some(position(1, 3)));
    assert_eq!(log.last_purged(), None);
}

/// A crash in the middle of an append leaves a partial frame; reopening cuts it and
/// keeps every whole entry, and the log takes the lost entry again.
#[test]
fn torn_tail_is_cut_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    log.append(entries([(1, 1), (1, 2), (1, 3)])).unwrap();
    drop(log);
    let path = dir.path().join(LOG_FILE_NAME);
    let full = fs::read(&path).unwrap();
    for cut_bytes in [1, 5, 9, 20] {
        fs::write(&path, &full[..full.len() - cut_bytes]).unwrap();
        let log = RaftLogFile::open(dir.path()).unwrap();
        assert_eq!(indexes(&log), vec![1, 2], "cut {cut_bytes} bytes");
        assert!(fs::metadata(&path).unwrap().len() < full.len() as u64 - cut_bytes as u64);
    }
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    log.append(entries([(1, 3), (1, 4)])).unwrap();
    drop(log);
    assert_eq!(
        indexes(&RaftLogFile::open(dir.path()).unwrap()),
        vec![1, 2, 3, 4]
    );
}

/// A flipped byte in an entry ends the log there: that entry and all after it are cut,
/// nothing before.
#[test]
fn damaged_entry_ends_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    log.append(entries([(1, 1), (1, 2), (1, 3)])).unwrap();
    drop(log);
    let path = dir.path().join(LOG_FILE_NAME);
    let full = fs::read(&path).unwrap();
    // The last byte of the file is inside entry 3's payload.
    let mut damaged = full.clone();
    *damaged.last_mut().unwrap() ^= 0x40;
    fs::write(&path, &damaged).unwrap();
    assert_eq!(indexes(&RaftLogFile::open(dir.path()).unwrap()), vec![1, 2]);
    // A byte inside entry 2 ends the log after entry 1.
    let mut damaged = full.clone();
    let inside_entry_2 = full
        .windows(b"topic-2".len())
        .position(|window| window == b"topic-2")
        .unwrap();
    damaged[inside_entry_2] ^= 0x40;
    fs::write(&path, &damaged).unwrap();
    assert_eq!(indexes(&RaftLogFile::open(dir.path()).unwrap()), vec![1]);
    // The log takes entries 2 and 3 again.
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    log.append(entries([(2, 2), (2, 3)])).unwrap();
    drop(log);
    let log = RaftLogFile::open(dir.path()).unwrap();
    assert_eq!(indexes(&log), vec![1, 2, 3]);
    assert_eq!(log.last_position(), Some(position(2, 3)));
}

/// A frame whose checksum holds but whose content is not an entry is corruption, not a
/// torn tail: opening fails and the file is left as it is.
#[test]
fn unreadable_entry_with_valid_checksum_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    log.append(entries([(1, 1)])).unwrap();
    drop(log);
    let path = dir.path().join(LOG_FILE_NAME);
    let mut bytes = fs::read(&path).unwrap();
    let payload = b"{\"not\":\"an entry\"}";
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    bytes.extend_from_slice(payload);
    fs::write(&path, &bytes).unwrap();
    let error = RaftLogFile::open(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("valid checksum but cannot be read"),
        "{error}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

/// Truncating a conflicting suffix and purging a prefix both hold across reopening, and
/// the log goes on from where they left it.
#[test]
fn truncate_and_purge_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    log.append(entries((1..=10).map(|index| (1, index))))
        .unwrap();
    log.truncate_from(8).unwrap();
    assert_eq!(indexes(&log), (1..=7).collect::<Vec<_>>());
    drop(log);
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    assert_eq!(indexes(&log), (1..=7).collect::<Vec<_>>());
    log.append(entries([(2, 8)])).unwrap();
    log.purge_upto(position(1, 3)).unwrap();
    drop(log);

    let mut log = RaftLogFile::open(dir.path()).unwrap();
    assert_eq!(log.last_purged(), Some(position(1, 3)));
    assert_eq!(indexes(&log), (4..=8).collect::<Vec<_>>());
    assert_eq!(log.last_position(), Some(position(2, 8)));
    assert_eq!(log.entries(0, u64::MAX), {
        let mut expected = entries((4..=7).map(|index| (1, index)));
        expected.push(record_entry(2, 8));
        expected
    });
    // Truncation after a purge, then a purge past the last entry.
    log.truncate_from(6).unwrap();
    drop(log);
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    assert_eq!(indexes(&log), vec![4, 5]);
    log.purge_upto(position(3, 20)).unwrap();
    drop(log);
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    assert_eq!(indexes(&log), Vec::<u64>::new());
    assert_eq!(log.last_purged(), Some(position(3, 20)));
    assert_eq!(log.last_position(), Some(position(3, 20)));
    log.append(entries([(3, 21)])).unwrap();
    drop(log);
    assert_eq!(indexes(&RaftLogFile::open(dir.path()).unwrap()), vec![21]);
}

/// An append that would leave a hole or repeat an index is refused and changes nothing.
#[test]
fn non_contiguous_appends_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    log.append(entries([(1, 1), (1, 2)])).unwrap();
    for bad in [vec![(1, 4)], vec![(1, 2)], vec![(1, 3), (1, 5)]] {
        let error = log.append(entries(bad.clone())).unwrap_err();
        assert!(
            matches!(error, RaftStoreError::NotContiguous { .. }),
            "{bad:?}: {error}"
        );
    }
    // After a purge, entries the snapshot holds are skipped; the next must follow it.
    log.purge_upto(position(1, 2)).unwrap();
    log.append(entries([(1, 1), (1, 2)])).unwrap();
    assert_eq!(indexes(&log), Vec::<u64>::new());
    drop(log);
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    assert_eq!(indexes(&log), Vec::<u64>::new());
    log.append(entries([(1, 2), (1, 3)])).unwrap();
    assert!(log.append(entries([(1, 5)])).is_err());
    assert_eq!(indexes(&log), vec![3]);
}

/// A crash during a purge leaves `raft.log.tmp` beside the old log: the old log opens
/// whole and the leftover is removed.
#[test]
fn unfinished_purge_leaves_the_old_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    log.append(entries([(1, 1), (1, 2)])).unwrap();
    drop(log);
    let tmp = dir.path().join("raft.log.tmp");
    fs::write(&tmp, b"half a purge").unwrap();
    let log = RaftLogFile::open(dir.path()).unwrap();
    assert_eq!(indexes(&log), vec![1, 2]);
    assert!(!tmp.exists());
}

/// Files that are not a Raft log of this version are refused with an error naming the
/// problem, and left untouched.
#[test]
fn foreign_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    drop(RaftLogFile::open(dir.path()).unwrap());
    let path = dir.path().join(LOG_FILE_NAME);
    let good = fs::read(&path).unwrap();

    let mut bad_magic = good.clone();
    bad_magic[0..4].copy_from_slice(b"KAFK");
    let mut next_version = good.clone();
    next_version[4..6].copy_from_slice(&2u16.to_be_bytes());
    let crc = crc32fast::hash(&next_version[0..20]);
    next_version[20..24].copy_from_slice(&crc.to_be_bytes());
    let mut other_kind = encode_file_header(FileKind::MetadataLog, 0).to_vec();
    other_kind.extend_from_slice(&good[FILE_HEADER_BYTES as usize..]);
    let mut damaged_start = good.clone();
    *damaged_start.last_mut().unwrap() ^= 0x01;

    for (bytes, expected) in [
        (bad_magic, "bad magic"),
        (next_version, "format version 2 is not supported"),
        (other_kind, "does not describe a RaftLog file"),
        (good[..10].to_vec(), "shorter than its header"),
        (damaged_start, "start frame is missing or damaged"),
    ] {
        fs::write(&path, &bytes).unwrap();
        let error = RaftLogFile::open(dir.path()).unwrap_err().to_string();
        assert!(error.contains(expected), "{expected}: {error}");
        assert!(error.contains(LOG_FILE_NAME), "{error}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "{expected}: file changed");
    }

    // The vote file: another version, or damage, is refused too.
    let mut vote = VoteFile::open(dir.path()).unwrap();
    vote.save(vote_file::VoteState::default()).unwrap();
    let vote_path = dir.path().join(VOTE_FILE_NAME);
    let mut bytes = fs::read(&vote_path).unwrap();
    bytes[5] = 9;
    let crc_at = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..crc_at]);
    bytes[crc_at..].copy_from_slice(&crc.to_be_bytes());
    fs::write(&vote_path, &bytes).unwrap();
    let error = VoteFile::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("unsupported version"), "{error}");
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap()
        .block_on(future)
}

fn open_log_store(dir: &Path) -> LogStore {
    LogStore::open(dir).unwrap()
}

/// The vote and the committed position survive reopening; so do entries appended
/// through openraft's interface.
#[test]
fn vote_and_committed_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let mut store = open_log_store(dir.path());
        assert_eq!(store.read_vote().await.unwrap(), None);
        store.save_vote(&Vote::new(7, 2)).await.unwrap();
        store
            .save_committed(Some(log_id_of(position(7, 12))))
            .await
            .unwrap();
        store.save_vote(&Vote::new_committed(8, 3)).await.unwrap();
    });
    run(async {
        let mut store = open_log_store(dir.path());
        assert_eq!(
            store.read_vote().await.unwrap(),
            Some(Vote::new_committed(8, 3))
        );
        assert_eq!(
            store.read_committed().await.unwrap(),
            Some(log_id_of(position(7, 12)))
        );
    });
}

fn records_entry(index: u64, records: Vec<MetadataRecord>) -> Entry<MetadataRaft> {
    Entry {
        log_id: log_id_of(position(1, index)),
        payload: EntryPayload::Normal(records),
    }
}

/// The state machine applies record batches to the image; its snapshot, reopened from
/// disk or installed on another node, gives the same image at the same position.
#[test]
fn image_snapshot_survives_reopen_and_installs_elsewhere() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let topic_id = uuid::Uuid::from_bytes([7; 16]).to_string();
    let expected = run(async {
        let mut machine = ImageStateMachine::open(leader_dir.path()).unwrap();
        let applied = machine
            .apply([
                records_entry(
                    1,
                    vec![
                        MetadataRecord::ClusterInitialized {
                            cluster_id: "c1".into(),
                        },
                        MetadataRecord::BrokerRegistered {
                            node_id: 1,
                            host: "127.0.0.1".into(),
                            port: 9192,
                            internal_address: String::new(),
                            incarnation_id: String::new(),
                            rack: None,
                            broker_epoch: 0,
                            fenced: false,
                            external: None,
                        },
                    ],
                ),
                records_entry(
                    2,
                    vec![MetadataRecord::TopicCreated {
                        name: "orders".into(),
                        topic_id: topic_id.clone(),
                        config: BTreeMap::new(),
                        replicas: vec![vec![1], vec![1]],
                    }],
                ),
            ])
            .await
            .unwrap();
        assert_eq!(
            applied,
            vec![
                Applied {
                    index: 1,
                    records_applied: 2
                },
                Applied {
                    index: 2,
                    records_applied: 3
                }
            ]
        );
        let snapshot = machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        // Applied after the snapshot: not in it.
        machine
            .apply([records_entry(
                3,
                vec![MetadataRecord::TopicDeleted {
                    topic_id: topic_id.clone(),
                }],
            )])
            .await
            .unwrap();
        assert!(machine.image().topic("orders").is_none());

        let mut follower = ImageStateMachine::open(follower_dir.path()).unwrap();
        let mut data = follower.begin_receiving_snapshot().await.unwrap();
        *data = *snapshot.snapshot;
        follower
            .install_snapshot(&snapshot.meta, data)
            .await
            .unwrap();
        follower.image()
    });
    assert_eq!(expected.topic("orders").unwrap().partitions.len(), 2);
    assert_eq!(expected.records_applied, 3);
    for dir in [leader_dir.path(), follower_dir.path()] {
        let reopened = ImageStateMachine::open(dir).unwrap();
        assert_eq!(reopened.image(), expected);
        assert_eq!(reopened.last_applied(), Some(position(1, 2)));
    }
}

/// A snapshot that is not an image is refused, and the state machine keeps its state.
#[test]
fn unreadable_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let mut machine = ImageStateMachine::open(dir.path()).unwrap();
        let source_dir = tempfile::tempdir().unwrap();
        let mut source = ImageStateMachine::open(source_dir.path()).unwrap();
        let snapshot = source
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let data = Box::new(std::io::Cursor::new(b"not an image".to_vec()));
        let error = machine
            .install_snapshot(&snapshot.meta, data)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("snapshot cannot be read"),
            "{error}"
        );
        assert!(machine.get_current_snapshot().await.unwrap().is_none());
    });
}

/// A snapshot whose image is at another position than its metadata says is refused:
/// the follower would otherwise claim to have applied entries it has not.
#[test]
fn snapshot_at_another_position_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source_dir = tempfile::tempdir().unwrap();
    run(async {
        let mut source = ImageStateMachine::open(source_dir.path()).unwrap();
        let cluster = MetadataRecord::ClusterInitialized {
            cluster_id: "c1".into(),
        };
        source
            .apply([records_entry(1, vec![cluster])])
            .await
            .unwrap();
        let mut snapshot = source
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        snapshot.meta.last_log_id = Some(log_id_of(position(1, 2)));
        let mut machine = ImageStateMachine::open(dir.path()).unwrap();
        let error = machine
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("index 1"), "{error}");
        assert!(machine.get_current_snapshot().await.unwrap().is_none());
        assert_eq!(machine.image(), crate::metadata::MetadataImage::default());
    });
}

/// Every entry moves the image's position, blank and membership entries included, so
/// the image's position is the state machine's; an entry offered again is refused and
/// changes nothing.
#[test]
fn entries_apply_once_and_move_the_image() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let mut machine = ImageStateMachine::open(dir.path()).unwrap();
        let blank = Entry {
            log_id: log_id_of(position(1, 1)),
            payload: EntryPayload::Blank,
        };
        let created = records_entry(
            2,
            vec![MetadataRecord::TopicCreated {
                name: "orders".into(),
                topic_id: uuid::Uuid::from_bytes([7; 16]).to_string(),
                config: BTreeMap::new(),
                replicas: vec![vec![1]],
            }],
        );
        let membership = Entry {
            log_id: log_id_of(position(2, 3)),
            payload: EntryPayload::Membership(Membership::new(
                vec![BTreeSet::from([1])],
                BTreeMap::from([(1, QuorumMember::default())]),
            )),
        };
        machine
            .apply([blank, created.clone(), membership])
            .await
            .unwrap();
        let image = machine.image();
        assert_eq!(
            image.applied_position(),
            Some(LogPosition {
                term: 2,
                leader: 1,
                index: 3
            })
        );
        assert_eq!(machine.last_applied(), image.applied_position());
        assert_eq!(
            machine.applied_state().await.unwrap().0,
            Some(log_id_of(position(2, 3)))
        );
        let error = machine.apply([created]).await.unwrap_err();
        assert!(
            error.to_string().contains("cannot be applied after"),
            "{error}"
        );
        assert_eq!(machine.image(), image);
    });
}

/// Entries read back through openraft's reader are the entries appended, memberships
/// included.
#[test]
fn reader_returns_appended_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLogFile::open(dir.path()).unwrap();
    let membership = StoredMembership {
        voter_sets: vec![BTreeSet::from([1]), BTreeSet::from([1, 2])],
        nodes: [(1, "a:1"), (2, "b:2"), (5, "learner:5")]
            .into_iter()
            .map(|(node_id, address)| StoredNode {
                node_id,
                address: address.into(),
            })
            .collect(),
    };
    log.append(vec![StoredEntry {
        position: position(1, 1),
        payload: StoredPayload::Membership {
            membership: membership.clone(),
        },
    }])
    .unwrap();
    drop(log);
    run(async {
        let mut store = open_log_store(dir.path());
        let mut reader = store.get_log_reader().await;
        let read = reader.try_get_log_entries(1..=1).await.unwrap();
        assert_eq!(read.len(), 1);
        let EntryPayload::Membership(read_membership) = &read[0].payload else {
            panic!("not a membership entry: {:?}", read[0]);
        };
        assert_eq!(stored_membership(read_membership), membership);
        assert_eq!(read[0].log_id, log_id_of(position(1, 1)));
    });
}

/// One step of [`log_matches_a_model_across_reopening`].
#[derive(Debug, Clone)]
enum Step {
    Append { count: u64, term_increase: u64 },
    Truncate { back: u64 },
    Purge { ahead: u64 },
    Reopen,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (1..4u64, 0..2u64).prop_map(|(count, term_increase)| Step::Append { count, term_increase }),
        1 => (0..5u64).prop_map(|back| Step::Truncate { back }),
        1 => (0..6u64).prop_map(|ahead| Step::Purge { ahead }),
        1 => Just(Step::Reopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

    /// Any sequence of appends, truncations, purges and reopenings leaves exactly the
    /// entries and purge point that a list in memory says it should.
    #[test]
    fn log_matches_a_model_across_reopening(steps in proptest::collection::vec(step(), 1..24)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RaftLogFile::open(dir.path()).unwrap();
        let mut model: Vec<StoredEntry> = Vec::new();
        let mut model_purged: Option<LogPosition> = None;
        let mut term = 1;
        for step in steps {
            let next_index = model
                .last()
                .map(|entry| entry.position.index + 1)
                .or(model_purged.map(|purged| purged.index + 1))
                .unwrap_or(1);
            match step {
                Step::Append { count, term_increase } => {
                    term += term_increase;
                    let new = entries((next_index..next_index + count).map(|index| (term, index)));
                    log.append(new.clone()).unwrap();
                    model.extend(new);
                }
                Step::Truncate { back } => {
                    let from = next_index.saturating_sub(back).max(1);
                    log.truncate_from(from).unwrap();
                    model.retain(|entry| entry.position.index < from);
                }
                Step::Purge { ahead } => {
                    let first = model_purged.map_or(0, |purged| purged.index);
                    let upto = position(term, first + ahead);
                    log.purge_upto(upto).unwrap();
                    if model_purged.is_none_or(|purged| purged.index < upto.index) {
                        model.retain(|entry| entry.position.index > upto.index);
                        model_purged = Some(upto);
                    }
                }
                Step::Reopen => {
                    drop(log);
                    log = RaftLogFile::open(dir.path()).unwrap();
                }
            }
            proptest::prop_assert_eq!(log.entries(0, u64::MAX), model.clone());
            proptest::prop_assert_eq!(log.last_purged(), model_purged);
        }
        drop(log);
        let log = RaftLogFile::open(dir.path()).unwrap();
        proptest::prop_assert_eq!(log.entries(0, u64::MAX), model);
        proptest::prop_assert_eq!(log.last_purged(), model_purged);
    }
}
