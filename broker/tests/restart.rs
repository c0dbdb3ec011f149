//! Restarts of the real `fjord-broker` binary: many partitions recovered in parallel
//! after kill -9, and a restart on a full disk.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::blocking_client::{
    CLIENT_PATIENCE as PATIENCE, Client, create_topic, http, values, values_batch, wait_ready,
};
use common::{Bound, BrokerProcess, respawn_on_blocking, run_to_end};
use fjord_protocol::ErrorCode;
use serde_json::json;

/// Starts a broker on `data_dir` (output and address files in `work_dir`) and waits
/// for its bound addresses (written before recovery: wait for `/readyz` before using
/// it); fails the test if it exits instead.
fn start_running(work_dir: &Path, data_dir: &Path, arguments: &[&str]) -> (BrokerProcess, Bound) {
    let mut broker = BrokerProcess::spawn(work_dir, data_dir, arguments);
    let bound = broker.addresses_blocking();
    (broker, bound)
}

/// Partitions of the recovery test's topic.
const PARTITIONS: i32 = 48;

/// After kill -9, a broker recovering many partitions on several threads at once brings
/// back every partition with exactly the records acknowledged to it (each partition a
/// different number, so that a partition given another's log would show).
#[test]
fn parallel_recovery_after_kill_restores_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (mut broker, bound) = start_running(dir.path(), &data_dir, &["--recovery-threads", "6"]);
    wait_ready(bound.http_listen);
    create_topic(bound.http_listen, "many", PARTITIONS, json!({}));
    let mut client = Client::connect(bound.listen);
    for partition in 0..PARTITIONS {
        // partition p gets p + 1 batches of 3 records.
        for batch in 0..=partition {
            let code = client.produce(
                "many",
                partition,
                values_batch(&format!("p{partition}-b{batch}"), 3),
            );
            assert_eq!(code, ErrorCode::None);
        }
    }
    drop(client);
    broker.kill();

    let (_broker, bound) = start_running(dir.path(), &data_dir, &["--recovery-threads", "6"]);
    let ready = wait_ready(bound.http_listen);
    println!("ready {ready:?} after kill -9");
    let mut client = Client::connect(bound.listen);
    for partition in 0..PARTITIONS {
        let expected_end = i64::from(partition + 1) * 3;
        let mut records = Vec::new();
        let mut offset = 0;
        let mut high_watermark = 0;
        while offset < expected_end {
            let fetched = client.fetch("many", partition, offset);
            assert_eq!(fetched.error_code, ErrorCode::None, "partition {partition}");
            high_watermark = fetched.high_watermark;
            let page = values(fetched.records);
            let Some(last) = page.last() else { break };
            offset = last.0 + 1;
            records.extend(page);
        }
        assert_eq!(high_watermark, expected_end, "partition {partition}");
        assert_eq!(records.len() as i64, expected_end, "partition {partition}");
        for (index, (offset, value)) in records.iter().enumerate() {
            assert_eq!(*offset, index as i64);
            let batch = index / 3;
            assert_eq!(value, &format!("p{partition}-b{batch}-{}", index % 3));
        }
    }
}

/// A tmpfs of a fixed size, unmounted when dropped.
struct SmallFileSystem {
    path: PathBuf,
}

impl SmallFileSystem {
    /// Mounts a tmpfs of `size_mib` at `path`; `Err` with the reason when this process
    /// may not mount (not root, no CAP_SYS_ADMIN).
    fn mount(path: &Path, size_mib: u32) -> Result<Self, String> {
        std::fs::create_dir_all(path).unwrap();
        let mut mount = Command::new("mount");
        mount
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(path);
        let output = run_to_end(mount).map_err(|error| format!("cannot run mount: {error}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        let mut umount = Command::new("umount");
        umount.arg("-l").arg(&self.path);
        match run_to_end(umount) {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "umount {}: {}",
                self.path.display(),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => eprintln!("umount {}: {error}", self.path.display()),
        }
    }
}

/// Writes `path` until the file system has no space left.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![0x5a_u8; chunk];
        while file.write_all(&bytes).is_ok() {
            written += chunk as u64;
        }
    }
    written
}

/// A broker restarted on a full disk starts (its quorum of one leads without writing),
/// serves reads and refuses produce with STORAGE_ERROR and a topic creation with
/// `500 storage_error`; once space is freed, produce works again without a restart.
#[test]
fn a_restart_on_a_full_disk_serves_reads_and_resumes_writes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let disk = match SmallFileSystem::mount(&dir.path().join("disk"), 64) {
        Ok(disk) => disk,
        Err(reason) => {
            println!("SKIPPED: cannot mount a small tmpfs here ({reason}); run as root");
            return;
        }
    };
    let data_dir = disk.path.join("data");
    let (mut broker, bound) = start_running(dir.path(), &data_dir, &[]);
    wait_ready(bound.http_listen);
    create_topic(bound.http_listen, "full", 2, json!({}));
    let mut client = Client::connect(bound.listen);
    for partition in 0..2 {
        assert_eq!(
            client.produce("full", partition, values_batch("before", 5)),
            ErrorCode::None
        );
    }
    drop(client);
    assert!(broker.terminate_blocking().success());

    let filler = disk.path.join("filler");
    let filled = fill(&filler);
    println!("filled the disk with {filled} bytes");
    // On the same ports, as an operator's restart would be; panics with the log if
    // the broker exits on the full disk.
    let (mut broker, bound) =
        respawn_on_blocking(dir.path(), &data_dir, bound.listen, bound.http_listen, &[]);
    wait_ready(bound.http_listen);
    let mut client = Client::connect(bound.listen);
    for partition in 0..2 {
        let fetched = client.fetch("full", partition, 0);
        assert_eq!(
            fetched.error_code,
            ErrorCode::None,
            "reads are served on a full disk"
        );
        assert_eq!(values(fetched.records).len(), 5);
        assert_eq!(
            client.produce("full", partition, values_batch("full", 1)),
            ErrorCode::StorageError,
            "writes are refused clearly while the disk is full"
        );
    }

    // A metadata change cannot be made durable either: a clear error, and reads go on.
    let more = json!({"name": "more", "partitions": 1});
    let (status, response) = http(bound.http_listen, "POST", "/v1/topics", Some(&more));
    assert_eq!(status, 500, "{response}");
    assert_eq!(response["error"]["code"], "storage_error", "{response}");
    assert_eq!(values(client.fetch("full", 0, 0).records).len(), 5);

    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    let mut accepted = false;
    while !accepted && started.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(200));
        accepted = client.produce("full", 0, values_batch("after", 2)) == ErrorCode::None;
    }
    assert!(
        accepted,
        "produce works again within {PATIENCE:?} of space returning"
    );
    println!(
        "writes resumed {:?} after space returned",
        started.elapsed()
    );
    let fetched = client.fetch("full", 0, 0);
    let records = values(fetched.records);
    assert_eq!(records.len(), 7, "{records:?}");
    assert!(records[5].1.starts_with("after-"));
    drop(client);
    assert!(broker.terminate_blocking().success());
}
