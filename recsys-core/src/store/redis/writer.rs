//! The Redis shard writer: one shard of one version, pipelined, with the grace TTL of the replaced
//! version's keys and best-effort cleanup when dropped unfinished.

use super::{Conn, FEATURE_CHUNK, FeatureHeader, Inner, Primary, Table};
use crate::store::{
    FeatureSnapshot, FinishReport, Scored, Shard, ShardWriter, WritePlan, check_list, encode_list, id_width,
};
use crate::{Error, Result};
use redis::{Cmd, FromRedisValue, Value, cmd};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Writes one shard of one version into Redis.
pub(super) struct RedisShardWriter {
    inner: Arc<Inner>,
    plan: WritePlan,
    width: usize,
    ttl: u64,
    /// The version active when the writer started (other than this one): its keys get the grace TTL.
    previous: Option<String>,
    /// Whether this shard was already complete before (a rerun): then a failed rerun keeps its keys.
    was_complete: bool,
    /// The primaries and their replication ids when the writer started: a failover or a restart
    /// while it writes changes them, and may have lost writes.
    primaries: BTreeMap<String, Primary>,
    conn: Option<Conn>,
    batch: Vec<Cmd>,
    buf: Vec<u8>,
    users: ahash::AHashSet<String>,
    items: ahash::AHashSet<String>,
    bytes: u64,
    finished: bool,
}

impl RedisShardWriter {
    /// A writer of `plan`'s shard over a pooled connection.
    pub(super) fn new(
        inner: Arc<Inner>,
        plan: WritePlan,
        ttl: u64,
        previous: Option<String>,
        was_complete: bool,
        mut conn: Conn,
    ) -> Result<Self> {
        let primaries = conn.primaries().map_err(|e| inner.unavailable("start writer", e))?;
        Ok(RedisShardWriter {
            width: id_width(plan.items.len()),
            batch: Vec::with_capacity(inner.options.batch + 2),
            inner,
            plan,
            ttl,
            previous,
            was_complete,
            primaries,
            conn: Some(conn),
            buf: Vec::new(),
            users: ahash::AHashSet::new(),
            items: ahash::AHashSet::new(),
            bytes: 0,
            finished: false,
        })
    }

