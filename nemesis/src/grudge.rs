//! Partition shapes as *grudges*, after Jepsen's `jepsen.nemesis`: a grudge maps each node to
//! the nodes whose traffic it drops. The functions are pure; randomness comes from the caller's
//! seeded rng, so a schedule replays the same cuts.

use cluster::NodeId;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// node -> the nodes it refuses traffic from (and sends none to).
pub type Grudge = BTreeMap<NodeId, BTreeSet<NodeId>>;

/// The smallest strict majority of `n`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Cuts `nodes` in two, smaller half first (Jepsen's `bisect`).
pub fn bisect(nodes: &[NodeId]) -> (Vec<NodeId>, Vec<NodeId>) {
    let (a, b) = nodes.split_at(nodes.len() / 2);
    (a.to_vec(), b.to_vec())
}

/// Every node drops traffic from every node outside its own component (Jepsen's
/// `complete-grudge`).
pub fn complete_grudge(components: &[Vec<NodeId>]) -> Grudge {
    let universe: BTreeSet<NodeId> = components.iter().flatten().copied().collect();
    let mut grudge = Grudge::new();
    for component in components {
        let inside: BTreeSet<NodeId> = component.iter().copied().collect();
        let outside: BTreeSet<NodeId> = universe.difference(&inside).copied().collect();
        for node in component {
            grudge.insert(*node, outside.clone());
        }
    }
    grudge
}

/// One node cut off from all others.
pub fn isolate(node: NodeId, nodes: &[NodeId]) -> Grudge {
    let rest: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != node).collect();
    complete_grudge(&[vec![node], rest])
}

/// A random split into a smaller and a larger half.
pub fn random_halves(nodes: &[NodeId], rng: &mut ChaCha8Rng) -> Grudge {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let (a, b) = bisect(&shuffled);
    complete_grudge(&[a, b])
}

/// A random minority (1 to (n-1)/2 nodes) cut off from the rest.
pub fn minority_cut(nodes: &[NodeId], rng: &mut ChaCha8Rng) -> Grudge {
    use rand::RngExt;
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let max = ((nodes.len().saturating_sub(1)) / 2).max(1);
    let size = rng.random_range(1..=max);
    let (minority, rest) = shuffled.split_at(size.min(shuffled.len()));
    complete_grudge(&[minority.to_vec(), rest.to_vec()])
}

/// Two halves that cannot talk to each other, both talking to one bridge node (Jepsen's
/// `bridge`): the bridge is the first node of the larger half; it drops nothing, and nobody
/// drops it.
pub fn bridge(nodes: &[NodeId], rng: &mut ChaCha8Rng) -> Grudge {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let (a, b) = bisect(&shuffled);
    let Some(&bridge) = b.first() else {
        return Grudge::new();
    };
    let mut grudge = complete_grudge(&[a, b]);
    grudge.remove(&bridge);
    for dropped in grudge.values_mut() {
        dropped.remove(&bridge);
    }
    grudge
}

/// Every node sees a majority, and no two nodes see the same majority (Jepsen's
/// `majorities-ring`): place the nodes on a random ring; each sees the nodes within ring
/// distance `k = majority(n) / 2` (so `2k + 1 >= majority(n)` nodes) and drops the rest.
/// Unlike Jepsen's window (which is one-sided for even majorities), the cut is symmetric,
/// because a TCP connection dies when either direction is dropped, and a one-sided grudge would
/// leave nodes seeing less than a majority. Three nodes cannot have three distinct majorities
/// over symmetric links; there the ring is the line a-b-c (a and c see different majorities).
pub fn majorities_ring(nodes: &[NodeId], rng: &mut ChaCha8Rng) -> Grudge {
    let n = nodes.len();
    let mut ring = nodes.to_vec();
    ring.shuffle(rng);
    let mut grudge = Grudge::new();
    if n <= 3 {
        if n == 3 {
            grudge.insert(ring[0], BTreeSet::from([ring[2]]));
            grudge.insert(ring[2], BTreeSet::from([ring[0]]));
        }
        return grudge;
    }
    let k = majority(n) / 2;
    for (i, node) in ring.iter().enumerate() {
        let dropped = (0..n)
            .filter(|j| {
                let d = i.abs_diff(*j);
                d.min(n - d) > k
            })
            .map(|j| ring[j])
            .collect();
        grudge.insert(*node, dropped);
    }
    grudge
}

/// The pairs (a, b) such that a drops b, for logs and tests.
pub fn cut_pairs(grudge: &Grudge) -> Vec<(NodeId, NodeId)> {
    grudge
        .iter()
        .flat_map(|(a, bs)| bs.iter().map(move |b| (*a, *b)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn nodes(n: u64) -> Vec<NodeId> {
        (1..=n).collect()
    }

    /// Who `node` can exchange traffic with: neither side drops the other.
    fn sees(g: &Grudge, a: NodeId, b: NodeId) -> bool {
        !g.get(&a).is_some_and(|s| s.contains(&b)) && !g.get(&b).is_some_and(|s| s.contains(&a))
    }

    #[test]
    fn majorities_ring_gives_every_node_a_distinct_majority() {
        for n in [3u64, 5, 7] {
            for seed in 0..20 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let all = nodes(n);
                let g = majorities_ring(&all, &mut rng);
                let mut views = BTreeSet::new();
                for a in &all {
                    let view: BTreeSet<NodeId> =
                        all.iter().copied().filter(|b| sees(&g, *a, *b)).collect();
                    assert!(view.len() >= majority(n as usize), "{n} {seed} {g:?}");
                    views.insert(view);
                }
                let distinct = if n == 3 { 2 } else { n as usize };
                assert!(views.len() >= distinct, "views must differ: {g:?}");
                assert!(views.iter().all(|v| v.len() < n as usize) || n == 3);
            }
        }
    }

    #[test]
    fn bridge_node_sees_everyone_and_halves_do_not_see_each_other() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let all = nodes(5);
        let g = bridge(&all, &mut rng);
        let bridge_node = *all.iter().find(|n| !g.contains_key(n)).unwrap();
        for n in &all {
            assert!(sees(&g, bridge_node, *n));
        }
        let cut = cut_pairs(&g);
        assert!(!cut.is_empty());
        assert!(
            cut.iter()
                .all(|(a, b)| *a != bridge_node && *b != bridge_node)
        );
    }

    #[test]
    fn halves_and_minorities_leave_one_majority() {
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let all = nodes(5);
            for g in [random_halves(&all, &mut rng), minority_cut(&all, &mut rng)] {
                let biggest = all
                    .iter()
                    .map(|a| all.iter().filter(|b| sees(&g, *a, **b)).count())
                    .max()
                    .unwrap();
                assert!(biggest >= majority(5));
                assert!(biggest < 5, "something must be cut: {g:?}");
            }
        }
    }

    #[test]
    fn isolate_cuts_exactly_one_node() {
        let g = isolate(2, &nodes(3));
        assert_eq!(g[&2], BTreeSet::from([1, 3]));
        assert_eq!(g[&1], BTreeSet::from([2]));
        assert!(sees(&g, 1, 3));
    }
}
