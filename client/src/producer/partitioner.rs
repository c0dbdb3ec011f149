//! Choosing the partition of a record.
//!
//! - A record with an explicit partition goes there.
//! - A record with a key goes to `(murmur2(key) & 0x7fffffff) % partition_count`:
//!   Kafka's default partitioner, so the same key lands on the same partition whether
//!   a Fjord or a Kafka client wrote it, and the mapping is stable across versions of
//!   this crate (the test vectors below pin it).
//! - A record without a key goes to the topic's *sticky* partition, so that keyless
//!   records fill one batch at a time instead of spreading thin over every partition.
//!   When a batch of the sticky partition is sent, the next keyless record moves on to
//!   the next partition (round-robin from a seeded start, so that producers started
//!   together do not all pick the same partition, and tests stay deterministic).
//!
//! ## murmur2
//!
//! MurmurHash2 (Austin Appleby), 32-bit, as Kafka computes it: seed `0x9747b28c`,
//! words read little-endian, and the length XORed into the seed.

use std::collections::HashMap;

use crate::topic_partition::TopicPartition;

const MURMUR2_SEED: u32 = 0x9747_b28c;
const MURMUR2_MULTIPLIER: u32 = 0x5bd1_e995;
const MURMUR2_SHIFT: u32 = 24;

/// Kafka's 32-bit MurmurHash2 of `data`.
///
/// ```
/// assert_eq!(fjord_client::partitioner::murmur2(b"foobar"), -790_332_482);
/// ```
pub fn murmur2(data: &[u8]) -> i32 {
    let mut hash = MURMUR2_SEED ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(MURMUR2_MULTIPLIER);
        k ^= k >> MURMUR2_SHIFT;
        k = k.wrapping_mul(MURMUR2_MULTIPLIER);
        hash = hash.wrapping_mul(MURMUR2_MULTIPLIER);
        hash ^= k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (index, byte) in tail.iter().enumerate() {
            hash ^= u32::from(*byte) << (8 * index);
        }
        hash = hash.wrapping_mul(MURMUR2_MULTIPLIER);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(MURMUR2_MULTIPLIER);
    hash ^= hash >> 15;
    hash as i32
}

/// The partition a keyed record goes to, among `partition_count` partitions.
///
/// ```
/// use fjord_client::partitioner::partition_for_key;
///
/// let partition = partition_for_key(b"order-42", 6);
/// assert!((0..6).contains(&partition));
/// assert_eq!(partition, partition_for_key(b"order-42", 6));
/// ```
///
/// # Panics
///
/// When `partition_count` is zero or above `i32::MAX`.
pub fn partition_for_key(key: &[u8], partition_count: usize) -> i32 {
    assert!(
        partition_count > 0 && partition_count <= i32::MAX as usize,
        "partition count {partition_count} out of range"
    );
    // Masking the sign bit (rather than taking abs) is what Kafka does, and keeps
    // i32::MIN from overflowing.
    let positive = (murmur2(key) & 0x7fff_ffff) as usize;
    (positive % partition_count) as i32
}

/// The sticky partition of one topic.
#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: i32,
    /// A batch of `partition` was sent: move on at the next keyless record.
    move_on: bool,
}

/// Picks partitions for keyed and keyless records.
#[derive(Debug)]
pub(crate) struct Partitioner {
    seed: u32,
    sticky: HashMap<String, Sticky>,
}

impl Partitioner {
    /// `seed` chooses where the round-robin of keyless records starts for each topic.
    pub(crate) fn new(seed: u32) -> Self {
        Self {
            seed,
            sticky: HashMap::new(),
        }
    }

    /// The partition for a record without an explicit one.
    pub(crate) fn partition(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        partition_count: usize,
    ) -> i32 {
        if let Some(key) = key {
            return partition_for_key(key, partition_count);
        }
        assert!(partition_count > 0 && partition_count <= i32::MAX as usize);
        let count = partition_count as u32;
        let start = (self.seed ^ murmur2(topic.as_bytes()) as u32) % count;
        let sticky = self.sticky.entry(topic.to_owned()).or_insert(Sticky {
            partition: start as i32,
            move_on: false,
        });
        if sticky.move_on || sticky.partition as u32 >= count {
            sticky.partition = ((sticky.partition as u32 + 1) % count) as i32;
            sticky.move_on = false;
        }
        sticky.partition
    }

    /// Tells the partitioner that a batch of `topic_partition` left for the broker.
    pub(crate) fn on_batch_sent(&mut self, topic_partition: &TopicPartition) {
        if let Some(sticky) = self.sticky.get_mut(&topic_partition.topic)
            && sticky.partition == topic_partition.partition
        {
            sticky.move_on = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash matches Kafka's reference vectors, so keys map to the same partitions
    /// as in Kafka and never change between versions of this crate.
    #[test]
    fn murmur2_vectors() {
        let vectors: [(&[u8], i32); 11] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
            (b"1", -1_993_445_489),
            (b"12", 126_087_238),
            (b"123", -267_702_483),
            (b"1234", -1_614_185_708),
            (b"12345", -1_188_365_604),
        ];
        for (data, expected) in vectors {
            assert_eq!(murmur2(data), expected, "{}", String::from_utf8_lossy(data));
        }
    }

    /// Key partitions are pinned: changing them would move every key of every topic.
    #[test]
    fn key_partitions_are_stable() {
        // (0x7fffffff & -790332482) % 10 = 1357151166 % 10
        assert_eq!(partition_for_key(b"foobar", 10), 6);
        assert_eq!(partition_for_key(b"abc", 7), 479_470_107 % 7);
        assert_eq!(partition_for_key(b"anything", 1), 0);
    }

    /// Keyless records stay on one partition until a batch of it is sent, then move
    /// round-robin; a batch sent for another partition does not move them.
    #[test]
    fn sticky_partition_moves_when_a_batch_is_sent() {
        let mut partitioner = Partitioner::new(0);
        let first = partitioner.partition("t", None, 4);
        assert_eq!(partitioner.partition("t", None, 4), first);
        partitioner.on_batch_sent(&TopicPartition::new("t", (first + 1) % 4));
        assert_eq!(partitioner.partition("t", None, 4), first);
        partitioner.on_batch_sent(&TopicPartition::new("t", first));
        let second = partitioner.partition("t", None, 4);
        assert_eq!(second, (first + 1) % 4);
        assert_eq!(partitioner.partition("t", None, 4), second);
        // Keys bypass the sticky partition.
        assert_eq!(
            partitioner.partition("t", Some(b"foobar"), 4),
            partition_for_key(b"foobar", 4)
        );
    }
}
