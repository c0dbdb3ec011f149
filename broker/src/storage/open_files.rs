//! The bounded set of open sealed-segment files.
//!
//! A partition keeps its active segment's `.log` open; a sealed segment's `.log` is
//! opened when a read needs it and kept in this least-recently-used set, which closes
//! the longest-unused file once it holds [`OpenSegmentFiles::capacity`] of them. So the
//! open files of the broker do not grow with the number of segments: a topic with
//! thousands of small segments cannot use up the process's open-file limit and make an
//! unrelated topic (or a restart) fail. Index files keep no descriptor at all (see
//! [`index`](super::index)).
//!
//! The set is process-wide, like the open-file limit it protects. A read holds its own
//! reference to the file while it runs, so closing a file in the set never disturbs a
//! read in progress; it only means the next read of that segment opens it again.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use super::error::{Result, StorageError};

/// Sealed-segment files kept open until a broker sets its own figure (see
/// [`OpenSegmentFiles::set_capacity`]).
pub const CAPACITY_DEFAULT: usize = 1024;

/// Identifies one segment for the life of the process (paths can be reused after a
/// topic is deleted and created again; these numbers are not).
pub type SegmentId = u64;

static NEXT_SEGMENT_ID: AtomicU64 = AtomicU64::new(1);

/// A new [`SegmentId`].
pub fn next_segment_id() -> SegmentId {
    NEXT_SEGMENT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The process-wide set.
pub fn open_segment_files() -> &'static OpenSegmentFiles {
    static FILES: LazyLock<OpenSegmentFiles> =
        LazyLock::new(|| OpenSegmentFiles::new(CAPACITY_DEFAULT));
    &FILES
}

#[derive(Debug, Default)]
struct Entries {
    /// Each open file with the tick of its last use.
    files: HashMap<SegmentId, (Arc<File>, u64)>,
    /// The same files by last use, oldest first.
    by_use: BTreeMap<u64, SegmentId>,
    tick: u64,
    capacity: usize,
}

impl Entries {
    fn touch(&mut self, id: SegmentId) -> Option<Arc<File>> {
        self.tick += 1;
        let tick = self.tick;
        let (file, used) = self.files.get_mut(&id)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, id);
        Some(file.clone())
    }

    fn shrink_to(&mut self, capacity: usize) {
        while self.files.len() > capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.files.remove(&oldest);
        }
        metrics::gauge!("fjord_storage_open_segment_files").set(self.files.len() as f64);
    }
}

/// A least-recently-used set of open sealed-segment files.
#[derive(Debug)]
pub struct OpenSegmentFiles {
    entries: Mutex<Entries>,
}

impl OpenSegmentFiles {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(Entries {
                capacity: capacity.max(1),
                ..Entries::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().expect("open files lock poisoned")
    }

    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// Changes how many files the set keeps open (at least one), closing the
    /// longest-unused ones beyond it.
    pub fn set_capacity(&self, capacity: usize) {
        let mut entries = self.lock();
        entries.capacity = capacity.max(1);
        let capacity = entries.capacity;
        entries.shrink_to(capacity);
    }

    /// How many files the set holds open now.
    pub fn len(&self) -> usize {
        self.lock().files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segment's file, opened read-only from `path` unless the set holds it.
    /// The file is opened outside the lock, so a slow open delays no other read.
    pub fn get(&self, id: SegmentId, path: &Path) -> Result<Arc<File>> {
        if let Some(file) = self.lock().touch(id) {
            return Ok(file);
        }
        let file = OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(|error| StorageError::io("open", path, error))?;
        metrics::counter!("fjord_storage_segment_file_opens_total").increment(1);
        let mut entries = self.lock();
        if let Some(file) = entries.touch(id) {
            return Ok(file); // opened meanwhile by another read; ours closes here
        }
        let file = Arc::new(file);
        let tick = entries.tick;
        entries.files.insert(id, (file.clone(), tick));
        entries.by_use.insert(tick, id);
        let capacity = entries.capacity;
        entries.shrink_to(capacity);
        Ok(file)
    }

    /// Closes the segment's file if the set holds it (the segment was deleted, made
    /// active again, or dropped).
    pub fn remove(&self, id: SegmentId) {
        let mut entries = self.lock();
        if let Some((_, used)) = entries.files.remove(&id) {
            entries.by_use.remove(&used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The set never holds more than its capacity, closes the longest-unused file
    /// first, and a file handed out stays usable after the set closed its copy.
    #[test]
    fn least_recently_used_file_closes_first() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..4)
            .map(|index| {
                let path = dir.path().join(format!("{index}.log"));
                std::fs::write(&path, [index as u8; 8]).unwrap();
                path
            })
            .collect();
        let files = OpenSegmentFiles::new(2);
        let first = files.get(100, &paths[0]).unwrap();
        files.get(101, &paths[1]).unwrap();
        files.get(100, &paths[0]).unwrap(); // 101 is now the oldest
        files.get(102, &paths[2]).unwrap();
        assert_eq!(files.len(), 2);
        let entries = files.lock();
        assert!(entries.files.contains_key(&100) && entries.files.contains_key(&102));
        drop(entries);
        files.set_capacity(1);
        assert_eq!(files.len(), 1);
        files.remove(102);
        assert!(files.is_empty());
        let mut byte = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(first.as_ref(), &mut byte, 3).unwrap();
        assert_eq!(byte, [0]);
        assert!(files.get(103, &dir.path().join("missing.log")).is_err());
    }
}
