//! What a host remembers between messages, bounded in size: the ids of
//! messages it finished (to skip a repeat, as oslo does), the newest
//! state change seen per alarm and action (to drop stale retries), and the
//! messages it requeued (how often, and which of their actions were
//! settled before).

use std::collections::{BTreeSet, HashMap, VecDeque};
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

    fn remove(&mut self, key: &K) {
        if self.values.remove(key).is_some() {
            self.order.retain(|kept| kept != key);
        }
    }
}

/// Message ids whose processing completed, the oldest forgotten first.
#[derive(Debug)]
pub(crate) struct CompletedIds(Mutex<Bounded<String, ()>>);

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
pub(crate) struct NewestChanges(Mutex<Bounded<(String, String), i64>>);

impl NewestChanges {
    /// Remembers up to `capacity` pairs.
    pub fn new(capacity: usize) -> Self {
        NewestChanges(Mutex::new(Bounded::new(capacity)))
    }

    /// A change of `alarm_id` at `changed_at_us` is being delivered to
    /// `action`.
    pub(crate) fn observe(&self, alarm_id: &str, action: &str, changed_at_us: i64) {
        if let Ok(mut newest) = self.0.lock() {
            newest.upsert((alarm_id.to_owned(), action.to_owned()), |old| {
                old.map_or(changed_at_us, |old| changed_at_us.max(*old))
            });
        }
    }

    /// Has a newer change of `alarm_id` than `changed_at_us` been seen for
    /// `action`?
    pub(crate) fn is_superseded(&self, alarm_id: &str, action: &str, changed_at_us: i64) -> bool {
        self.0.lock().is_ok_and(|newest| {
            newest
                .values
                .get(&(alarm_id.to_owned(), action.to_owned()))
                .is_some_and(|seen| *seen > changed_at_us)
        })
    }
}

/// A message this host requeued because one of its outcomes was not
/// confirmed by the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequeuedMessage {
    /// How many times.
    pub times: u32,
    /// Its actions (by index) whose outcome was final before: delivered,
    /// or their retry or dead letter confirmed. Not sent again.
    pub settled: BTreeSet<usize>,
}

/// The messages this host requeued, by message id (a delivery record's:
/// its delivery id and attempt), the oldest forgotten first. The count
/// lives in this host: a message requeued here and redelivered to another
/// host starts there afresh.
#[derive(Debug)]
pub(crate) struct RequeuedMessages(Mutex<Bounded<String, RequeuedMessage>>);

impl RequeuedMessages {
    /// Remembers up to `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        RequeuedMessages(Mutex::new(Bounded::new(capacity)))
    }

    /// What is known of message `id`, if this host requeued it.
    pub fn get(&self, id: &str) -> Option<RequeuedMessage> {
        self.0.lock().ok().and_then(|requeued| requeued.values.get(id).cloned())
    }

    /// Message `id` is requeued once more, with the actions `settled`
    /// (added to those settled before). Returns how many times it was.
    pub fn requeue(&self, id: &str, settled: impl IntoIterator<Item = usize>) -> u32 {
        let mut times = 1;
        if let Ok(mut requeued) = self.0.lock() {
            requeued.upsert(id.to_owned(), |old| {
                let mut message = old.cloned().unwrap_or_default();
                message.times += 1;
                message.settled.extend(settled);
                times = message.times;
                message
            });
        }
        times
    }

    /// Message `id` is done with.
    pub(crate) fn forget(&self, id: &str) {
        if let Ok(mut requeued) = self.0.lock() {
            requeued.remove(&id.to_owned());
        }
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
    fn requeues_are_counted_with_the_actions_settled_until_forgotten() {
        let requeued = RequeuedMessages::new(2);
        assert_eq!(requeued.requeue("m", [0]), 1);
        assert_eq!(requeued.requeue("m", [2]), 2);
        let known = requeued.get("m").unwrap();
        assert_eq!((known.times, known.settled.into_iter().collect::<Vec<_>>()), (2, vec![0, 2]));
        requeued.forget("m");
        assert_eq!(requeued.get("m"), None);
        requeued.requeue("a", []);
        requeued.requeue("b", []);
        requeued.requeue("c", []);
        assert_eq!(requeued.get("a"), None, "the oldest is forgotten past the capacity");
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
