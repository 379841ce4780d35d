//! The Redis candidate store (`redis://` and `redis+cluster://`).
//!
//! Key layout (`NS` is the namespace, `tsr` unless the URL names one after `#`):
//!
//! ```text
//! NS:c:{<user id>}:<version>      candidate list of a user   (encode_list bytes, TTL)
//! NS:s:{<item id>}:<version>      similar items of an item    (encode_list bytes, TTL)
//! NS:v:{<version>}:meta           VersionMeta as JSON         (TTL)
//! NS:v:{<version>}:shards         set of completed shard indices (TTL)
//! NS:v:{<version>}:feat           header of the feature snapshot: {"token", "chunks", "bytes"} (TTL)
//! NS:v:{<version>}:feat:<token>:<i>  chunk i of that snapshot (FeatureSnapshot::encode bytes, TTL)
//! NS:versions                     sorted set of complete versions, scored by creation time (TTL)
//! NS:active                       the active version (a plain string, switched by one SET)
//! ```
//!
//! The braces are Redis Cluster hash tags: all versions of one user's list live in the same slot, and
//! so do a version's meta and shard set. Ids are escaped inside the tag so that they can never break
//! it: `%` becomes `%25`, `{` becomes `%7B`, `}` becomes `%7D` and the empty id becomes `%` (which no
//! other id can produce), so every id is accepted and maps to exactly one key.
//!
//! **Writing.** A writer sends its lists in pipelines of [`RedisOptions::batch`] commands, each key
//! with the plan's TTL. With every new key it also sets the key of the same user in the version that
//! was active when the writer started to expire after [`RedisOptions::grace`] (same slot, same
//! pipeline), so at most two versions of a user's list coexist for long. `finish` first waits
//! (`WAIT`) until [`RedisOptions::replicas`] replicas acknowledge every write the writer sent (by
//! default every replica connected when it started), then checks that each primary's replication id
//! is the one it had at the start: Redis replicates asynchronously, and a failover in between
//! promotes a replica that may lack some writes, so either failure fails the writer with
//! `Unavailable` rather than completing a shard with keys missing. It then adds the shard to the
//! version's shard set and, when the set is complete, switches `NS:active` (one atomic `SET`) and lets
//! the meta of the replaced version expire after the grace period too. A writer dropped without
//! `finish` (an error, a panic) restores the TTL of the previous version's keys it shortened and
//! deletes the keys it wrote when its shard was not complete before, best effort: if Redis itself is
//! gone, the previous version stays active but the lists shortened so far still expire after the
//! grace period (without persistence they are gone anyway).
//!
//! The feature snapshot is written as a new generation of chunks followed by the header naming it,
//! so a reader gets the old snapshot or the new one whole; replaced chunks expire after the grace
//! period, and so does the whole snapshot of a replaced version.
//!
//! **Reading.** [`CandidateStore::open_version`] reads the meta and checks that every shard is complete;
//! the snapshot then reads only keys of its version, one `GET` per lookup over pooled connections.
//! A snapshot of a replaced version keeps working during the grace period.
//!
//! Needs Redis 6.2 or newer (`SET ... GET`).

use super::{
    CandidateStore, FeatureSnapshot, Scored, SessionEvent, SessionStore, ShardWriter, Snapshot, VersionMeta, WritePlan,
    decode_list, encoded_len, id_width, validate_version,
};
use crate::{Error, Result};
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Cmd, ConnectionLike, FromRedisValue, RedisError, Value, cmd};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod session;
mod writer;

pub use session::RedisSessions;
use writer::RedisShardWriter;

// Default key namespace.
const DEFAULT_NAMESPACE: &str = "tsr";

/// Complete versions remembered in `NS:versions` (older ones are dropped from the list).
const KEEP_VERSIONS: isize = 16;

/// Connection settings of a [`RedisStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct RedisOptions {
    /// Time allowed to open a TCP connection (default 1 s).
    pub connect_timeout: Duration,
    /// Time allowed for a command's reply and for sending it (default 1 s).
    pub io_timeout: Duration,
    /// How long the keys of a replaced version stay readable (default 1 hour).
    pub grace: Duration,
    /// Commands per write pipeline (default 1000).
    pub batch: usize,
    /// Idle connections kept for reuse (default 32).
    pub max_idle: usize,
    /// Replicas that must acknowledge a shard's writes before the shard counts as complete (and
    /// its version can become active). `None` (the default) asks for every replica that each
    /// primary had connected when the writer started, the smallest such number over the
    /// primaries; `Some(0)` does not wait.
    pub replicas: Option<usize>,
    /// How long a writer waits for those acknowledgements (default 10 s).
    pub replica_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            grace: Duration::from_secs(3600),
            batch: 1000,
            max_idle: 32,
            replicas: None,
            replica_timeout: Duration::from_secs(10),
        }
    }
}

