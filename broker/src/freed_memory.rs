//! Gives memory the broker has freed back to the operating system, also when the broker
//! goes quiet after a burst.
//!
//! mimalloc (the binary's allocator, v3) keeps freed memory until two things have
//! happened:
//! 1. the thread that owns a page collects it: a block freed by another thread waits on
//!    the page's list, and only the owner can hand the whole page back to the arena.
//!    An ordinary collect skips *full* pages, and a large response buffer has a page of
//!    its own, which is full for as long as it exists: freed by another worker (a task
//!    that moved), it is only found by a *forced* collect on its owner;
//! 2. some thread purges the arena, which is what lowers the resident size. mimalloc
//!    purges on its own once `purge_delay` has passed, but its schedule can be left
//!    with no expiry (a race between a purge finding nothing and a concurrent free);
//!    from then on only a forced purge runs.
//!
//! Both were seen under load: after a burst of fetches on a machine whose cores were
//! all busy, 337–344 MiB (about the whole peak, in transparent huge pages of the arena)
//! stayed resident for three minutes, in one run of twenty. So every collect here is
//! forced.
//!
//! A tokio worker with nothing to do parks indefinitely, so on a quiet broker nothing
//! collects unless asked to, and a task cannot be sent to a particular worker. Two
//! things work together:
//! - a plain thread bumps a round number every [`COLLECT_INTERVAL`] and spawns one task
//!   per worker, which wakes parked workers (the tasks wait for each other briefly so
//!   that they tend to land on distinct workers) and collects where it runs;
//! - [`on_worker_park`], installed as the runtime's park hook, collects whenever a
//!   worker is about to park and has not collected in the current round. A worker the
//!   tasks only woke, or that was busy when they ran, so collects as soon as it goes
//!   idle again: no round depends on where the scheduler put a task.
//!
//! The thread then collects again once the pages are back (a forced purge of the whole
//! process), so memory freed by a burst is back within about 12 s. Collecting more
//! often costs throughput: memory given back is faulted in again by the next large
//! responses (collecting every second cost about a third of fetch throughput).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How often every runtime worker gives its freed memory back.
pub const COLLECT_INTERVAL: Duration = Duration::from_secs(10);

/// How long after a round starts the whole process is purged once more: time for the
/// workers to collect; less than [`COLLECT_INTERVAL`].
const PURGE_AFTER: Duration = Duration::from_millis(1500);

/// How long a worker's collecting task waits for the others to start theirs, so that the
/// tasks land on distinct workers (a waiting task keeps its worker busy, so the next
/// task goes to another). Bounded so that a busy runtime is held up at most this long.
const RENDEZVOUS_TIMEOUT: Duration = Duration::from_millis(100);

/// The current collection round; bumped by the thread [`start`] starts.
static ROUND: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The last round in which this thread collected.
    static COLLECTED_IN: Cell<u64> = const { Cell::new(0) };
}

/// The runtime's park hook (`on_thread_park`): collects on this worker if it has not
/// collected in the current round. Cheap otherwise: one atomic load.
pub fn on_worker_park() {
    let round = ROUND.load(Ordering::Acquire);
    if COLLECTED_IN.get() != round {
        collect_here();
    }
}

/// Starts the thread that, every [`COLLECT_INTERVAL`] for as long as the process runs,
/// starts a round in which each of the runtime's `workers` collects its freed memory
/// (the runtime must have [`on_worker_park`] as its park hook), and then purges it.
pub fn start(runtime: tokio::runtime::Handle, workers: usize) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("freed-memory".into())
        .spawn(move || {
            loop {
                std::thread::sleep(COLLECT_INTERVAL - PURGE_AFTER);
                ROUND.fetch_add(1, Ordering::AcqRel);
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

/// Collects this thread's freed pages, full ones included, into the arenas and purges
/// the arenas' free memory (the purge covers the whole process).
fn collect_here() {
    COLLECTED_IN.set(ROUND.load(Ordering::Acquire));
    // SAFETY: mi_collect (linked in with the global allocator) takes a plain bool and
    // has no preconditions; it tidies this thread's heap and the shared arenas.
    #[allow(unsafe_code)]
    unsafe {
        mi_collect(true);
    }
}

#[allow(unsafe_code)]
unsafe extern "C" {
    /// mimalloc: free memory that is no longer used; `force` also visits full pages and
    /// purges every arena without waiting for the purge delay.
    fn mi_collect(force: bool);
}
