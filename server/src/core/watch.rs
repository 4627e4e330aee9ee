//! Watch registrations of the sessions connected to this node.
//!
//! As in ZooKeeper, watches are local to the server a client set them on: they are not
//! replicated, and a client that fails over to another server must set them again. Every
//! watch is one-shot: firing removes it.

use crate::api::{EventKind, SessionId};
use std::collections::{BTreeMap, BTreeSet};

/// Most watches one node keeps, over all sessions and paths: a bound on memory.
pub const MAX_WATCHES: usize = 1_000_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Watches {
    /// Set by `exists` and `get_data`: fire on created, deleted and data_changed.
    data: BTreeMap<String, BTreeSet<SessionId>>,
    /// Set by `get_children`: fire on children_changed and deleted.
    child: BTreeMap<String, BTreeSet<SessionId>>,
    count: usize,
}

impl Watches {
    /// Registers a data (or exists) watch. False when the node holds too many watches.
    pub fn add_data(&mut self, path: &str, session: SessionId) -> bool {
        Self::add(&mut self.data, &mut self.count, path, session)
    }

    /// Registers a child watch. False when the node holds too many watches.
    pub fn add_child(&mut self, path: &str, session: SessionId) -> bool {
        Self::add(&mut self.child, &mut self.count, path, session)
    }

    fn add(
        map: &mut BTreeMap<String, BTreeSet<SessionId>>,
        count: &mut usize,
        path: &str,
        session: SessionId,
    ) -> bool {
        if *count >= MAX_WATCHES {
            return false;
        }
        if map.entry(path.to_string()).or_default().insert(session) {
            *count += 1;
        }
        true
    }

    /// Removes and returns the sessions whose watches `kind` on `path` fires, each once even if
    /// it had both a data and a child watch there (ZooKeeper delivers one event per watcher).
    pub fn fire(&mut self, kind: EventKind, path: &str) -> BTreeSet<SessionId> {
        let mut fired = BTreeSet::new();
        let fires_data = matches!(
            kind,
            EventKind::Created | EventKind::Deleted | EventKind::DataChanged
        );
        let fires_child = matches!(kind, EventKind::ChildrenChanged | EventKind::Deleted);
        if fires_data && let Some(sessions) = self.data.remove(path) {
            self.count -= sessions.len();
            fired.extend(sessions);
        }
        if fires_child && let Some(sessions) = self.child.remove(path) {
            self.count -= sessions.len();
            fired.extend(sessions);
        }
        fired
    }

    /// Removes the session's watches of `kind` on `path` (only looks with `check_only`).
    /// False when it has none there.
    pub fn remove(
        &mut self,
        path: &str,
        session: SessionId,
        kind: super::WatchKind,
        check_only: bool,
    ) -> bool {
        use super::WatchKind;
        let mut found = false;
        for (map, matches) in [
            (&mut self.data, kind != WatchKind::Child),
            (&mut self.child, kind != WatchKind::Data),
        ] {
            let Some(sessions) = map.get_mut(path).filter(|_| matches) else {
                continue;
            };
            if !sessions.contains(&session) {
                continue;
            }
            found = true;
            if !check_only {
                sessions.remove(&session);
                self.count -= 1;
                if sessions.is_empty() {
                    map.remove(path);
                }
            }
        }
        found
    }

    /// Forgets every watch of a session that ended.
    pub fn remove_session(&mut self, session: SessionId) {
        for map in [&mut self.data, &mut self.child] {
            map.retain(|_, sessions| {
                if sessions.remove(&session) {
                    self.count -= 1;
                }
                !sessions.is_empty()
            });
        }
    }

    /// Every watch held: (`Child` or `Data`, path, session), in path order.
    pub(crate) fn armed(&self) -> Vec<(super::WatchKind, String, SessionId)> {
        use super::WatchKind;
        let listed = |kind: WatchKind, map: &BTreeMap<String, BTreeSet<SessionId>>| {
            map.iter()
                .flat_map(move |(path, sessions)| {
                    sessions.iter().map(move |s| (kind, path.clone(), *s))
                })
                .collect::<Vec<_>>()
        };
        let mut all = listed(WatchKind::Data, &self.data);
        all.extend(listed(WatchKind::Child, &self.child));
        all
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_one_shot_and_fire_once_per_session() {
        let mut w = Watches::default();
        w.add_data("/a", 1);
        w.add_child("/a", 1);
        w.add_child("/a", 2);
        assert_eq!(w.fire(EventKind::Deleted, "/a"), BTreeSet::from([1, 2]));
        assert!(w.fire(EventKind::Deleted, "/a").is_empty());
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn child_watches_ignore_data_changes() {
        let mut w = Watches::default();
        w.add_child("/a", 1);
        assert!(w.fire(EventKind::DataChanged, "/a").is_empty());
        assert_eq!(
            w.fire(EventKind::ChildrenChanged, "/a"),
            BTreeSet::from([1])
        );
    }

    #[test]
    fn remove_takes_only_the_kind_asked_for_and_check_only_looks() {
        use crate::core::WatchKind;
        let mut w = Watches::default();
        w.add_data("/a", 1);
        w.add_child("/a", 1);
        assert!(w.remove("/a", 1, WatchKind::Data, true));
        assert_eq!(w.len(), 2);
        assert!(w.remove("/a", 1, WatchKind::Data, false));
        assert!(!w.remove("/a", 1, WatchKind::Data, false));
        assert!(!w.remove("/a", 2, WatchKind::Any, false));
        assert_eq!(w.len(), 1);
        assert!(w.remove("/a", 1, WatchKind::Any, false));
        assert_eq!(w.len(), 0);
        assert!(w.fire(EventKind::Deleted, "/a").is_empty());
    }

    #[test]
    fn armed_lists_each_watch_once_with_its_kind() {
        use crate::core::WatchKind;
        let mut w = Watches::default();
        w.add_data("/a", 1);
        w.add_data("/a", 1);
        w.add_child("/a", 2);
        assert_eq!(
            w.armed(),
            vec![
                (WatchKind::Data, "/a".to_string(), 1),
                (WatchKind::Child, "/a".to_string(), 2)
            ]
        );
    }

    #[test]
    fn removing_a_session_drops_its_watches_only() {
        let mut w = Watches::default();
        w.add_data("/a", 1);
        w.add_data("/a", 2);
        w.remove_session(1);
        assert_eq!(w.len(), 1);
        assert_eq!(w.fire(EventKind::DataChanged, "/a"), BTreeSet::from([2]));
    }
}