/// What a store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// One server: the `redis://` URL without the namespace.
    Single(String),
    /// A cluster: one `redis://HOST:PORT` URL per seed node.
    Cluster(Vec<String>),
}

/// Splits a store URL into its target and namespace (see [`super::open_store`]).
fn parse_url(url: &str) -> Result<(Target, String)> {
    let bad = |why: &str| Error::invalid("store", redact(url), why);
    let (base, ns) = match url.split_once('#') {
        Some((b, ns)) => (b, ns),
        None => (url, DEFAULT_NAMESPACE),
    };
    validate_namespace(ns)?;
    if let Some(rest) = base.strip_prefix("redis+cluster://") {
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad(
                "a cluster has only database 0: use redis+cluster://HOST:PORT,HOST:PORT,...",
            ));
        }
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let mut nodes = Vec::new();
        for host in hosts.split(',') {
            let host = host.trim();
            let Some((h, p)) = host.rsplit_once(':') else {
                return Err(bad("every cluster node needs HOST:PORT"));
            };
            if h.is_empty() || p.parse::<u16>().is_err() {
                return Err(bad("every cluster node needs HOST:PORT"));
            }
            nodes.push(match auth {
                Some(a) => format!("redis://{a}@{host}"),
                None => format!("redis://{host}"),
            });
        }
        return Ok((Target::Cluster(nodes), ns.to_string()));
    }
    let Some(rest) = base.strip_prefix("redis://") else {
        return Err(bad("expected redis://HOST:PORT[/DB] or redis+cluster://HOST:PORT,..."));
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() || host.contains(',') {
        return Err(bad("expected redis://HOST:PORT[/DB] (several nodes: redis+cluster://)"));
    }
    Ok((Target::Single(base.to_string()), ns.to_string()))
}

/// Namespaces are 1-64 characters of `[A-Za-z0-9._:-]`: no braces (hash tags), no spaces.
fn validate_namespace(ns: &str) -> Result<()> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "namespace",
            ns,
            "use 1-64 characters of [A-Za-z0-9._:-] after '#'",
        ))
    }
}

/// The URL with any password hidden, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(a)) if a > s => format!("{}***{}", &url[..s + 3], &url[a..]),
        _ => url.to_string(),
    }
}

/// Escapes an id for use inside a hash tag: `%` → `%25`, `{` → `%7B`, `}` → `%7D`, `""` → `%`.
fn escape_id(id: &str) -> Cow<'_, str> {
    if id.is_empty() {
        return Cow::Borrowed("%");
    }
    if !id.contains(['%', '{', '}']) {
        return Cow::Borrowed(id);
    }
    let mut out = String::with_capacity(id.len() + 8);
    for c in id.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Which table a list key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Candidates,
    Similar,
}

impl Table {
    fn tag(self) -> &'static str {
        match self {
            Table::Candidates => "c",
            Table::Similar => "s",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Table::Candidates => "candidates",
            Table::Similar => "similar-items",
        }
    }
}

/// Builds the keys of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Keys {
    ns: String,
}

impl Keys {
    fn list(&self, table: Table, id: &str, version: &str) -> String {
        format!("{}:{}:{{{}}}:{version}", self.ns, table.tag(), escape_id(id))
    }
    fn meta(&self, version: &str) -> String {
        format!("{}:v:{{{version}}}:meta", self.ns)
    }
    fn shards(&self, version: &str) -> String {
        format!("{}:v:{{{version}}}:shards", self.ns)
    }
    fn active(&self) -> String {
        format!("{}:active", self.ns)
    }
    /// The version's feature-snapshot header: `{"token": .., "chunks": .., "bytes": ..}`.
    fn features(&self, version: &str) -> String {
        format!("{}:v:{{{version}}}:feat", self.ns)
    }
    /// One chunk of one written generation (`token`) of the version's feature snapshot.
    fn feature_chunk(&self, version: &str, token: &str, index: usize) -> String {
        format!("{}:v:{{{version}}}:feat:{token}:{index}", self.ns)
    }
    fn versions(&self) -> String {
        format!("{}:versions", self.ns)
    }
}