    fn put(&mut self, table: Table, id: &str, list: &[Scored]) -> Result<()> {
        let plan = &self.plan;
        if !plan.shard.owns(id) {
            return Err(Error::invalid(
                "key",
                id,
                format!(
                    "belongs to shard {} of {}, this writer fills shard {}",
                    Shard::of(id, plan.shard.count),
                    plan.shard.count,
                    plan.shard.index
                ),
            ));
        }
        let top = match table {
            Table::Candidates => plan.top_candidates,
            Table::Similar => plan.top_similar,
        };
        check_list(list, plan.items.len(), top, id)?;
        self.buf.clear();
        encode_list(list, self.width, &mut self.buf)?;
        let seen = match table {
            Table::Candidates => &mut self.users,
            Table::Similar => &mut self.items,
        };
        if !seen.insert(id.to_string()) {
            return Err(Error::invalid(
                "key",
                id,
                format!("written twice to the {} table", table.name()),
            ));
        }
        let keys = &self.inner.keys;
        let key = keys.list(table, id, &plan.version);
        self.bytes += (key.len() + self.buf.len()) as u64;
        self.batch
            .push(cmd("SET").arg(key).arg(&self.buf[..]).arg("EX").arg(self.ttl).clone());
        if let Some(prev) = &self.previous {
            self.batch.push(
                cmd("EXPIRE")
                    .arg(keys.list(table, id, prev))
                    .arg(self.inner.options.grace.as_secs().max(1))
                    .clone(),
            );
        }
        if self.batch.len() >= self.inner.options.batch {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let cmds = std::mem::take(&mut self.batch);
        self.send("write", cmds).map(|_| ())
    }

    /// Runs `cmds` as one pipeline on the writer's own connection, the one whose writes
    /// [`Self::replicated`] waits for.
    fn send(&mut self, what: &str, cmds: Vec<Cmd>) -> Result<Vec<Value>> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.inner.connect()?,
        };
        let values = conn.pipeline(cmds).map_err(|e| self.inner.unavailable(what, e))?;
        self.conn = Some(conn);
        Ok(values)
    }

    /// Waits until the replicas asked for by [`super::RedisOptions::replicas`] hold every write of
    /// this writer, then checks that no failover or restart happened since it started (a promoted
    /// replica lacks the writes it had not received yet). Either failure is `Unavailable`: the
    /// shard is not complete and its version does not become active.
    fn replicated(&mut self) -> Result<()> {
        let inner = self.inner.clone();
        let options = &inner.options;
        let want = options
            .replicas
            .unwrap_or_else(|| self.primaries.values().map(|p| p.replicas).min().unwrap_or(0));
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::Internal("writer without connection".into()))?;
        if want > 0 {
            let acked = conn
                .wait_for_replicas(want, options.replica_timeout, options.io_timeout)
                .map_err(|e| inner.unavailable("wait for replicas", e))?;
            if acked < want {
                return Err(inner.unavailable(
                    "wait for replicas",
                    format!(
                        "{acked} of {want} replicas acknowledged the shard's writes within {:?}",
                        options.replica_timeout
                    ),
                ));
            }
        }
        let now = conn.primaries().map_err(|e| inner.unavailable("finish shard", e))?;
        let ids = |m: &BTreeMap<String, Primary>| {
            m.iter()
                .map(|(addr, p)| format!("{addr} {} {}", p.role, p.replid))
                .collect::<Vec<_>>()
        };
        if ids(&now) != ids(&self.primaries) {
            return Err(inner.unavailable(
                "finish shard",
                format!(
                    "the primaries changed while the shard was written (a failover or a restart, which \
                     can lose writes): {:?} then {:?}; write the shard again",
                    ids(&self.primaries),
                    ids(&now)
                ),
            ));
        }
        Ok(())
    }

    /// Best-effort cleanup of an unfinished writer: restores the TTL of the previous version's keys
    /// and deletes this run's keys unless the shard was complete before.
    fn abandon(&mut self) -> Result<()> {
        self.batch.clear();
        if self.users.is_empty() && self.items.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        let keys = &inner.keys;
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => inner.connect()?,
        };
        let unavailable = |e| inner.unavailable("clean up an unfinished writer", e);
        let restore: Option<(&str, i64)> = match &self.previous {
            Some(prev) => {
                let pttl: i64 = conn.query(cmd("PTTL").arg(keys.meta(prev))).map_err(unavailable)?;
                (pttl != -2).then_some((prev.as_str(), pttl))
            }
            None => None,
        };
        let mut cmds = Vec::new();
        let ids = self
            .users
            .iter()
            .map(|u| (Table::Candidates, u))
            .chain(self.items.iter().map(|i| (Table::Similar, i)));
        for (table, id) in ids {
            if let Some((prev, pttl)) = restore {
                let old = keys.list(table, id, prev);
                cmds.push(if pttl < 0 {
                    cmd("PERSIST").arg(old).clone()
                } else {
                    cmd("PEXPIRE").arg(old).arg(pttl.max(1)).clone()
                });
            }
            if !self.was_complete {
                cmds.push(cmd("DEL").arg(keys.list(table, id, &self.plan.version)).clone());
            }
            if cmds.len() >= inner.options.batch {
                conn.pipeline(std::mem::take(&mut cmds)).map_err(unavailable)?;
            }
        }
        conn.pipeline(cmds).map_err(unavailable)?;
        inner.give(conn);
        Ok(())
    }
}

impl ShardWriter for RedisShardWriter {
    fn put_candidates(&mut self, user_id: &str, list: &[Scored]) -> Result<()> {
        self.put(Table::Candidates, user_id, list)
    }

    fn put_similar(&mut self, item_id: &str, list: &[Scored]) -> Result<()> {
        self.put(Table::Similar, item_id, list)
    }

