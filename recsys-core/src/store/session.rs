//! Live session state: the events a user made since the last batch run, read back at request time
//! so the user embedding reflects the click of a moment ago (ADR "Freshness").
//!
//! [`MemorySessions`] keeps them in the process (one server); [`super::RedisStore::sessions`] keeps
//! them in Redis, so every replica behind a load balancer sees the same session.

use crate::schema::EventType;
use crate::{Error, Result};
use ahash::AHashMap;
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
}

/// Session events in this process: a bounded queue per user.
#[derive(Debug)]
pub struct MemorySessions {
    max_events: usize,
    users: Mutex<AHashMap<String, VecDeque<SessionEvent>>>,
}

impl MemorySessions {
    /// Keeps the newest `max_events` (at least 1) per user.
    pub fn new(max_events: usize) -> Self {
        MemorySessions {
            max_events: max_events.max(1),
            users: Mutex::new(AHashMap::new()),
        }
    }
}

fn poisoned() -> Error {
    Error::Internal("session state lock poisoned".into())
}

impl SessionStore for MemorySessions {
    fn append(&self, events: &[(&str, SessionEvent)]) -> Result<()> {
        let mut users = self.users.lock().map_err(|_| poisoned())?;
        for (user, ev) in events {
            let q = users.entry((*user).to_string()).or_default();
            q.push_back(ev.clone());
            while q.len() > self.max_events {
                q.pop_front();
            }
        }
        Ok(())
    }

    fn recent(&self, user_id: &str) -> Result<Vec<SessionEvent>> {
        let users = self.users.lock().map_err(|_| poisoned())?;
        Ok(users
            .get(user_id)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default())
    }

    fn describe(&self) -> String {
        "memory".to_string()
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
        let s = MemorySessions::new(2);
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
}