/// A client for one server or one cluster.
enum Backend {
    Single(redis::Client),
    Cluster(ClusterClient),
}

/// One pooled connection.
enum Conn {
    Single(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn query<T: FromRedisValue>(&mut self, c: &Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(con) => c.query(con as &mut dyn ConnectionLike),
            Conn::Cluster(con) => c.query(con.as_mut() as &mut dyn ConnectionLike),
        }
    }

    /// Runs `cmds` as one pipeline; a server error in any reply is an error.
    fn pipeline(&mut self, cmds: Vec<Cmd>) -> redis::RedisResult<Vec<Value>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Value> = match self {
            Conn::Single(con) => {
                let mut p = redis::pipe();
                for c in cmds {
                    p.add_command(c);
                }
                p.query(con as &mut dyn ConnectionLike)?
            }
            Conn::Cluster(con) => {
                let mut p = redis::cluster::ClusterPipeline::with_capacity(cmds.len());
                for c in cmds {
                    p.add_command(c);
                }
                p.query(con.as_mut())?
            }
        };
        for v in &values {
            if let Value::ServerError(e) = v {
                return Err(e.clone().into());
            }
        }
        Ok(values)
    }
}

/// The replication state of one primary, read from `INFO replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Primary {
    /// `role`: `master` until a failover makes it a replica.
    role: String,
    /// `master_replid`: a new one after a failover promoted a replica or a restart.
    replid: String,
    /// `connected_slaves`.
    replicas: usize,
}

impl Conn {
    /// Every primary this connection writes to (its address; empty for a single server) with its
    /// replication state.
    fn primaries(&mut self) -> redis::RedisResult<BTreeMap<String, Primary>> {
        let info = cmd("INFO").arg("replication").clone();
        let texts: Vec<(String, String)> = match self {
            Conn::Single(con) => vec![(String::new(), info.query(con as &mut dyn ConnectionLike)?)],
            // Routed to every primary; the reply maps each primary's address to its text.
            Conn::Cluster(con) => info
                .query::<BTreeMap<String, String>>(con.as_mut())?
                .into_iter()
                .collect(),
        };
        let mut out = BTreeMap::new();
        for (addr, text) in texts {
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .map(str::trim)
            };
            let (Some(role), Some(replid)) = (field("role"), field("master_replid")) else {
                return Err(RedisError::from((
                    redis::ErrorKind::Parse,
                    "INFO replication without role or master_replid",
                    addr,
                )));
            };
            let replicas = field("connected_slaves").unwrap_or("0");
            out.insert(
                addr,
                Primary {
                    role: role.to_string(),
                    replid: replid.to_string(),
                    replicas: replicas.parse().unwrap_or(0),
                },
            );
        }
        Ok(out)
    }

    /// `WAIT replicas timeout` on this connection: how many replicas acknowledged every write it
    /// sent (the fewest over the primaries of a cluster). The read timeout covers the wait.
    fn wait_for_replicas(&mut self, replicas: usize, timeout: Duration, io: Duration) -> redis::RedisResult<usize> {
        let wait = cmd("WAIT").arg(replicas).arg(timeout.as_millis().max(1) as u64).clone();
        self.set_read_timeout(timeout + io)?;
        let acked = self.query(&wait);
        self.set_read_timeout(io)?;
        acked
    }

    fn set_read_timeout(&self, timeout: Duration) -> redis::RedisResult<()> {
        match self {
            Conn::Single(con) => con.set_read_timeout(Some(timeout)),
            Conn::Cluster(con) => con.set_read_timeout(Some(timeout)),
        }
    }
}

struct Inner {
    url: String,
    keys: Keys,
    backend: Backend,
    options: RedisOptions,
    pool: Mutex<Vec<Conn>>,
}

