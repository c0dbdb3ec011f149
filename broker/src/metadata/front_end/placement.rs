//! Where the replicas of a new topic's partitions go: spread evenly over the brokers,
//! and so are the preferred leaders (each partition's first replica). This is Kafka's
//! round-robin assignment without racks, with its two random starting points passed in
//! so that it stays a pure function.

/// Replica lists for `partitions` new partitions of `replication_factor` replicas each,
/// over `brokers` (distinct node ids, at least `replication_factor` of them).
///
/// Partition `p`'s first replica, its preferred leader, is broker `(start + p) mod n`:
/// leaders go round the brokers. Its other replicas follow at distances
/// `1 + (shift + j) mod (n - 1)` for `j = 0, 1, …`: distinct, never the leader. `shift`
/// grows by one each time the leaders have gone round all brokers, so that a broker's
/// partitions are not all followed by the same brokers. Within each round every broker
/// takes each replica slot once, so in every slot (the leader's included) the counts of
/// two brokers differ by at most one. Different `start`s keep topics of few partitions
/// from all being led by the same broker.
pub fn place_replicas(
    brokers: &[i32],
    partitions: usize,
    replication_factor: usize,
    start: usize,
    shift: usize,
) -> Vec<Vec<i32>> {
    let count = brokers.len();
    assert!(
        (1..=count).contains(&replication_factor),
        "replication factor {replication_factor} for {count} brokers"
    );
    // With one broker there are no followers to shift (and `n - 1` is zero).
    let followers = count.saturating_sub(1).max(1);
    let start = start % count;
    let shift = shift % followers;
    (0..partitions)
        .map(|partition| {
            let leader = (start + partition) % count;
            let round_shift = shift + partition / count;
            let mut replicas = Vec::with_capacity(replication_factor);
            replicas.push(brokers[leader]);
            for follower in 0..replication_factor - 1 {
                let distance = 1 + (round_shift + follower) % followers;
                replicas.push(brokers[(leader + distance) % count]);
            }
            replicas
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    /// Three brokers, six partitions of three replicas: leaders go 2, 3, 1, 2, 3, 1
    /// from the start offset, and the followers' order turns after the first round.
    #[test]
    fn three_brokers_six_partitions() {
        assert_eq!(
            place_replicas(&[1, 2, 3], 6, 3, 1, 0),
            vec![
                vec![2, 3, 1],
                vec![3, 1, 2],
                vec![1, 2, 3],
                vec![2, 1, 3],
                vec![3, 2, 1],
                vec![1, 3, 2],
            ]
        );
        assert_eq!(place_replicas(&[7], 3, 1, 5, 9), vec![vec![7]; 3]);
    }

    /// Brokers with arbitrary distinct ids, a replication factor they allow, any start
    /// and shift.
    fn layout() -> impl Strategy<Value = (Vec<i32>, usize, usize, usize, usize)> {
        (prop::collection::btree_set(0i32..1000, 1..12), 1usize..300).prop_flat_map(
            |(brokers, partitions)| {
                let count = brokers.len();
                (
                    Just(brokers.into_iter().collect::<Vec<_>>()),
                    Just(partitions),
                    1..=count,
                    any::<usize>(),
                    any::<usize>(),
                )
            },
        )
    }

    proptest! {
        /// Every partition gets `replication_factor` distinct brokers of the set, and
        /// in each replica slot (the first being the preferred leader) the number of
        /// partitions of any two brokers differs by at most one.
        #[test]
        fn placement_is_balanced(
            (brokers, partitions, replication_factor, start, shift) in layout()
        ) {
            let placed = place_replicas(&brokers, partitions, replication_factor, start, shift);
            prop_assert_eq!(placed.len(), partitions);
            for replicas in &placed {
                prop_assert_eq!(replicas.len(), replication_factor);
                let distinct: BTreeSet<_> = replicas.iter().collect();
                prop_assert_eq!(distinct.len(), replication_factor, "{:?}", replicas);
                prop_assert!(replicas.iter().all(|broker| brokers.contains(broker)));
            }
            for slot in 0..replication_factor {
                let mut counts: BTreeMap<i32, usize> =
                    brokers.iter().map(|&broker| (broker, 0)).collect();
                for replicas in &placed {
                    *counts.get_mut(&replicas[slot]).unwrap() += 1;
                }
                let most = counts.values().max().unwrap();
                let least = counts.values().min().unwrap();
                prop_assert!(most - least <= 1, "slot {}: {:?}", slot, counts);
            }
        }
    }
}
