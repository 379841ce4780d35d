//! The Redis session store: each user's newest session events in a list next to the candidates.

use super::{Inner, escape_id, redact};
use crate::Result;
use crate::store::session::{SessionEvent, SessionStore};
use redis::cmd;
use std::sync::Arc;

/// [`SessionStore`] in Redis (see [`RedisStore::sessions`](crate::store::RedisStore::sessions)).
pub struct RedisSessions {
    pub(super) inner: Arc<Inner>,
    pub(super) max_events: usize,
    pub(super) ttl_seconds: u64,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("url", &redact(&self.inner.url))
            .field("max_events", &self.max_events)
            .finish()
    }
}

impl RedisSessions {
    /// The key of a user's session list: the same hash tag as the user's candidate lists, so a
    /// cluster keeps them in one slot and one pipeline reads both.
    pub(super) fn key(&self, user_id: &str) -> String {
        format!("{}:sess:{{{}}}", self.inner.keys.ns, escape_id(user_id))
    }

    /// Decodes the reply of `LRANGE key 0 -1`.
    pub(super) fn decode(raw: &[String]) -> Result<Vec<SessionEvent>> {
        raw.iter().map(|s| SessionEvent::decode(s)).collect()
    }
}

impl SessionStore for RedisSessions {
    fn append(&self, events: &[(&str, SessionEvent)]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut cmds = Vec::with_capacity(events.len() + 2);
        let mut users: Vec<&str> = Vec::new();
        for (user, ev) in events {
            cmds.push(cmd("RPUSH").arg(self.key(user)).arg(ev.encode()).clone());
            if !users.contains(user) {
                users.push(user);
            }
        }
        for user in users {
            let key = self.key(user);
            cmds.push(cmd("LTRIM").arg(&key).arg(-(self.max_events as i64)).arg(-1).clone());
            cmds.push(cmd("EXPIRE").arg(&key).arg(self.ttl_seconds).clone());
        }
        self.inner.pipeline("append session events", cmds).map(|_| ())
    }

    fn recent(&self, user_id: &str) -> Result<Vec<SessionEvent>> {
        let key = self.key(user_id);
        let raw: Vec<String> = self
            .inner
            .query_idempotent("read session", cmd("LRANGE").arg(&key).arg(0).arg(-1))?;
        Self::decode(&raw)
    }

    fn describe(&self) -> String {
        format!("redis {}", redact(&self.inner.url))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