impl Inner {
    fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Unavailable {
            service: "redis",
            message: format!("{} ({what}): {e}", redact(&self.url)),
        }
    }

    fn connect(&self) -> Result<Conn> {
        let io = Some(self.options.io_timeout);
        let conn = match &self.backend {
            Backend::Single(client) => {
                let con = client
                    .get_connection_with_timeout(self.options.connect_timeout)
                    .map_err(|e| self.unavailable("connect", e))?;
                con.set_read_timeout(io).map_err(|e| self.unavailable("connect", e))?;
                con.set_write_timeout(io).map_err(|e| self.unavailable("connect", e))?;
                Conn::Single(con)
            }
            Backend::Cluster(client) => {
                let con = client.get_connection().map_err(|e| self.unavailable("connect", e))?;
                con.set_write_timeout(io).map_err(|e| self.unavailable("connect", e))?;
                Conn::Cluster(Box::new(con))
            }
        };
        Ok(conn)
    }

    /// A pooled connection, or a new one.
    fn take(&self) -> Result<Conn> {
        let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
        match pooled {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    /// Returns a healthy connection to the pool.
    fn give(&self, conn: Conn) {
        if let Ok(mut p) = self.pool.lock()
            && p.len() < self.options.max_idle
        {
            p.push(conn);
        }
    }

    /// Runs `f` on a pooled connection; the connection is dropped if `f` fails (it may be out of
    /// sync). A connection-level failure (refused, reset, timed out) empties the whole pool: the
    /// other idle connections went to the same server and are most likely broken too, and each
    /// would otherwise cost one more failed request once the server is back. So does a cluster
    /// redirect (MOVED, ASK: a failover or resharding moved slots), after which every pooled
    /// connection's slot map is stale.
    fn with<T>(&self, what: &str, f: impl FnOnce(&mut Conn) -> redis::RedisResult<T>) -> Result<T> {
        let conn = self.take()?;
        self.run(conn, f).map_err(|e| self.unavailable(what, e))
    }

    /// Like [`Self::with`], for commands that have the same effect when run twice (reads, and the
    /// writer's start): after a cluster redirect it runs once more on a new connection, which reads
    /// the cluster's current slot map (redis-rs does not follow a pipeline's redirected commands).
    /// Other writes fail instead: a writer across a failover must fail anyway.
    fn with_retry<T>(&self, what: &str, f: impl Fn(&mut Conn) -> redis::RedisResult<T>) -> Result<T> {
        let conn = self.take()?;
        match self.run(conn, &f) {
            Err(e) if e.is_cluster_error() => {
                let conn = self.connect()?;
                self.run(conn, &f).map_err(|e| self.unavailable(what, e))
            }
            other => other.map_err(|e| self.unavailable(what, e)),
        }
    }

    /// Runs `f` on `conn`, then returns the connection to the pool or drops it (see [`Self::with`]).
    fn run<T>(&self, mut conn: Conn, f: impl FnOnce(&mut Conn) -> redis::RedisResult<T>) -> redis::RedisResult<T> {
        let out = f(&mut conn);
        match &out {
            Ok(_) => self.give(conn),
            Err(e) => {
                if (e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_connection_refusal()
                    || e.is_cluster_error())
                    && let Ok(mut p) = self.pool.lock()
                {
                    p.clear();
                }
            }
        }
        out
    }

    fn query<T: FromRedisValue>(&self, what: &str, c: &Cmd) -> Result<T> {
        self.with(what, |con| con.query(c))
    }

    fn pipeline(&self, what: &str, cmds: Vec<Cmd>) -> Result<Vec<Value>> {
        self.with(what, |con| con.pipeline(cmds))
    }

    /// [`Self::query`] for a command that can run twice (retried once after a cluster redirect).
    fn query_idempotent<T: FromRedisValue>(&self, what: &str, c: &Cmd) -> Result<T> {
        self.with_retry(what, |con| con.query(c))
    }

    /// [`Self::pipeline`] for commands that can run twice (retried once after a cluster redirect).
    fn pipeline_idempotent(&self, what: &str, cmds: Vec<Cmd>) -> Result<Vec<Value>> {
        self.with_retry(what, |con| con.pipeline(cmds.clone()))
    }

    /// The meta of `version` and its number of completed shards; `None` when unknown.
    fn meta(&self, version: &str) -> Result<Option<(VersionMeta, u32)>> {
        validate_version(version)?;
        let values = self.pipeline_idempotent(
            "read version meta",
            vec![
                cmd("GET").arg(self.keys.meta(version)).clone(),
                cmd("SCARD").arg(self.keys.shards(version)).clone(),
            ],
        )?;
        let (meta, done) = match <(Option<Vec<u8>>, u32)>::from_redis_value(Value::Array(values)) {
            Ok(v) => v,
            Err(e) => return Err(Error::corrupt(self.keys.meta(version), e.to_string())),
        };
        let Some(bytes) = meta else {
            return Ok(None);
        };
        let meta: VersionMeta =
            serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(self.keys.meta(version), e.to_string()))?;
        if meta.version != version || meta.shards == 0 {
            return Err(Error::corrupt(
                self.keys.meta(version),
                format!("meta of version {:?} with {} shards", meta.version, meta.shards),
            ));
        }
        Ok(Some((meta, done)))
    }

    /// The meta of a complete version, `NotFound` otherwise.
    fn complete_meta(&self, version: &str) -> Result<VersionMeta> {
        match self.meta(version)? {
            None => Err(Error::NotFound {
                kind: "store version",
                id: version.to_string(),
            }),
            Some((meta, done)) if done < meta.shards => Err(Error::NotFound {
                kind: "store version (incomplete)",
                id: format!("{version}: {done} of {} shards complete", meta.shards),
            }),
            Some((meta, _)) => Ok(meta),
        }
    }

    /// Switches `NS:active` to a complete version and lists it; returns the version it replaced.
    fn switch(&self, meta: &VersionMeta, ttl_seconds: u64) -> Result<Option<String>> {
        let values = self.pipeline(
            "activate",
            vec![
                cmd("SET").arg(self.keys.active()).arg(&meta.version).arg("GET").clone(),
                cmd("ZADD")
                    .arg(self.keys.versions())
                    .arg(meta.created_at_ms)
                    .arg(&meta.version)
                    .clone(),
                cmd("ZREMRANGEBYRANK")
                    .arg(self.keys.versions())
                    .arg(0)
                    .arg(-KEEP_VERSIONS - 1)
                    .clone(),
                cmd("EXPIRE").arg(self.keys.versions()).arg(ttl_seconds.max(1)).clone(),
            ],
        )?;
        let previous = values
            .into_iter()
            .next()
            .map(Option::<String>::from_redis_value)
            .transpose()
            .map_err(|e| Error::corrupt(self.keys.active(), e.to_string()))?
            .flatten();
        Ok(previous.filter(|p| p != &meta.version))
    }
}

