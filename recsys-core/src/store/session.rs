//! Live session state: the events a user made since the last batch run, read back at request time
//! so the user embedding reflects the click of a moment ago (ADR "Freshness").
//!
//! [`MemorySessions`] keeps them in the process (one server); [`super::RedisStore::sessions`] keeps
//! them in Redis, so every replica behind a load balancer sees the same session.

use crate::schema::EventType;
use crate::{Error, Result};
use std::collections::VecDeque;
use std::sync::Mutex;

/// One session event, with the item id as the data was imported with.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    /// Item id.
    pub item_id: String,
    /// What the user did.
    pub event_type: EventType,
    /// UTC milliseconds.
    pub ts: i64,
}

impl SessionEvent {
    /// The compact text form stored in Redis: `ts \t code \t item_id`.
    pub fn encode(&self) -> String {
        format!("{}\t{}\t{}", self.ts, self.event_type as u8, self.item_id)
    }

    /// Parses [`SessionEvent::encode`]'s form.
    pub fn decode(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::corrupt("session event", format!("{why}: {s:?}"));
        let mut parts = s.splitn(3, '\t');
        let ts = parts
            .next()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| bad("timestamp"))?;
        let code = parts
            .next()
            .and_then(|t| t.parse::<u8>().ok())
            .ok_or_else(|| bad("event type"))?;
        let item_id = parts.next().ok_or_else(|| bad("item id"))?.to_string();
        Ok(SessionEvent {
            item_id,
            event_type: EventType::from_code(code).map_err(|_| bad("event type"))?,
            ts,
        })
    }
}

/// Where session events live.
pub trait SessionStore: Send + Sync {
    /// Appends events (any users, in the given order); each user keeps at most the newest
    /// `max_events`. Either every event is stored or an error says none may be.
    fn append(&self, events: &[(&str, SessionEvent)]) -> Result<()>;
    /// The user's session events, oldest first (empty for an unknown user).
    fn recent(&self, user_id: &str) -> Result<Vec<SessionEvent>>;
    /// A short description for status pages.
    fn describe(&self) -> String;
    /// This store as `Any`, so that a candidate store can recognise a session store it reads in
    /// the same round trip ([`crate::store::Snapshot::candidates_with_session`]).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Session events in this process: a bounded queue per user, for a bounded number of users (the
/// least recently active user's session is evicted first).
#[derive(Debug)]
pub struct MemorySessions {
    max_events: usize,
    users: Mutex<lru::LruCache<String, VecDeque<SessionEvent>, ahash::RandomState>>,
    evicted: std::sync::atomic::AtomicU64,
}

impl MemorySessions {
    /// Keeps the newest `max_events` (at least 1) per user, for at most `max_users` (at least 1)
    /// users.
    pub fn new(max_events: usize, max_users: usize) -> Self {
        let cap = std::num::NonZeroUsize::new(max_users).unwrap_or(std::num::NonZeroUsize::MIN);
        MemorySessions {
            max_events: max_events.max(1),
            users: Mutex::new(lru::LruCache::with_hasher(cap, ahash::RandomState::new())),
            evicted: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Sessions evicted so far to stay within `max_users`.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Users with a session now.
    pub fn len(&self) -> usize {
        self.users.lock().map(|u| u.len()).unwrap_or(0)
    }

    /// True when no user has a session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn poisoned() -> Error {
    Error::Internal("session state lock poisoned".into())
}

impl SessionStore for MemorySessions {
    fn append(&self, events: &[(&str, SessionEvent)]) -> Result<()> {
        let mut users = self.users.lock().map_err(|_| poisoned())?;
        for (user, ev) in events {
            if let Some(q) = users.get_mut(*user) {
                q.push_back(ev.clone());
                while q.len() > self.max_events {
                    q.pop_front();
                }
            } else if users.push((*user).to_string(), VecDeque::from([ev.clone()])).is_some() {
                self.evicted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn recent(&self, user_id: &str) -> Result<Vec<SessionEvent>> {
        let users = self.users.lock().map_err(|_| poisoned())?;
        Ok(users
            .peek(user_id)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default())
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(item: &str, ts: i64) -> SessionEvent {
        SessionEvent {
            item_id: item.into(),
            event_type: EventType::Click,
            ts,
        }
    }

    #[test]
    fn encode_round_trip_and_corrupt_refused() {
        let e = SessionEvent {
            item_id: "P\t1".into(),
            event_type: EventType::Purchase,
            ts: -5,
        };
        assert_eq!(SessionEvent::decode(&e.encode()).unwrap(), e);
        for bad in ["", "x\t1\tP", "1\t9\tP", "1\t1"] {
            let err = SessionEvent::decode(bad).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn memory_keeps_the_newest_per_user() {
        let s = MemorySessions::new(2, 100);
        s.append(&[
            ("u", ev("a", 1)),
            ("v", ev("x", 1)),
            ("u", ev("b", 2)),
            ("u", ev("c", 3)),
        ])
        .unwrap();
        assert_eq!(s.recent("u").unwrap(), vec![ev("b", 2), ev("c", 3)]);
        assert_eq!(s.recent("v").unwrap(), vec![ev("x", 1)]);
        assert!(s.recent("nobody").unwrap().is_empty());
    }

    #[test]
    fn memory_holds_at_most_max_users_evicting_the_least_recently_active() {
        let s = MemorySessions::new(5, 3);
        for (i, user) in ["a", "b", "c"].into_iter().enumerate() {
            s.append(&[(user, ev("x", i as i64))]).unwrap();
        }
        // `a` is active again, so `b` is the least recently active when `d` arrives.
        s.append(&[("a", ev("y", 10))]).unwrap();
        s.append(&[("d", ev("z", 11))]).unwrap();
        assert_eq!((s.len(), s.evicted()), (3, 1));
        assert!(s.recent("b").unwrap().is_empty());
        assert_eq!(s.recent("a").unwrap(), vec![ev("x", 0), ev("y", 10)]);
        for i in 0..1_000 {
            s.append(&[(format!("new-{i}").as_str(), ev("x", i))]).unwrap();
        }
        assert_eq!((s.len(), s.evicted()), (3, 1_001));
    }
}
