//! The one walk over the Kaizala sub-group hierarchy (the spot's `(parent, child)`
//! group links): user counts across sub-groups, `fetchAllGroups` listings and the
//! cycle check on attach all use [`walk`], so none keeps its own loop.
//!
//! The links are data that members write, so they may hold cycles and be large: the
//! walk visits each group once (a cycle ends it) and indexes the links first, so its
//! work is linear in their number and its result never exceeds the distinct groups
//! named by the links and the starts.

use std::collections::{HashMap, HashSet};

use crate::domain::ids::GroupId;

/// Which links a [`walk`] follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Parent to child: sub-groups at every level.
    Down,
    /// Child to parent: parent groups at every level.
    Up,
    /// Either way: every group linked to the starts, directly or not.
    Either,
}

/// The starts (each once, in their order) then every group reachable from them along
/// `links` in `direction`, breadth first; each group appears once.
pub fn walk(links: &[(GroupId, GroupId)], starts: &[GroupId], direction: Direction) -> Vec<GroupId> {
    let next = neighbours(links, direction);
    let mut seen: HashSet<GroupId> = HashSet::with_capacity(starts.len());
    let mut order: Vec<GroupId> = starts.iter().copied().filter(|s| seen.insert(*s)).collect();
    let mut i = 0;
    while let Some(&cur) = order.get(i) {
        for &n in next.get(&cur).map(Vec::as_slice).unwrap_or_default() {
            if seen.insert(n) {
                order.push(n);
            }
        }
        i += 1;
    }
    order
}

/// The groups one link away from each group, following `direction`.
fn neighbours(links: &[(GroupId, GroupId)], direction: Direction) -> HashMap<GroupId, Vec<GroupId>> {
    let mut next: HashMap<GroupId, Vec<GroupId>> = HashMap::new();
    for &(parent, child) in links {
        if direction != Direction::Up {
            next.entry(parent).or_default().push(child);
        }
        if direction != Direction::Down {
            next.entry(child).or_default().push(parent);
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn ids(n: usize) -> Vec<GroupId> {
        (0..n).map(|i| GroupId(Uuid::from_u128(i as u128 + 1))).collect()
    }

    #[test]
    fn down_up_and_either_follow_their_links() {
        let g = ids(5);
        // g0 -> g1 -> g2, g0 -> g3; g4 is a parent of g1.
        let links = [(g[0], g[1]), (g[1], g[2]), (g[0], g[3]), (g[4], g[1])];
        assert_eq!(walk(&links, &[g[0]], Direction::Down), vec![g[0], g[1], g[3], g[2]]);
        assert_eq!(walk(&links, &[g[2]], Direction::Up), vec![g[2], g[1], g[0], g[4]]);
        let mut all = walk(&links, &[g[3]], Direction::Either);
        all.sort();
        assert_eq!(all, g);
        assert_eq!(walk(&links, &[g[2]], Direction::Down), vec![g[2]]);
    }

    #[test]
    fn starts_come_first_once_and_unlinked_starts_stay() {
        let g = ids(4);
        let links = [(g[0], g[1])];
        assert_eq!(walk(&links, &[g[3], g[0], g[3]], Direction::Down), vec![g[3], g[0], g[1]]);
        assert_eq!(walk(&[], &[g[2]], Direction::Either), vec![g[2]]);
        assert!(walk(&links, &[], Direction::Either).is_empty());
    }

    #[test]
    fn a_cycle_ends_the_walk() {
        let g = ids(3);
        let links = [(g[0], g[1]), (g[1], g[2]), (g[2], g[0]), (g[1], g[1])];
        assert_eq!(walk(&links, &[g[0]], Direction::Down), vec![g[0], g[1], g[2]]);
        assert_eq!(walk(&links, &[g[0]], Direction::Up), vec![g[0], g[2], g[1]]);
    }

    #[test]
    fn a_long_chain_and_a_dense_graph_are_walked_once() {
        // 200 000 links in a chain: linear work, one entry per group.
        let chain = ids(200_001);
        let links: Vec<(GroupId, GroupId)> = chain.windows(2).map(|w| (w[0], w[1])).collect();
        let down = walk(&links, &[chain[0]], Direction::Down);
        assert_eq!(down, chain);
        // Every pair of 300 groups linked both ways (89 700 links): each group once.
        let g = ids(300);
        let dense: Vec<(GroupId, GroupId)> =
            g.iter().flat_map(|a| g.iter().filter(move |b| *b != a).map(move |b| (*a, *b))).collect();
        assert_eq!(walk(&dense, &[g[7]], Direction::Either).len(), g.len());
    }
}