/// Where one version's feature snapshot lives: the header key names the chunks of the generation
/// written last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FeatureHeader {
    token: String,
    chunks: usize,
    bytes: u64,
}

/// Bytes per Redis value of a feature snapshot (well under Redis's 512 MB value limit; small enough
/// that one write does not hold the server for long).
const FEATURE_CHUNK: usize = 4 << 20;

impl Inner {
    fn feature_header(&self, version: &str) -> Result<Option<FeatureHeader>> {
        let key = self.keys.features(version);
        let text: Option<Vec<u8>> = self.query_idempotent("read features", cmd("GET").arg(&key))?;
        text.map(|t| serde_json::from_slice(&t).map_err(|e| Error::corrupt(&key, e.to_string())))
            .transpose()
    }

    /// The keys of a version's feature snapshot (header first), empty when it has none.
    fn feature_keys(&self, version: &str) -> Result<Vec<String>> {
        Ok(match self.feature_header(version)? {
            Some(h) => std::iter::once(self.keys.features(version))
                .chain((0..h.chunks).map(|i| self.keys.feature_chunk(version, &h.token, i)))
                .collect(),
            None => Vec::new(),
        })
    }
}

/// Candidate store in Redis or Redis Cluster (the key layout is documented in
/// `recsys-core/src/store/redis/mod.rs`).
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &redact(&self.inner.url))
            .field("options", &self.inner.options)
            .finish()
    }
}

