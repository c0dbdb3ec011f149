//! Where the replicas of a new topic's partitions go: spread evenly over the brokers,
//! and so are the preferred leaders (each partition's first replica). This is Kafka's
//! round-robin assignment, with its two random starting points passed in so that it
//! stays a pure function; when every broker names its rack, each partition's replicas
//! also span as many racks as they can ([`place_replicas_in_racks`]).

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
    // One rack: no candidate is ever passed over, and the order is the brokers'.
    let unracked: Vec<(i32, &str)> = brokers.iter().map(|&broker| (broker, "")).collect();
    place(&unracked, partitions, replication_factor, start, shift)
}

/// [`place_replicas`] over brokers in racks (`(node id, rack)`, at least two racks):
/// each partition's replicas span as many racks as they can, min(replication factor,
/// racks), as Kafka's rack-aware assignment does.
///
/// The brokers are first ordered rack by rack in turn (the first broker of each rack,
/// then the second of each, …), so that leaders go round the racks too. A partition's
/// leader and follower candidates are then taken as in [`place_replicas`], except that
/// a candidate whose rack the partition already has is passed over while some rack is
/// still missing.
pub fn place_replicas_in_racks(
    brokers: &[(i32, &str)],
    partitions: usize,
    replication_factor: usize,
    start: usize,
    shift: usize,
) -> Vec<Vec<i32>> {
    let mut by_rack: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (broker, rack) in brokers {
        by_rack.entry(rack).or_default().push(*broker);
    }
    let depth = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut ordered: Vec<(i32, &str)> = Vec::with_capacity(brokers.len());
    for level in 0..depth {
        for (rack, members) in &by_rack {
            if let Some(broker) = members.get(level) {
                ordered.push((*broker, *rack));
            }
        }
    }
    place(&ordered, partitions, replication_factor, start, shift)
}

/// The placement of both: `ordered` brokers with their racks, leaders going round them
/// from `start`, each partition's followers taken at shifted distances, passing over a
/// candidate whose rack the partition already has while some rack is still missing.
fn place(
    ordered: &[(i32, &str)],
    partitions: usize,
    replication_factor: usize,
    start: usize,
    shift: usize,
) -> Vec<Vec<i32>> {
    let mut racks: Vec<&str> = ordered.iter().map(|(_, rack)| *rack).collect();
    racks.sort_unstable();
    racks.dedup();
    let racks = racks.len();
    let count = ordered.len();
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
            let candidates: Vec<usize> = (0..count - 1)
                .map(|follower| (leader + 1 + (round_shift + follower) % followers) % count)
                .collect();
            let mut chosen = vec![leader];
            let mut used: Vec<&str> = vec![ordered[leader].1];
            // Racks the partition lacks first, then whoever is left, in candidate order.
            for pass in [true, false] {
                for &candidate in &candidates {
                    if chosen.len() == replication_factor {
                        break;
                    }
                    let rack = ordered[candidate].1;
                    let new_rack = !used.contains(&rack);
                    if chosen.contains(&candidate) || (pass && !new_rack && used.len() < racks) {
                        continue;
                    }
                    chosen.push(candidate);
                    if new_rack {
                        used.push(rack);
                    }
                }
            }
            chosen.into_iter().map(|index| ordered[index].0).collect()
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

    /// Brokers in racks (1 to 4 racks), a replication factor they allow, any start and
    /// shift.
    fn racked_layout() -> impl Strategy<Value = (Vec<(i32, String)>, usize, usize, usize, usize)> {
        (
            prop::collection::btree_map(0i32..1000, 0usize..4, 1..12),
            1usize..100,
        )
            .prop_flat_map(|(brokers, partitions)| {
                let count = brokers.len();
                let brokers: Vec<(i32, String)> = brokers
                    .into_iter()
                    .map(|(broker, rack)| (broker, format!("rack-{rack}")))
                    .collect();
                (
                    Just(brokers),
                    Just(partitions),
                    1..=count,
                    any::<usize>(),
                    any::<usize>(),
                )
            })
    }

    /// Six brokers in three racks, three replicas: every partition has one replica in
    /// each rack, and leaders go round the racks.
    #[test]
    fn three_racks() {
        let brokers = [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")];
        let rack = |broker: i32| brokers.iter().find(|(id, _)| *id == broker).unwrap().1;
        let placed = place_replicas_in_racks(&brokers, 6, 3, 0, 0);
        for replicas in &placed {
            let racks: BTreeSet<&str> = replicas.iter().map(|broker| rack(*broker)).collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
        let leader_racks: Vec<&str> = placed.iter().map(|replicas| rack(replicas[0])).collect();
        assert_eq!(leader_racks, ["a", "b", "c", "a", "b", "c"]);
    }

    proptest! {
        /// With racks, every partition still gets `replication_factor` distinct brokers
        /// of the set, and they span min(replication factor, racks) racks.
        #[test]
        fn rack_placement_spans_racks(
            (brokers, partitions, replication_factor, start, shift) in racked_layout()
        ) {
            let racked: Vec<(i32, &str)> =
                brokers.iter().map(|(broker, rack)| (*broker, rack.as_str())).collect();
            let racks: BTreeSet<&str> = racked.iter().map(|(_, rack)| *rack).collect();
            let placed =
                place_replicas_in_racks(&racked, partitions, replication_factor, start, shift);
            prop_assert_eq!(placed.len(), partitions);
            for replicas in &placed {
                prop_assert_eq!(replicas.len(), replication_factor);
                let distinct: BTreeSet<_> = replicas.iter().collect();
                prop_assert_eq!(distinct.len(), replication_factor, "{:?}", replicas);
                let spanned: BTreeSet<&str> = replicas
                    .iter()
                    .map(|broker| racked.iter().find(|(id, _)| id == broker).unwrap().1)
                    .collect();
                prop_assert_eq!(
                    spanned.len(),
                    replication_factor.min(racks.len()),
                    "{:?}",
                    replicas
                );
            }
        }

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
