//! Where the canary's state and counters live, so that every replica agrees: [`SharedState`]
//! with three implementations.
//!
//! - [`RedisShared`] (`redis://`, `redis+cluster://` stores): counters are hashes updated with
//!   `HINCRBY` (atomic), the state a string key replaced by a compare-and-set Lua script; keys
//!   `NS:canary:NAME:…` in the store's namespace, expiring after 30 days.
//! - [`DirShared`] (`file:DIR` stores, and no store: the registry directory): under `DIR/canary/`,
//!   each replica writes its own counter file per key (temp file + rename), read back as the sum
//!   of every replica's file; the state is one JSON file replaced under an exclusive lock file
//!   (`create_new`; a lock older than 10 s is taken as stale) by temp file + rename.
//! - [`MemoryShared`]: in process only (tests, or one replica with nothing shared).

use crate::{Error, Result};
use redis::ConnectionLike;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Counters and a compare-and-set value shared by the replicas.
pub trait SharedState: Send + Sync {
    /// Adds `deltas` to the counters of `key` (atomically per counter).
    fn add(&self, key: &str, deltas: &[(String, i64)]) -> Result<()>;
    /// The counters of `key`, summed over every replica.
    fn totals(&self, key: &str) -> Result<BTreeMap<String, i64>>;
    /// The value of `key`.
    fn get(&self, key: &str) -> Result<Option<String>>;
    /// Replaces the value of `key` by `new` if it is still `expected` (`None`: absent); false when
    /// another replica changed it first.
    fn compare_and_set(&self, key: &str, expected: Option<&str>, new: &str) -> Result<bool>;
    /// Where it lives, for the status (no password).
    fn describe(&self) -> String;
}

/// In-process shared state (one replica).
#[derive(Debug, Default)]
pub struct MemoryShared {
    counters: Mutex<BTreeMap<String, BTreeMap<String, i64>>>,
    values: Mutex<BTreeMap<String, String>>,
}

fn poisoned() -> Error {
    Error::Internal("canary shared state lock poisoned".into())
}

impl SharedState for MemoryShared {
    fn add(&self, key: &str, deltas: &[(String, i64)]) -> Result<()> {
        let mut c = self.counters.lock().map_err(|_| poisoned())?;
        let h = c.entry(key.to_string()).or_default();
        for (f, d) in deltas {
            *h.entry(f.clone()).or_default() += d;
        }
        Ok(())
    }
    fn totals(&self, key: &str) -> Result<BTreeMap<String, i64>> {
        let c = self.counters.lock().map_err(|_| poisoned())?;
        Ok(c.get(key).cloned().unwrap_or_default())
    }
    fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.values.lock().map_err(|_| poisoned())?.get(key).cloned())
    }
    fn compare_and_set(&self, key: &str, expected: Option<&str>, new: &str) -> Result<bool> {
        let mut v = self.values.lock().map_err(|_| poisoned())?;
        if v.get(key).map(String::as_str) != expected {
            return Ok(false);
        }
        v.insert(key.to_string(), new.to_string());
        Ok(true)
    }
    fn describe(&self) -> String {
        "memory (this replica only)".into()
    }
}

/// Shared state in a directory several replicas can reach (see the module docs).
#[derive(Debug)]
pub struct DirShared {
    dir: PathBuf,
    replica: String,
    /// This replica's running totals per key (what its counter file holds).
    mine: Mutex<BTreeMap<String, BTreeMap<String, i64>>>,
}

/// Keys become file names: anything outside `[A-Za-z0-9._-]` is replaced by `_`.
fn file_safe(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("canary state: {what} {}: {e}", path.display()))
}

/// Writes `bytes` to `path` atomically ([`recsys_core::atomic::write_bytes_atomic`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    recsys_core::atomic::write_bytes_atomic(path, bytes).map_err(|e| io_err("write", path, e))
}

/// How old a lock file must be to be taken as left behind by a crashed replica.
const STALE_LOCK: Duration = Duration::from_secs(10);

impl DirShared {
    /// Shared state under `dir/canary/` (created).
    pub fn open(dir: &Path) -> Result<Self> {
        let dir = dir.join("canary");
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        // Unique across replicas and processes: the project's one unique-name helper.
        let replica = recsys_core::atomic::unique_token();
        Ok(DirShared {
            dir,
            replica,
            mine: Mutex::new(BTreeMap::new()),
        })
    }