impl RedisStore {
    /// Connects to the server(s) named by `url` with the default [`RedisOptions`].
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with(url, RedisOptions::default())
    }

    /// Connects to the server(s) named by `url` (see [`super::open_store`]) and checks that they
    /// answer. A bad URL is [`Error::InvalidInput`]; a server that cannot be reached within the
    /// timeouts is [`Error::Unavailable`].
    pub fn open_with(url: &str, options: RedisOptions) -> Result<Self> {
        if options.connect_timeout.is_zero() || options.io_timeout.is_zero() || options.batch == 0 {
            return Err(Error::invalid(
                "options",
                format!("{options:?}"),
                "timeouts and batch must be non-zero",
            ));
        }
        let (target, ns) = parse_url(url)?;
        let bad = |e: RedisError| Error::invalid("store", redact(url), e.to_string());
        let backend = match target {
            Target::Single(u) => Backend::Single(redis::Client::open(u.as_str()).map_err(bad)?),
            Target::Cluster(nodes) => Backend::Cluster(
                ClusterClient::builder(nodes)
                    .connection_timeout(options.connect_timeout)
                    .response_timeout(options.io_timeout)
                    .retries(1)
                    .min_retry_wait(10)
                    .max_retry_wait(100)
                    .build()
                    .map_err(bad)?,
            ),
        };
        let inner = Inner {
            url: url.to_string(),
            keys: Keys { ns },
            backend,
            options,
            pool: Mutex::new(Vec::new()),
        };
        let mut conn = inner.connect()?;
        let _: Option<String> = conn
            .query(cmd("GET").arg(inner.keys.active()))
            .map_err(|e| inner.unavailable("check", e))?;
        inner.give(conn);
        Ok(RedisStore { inner: Arc::new(inner) })
    }

    /// The key namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.keys.ns
    }

    /// Session state in the same server(s) and namespace: a list per user (`NS:sess:{user}`) holding
    /// the newest `max_events` events, expiring `ttl` after the last one.
    pub fn sessions(&self, max_events: usize, ttl: Duration) -> RedisSessions {
        RedisSessions {
            inner: Arc::clone(&self.inner),
            max_events: max_events.max(1),
            ttl_seconds: ttl.as_secs().max(1),
        }
    }
}

impl CandidateStore for RedisStore {
    fn url(&self) -> String {
        self.inner.url.clone()
    }

    fn active_version(&self) -> Result<Option<String>> {
        self.inner
            .query_idempotent("read the active version", cmd("GET").arg(self.inner.keys.active()))
    }

    fn versions(&self) -> Result<Vec<String>> {
        let inner = &self.inner;
        let listed: Vec<String> =
            inner.query_idempotent("list versions", cmd("ZRANGE").arg(inner.keys.versions()).arg(0).arg(-1))?;
        let listed: Vec<String> = listed.into_iter().filter(|v| validate_version(v).is_ok()).collect();
        let exists = inner.pipeline_idempotent(
            "list versions",
            listed
                .iter()
                .map(|v| cmd("EXISTS").arg(inner.keys.meta(v)).clone())
                .collect(),
        )?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (v, e) in listed.into_iter().zip(exists) {
            if matches!(e, Value::Int(1)) {
                out.push(v);
            } else {
                gone.push(v);
            }
        }
        if !gone.is_empty() {
            // Expired versions leave the list lazily.
            let _: i64 = inner.query("list versions", cmd("ZREM").arg(inner.keys.versions()).arg(&gone))?;
        }
        Ok(out)
    }

    fn open_version(&self, version: &str) -> Result<Arc<dyn Snapshot>> {
        let meta = self.inner.complete_meta(version)?;
        Ok(Arc::new(RedisSnapshot {
            inner: self.inner.clone(),
            width: id_width(meta.items.len()),
            meta,
        }))
    }