    fn put_features(&mut self, snapshot: &FeatureSnapshot) -> Result<u64> {
        self.flush()?;
        let bytes = snapshot.encode()?;
        let inner = self.inner.clone();
        let keys = &inner.keys;
        let version = &self.plan.version.clone();
        let old = inner.feature_keys(version)?;
        // A new generation of chunks, then the header naming it: a reader sees the old snapshot or
        // the new one, whole.
        let token = crate::atomic::unique_token();
        let chunks: Vec<&[u8]> = bytes.chunks(FEATURE_CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let set = cmd("SET")
                .arg(keys.feature_chunk(version, &token, i))
                .arg(*chunk)
                .arg("EX")
                .arg(self.ttl)
                .clone();
            self.send("write features", vec![set])?;
        }
        let header = FeatureHeader {
            token,
            chunks: chunks.len(),
            bytes: bytes.len() as u64,
        };
        let json = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
        let set = cmd("SET")
            .arg(keys.features(version))
            .arg(json)
            .arg("EX")
            .arg(self.ttl)
            .clone();
        self.send("write features", vec![set])?;
        // The replaced generation's chunks (not its header, just rewritten) go after the grace period.
        let grace = inner.options.grace.as_secs().max(1);
        let expire: Vec<Cmd> = old
            .iter()
            .skip(1)
            .map(|k| cmd("EXPIRE").arg(k).arg(grace).clone())
            .collect();
        if !expire.is_empty() {
            inner.pipeline("expire replaced features", expire)?;
        }
        Ok(header.bytes)
    }

    fn finish(mut self: Box<Self>) -> Result<FinishReport> {
        self.flush()?;
        self.replicated()?;
        let inner = self.inner.clone();
        let keys = &inner.keys;
        let version = self.plan.version.clone();
        let values = {
            let mut conn = self
                .conn
                .take()
                .ok_or_else(|| Error::Internal("writer without connection".into()))?;
            let values = conn
                .pipeline(vec![
                    cmd("SADD")
                        .arg(keys.shards(&version))
                        .arg(self.plan.shard.index)
                        .clone(),
                    cmd("EXPIRE").arg(keys.shards(&version)).arg(self.ttl).clone(),
                    cmd("EXPIRE").arg(keys.meta(&version)).arg(self.ttl).clone(),
                    cmd("SCARD").arg(keys.shards(&version)).clone(),
                ])
                .map_err(|e| inner.unavailable("finish shard", e))?;
            inner.give(conn);
            values
        };
        let (_, _, meta_alive, done) = <(i64, i64, i64, u32)>::from_redis_value(Value::Array(values))
            .map_err(|e| inner.unavailable("finish shard", e))?;
        // The shard is complete from here on: nothing to clean up if the activation fails.
        self.finished = true;
        if meta_alive != 1 {
            return Err(Error::NotFound {
                kind: "store version (meta expired while writing)",
                id: version,
            });
        }
        let meta = self.plan.meta();
        let complete = done >= meta.shards;
        if complete {
            // The stored meta carries the creation time of the first writer.
            let stored = inner.complete_meta(&version)?;
            if let Some(prev) = inner.switch(&stored, self.ttl)? {
                let grace = inner.options.grace.as_secs().max(1);
                let mut expire = vec![
                    cmd("EXPIRE").arg(keys.meta(&prev)).arg(grace).clone(),
                    cmd("EXPIRE").arg(keys.shards(&prev)).arg(grace).clone(),
                ];
                for k in inner.feature_keys(&prev)? {
                    expire.push(cmd("EXPIRE").arg(k).arg(grace).clone());
                }
                inner.pipeline("expire the replaced version", expire)?;
            }
        }
        Ok(FinishReport {
            version,
            shard: self.plan.shard,
            users: self.users.len() as u64,
            items: self.items.len() as u64,
            bytes: self.bytes,
            activated: complete,
        })
    }
}

impl Drop for RedisShardWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.abandon();
        }
    }
}