    fn counters_dir(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.counts", file_safe(key)))
    }

    fn value_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.json", file_safe(key)))
    }
}

impl SharedState for DirShared {
    fn add(&self, key: &str, deltas: &[(String, i64)]) -> Result<()> {
        let mut mine = self.mine.lock().map_err(|_| poisoned())?;
        let h = mine.entry(key.to_string()).or_default();
        for (f, d) in deltas {
            *h.entry(f.clone()).or_default() += d;
        }
        let dir = self.counters_dir(key);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        let bytes = serde_json::to_vec(h).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&dir.join(format!("{}.json", self.replica)), &bytes)
    }

    fn totals(&self, key: &str) -> Result<BTreeMap<String, i64>> {
        let dir = self.counters_dir(key);
        let mut out = BTreeMap::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err("read", &dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| io_err("read", &dir, e))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue; // a temporary file being written
            }
            let text = match std::fs::read(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("read", &path, e)),
            };
            let h: BTreeMap<String, i64> = serde_json::from_slice(&text).map_err(|e| io_err("parse", &path, e))?;
            for (f, v) in h {
                *out.entry(f).or_default() += v;
            }
        }
        Ok(out)
    }

    fn get(&self, key: &str) -> Result<Option<String>> {
        let path = self.value_path(key);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path, e)),
        }
    }

    fn compare_and_set(&self, key: &str, expected: Option<&str>, new: &str) -> Result<bool> {
        let lock = self.dir.join(format!("{}.lock", file_safe(key)));
        let mut tries = 0;
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&lock)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > STALE_LOCK);
                    if stale {
                        let _ = std::fs::remove_file(&lock);
                        continue;
                    }
                    tries += 1;
                    if tries > 200 {
                        return Ok(false); // busy: the caller tries again at its next evaluation
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io_err("lock", &lock, e)),
            }
        }
        let result = (|| -> Result<bool> {
            if self.get(key)?.as_deref() != expected {
                return Ok(false);
            }
            write_atomic(&self.value_path(key), new.as_bytes())?;
            Ok(true)
        })();
        let _ = std::fs::remove_file(&lock);
        result
    }

    fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
    }
}

/// Shared state in the Redis store's server(s) and namespace (see the module docs).
pub struct RedisShared {
    url: String,
    ns: String,
    backend: RedisBackend,
    timeout: Duration,
    conn: Mutex<Option<Box<dyn ConnectionLike + Send>>>,
}

enum RedisBackend {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

impl std::fmt::Debug for RedisShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Seconds the canary keys live after their last update.
const KEY_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// Sets KEYS[1] to ARGV[2] when it holds ARGV[1] (ARGV[3] = "1": when it is absent).
const CAS_SCRIPT: &str = r#"
local cur = redis.call('GET', KEYS[1])
if ARGV[3] == '1' then
  if cur then return 0 end
elseif cur ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[4]))
return 1
"#;

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