    fn writer(&self, plan: &WritePlan) -> Result<Box<dyn ShardWriter>> {
        plan.validate()?;
        let inner = &self.inner;
        let keys = &inner.keys;
        let ttl = plan.ttl_seconds.max(1);
        let meta = plan.meta();
        let json = serde_json::to_vec(&meta).map_err(|e| Error::Internal(e.to_string()))?;
        // Run twice, `SET NX` finds the meta it wrote and compares it: the same effect.
        let values = inner.pipeline_idempotent(
            "start writer",
            vec![
                cmd("SET")
                    .arg(keys.meta(&plan.version))
                    .arg(json)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl)
                    .clone(),
                cmd("GET").arg(keys.active()).clone(),
                cmd("SISMEMBER")
                    .arg(keys.shards(&plan.version))
                    .arg(plan.shard.index)
                    .clone(),
            ],
        )?;
        let (created, active, was_complete) =
            <(Option<String>, Option<String>, bool)>::from_redis_value(Value::Array(values))
                .map_err(|e| inner.unavailable("start writer", e))?;
        if created.is_none() {
            // Another shard (or an earlier run) wrote the meta: it must describe the same version.
            let (old, _) = inner.meta(&plan.version)?.ok_or_else(|| {
                inner.unavailable("start writer", "the version's meta expired while the writer started")
            })?;
            if old.items != meta.items
                || old.shards != meta.shards
                || old.top_candidates != meta.top_candidates
                || old.top_similar != meta.top_similar
            {
                return Err(Error::invalid(
                    "version",
                    &plan.version,
                    "already holds shards written with a different item dictionary, shard count or list length",
                ));
            }
            let _: i64 = inner.query("start writer", cmd("EXPIRE").arg(keys.meta(&plan.version)).arg(ttl))?;
        }
        let previous = active.filter(|a| a != &plan.version && validate_version(a).is_ok());
        let conn = inner.take()?;
        Ok(Box::new(RedisShardWriter::new(
            inner.clone(),
            plan.clone(),
            ttl,
            previous,
            was_complete,
            conn,
        )?))
    }

    fn activate(&self, version: &str) -> Result<()> {
        let inner = &self.inner;
        let meta = inner.complete_meta(version)?;
        let pttl: i64 = inner.query_idempotent("activate", cmd("PTTL").arg(inner.keys.meta(version)))?;
        let grace_ms = inner.options.grace.as_millis().min(i64::MAX as u128) as i64;
        if pttl >= 0 && pttl <= grace_ms {
            return Err(Error::invalid(
                "version",
                version,
                "its keys expire within the grace period (replaced by a newer version, or at the end of \
                 its TTL): write it again to activate it",
            ));
        }
        let ttl = if pttl > 0 {
            (pttl as u64).div_ceil(1000)
        } else {
            7 * 24 * 3600
        };
        inner.switch(&meta, ttl)?;
        Ok(())
    }
}

/// A version pinned for reading.
struct RedisSnapshot {
    inner: Arc<Inner>,
    meta: VersionMeta,
    width: usize,
}

impl RedisSnapshot {
    fn get(&self, table: Table, id: &str) -> Result<Option<Vec<Scored>>> {
        let key = self.inner.keys.list(table, id, &self.meta.version);
        let bytes: Option<Vec<u8>> = self.inner.query_idempotent("read", cmd("GET").arg(&key))?;
        self.decode(&key, bytes)
    }

    /// Checks and decodes a list read from `key`.
    fn decode(&self, key: &str, bytes: Option<Vec<u8>>) -> Result<Option<Vec<Scored>>> {
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let n = if bytes.len() >= 2 {
            usize::from(u16::from_le_bytes([bytes[0], bytes[1]]))
        } else {
            0
        };
        if bytes.len() != encoded_len(n, self.width) {
            return Err(Error::corrupt(
                key,
                format!(
                    "{} bytes, a list of {n} entries has {}",
                    bytes.len(),
                    encoded_len(n, self.width)
                ),
            ));
        }
        let list = decode_list(&bytes, self.width, key)?;
        if let Some(bad) = list.iter().find(|s| s.item as usize >= self.meta.items.len()) {
            return Err(Error::corrupt(
                key,
                format!("item {} outside the dictionary of {}", bad.item, self.meta.items.len()),
            ));
        }
        Ok(Some(list))
    }
}

impl Snapshot for RedisSnapshot {
    fn meta(&self) -> &VersionMeta {
        &self.meta
    }

    fn candidates(&self, user_id: &str) -> Result<Option<Vec<Scored>>> {
        self.get(Table::Candidates, user_id)
    }

    fn similar(&self, item_id: &str) -> Result<Option<Vec<Scored>>> {
        self.get(Table::Similar, item_id)
    }

    fn candidates_with_session(
        &self,
        user_id: &str,
        sessions: &dyn SessionStore,
    ) -> (Result<Option<Vec<Scored>>>, Result<Vec<SessionEvent>>) {
        let same_server = sessions
            .as_any()
            .downcast_ref::<RedisSessions>()
            .filter(|s| Arc::ptr_eq(&s.inner, &self.inner));
        let Some(redis) = same_server else {
            return (self.candidates(user_id), sessions.recent(user_id));
        };
        let list_key = self.inner.keys.list(Table::Candidates, user_id, &self.meta.version);
        let read = self.inner.pipeline_idempotent(
            "read",
            vec![
                cmd("GET").arg(&list_key).clone(),
                cmd("LRANGE").arg(redis.key(user_id)).arg(0).arg(-1).clone(),
            ],
        );
        let (list, session) = match read {
            Ok(values) => match <(Option<Vec<u8>>, Vec<String>)>::from_redis_value(Value::Array(values)) {
                Ok(v) => v,
                Err(bad) => {
                    let corrupt = || Error::corrupt(&list_key, bad.to_string());
                    return (Err(corrupt()), Err(corrupt()));
                }
            },
            Err(e) => {
                let again = match &e {
                    Error::Unavailable { service, message } => Error::Unavailable {
                        service,
                        message: message.clone(),
                    },
                    other => Error::Internal(other.to_string()),
                };
                return (Err(e), Err(again));
            }
        };
        (self.decode(&list_key, list), RedisSessions::decode(&session))
    }

