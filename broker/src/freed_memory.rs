//! Gives memory the broker has freed back to the operating system, also when the broker
//! goes quiet after a burst.
//!
//! mimalloc (the binary's allocator) keeps freed memory until two things have happened:
//! 1. the thread that owns a page collects it: a block freed by another thread waits on
//!    the owner's list, and only the owner (collecting, or allocating from that page)
//!    can hand the whole page back to the arena;
//! 2. some thread later purges the arena, once `purge_delay` (1 s in mimalloc v3) has
//!    passed since the page came back; the purge is what lowers the resident size.
//!
//! A tokio worker with nothing to do parks indefinitely, so on a quiet broker neither
//! step is guaranteed to happen. The earlier scheme (each worker collected when it
//! parked, at most every 10 s) missed a worker that had collected less than 10 s before
//! its last park, pages another worker freed after their owner had parked for good, and
//! the purge, which needs a call after the delay: on a loaded machine 295 MiB stayed
//! resident for a minute after a burst of fetches. Here a plain thread wakes every
//! [`COLLECT_INTERVAL`], has every worker collect on its own thread (step 1), and
//! collects again once the purge delay has passed (step 2), so memory freed by a burst
//! is back within about 12 s. Collecting more often costs throughput: memory given back
//! is faulted in again by the next large responses (collecting every second cost about
//! a third of fetch throughput).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How often every runtime worker gives its freed memory back.
pub const COLLECT_INTERVAL: Duration = Duration::from_secs(10);

/// How long after the workers collected the arenas are purged: past mimalloc's purge
/// delay (1 s), with a margin; less than [`COLLECT_INTERVAL`].
const PURGE_AFTER: Duration = Duration::from_millis(1500);

/// How long a worker's collecting task waits for the others to start theirs, so that the
/// tasks land on distinct workers (a waiting task keeps its worker busy, so the next
/// task goes to another). Bounded so that a busy runtime is held up at most this long.
const RENDEZVOUS_TIMEOUT: Duration = Duration::from_millis(100);

/// Starts the thread that, every [`COLLECT_INTERVAL`] for as long as the process runs,
/// has each of the runtime's `workers` collect its freed memory and then purges it.
pub fn start(runtime: tokio::runtime::Handle, workers: usize) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("freed-memory".into())
        .spawn(move || {
            loop {
                std::thread::sleep(COLLECT_INTERVAL - PURGE_AFTER);
                collect_on_every_worker(&runtime, workers);
                std::thread::sleep(PURGE_AFTER);
                collect_here();
            }
        })?;
    Ok(())
}

/// Spawns one task per worker; each waits until all have started (or
/// [`RENDEZVOUS_TIMEOUT`] passed), then collects on the worker running it.
fn collect_on_every_worker(runtime: &tokio::runtime::Handle, workers: usize) {
    let started = Arc::new((Mutex::new(0_usize), Condvar::new()));
    for _ in 0..workers {
        let started = started.clone();
        // The task is not awaited: after a shutdown it simply never runs.
        drop(runtime.spawn(async move {
            let (count, all_started) = &*started;
            let mut count = count.lock().expect("rendezvous lock poisoned");
            *count += 1;
            all_started.notify_all();
            let (count, _) = all_started
                .wait_timeout_while(count, RENDEZVOUS_TIMEOUT, |count| *count < workers)
                .expect("rendezvous lock poisoned");
            drop(count);
            collect_here();
        }));
    }
}

/// Collects this thread's freed pages into the arenas and purges arena memory whose
/// purge delay has passed (the purge covers the whole process).
fn collect_here() {
    // SAFETY: mi_collect (linked in with the global allocator) takes a plain bool and
    // has no preconditions; it tidies this thread's heap and the shared arenas.
    #[allow(unsafe_code)]
    unsafe {
        mi_collect(false);
    }
}

#[allow(unsafe_code)]
unsafe extern "C" {
    /// mimalloc: free memory that is no longer used (`force`: also abandoned memory).
    fn mi_collect(force: bool);
}