impl RedisShared {
    /// Connects to the store URL's server(s) (`redis://HOST:PORT[/DB][#NS]`,
    /// `redis+cluster://HOST:PORT,...[#NS]`); keys go to namespace `NS` (default `tsr`, as the
    /// candidate store).
    pub fn open(url: &str, timeout: Duration) -> Result<Self> {
        let (base, ns) = url.split_once('#').unwrap_or((url, "tsr"));
        let bad = |e: redis::RedisError| Error::bad("store", redact(url), e.to_string());
        let backend = if let Some(rest) = base.strip_prefix("redis+cluster://") {
            let rest = rest.trim_end_matches('/');
            let (auth, hosts) = match rest.rsplit_once('@') {
                Some((a, h)) => (Some(a), h),
                None => (None, rest),
            };
            let nodes: Vec<String> = hosts
                .split(',')
                .map(|h| match auth {
                    Some(a) => format!("redis://{a}@{}", h.trim()),
                    None => format!("redis://{}", h.trim()),
                })
                .collect();
            RedisBackend::Cluster(
                redis::cluster::ClusterClient::builder(nodes)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()
                    .map_err(bad)?,
            )
        } else {
            RedisBackend::Single(redis::Client::open(base).map_err(bad)?)
        };
        Ok(RedisShared {
            url: url.to_string(),
            ns: ns.to_string(),
            backend,
            timeout,
            conn: Mutex::new(None),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:canary:{key}", self.ns)
    }

    fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Core(recsys_core::Error::Unavailable {
            service: "redis",
            message: format!("{} (canary {what}): {e}", redact(&self.url)),
        })
    }

    /// Runs `f` on the kept connection (made on first use, dropped after an error).
    fn with<T>(&self, what: &str, f: impl FnOnce(&mut dyn ConnectionLike) -> redis::RedisResult<T>) -> Result<T> {
        let mut slot = self.conn.lock().map_err(|_| poisoned())?;
        if slot.is_none() {
            let conn: Box<dyn ConnectionLike + Send> = match &self.backend {
                RedisBackend::Single(c) => {
                    let con = c
                        .get_connection_with_timeout(self.timeout)
                        .map_err(|e| self.unavailable("connect", e))?;
                    con.set_read_timeout(Some(self.timeout))
                        .map_err(|e| self.unavailable("connect", e))?;
                    con.set_write_timeout(Some(self.timeout))
                        .map_err(|e| self.unavailable("connect", e))?;
                    Box::new(con)
                }
                RedisBackend::Cluster(c) => Box::new(c.get_connection().map_err(|e| self.unavailable("connect", e))?),
            };
            *slot = Some(conn);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(Error::Internal("redis connection missing".into()));
        };
        match f(conn.as_mut()) {
            Ok(v) => Ok(v),
            Err(e) => {
                *slot = None;
                Err(self.unavailable(what, e))
            }
        }
    }
}

impl SharedState for RedisShared {
    fn add(&self, key: &str, deltas: &[(String, i64)]) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let k = self.key(key);
        self.with("add counts", |con| {
            for (f, d) in deltas {
                redis::cmd("HINCRBY").arg(&k).arg(f).arg(*d).exec(con)?;
            }
            redis::cmd("EXPIRE").arg(&k).arg(KEY_TTL_SECONDS).exec(con)
        })
    }

    fn totals(&self, key: &str) -> Result<BTreeMap<String, i64>> {
        let k = self.key(key);
        self.with("read counts", |con| redis::cmd("HGETALL").arg(&k).query(con))
    }

    fn get(&self, key: &str) -> Result<Option<String>> {
        let k = self.key(key);
        self.with("read state", |con| redis::cmd("GET").arg(&k).query(con))
    }

    fn compare_and_set(&self, key: &str, expected: Option<&str>, new: &str) -> Result<bool> {
        let k = self.key(key);
        let done: i64 = self.with("write state", |con| {
            redis::cmd("EVAL")
                .arg(CAS_SCRIPT)
                .arg(1)
                .arg(&k)
                .arg(expected.unwrap_or(""))
                .arg(new)
                .arg(if expected.is_none() { "1" } else { "0" })
                .arg(KEY_TTL_SECONDS)
                .query(con)
        })?;
        Ok(done == 1)
    }

    fn describe(&self) -> String {
        format!("redis {} (keys {}:canary:*)", redact(&self.url), self.ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(a: &dyn SharedState, b: &dyn SharedState) {
        a.add("k", &[("x".into(), 2), ("y".into(), 1)]).unwrap();
        b.add("k", &[("x".into(), 3)]).unwrap();
        a.add("k", &[("x".into(), 1)]).unwrap();
        let t = b.totals("k").unwrap();
        assert_eq!(t.get("x"), Some(&6));
        assert_eq!(t.get("y"), Some(&1));
        assert!(a.totals("other").unwrap().is_empty());
        assert_eq!(a.get("s").unwrap(), None);
        assert!(a.compare_and_set("s", None, "one").unwrap());
        assert!(!b.compare_and_set("s", None, "two").unwrap());
        assert!(!b.compare_and_set("s", Some("zero"), "two").unwrap());
        assert!(b.compare_and_set("s", Some("one"), "two").unwrap());
        assert_eq!(a.get("s").unwrap().as_deref(), Some("two"));
    }

    #[test]
    fn memory_counts_and_compare_and_set() {
        let m = MemoryShared::default();
        exercise(&m, &m);
    }

    #[test]
    fn two_directory_replicas_agree() {
        let dir = tempfile::tempdir().unwrap();
        let a = DirShared::open(dir.path()).unwrap();
        let b = DirShared::open(dir.path()).unwrap();
        exercise(&a, &b);
    }
}
