//! What a host remembers between messages, bounded in size: the ids of
//! messages it finished (to skip a repeat, as oslo does) and the newest
//! state change seen per alarm and action (to drop stale retries).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

/// A map that forgets its oldest keys past `capacity`.
#[derive(Debug)]
struct Bounded<K, V> {
    values: HashMap<K, V>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Bounded { values: HashMap::new(), order: VecDeque::new(), capacity }
    }

    /// Sets `key` to `update(old value)`.
    fn upsert(&mut self, key: K, update: impl FnOnce(Option<&V>) -> V) {
        if let Some(value) = self.values.get_mut(&key) {
            *value = update(Some(value));
            return;
        }
        if self.capacity == 0 {
            return;
        }
        self.values.insert(key.clone(), update(None));
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.values.remove(&old);
            }
        }
    }
}

/// Message ids whose processing completed, the oldest forgotten first.
#[derive(Debug)]
pub struct CompletedIds(Mutex<Bounded<String, ()>>);

impl CompletedIds {
    /// Remembers up to `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        CompletedIds(Mutex::new(Bounded::new(capacity)))
    }

    /// Was message `id` completed?
    pub fn contains(&self, id: &str) -> bool {
        self.0.lock().is_ok_and(|ids| ids.values.contains_key(id))
    }

    /// Message `id` completed.
    pub fn insert(&self, id: &str) {
        if let Ok(mut ids) = self.0.lock() {
            ids.upsert(id.to_owned(), |_| ());
        }
    }
}

/// The newest state change seen per (alarm id, action).
#[derive(Debug)]
pub struct NewestChanges(Mutex<Bounded<(String, String), i64>>);

impl NewestChanges {
    /// Remembers up to `capacity` pairs.
    pub fn new(capacity: usize) -> Self {
        NewestChanges(Mutex::new(Bounded::new(capacity)))
    }

    /// A change of `alarm_id` at `changed_at_us` is being delivered to
    /// `action`.
    pub fn observe(&self, alarm_id: &str, action: &str, changed_at_us: i64) {
        if let Ok(mut newest) = self.0.lock() {
            newest.upsert((alarm_id.to_owned(), action.to_owned()), |old| {
                old.map_or(changed_at_us, |old| changed_at_us.max(*old))
            });
        }
    }

    /// Has a newer change of `alarm_id` than `changed_at_us` been seen for
    /// `action`?
    pub fn is_superseded(&self, alarm_id: &str, action: &str, changed_at_us: i64) -> bool {
        self.0.lock().is_ok_and(|newest| {
            newest
                .values
                .get(&(alarm_id.to_owned(), action.to_owned()))
                .is_some_and(|seen| *seen > changed_at_us)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_ids_forget_the_oldest() {
        let ids = CompletedIds::new(2);
        ids.insert("a");
        ids.insert("b");
        ids.insert("a");
        assert!(ids.contains("a") && ids.contains("b"));
        ids.insert("c");
        assert!(!ids.contains("a") && ids.contains("b") && ids.contains("c"));
    }

    #[test]
    fn only_a_newer_change_of_the_same_alarm_and_action_supersedes() {
        let changes = NewestChanges::new(16);
        changes.observe("alarm", "http://a/", 10);
        changes.observe("alarm", "http://a/", 20);
        changes.observe("alarm", "http://a/", 15);
        assert!(changes.is_superseded("alarm", "http://a/", 10));
        assert!(!changes.is_superseded("alarm", "http://a/", 20));
        assert!(!changes.is_superseded("alarm", "http://b/", 10));
        assert!(!changes.is_superseded("other", "http://a/", 10));
    }
}
