//! Rendezvous (highest random weight) hashing: each node's weight for a
//! key is a hash of the two, and the key belongs to the node of highest
//! weight among those that may own it. Every node computes the same owner
//! from the same list, in any order; a node that leaves (down, removed)
//! gives up only its own keys, each to the node that came second for it,
//! and takes them back when it returns. No ring, no virtual nodes: a fleet
//! has a handful of nodes, and N hashes per miss cost nothing beside the
//! download.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The weight of `node` (a normalised URL) for cache key `key`.
fn weight(node: &str, key: &str) -> u64 {
    xxh3_64_with_seed(key.as_bytes(), xxh3_64(node.as_bytes()))
}

/// The owner of `key` among `nodes`: the highest weight (equal weights,
/// however unlikely, go to the greater name, so that every node agrees).
pub(crate) fn owner<'n>(key: &str, nodes: impl IntoIterator<Item = &'n str>) -> Option<&'n str> {
    nodes.into_iter().max_by_key(|node| (weight(node, key), *node))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const NODES: [&str; 3] = ["http://10.0.0.5:5000", "http://10.0.0.6:5000", "http://10.0.0.7:5000"];

    fn keys(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| format!("@0123abcd/flatcontainer/package.{i}/1.0.{i}/package.{i}.1.0.{i}.nupkg"))
    }

    #[test]
    fn the_owner_is_the_same_on_every_call_and_in_any_order_of_the_list() {
        let reversed: Vec<&str> = NODES.iter().rev().copied().collect();
        let rotated = [NODES[1], NODES[2], NODES[0]];
        for key in keys(1000) {
            let first = owner(&key, NODES);
            assert!(first.is_some());
            assert_eq!(owner(&key, NODES), first, "{key}");
            assert_eq!(owner(&key, reversed.iter().copied()), first, "{key}");
            assert_eq!(owner(&key, rotated), first, "{key}");
        }
    }

    #[test]
    fn each_node_owns_about_a_third_of_the_keys() {
        let total = 30_000;
        let mut owned: HashMap<&str, usize> = HashMap::new();
        for key in keys(total) {
            *owned.entry(owner(&key, NODES).unwrap_or_default()).or_default() += 1;
        }
        for node in NODES {
            let share = owned.get(node).copied().unwrap_or(0) as f64 / total as f64;
            // 1/3 with a binomial spread of about 0.003 at this count.
            assert!(
                (share - 1.0 / 3.0).abs() < 0.02,
                "{node} owns {share:.3} of the keys: {owned:?}"
            );
        }
    }

    #[test]
    fn a_node_that_leaves_gives_up_only_its_own_keys_and_takes_them_back() {
        let gone = NODES[1];
        let left = [NODES[0], NODES[2]];
        let (mut moved, mut theirs) = (0, 0);
        for key in keys(10_000) {
            let before = owner(&key, NODES);
            let after = owner(&key, left);
            if before == Some(gone) {
                theirs += 1;
                assert_ne!(after, Some(gone));
            } else {
                assert_eq!(after, before, "{key} moved though its owner stayed");
            }
            moved += usize::from(before != after);
            assert_eq!(owner(&key, NODES), before, "back: the same owners as before");
        }
        assert_eq!(moved, theirs, "exactly the leaving node's keys moved");
        assert!(theirs > 2_000, "the leaving node owned {theirs} of 10000 keys");
    }

    #[test]
    fn no_nodes_no_owner() {
        assert_eq!(owner("key", std::iter::empty()), None);
    }
}