    fn features(&self) -> Result<Option<FeatureSnapshot>> {
        let inner = &self.inner;
        let version = &self.meta.version;
        let Some(header) = inner.feature_header(version)? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(header.bytes as usize);
        for i in 0..header.chunks {
            let key = inner.keys.feature_chunk(version, &header.token, i);
            let chunk: Option<Vec<u8>> = inner.query_idempotent("read features", cmd("GET").arg(&key))?;
            let chunk = chunk.ok_or_else(|| {
                Error::corrupt(
                    &key,
                    "a chunk of the feature snapshot is missing (replaced or expired while reading)",
                )
            })?;
            bytes.extend_from_slice(&chunk);
        }
        FeatureSnapshot::decode(&bytes, &inner.keys.features(version)).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_targets_and_namespaces() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6379").unwrap(),
            (Target::Single("redis://127.0.0.1:6379".into()), "tsr".into())
        );
        assert_eq!(
            parse_url("redis://h:1/2#shop-a").unwrap(),
            (Target::Single("redis://h:1/2".into()), "shop-a".into())
        );
        assert_eq!(
            parse_url("redis+cluster://a:1, b:2,c:3#x").unwrap(),
            (
                Target::Cluster(vec!["redis://a:1".into(), "redis://b:2".into(), "redis://c:3".into()]),
                "x".into()
            )
        );
        assert_eq!(
            parse_url("redis+cluster://u:p@a:1,b:2").unwrap().0,
            Target::Cluster(vec!["redis://u:p@a:1".into(), "redis://u:p@b:2".into()])
        );
        for bad in [
            "redis://",
            "redis://a:1,b:2",
            "redis://h:1#",
            "redis://h:1#a{b}",
            "redis://h:1#a b",
            "redis+cluster://a:1/0",
            "redis+cluster://a,b:2",
            "redis+cluster://a:x",
            "redis+cluster://",
            "http://h:1",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        let e = parse_url("redis+cluster://u:secret@a:1/0").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn keys_share_a_hash_tag_that_ids_cannot_break() {
        let k = Keys { ns: "tsr".into() };
        assert_eq!(k.list(Table::Candidates, "u1", "1.0.0"), "tsr:c:{u1}:1.0.0");
        assert_eq!(k.list(Table::Similar, "tv", "1.0.0"), "tsr:s:{tv}:1.0.0");
        assert_eq!(k.meta("1.0.0"), "tsr:v:{1.0.0}:meta");
        assert_eq!(k.shards("1.0.0"), "tsr:v:{1.0.0}:shards");
        assert_eq!(k.active(), "tsr:active");
        assert_eq!(k.versions(), "tsr:versions");
        assert_eq!(k.list(Table::Candidates, "a{b}c", "1"), "tsr:c:{a%7Bb%7Dc}:1");
        assert_eq!(k.list(Table::Candidates, "", "1"), "tsr:c:{%}:1");
        // Escaping is injective: distinct ids, distinct keys, one brace pair each.
        let ids = ["", "%", "%25", "{", "%7B", "}", "a{", "a%7B", "}{", "x"];
        let keys: std::collections::HashSet<String> = ids.iter().map(|i| k.list(Table::Candidates, i, "1")).collect();
        assert_eq!(keys.len(), ids.len());
        for key in &keys {
            assert_eq!(key.matches('{').count(), 1, "{key}");
            assert_eq!(key.matches('}').count(), 1, "{key}");
        }
    }

    #[test]
    fn bad_urls_and_options_are_invalid_input_without_connecting() {
        for url in ["redis://h:1#{x}", "redis+cluster://a:1/3", "mongodb://x"] {
            let e = RedisStore::open(url).unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{url}: {e}");
        }
        let opts = RedisOptions {
            batch: 0,
            ..RedisOptions::default()
        };
        let e = RedisStore::open_with("redis://127.0.0.1:1", opts).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    }
}
