//! The Redis candidate store against real servers: the one on 127.0.0.1:6379 (`.ci/run` starts it),
//! throwaway `redis-server` processes for the failure tests, and a three-node Redis Cluster.
//!
//! Every test uses its own namespace and deletes its keys at the end (also on panic).

use recsys_core::Error;
use recsys_core::store::{
    CandidateStore, FinishReport, RedisOptions, RedisStore, Scored, Shard, WritePlan, open_store,
};
use redis::ConnectionLike;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SERVER: &str = "redis://127.0.0.1:6379";
/// The default grace period of replaced versions, in seconds.
const GRACE: i64 = 3600;

fn unique_ns(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "tsrtest-{what}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes the keys of a namespace on the single server when dropped.
struct Namespace {
    ns: String,
}

impl Namespace {
    fn new(what: &str) -> Self {
        Namespace { ns: unique_ns(what) }
    }
    fn url(&self) -> String {
        format!("{SERVER}#{}", self.ns)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let Ok(mut con) = redis::Client::open(SERVER).and_then(|c| c.get_connection()) else {
            return;
        };
        let pattern = format!("{}:*", self.ns);
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&keys).query(&mut con);
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
}

/// A plain connection to the server(s) of a store URL, for checks behind the store's back.
fn raw(url: &str) -> Box<dyn ConnectionLike> {
    let base = url.split('#').next().unwrap();
    if let Some(nodes) = base.strip_prefix("redis+cluster://") {
        let nodes: Vec<String> = nodes.split(',').map(|n| format!("redis://{n}")).collect();
        Box::new(
            redis::cluster::ClusterClient::new(nodes)
                .unwrap()
                .get_connection()
                .unwrap(),
        )
    } else {
        Box::new(redis::Client::open(base).unwrap().get_connection().unwrap())
    }
}

fn ns_of(url: &str) -> &str {
    url.split_once('#').map_or("tsr", |(_, ns)| ns)
}

fn ttl(con: &mut dyn ConnectionLike, key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query(con).unwrap()
}

fn items(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item-{i}")).collect()
}

fn list(user: usize, len: usize) -> Vec<Scored> {
    (0..len)
        .map(|k| Scored {
            item: ((user * 7 + k * 13) % 100) as u32,
            score: 1.0 - k as f32 / len as f32,
        })
        .collect()
}

/// Users of the tests: numbered ones plus ids that would break a hash tag if not escaped.
fn users(n: usize) -> Vec<String> {
    let mut out: Vec<String> = (0..n).map(|u| format!("user-{u}")).collect();
    out.extend(["", "{", "}", "a}b{c", "%7B", "%", "ü{x}"].map(String::from));
    out
}

fn plan(version: &str, index: u32, count: u32) -> WritePlan {
    let mut plan = WritePlan::new(version, items(100));
    plan.shard = Shard { index, count };
    plan.top_candidates = 20;
    plan.top_similar = 5;
    plan
}

fn write_shard(store: &dyn CandidateStore, version: &str, index: u32, count: u32, n_users: usize) -> FinishReport {
    try_write_shard(store, version, index, count, n_users).unwrap()
}

fn try_write_shard(
    store: &dyn CandidateStore,
    version: &str,
    index: u32,
    count: u32,
    n_users: usize,
) -> Result<FinishReport, Error> {
    let plan = plan(version, index, count);
    let mut w = store.writer(&plan)?;
    for (u, key) in users(n_users).iter().enumerate() {
        if plan.shard.owns(key) {
            w.put_candidates(key, &list(u, 1 + u % 20))?;
        }
    }
    for i in 0..100 {
        let key = format!("item-{i}");
        if plan.shard.owns(&key) {
            w.put_similar(&key, &list(i, 5))?;
        }
    }
    w.finish()
}

fn write_version(store: &dyn CandidateStore, version: &str, shards: u32, n_users: usize) -> Vec<FinishReport> {
    (0..shards)
        .map(|index| write_shard(store, version, index, shards, n_users))
        .collect()
}

fn assert_reads(store: &dyn CandidateStore, version: &str, n_users: usize) {
    let snap = store.open_version(version).unwrap();
    assert_eq!(snap.meta().version, version);
    for (u, key) in users(n_users).iter().enumerate() {
        let got = snap
            .candidates(key)
            .unwrap()
            .unwrap_or_else(|| panic!("{key:?} missing"));
        let want = list(u, 1 + u % 20);
        assert_eq!(
            got.iter().map(|s| s.item).collect::<Vec<_>>(),
            want.iter().map(|s| s.item).collect::<Vec<_>>(),
            "{key:?}"
        );
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a.score - b.score).abs() <= 1.0 / 510.0 + 1e-6,
                "{key:?}: {a:?} vs {b:?}"
            );
        }
    }
    for i in 0..100 {
        let got = snap.similar(&format!("item-{i}")).unwrap().unwrap();
        assert_eq!(
            got.iter().map(|s| s.item).collect::<Vec<_>>(),
            list(i, 5).iter().map(|s| s.item).collect::<Vec<_>>()
        );
    }
    assert!(snap.candidates(&format!("user-{n_users}")).unwrap().is_none());
    assert!(snap.candidates("{user-1}").unwrap().is_none());
    assert!(snap.similar("nope").unwrap().is_none());
}

fn assert_not_found<T>(r: Result<T, Error>, what: &str) {
    match r {
        Err(Error::NotFound { .. }) => {}
        Err(e) => panic!("{what}: expected NotFound, got {e}"),
        Ok(_) => panic!("{what}: expected NotFound, got Ok"),
    }
}

/// The round trip, activation and expiry contract; run against one server and against a cluster.
fn round_trip_and_activation(url: &str) {
    let store = open_store(url).unwrap();
    let ns = ns_of(url).to_string();
    let mut con = raw(url);
    let n = 300;
    assert!(store.active_version().unwrap().is_none());
    assert!(store.open_active().unwrap().is_none());
    assert!(store.versions().unwrap().is_empty());

    // Three shards: the version is activated by the last one only.
    let mut reports = Vec::new();
    for index in 0..3 {
        reports.push(write_shard(store.as_ref(), "1.0.0", index, 3, n));
        if index < 2 {
            assert!(store.active_version().unwrap().is_none(), "after shard {index}");
            assert!(store.versions().unwrap().is_empty(), "after shard {index}");
            assert_not_found(store.open_version("1.0.0"), "incomplete open");
            assert_not_found(store.activate("1.0.0"), "incomplete activate");
        }
    }
    assert_eq!(
        reports.iter().map(|r| r.activated).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(reports.iter().map(|r| r.users).sum::<u64>(), users(n).len() as u64);
    assert_eq!(reports.iter().map(|r| r.items).sum::<u64>(), 100);
    assert!(reports.iter().all(|r| r.bytes > 0));
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.0"));
    assert_eq!(store.versions().unwrap(), ["1.0.0"]);
    assert_reads(store.as_ref(), "1.0.0", n);
    assert_eq!(store.open_active().unwrap().unwrap().meta().version, "1.0.0");
    let old_key = format!("{ns}:c:{{user-1}}:1.0.0");
    let t = ttl(con.as_mut(), &old_key);
    assert!(t > GRACE, "a fresh key has the plan's TTL, got {t}");

    // Unknown and incomplete versions are refused; nothing changes.
    assert_not_found(store.activate("9.9.9"), "unknown activate");
    assert_not_found(store.open_version("9.9.9"), "unknown open");
    write_shard(store.as_ref(), "2.0.0", 0, 2, n);
    assert_not_found(store.activate("2.0.0"), "half-written activate");
    assert_not_found(store.open_version("2.0.0"), "half-written open");
    let e = store.activate("../x").unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.0"));
    assert_eq!(store.versions().unwrap(), ["1.0.0"]);

    // A writer dropped without finish: nothing activated, the old keys keep their TTL, its own
    // keys are gone.
    {
        let p = plan("3.0.0", 0, 1);
        let mut w = store.writer(&p).unwrap();
        for u in 0..n {
            w.put_candidates(&format!("user-{u}"), &list(u, 3)).unwrap();
        }
    }
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.0"));
    assert_eq!(store.versions().unwrap(), ["1.0.0"]);
    assert_not_found(store.open_version("3.0.0"), "dropped writer's version");
    let t = ttl(con.as_mut(), &old_key);
    assert!(t > GRACE, "the dropped writer restored the old key's TTL, got {t}");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!("{ns}:c:{{user-1}}:3.0.0"))
        .query(con.as_mut())
        .unwrap();
    assert_eq!(exists, 0, "the dropped writer's keys are deleted");
    assert_reads(store.as_ref(), "1.0.0", n);

    // A new version: activated by its last shard; the old keys now expire within the grace period.
    let old = store.open_active().unwrap().unwrap();
    let reports = write_version(store.as_ref(), "1.0.1", 2, n);
    assert_eq!(reports.iter().map(|r| r.activated).collect::<Vec<_>>(), [false, true]);
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.1"));
    assert_eq!(store.versions().unwrap(), ["1.0.0", "1.0.1"]);
    assert_reads(store.as_ref(), "1.0.1", n);
    for key in [
        old_key.clone(),
        format!("{ns}:s:{{item-3}}:1.0.0"),
        format!("{ns}:c:{{a%7Db%7Bc}}:1.0.0"),
        format!("{ns}:v:{{1.0.0}}:meta"),
    ] {
        let t = ttl(con.as_mut(), &key);
        assert!(t > 0 && t <= GRACE, "{key}: TTL {t}");
    }
    let t = ttl(con.as_mut(), &format!("{ns}:c:{{user-1}}:1.0.1"));
    assert!(t > GRACE, "new key TTL {t}");
    // The old snapshot keeps reading its own version during the grace period.
    assert_eq!(old.meta().version, "1.0.0");
    assert_eq!(
        old.candidates("user-7").unwrap().unwrap().len(),
        8,
        "user-7 has 1 + 7 % 20 candidates"
    );
    // A replaced version that is about to expire cannot be made active again.
    let e = store.activate("1.0.0").unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    store.activate("1.0.1").unwrap();

    // Rerunning a shard rewrites it cleanly and (the version being complete) activates it again.
    let again = write_shard(store.as_ref(), "1.0.1", 0, 2, n);
    assert!(again.activated);
    assert_eq!(again.users, reports[0].users);
    assert_reads(store.as_ref(), "1.0.1", n);
    assert_eq!(store.versions().unwrap(), ["1.0.0", "1.0.1"]);

    // A second plan for a version must match the first.
    let mut other = plan("1.0.1", 0, 3);
    other.shard = Shard { index: 0, count: 3 };
    let e = store.writer(&other).err().unwrap();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
}

/// A reader thread checks that every snapshot is one version while a writer publishes new ones.
fn no_mixed_versions(url: &str) {
    let store: Arc<dyn CandidateStore> = open_store(url).unwrap();
    let publish = |store: &dyn CandidateStore, k: u32| {
        for index in 0..2 {
            let mut plan = WritePlan::new(format!("1.0.{k}"), items(100));
            plan.shard = Shard { index, count: 2 };
            plan.top_candidates = 2;
            plan.top_similar = 1;
            let mut w = store.writer(&plan).unwrap();
            for u in 0..200 {
                let key = format!("user-{u}");
                if plan.shard.owns(&key) {
                    w.put_candidates(&key, &[Scored { item: k, score: 1.0 }, Scored { item: 99, score: 0.0 }])
                        .unwrap();
                }
            }
            w.finish().unwrap();
        }
    };
    publish(store.as_ref(), 0);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut checks = 0;
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let snap = store.open_active().unwrap().unwrap();
                let want: u32 = snap.meta().version.rsplit('.').next().unwrap().parse().unwrap();
                for u in 0..200 {
                    let got = snap.candidates(&format!("user-{u}")).unwrap().unwrap();
                    assert_eq!(got[0].item, want, "user-{u} in version {}", snap.meta().version);
                }
                seen.insert(want);
                checks += 1;
            }
            (checks, seen.len())
        })
    };
    for k in 1..12 {
        publish(store.as_ref(), k);
    }
    stop.store(true, Ordering::Relaxed);
    let (checks, _versions_seen) = reader.join().unwrap();
    assert!(checks > 0);
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.11"));
}

#[test]
fn round_trip_activation_and_expiry_on_one_server() {
    let ns = Namespace::new("rt");
    round_trip_and_activation(&ns.url());
}

/// `candidates_with_session` on the store's own session store (one pipeline, the two keys in one
/// slot of a cluster) gives exactly what the two calls give, for every user including ids that
/// would break a hash tag; with another session store it makes the two calls; a corrupt list fails
/// the list only, naming its key.
fn candidates_with_session_reads_both(url: &str) {
    use recsys_core::schema::EventType;
    use recsys_core::store::{MemorySessions, SessionEvent, SessionStore};
    let store = RedisStore::open(url).unwrap();
    let sessions = store.sessions(50, Duration::from_secs(60));
    let n = 50;
    write_version(&store, "1.0.0", 1, n);
    let snap = store.open_version("1.0.0").unwrap();
    let ev = |i: usize| SessionEvent {
        item_id: format!("item-{i}"),
        event_type: EventType::Click,
        ts: 1_000 + i as i64,
    };
    let all = users(n);
    for (u, key) in all.iter().enumerate().filter(|(u, _)| u % 2 == 0) {
        sessions
            .append(&[(key.as_str(), ev(u)), (key.as_str(), ev(u + 1))])
            .unwrap();
    }
    for key in all.iter().chain([&"user-999".to_string()]) {
        let (list, session) = snap.candidates_with_session(key, &sessions);
        assert_eq!(list.unwrap(), snap.candidates(key).unwrap(), "{key:?}");
        assert_eq!(session.unwrap(), sessions.recent(key).unwrap(), "{key:?}");
    }
    assert_eq!(sessions.recent("user-2").unwrap(), [ev(2), ev(3)]);
    assert!(snap.candidates_with_session("user-2", &sessions).0.unwrap().is_some());

    let memory = MemorySessions::new(10, 10);
    memory.append(&[("user-3", ev(5))]).unwrap();
    let (list, session) = snap.candidates_with_session("user-3", &memory);
    assert_eq!(list.unwrap(), snap.candidates("user-3").unwrap());
    assert_eq!(session.unwrap(), [ev(5)]);

    let key = format!("{}:c:{{user-4}}:1.0.0", ns_of(url));
    let mut con = raw(url);
    redis::cmd("SET")
        .arg(&key)
        .arg("xyz")
        .query::<()>(con.as_mut())
        .unwrap();
    let (list, session) = snap.candidates_with_session("user-4", &sessions);
    match list {
        Err(e @ Error::Corrupt { .. }) => assert!(e.to_string().contains(&key), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(session.unwrap(), [ev(4), ev(5)]);
}

#[test]
fn candidates_and_session_in_one_read_on_one_server() {
    let ns = Namespace::new("both");
    candidates_with_session_reads_both(&ns.url());
}

#[test]
fn a_reader_never_sees_a_mixed_version_while_a_writer_publishes() {
    let ns = Namespace::new("mix");
    no_mixed_versions(&ns.url());
}

#[test]
fn bad_writes_are_refused_with_the_key_named() {
    let ns = Namespace::new("bad");
    let store = RedisStore::open(&ns.url()).unwrap();
    let mut plan = WritePlan::new("1.0.0", items(10));
    plan.top_candidates = 3;
    let mut w = store.writer(&plan).unwrap();
    let e = w.put_candidates("u", &list(0, 4)).unwrap_err();
    assert!(e.to_string().contains("u:"), "{e}");
    let e = w.put_candidates("u", &[Scored { item: 10, score: 1.0 }]).unwrap_err();
    assert!(e.to_string().contains("outside the dictionary"), "{e}");
    let e = w
        .put_candidates("u", &[Scored { item: 1, score: 0.1 }, Scored { item: 2, score: 0.9 }])
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    w.put_candidates("u", &[Scored { item: 9, score: 1.0 }]).unwrap();
    let e = w.put_candidates("u", &[Scored { item: 9, score: 1.0 }]).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    // The same id may have a candidate list and a similar-items list.
    w.put_similar("u", &[Scored { item: 9, score: 1.0 }]).unwrap();
    drop(w);
    assert!(store.versions().unwrap().is_empty());
    assert!(store.open_active().unwrap().is_none());

    let mut sharded = WritePlan::new("1.0.0", items(10));
    sharded.shard = Shard { index: 0, count: 2 };
    let e = store.writer(&sharded).err().unwrap();
    assert!(
        e.to_string().contains("different"),
        "the meta of 1.0.0 says 1 shard: {e}"
    );
    sharded.version = "1.0.1".into();
    let mut w = store.writer(&sharded).unwrap();
    let foreign = (0..100)
        .map(|i| format!("k{i}"))
        .find(|k| !sharded.shard.owns(k))
        .unwrap();
    let e = w.put_candidates(&foreign, &[]).unwrap_err();
    assert!(e.to_string().contains("belongs to shard 1"), "{e}");
    let mut bad = WritePlan::new("a b", items(10));
    assert!(matches!(store.writer(&bad).err().unwrap(), Error::InvalidInput { .. }));
    bad.version = "1.0.2".into();
    bad.items.clear();
    assert!(matches!(store.writer(&bad).err().unwrap(), Error::InvalidInput { .. }));
}

#[test]
fn corrupt_values_are_refused_on_read() {
    let ns = Namespace::new("corrupt");
    let store = open_store(&ns.url()).unwrap();
    write_version(store.as_ref(), "1.0.0", 1, 10);
    let mut con = raw(&ns.url());
    let key = format!("{}:c:{{user-3}}:1.0.0", ns.ns);
    let good: Vec<u8> = redis::cmd("GET").arg(&key).query(con.as_mut()).unwrap();
    let snap = store.open_active().unwrap().unwrap();
    for bad in [
        good[..good.len() - 1].to_vec(),
        [good.clone(), vec![0]].concat(),
        vec![1],
    ] {
        let _: () = redis::cmd("SET").arg(&key).arg(bad).query(con.as_mut()).unwrap();
        let e = snap.candidates("user-3").unwrap_err();
        assert!(
            matches!(e, Error::Corrupt { .. }) && e.to_string().contains("user-3"),
            "{e}"
        );
    }
    // An item index outside the dictionary (100 items, 2-byte ids).
    let mut bad = good.clone();
    bad[10] = 0xff;
    let _: () = redis::cmd("SET").arg(&key).arg(bad).query(con.as_mut()).unwrap();
    assert!(matches!(snap.candidates("user-3").unwrap_err(), Error::Corrupt { .. }));
    let _: () = redis::cmd("SET")
        .arg(format!("{}:v:{{1.0.0}}:meta", ns.ns))
        .arg("{not json")
        .query(con.as_mut())
        .unwrap();
    assert!(matches!(
        store.open_version("1.0.0").err().unwrap(),
        Error::Corrupt { .. }
    ));
}

#[test]
fn an_unreachable_or_silent_server_is_unavailable() {
    for url in [
        "redis://127.0.0.1:1",
        "redis://127.0.0.1:1/0#x",
        "redis+cluster://127.0.0.1:1,127.0.0.1:2",
    ] {
        let e = open_store(url).err().unwrap();
        assert!(matches!(e, Error::Unavailable { service: "redis", .. }), "{url}: {e}");
        assert!(!e.is_user_error());
    }
    // A server that accepts connections and never answers: the I/O timeout ends the wait.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let opts = RedisOptions {
        io_timeout: Duration::from_millis(200),
        ..RedisOptions::default()
    };
    let e = RedisStore::open_with(&url, opts).unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
}

// ---- Throwaway servers ---------------------------------------------------------------------------

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_port(taken: &[u16]) -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 55000 && !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// `redis-server` processes killed when dropped (also when a test panics).
struct Servers {
    procs: Vec<(u16, Child)>,
    _dir: tempfile::TempDir,
}

/// A throwaway `redis-server` on `port`, its files in `dir`.
fn spawn_redis(port: u16, dir: &std::path::Path, cluster: bool, extra: &[&str]) -> Child {
    let mut c = Command::new("redis-server");
    c.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .args(["--daemonize", "no", "--dir"])
    .arg(dir);
    if cluster {
        c.args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(dir.join(format!("nodes-{port}.conf")));
    }
    c.args(extra);
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)")
}

fn redis_answers(port: u16) -> bool {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

impl Servers {
    fn start(count: usize, cluster: bool) -> Self {
        Self::start_with(count, cluster, &[])
    }

    /// `count` servers, each started with the `extra` arguments.
    fn start_with(count: usize, cluster: bool, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut procs = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..count {
            let port = free_port(&ports);
            ports.push(port);
            procs.push((port, spawn_redis(port, dir.path(), cluster, extra)));
        }
        let servers = Servers { procs, _dir: dir };
        for &port in &ports {
            wait_for(&format!("redis-server on port {port}"), || redis_answers(port));
        }
        servers
    }

    /// Kills server `index` (SIGKILL) and starts a new, empty one on the same port.
    fn restart(&mut self, index: usize) {
        let (port, child) = &mut self.procs[index];
        let _ = child.kill();
        let _ = child.wait();
        *child = spawn_redis(*port, self._dir.path(), false, &[]);
        let port = *port;
        wait_for(&format!("redis-server restarted on port {port}"), || {
            redis_answers(port)
        });
    }

    fn ports(&self) -> Vec<u16> {
        self.procs.iter().map(|(p, _)| *p).collect()
    }

    fn signal(&self, index: usize, signal: &str) {
        let pid = self.procs[index].1.id().to_string();
        let ok = Command::new("kill").args([signal, &pid]).status().unwrap().success();
        assert!(ok, "kill {signal} {pid}");
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, child) in &mut self.procs {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(30), "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_cluster() -> Servers {
    create_cluster(Servers::start(3, true), 0)
}

/// Joins `servers` into a cluster with `replicas` replicas per master and waits until it is up.
fn create_cluster(servers: Servers, replicas: usize) -> Servers {
    let nodes: Vec<String> = servers.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&nodes)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli must be installed");
    assert!(
        out.status.success(),
        "redis-cli --cluster create: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for port in servers.ports() {
        wait_for(&format!("cluster_state:ok on port {port}"), || {
            redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        });
    }
    servers
}

/// Reads users `0..n` of version 1.0.0 as [`write_version`] wrote it through `candidates`: each
/// answer must be the user's list, intact, or `Unavailable`, within 3 s. Returns how many were
/// read and how many were unavailable.
fn read_intact_or_unavailable(
    candidates: impl Fn(&str) -> Result<Option<Vec<Scored>>, Error>,
    n: usize,
) -> (usize, usize) {
    let (mut read, mut unavailable) = (0, 0);
    for (u, key) in users_named(n).iter().enumerate() {
        let started = Instant::now();
        match candidates(key) {
            Ok(Some(got)) => {
                let want: Vec<u32> = list(u, 1 + u % 20).iter().map(|s| s.item).collect();
                assert_eq!(got.iter().map(|s| s.item).collect::<Vec<_>>(), want, "{key}");
                read += 1;
            }
            Ok(None) => panic!("{key} missing from 1.0.0"),
            Err(Error::Unavailable { .. }) => unavailable += 1,
            Err(e) => panic!("{key}: {e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{key}: {:?}",
            started.elapsed()
        );
    }
    (read, unavailable)
}

/// Short timeouts, so that a dead node fails a call quickly, and small write batches.
fn quick_failing() -> RedisOptions {
    RedisOptions {
        connect_timeout: Duration::from_millis(300),
        io_timeout: Duration::from_millis(300),
        batch: 50,
        ..RedisOptions::default()
    }
}

fn cluster_url(servers: &Servers, ns: &str) -> String {
    let nodes: Vec<String> = servers.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
    format!("redis+cluster://{}#{ns}", nodes.join(","))
}

#[test]
fn round_trip_activation_and_expiry_on_a_cluster() {
    let servers = start_cluster();
    round_trip_and_activation(&cluster_url(&servers, "rt"));
    no_mixed_versions(&cluster_url(&servers, "mix"));
    candidates_with_session_reads_both(&cluster_url(&servers, "both"));
    // A user's keys of every version share one slot; the lists are spread over the nodes.
    let mut con = raw(&cluster_url(&servers, "rt"));
    let slot = |con: &mut dyn ConnectionLike, key: &str| -> i64 {
        redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(con).unwrap()
    };
    assert_eq!(
        slot(con.as_mut(), "rt:c:{user-1}:1.0.0"),
        slot(con.as_mut(), "rt:c:{user-1}:1.0.1")
    );
    for port in servers.ports() {
        let mut node = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        let keys: i64 = redis::cmd("DBSIZE").query(&mut node).unwrap();
        assert!(keys > 50, "port {port} holds {keys} keys");
    }
    drop(servers);
}

/// Redis restarted while the store's pool holds several idle connections (all broken now): the
/// first read fails, and the next one reconnects instead of trying the next broken connection,
/// so a server that is back costs one failed request, not one per pooled connection.
#[test]
fn after_a_restart_one_failed_read_empties_the_pool_of_broken_connections() {
    let servers = Servers::start(1, false);
    let port = servers.ports()[0];
    let url = format!("redis://127.0.0.1:{port}#restart");
    let store = Arc::new(RedisStore::open_with(&url, RedisOptions::default()).unwrap());
    // Eight threads reading at once leave several connections in the pool.
    let clients = || -> usize {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|c| c.get_connection())
            .and_then(|mut con| redis::cmd("CLIENT").arg("LIST").query::<String>(&mut con))
            .map(|list| list.lines().count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    // Connected clients: the pool's and this probe's own.
    while clients() < 4 {
        assert!(Instant::now() < deadline, "the pool never held several connections");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        store.active_version().unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    }
    // The same server again, on the same port: every pooled connection is broken.
    let mut servers = servers;
    servers.restart(0);
    let failures = (0..10)
        .map(|_| store.active_version())
        .take_while(Result::is_err)
        .count();
    assert!(failures <= 1, "{failures} reads failed on broken pooled connections");
    assert_eq!(store.active_version().unwrap(), None);
    drop(servers);
}

/// One master of a three-node cluster killed (SIGKILL) during a write and before reads: the writer
/// fails with `Unavailable` and its version is never active; every read answers within a bound,
/// either the user's list of the old version, intact, or `Unavailable` (the dead master's slots),
/// which serving turns into a counted fallback (never a 5xx).
#[test]
fn a_cluster_master_killed_mid_write_and_mid_read_fails_cleanly_and_activates_nothing() {
    let servers = start_cluster();
    let url = cluster_url(&servers, "masterkill");
    let store = RedisStore::open_with(&url, quick_failing()).unwrap();
    let n = 300;
    write_version(&store, "1.0.0", 1, n);
    let snap = store.open_version("1.0.0").unwrap();
    let mut w = store.writer(&plan("1.0.1", 0, 1)).unwrap();
    for u in 0..30 {
        w.put_candidates(&format!("user-{u}"), &list(u, 3)).unwrap();
    }
    servers.signal(1, "-KILL");
    let failed = (30..5000)
        .map(|u| w.put_candidates(&format!("user-{u}"), &list(u, 3)))
        .find_map(Result::err);
    let result = match failed {
        Some(e) => Err(e),
        None => w.finish().map(|_| ()),
    };
    assert!(matches!(result, Err(Error::Unavailable { .. })), "{result:?}");
    // Never active: the pointer reads 1.0.0, or not at all when its slot was on the dead master.
    match store.active_version() {
        Ok(v) => assert_eq!(v.as_deref(), Some("1.0.0")),
        Err(Error::Unavailable { .. }) => {}
        Err(e) => panic!("{e}"),
    }
    let (read, unavailable) = read_intact_or_unavailable(|key| snap.candidates(key), n);
    assert!(unavailable > 0, "the dead master's users cannot be read");
    eprintln!("a dead master: {read} users read, {unavailable} unavailable");
    drop(servers);
}

/// Three masters, each with a replica, and a quick failure detection (`cluster-node-timeout`
/// 1 s): one master killed (SIGKILL) while a version is being read. Its replica takes over, and
/// within seconds every user reads again, intact, from the same opened version, with no read
/// answering anything but the right list or `Unavailable` (serving's counted fallback); a new
/// version can then be written and activated.
#[test]
fn a_cluster_master_killed_fails_over_to_its_replica_and_every_read_comes_back_intact() {
    let servers = create_cluster(Servers::start_with(6, true, &["--cluster-node-timeout", "1000"]), 1);
    let url = cluster_url(&servers, "failover");
    let store = RedisStore::open_with(&url, quick_failing()).unwrap();
    let n = 300;
    // The precondition: version 1.0.0 written while every replica was attached (the writer waits
    // for them), every replica in sync, and no failover since the write began. A node starved of
    // CPU for a second on a busy machine is taken for dead and failed over; then the writer fails
    // or the cluster's epoch moved, and it is all done again.
    let mut tries = 0;
    let masters = loop {
        tries += 1;
        assert!(tries <= 5, "no quiet second for the precondition in {tries} tries");
        masters_with_replicas_in_sync(&servers);
        let epoch = cluster_epoch(&servers);
        if let Err(e) = try_write_shard(&store, "1.0.0", 0, 1, n) {
            assert!(matches!(e, Error::Unavailable { .. }), "write {tries}: {e}");
            eprintln!("write {tries} of 1.0.0 failed, written again: {e}");
            continue;
        }
        let masters = masters_with_replicas_in_sync(&servers);
        if cluster_epoch(&servers) == epoch && masters.len() == 3 {
            break masters;
        }
        eprintln!("a failover during try {tries}: written again");
    };
    let snap = store.open_version("1.0.0").unwrap();
    let victim = servers.ports().iter().position(|p| *p == masters[1]).unwrap();
    servers.signal(victim, "-KILL");
    let killed = Instant::now();
    let mut rounds = Vec::new();
    loop {
        let (_, unavailable) = read_intact_or_unavailable(|key| snap.candidates(key), n);
        rounds.push(unavailable);
        if unavailable == 0 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "reads did not come back after the failover: unavailable per round {rounds:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "a failover: every user read again {:?} after the kill (unavailable per round: {rounds:?})",
        killed.elapsed()
    );
    // The cluster takes writes again: a new version is written and activated.
    write_version(&store, "1.0.1", 1, n);
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.1"));
    assert_reads(&store, "1.0.1", n);
    drop(servers);
}

/// `INFO replication` of the server on `port`.
fn replication_info(port: u16) -> String {
    let mut con = raw(&format!("redis://127.0.0.1:{port}"));
    redis::cmd("INFO").arg("replication").query(con.as_mut()).unwrap()
}

/// A primary with one replica: a shard counts only once the replica acknowledged its writes
/// (`WAIT`). With the replica stopped (SIGSTOP) the writer fails with `Unavailable` after
/// `replica_timeout`, its version never becomes active and the active one reads whole; asking for
/// no acknowledgement (`replicas: Some(0)`) writes it anyway, and asking for more replicas than
/// there are fails.
#[test]
fn a_version_is_complete_only_once_the_replicas_acknowledged_it() {
    let servers = Servers::start(2, false);
    let (primary, replica) = (servers.ports()[0], servers.ports()[1]);
    let mut con = raw(&format!("redis://127.0.0.1:{replica}"));
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary)
        .query::<()>(con.as_mut())
        .unwrap();
    wait_for("the replica online", || {
        replication_info(primary).contains("state=online")
    });
    let url = format!("redis://127.0.0.1:{primary}#acks");
    let waiting = |replicas| RedisOptions {
        replicas,
        // Long enough for a replica on a busy machine.
        replica_timeout: Duration::from_secs(3),
        ..quick_failing()
    };
    let store = RedisStore::open_with(&url, waiting(None)).unwrap();
    let n = 100;
    write_version(&store, "1.0.0", 1, n);
    let on_replica = RedisStore::open_with(&format!("redis://127.0.0.1:{replica}#acks"), quick_failing()).unwrap();
    wait_for("1.0.0 active on the replica", || {
        on_replica.active_version().unwrap().as_deref() == Some("1.0.0")
    });
    assert_reads(&on_replica, "1.0.0", n);

    servers.signal(1, "-STOP");
    let started = Instant::now();
    let e = try_write_shard(&store, "1.0.1", 0, 1, n).unwrap_err();
    assert!(
        matches!(e, Error::Unavailable { .. }) && e.to_string().contains("0 of 1 replicas acknowledged"),
        "{e}"
    );
    assert!(started.elapsed() >= Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.0"));
    assert_not_found(store.open_version("1.0.1"), "1.0.1 without its shard");
    assert_reads(&store, "1.0.0", n);
    let mut con = raw(&url);
    assert!(
        ttl(con.as_mut(), "acks:c:{user-1}:1.0.0") > GRACE,
        "1.0.0 keeps its TTL"
    );

    let not_waiting = RedisStore::open_with(&url, waiting(Some(0))).unwrap();
    write_version(&not_waiting, "1.0.1", 1, n);
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.1"));

    servers.signal(1, "-CONT");
    let too_many = RedisStore::open_with(&url, waiting(Some(2))).unwrap();
    let e = try_write_shard(&too_many, "1.0.2", 0, 1, n).unwrap_err();
    assert!(e.to_string().contains("1 of 2 replicas acknowledged"), "{e}");
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.1"));
    drop(servers);
}

/// The cluster's current epoch, the highest any node reports: a failover raises it.
fn cluster_epoch(servers: &Servers) -> u64 {
    servers
        .ports()
        .into_iter()
        .filter_map(|p| {
            let mut con = redis::Client::open(format!("redis://127.0.0.1:{p}"))
                .ok()?
                .get_connection_with_timeout(Duration::from_millis(500))
                .ok()?;
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con).ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("cluster_current_epoch:"))?
                .trim()
                .parse()
                .ok()
        })
        .max()
        .unwrap()
}

/// Waits until every master's replica is online and has acknowledged all of its master's
/// replication stream; returns the masters' ports.
fn masters_with_replicas_in_sync(servers: &Servers) -> Vec<u16> {
    servers
        .ports()
        .into_iter()
        .filter(|&port| {
            if !replication_info(port).contains("role:master") {
                return false;
            }
            wait_for(&format!("the replica of 127.0.0.1:{port} in sync"), || {
                let text = replication_info(port);
                let field = |name: &str| -> Option<i64> {
                    let at = text.find(name)? + name.len();
                    text[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
                };
                text.contains("state=online") && field("master_repl_offset:") == field(",offset=")
            });
            true
        })
        .collect()
}

/// Tells a replica of the cluster to take over from its master (`CLUSTER FAILOVER`: nothing is
/// lost) and waits until both know it: the replica is a master, its master a replica.
fn fail_over(servers: &Servers) {
    let (replica, master) = servers
        .ports()
        .into_iter()
        .find_map(|p| {
            let info = replication_info(p);
            let master: u16 = info
                .lines()
                .find_map(|l| l.strip_prefix("master_port:"))?
                .trim()
                .parse()
                .ok()?;
            info.contains("master_link_status:up").then_some((p, master))
        })
        .unwrap();
    let mut con = raw(&format!("redis://127.0.0.1:{replica}"));
    // A manual failover not done within Redis's 5 s is abandoned: then it is asked for again.
    for _ in 0..5 {
        redis::cmd("CLUSTER").arg("FAILOVER").query::<()>(con.as_mut()).unwrap();
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(8) {
            if replication_info(replica).contains("role:master") {
                wait_for("the old master demoted", || {
                    replication_info(master).contains("role:slave")
                });
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("127.0.0.1:{replica} did not take over from its master");
}

/// A failover while a shard is written (here a replica told to take over, which loses nothing;
/// a dead master loses what its replica had not received, and the store cannot tell which keys),
/// after the writer's last write and before `finish`: `finish` sees that a primary's replication
/// id changed and fails with `Unavailable`. The version never becomes active, the old one reads
/// whole, and written again the new one is. (A write after the failover fails the writer too:
/// the moved slots answer MOVED.)
#[test]
fn a_failover_while_a_shard_is_written_fails_the_writer() {
    let servers = create_cluster(Servers::start(6, true), 1);
    // Every replica attached, so that the writers wait for it.
    masters_with_replicas_in_sync(&servers);
    let url = cluster_url(&servers, "midwrite");
    let store = RedisStore::open_with(&url, quick_failing()).unwrap();
    let n = 300;
    write_version(&store, "1.0.0", 1, n);
    // Not waiting for replicas (which would fail on its own after a failover): only the
    // replication ids tell. 100 users are 200 commands, four full batches of 50: everything is
    // written before the failover, nothing after.
    let no_wait = RedisStore::open_with(
        &url,
        RedisOptions {
            replicas: Some(0),
            ..quick_failing()
        },
    )
    .unwrap();
    let mut w = no_wait.writer(&plan("1.0.1", 0, 1)).unwrap();
    for u in 0..100 {
        w.put_candidates(&format!("user-{u}"), &list(u, 3)).unwrap();
    }
    fail_over(&servers);
    match w.finish() {
        Err(e @ Error::Unavailable { .. }) => assert!(
            e.to_string()
                .contains("the primaries changed while the shard was written"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    let active = || loop {
        // Right after a failover a read may find the cluster still settling.
        match store.active_version() {
            Err(Error::Unavailable { .. }) => std::thread::sleep(Duration::from_millis(100)),
            other => break other.unwrap(),
        }
    };
    assert_eq!(active().as_deref(), Some("1.0.0"));
    assert_reads(&store, "1.0.0", n);
    write_version(&store, "1.0.1", 1, n);
    assert_eq!(active().as_deref(), Some("1.0.1"));
    assert_reads(&store, "1.0.1", n);
    drop(servers);
}

#[test]
fn a_server_that_dies_mid_write_fails_the_writer_and_activates_nothing() {
    let servers = Servers::start(1, false);
    let url = format!("redis://127.0.0.1:{}#dies", servers.ports()[0]);
    let opts = RedisOptions {
        io_timeout: Duration::from_millis(300),
        batch: 50,
        ..RedisOptions::default()
    };
    let store = RedisStore::open_with(&url, opts.clone()).unwrap();
    write_version(&store, "1.0.0", 1, 100);

    // Frozen mid-write (SIGSTOP): the writer times out, and after it thaws the old version is
    // still the active, complete and readable one.
    let mut w = store.writer(&plan("1.0.1", 0, 1)).unwrap();
    for u in 0..30 {
        w.put_candidates(&format!("user-{u}"), &list(u, 3)).unwrap();
    }
    servers.signal(0, "-STOP");
    let err = (30..2000)
        .map(|u| w.put_candidates(&format!("user-{u}"), &list(u, 3)))
        .find_map(Result::err)
        .expect("writes to a frozen server fail");
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    drop(w);
    servers.signal(0, "-CONT");
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.0"));
    assert_eq!(store.versions().unwrap(), ["1.0.0"]);
    assert_not_found(store.open_version("1.0.1"), "frozen writer's version");
    assert_reads(&store, "1.0.0", 100);

    // Killed mid-write (SIGKILL): the writer fails at once, nothing was activated before.
    let mut w = store.writer(&plan("1.0.2", 0, 1)).unwrap();
    for u in 0..30 {
        w.put_candidates(&format!("user-{u}"), &list(u, 3)).unwrap();
    }
    assert_eq!(store.active_version().unwrap().as_deref(), Some("1.0.0"));
    servers.signal(0, "-KILL");
    let failed = (30..2000)
        .map(|u| w.put_candidates(&format!("user-{u}"), &list(u, 3)))
        .find_map(Result::err);
    let result = match failed {
        Some(e) => Err(e),
        None => w.finish().map(|_| ()),
    };
    match result {
        Err(Error::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let e = store.active_version().unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    let e = RedisStore::open_with(&url, opts).unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    drop(servers);
}

/// A feature snapshot of `users` users over the 100 items of [`items`] (big enough, at 60,000
/// users, to span several Redis chunks).
fn feature_snapshot(users: usize, as_of_ms: i64) -> recsys_core::store::FeatureSnapshot {
    use recsys_core::features::{FeatureConfig, FeatureEngine, FeatureEvent, ItemCatalog};
    use recsys_core::schema::EventType;
    let catalog = ItemCatalog::new(
        (0..100).map(|i| Some(i % 7)).collect(),
        (0..100).map(|i| Some(1.0 + f64::from(i))).collect(),
        vec![None; 100],
    );
    let mut engine = FeatureEngine::new(FeatureConfig::default(), catalog).unwrap();
    for u in 0..users as u32 {
        for k in 0..4u32 {
            let t = if k == 3 { EventType::Purchase } else { EventType::View };
            let ev = FeatureEvent::new(u, (u * 7 + k) % 100, t, 1_000 + i64::from(k), None, None, None, None);
            engine.ingest(&ev);
        }
    }
    recsys_core::store::FeatureSnapshot {
        as_of_ms,
        user_ids: users_named(users),
        item_ids: items(100),
        categories: (0..7).map(|c| format!("cat-{c}")).collect(),
        brand_codes: vec![None; 100],
        brands: Vec::new(),
        titles: (0..100).map(|i| Some(format!("Item {i} ∑"))).collect(),
        in_stock: None,
        user_age: vec![None; users],
        user_region: vec![Some("north".into()); users],
        engine,
    }
}

fn users_named(n: usize) -> Vec<String> {
    (0..n).map(|u| format!("user-{u}")).collect()
}

#[test]
fn a_version_carries_its_feature_snapshot_in_chunks_and_a_replaced_one_expires() {
    let ns = Namespace::new("feat");
    let url = ns.url();
    let store = open_store(&url).unwrap();
    let mut con = raw(&url);

    // Without a snapshot: None.
    write_version(store.as_ref(), "1.0.0", 1, 20);
    assert!(store.open_version("1.0.0").unwrap().features().unwrap().is_none());

    // A snapshot spanning several chunks, written twice: the reader gets the second, whole.
    let big = feature_snapshot(60_000, 5_000);
    let small = feature_snapshot(10, 6_000);
    let mut w = store.writer(&plan("2.0.0", 0, 1)).unwrap();
    let bytes = w.put_features(&big).unwrap();
    assert!(bytes > 4 << 20, "{bytes} bytes: the test means to span chunks");
    let header_key = format!("{}:v:{{2.0.0}}:feat", ns.ns);
    let first: String = redis::cmd("GET").arg(&header_key).query(con.as_mut()).unwrap();
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(first["chunks"].as_u64().unwrap() >= 2, "{first}");
    assert_eq!(
        store_features_of(&url, "2.0.0"),
        None,
        "an incomplete version is not readable"
    );
    w.put_features(&small).unwrap();
    w.put_candidates("user-1", &list(1, 3)).unwrap();
    assert!(w.finish().unwrap().activated);
    assert_eq!(store_features_of(&url, "2.0.0"), Some(small.clone()));
    // The first generation's chunks expire after the grace period.
    let old_chunk = format!("{}:v:{{2.0.0}}:feat:{}:0", ns.ns, first["token"].as_str().unwrap());
    let t = ttl(con.as_mut(), &old_chunk);
    assert!(t > 0 && t <= GRACE, "replaced chunk TTL {t}");

    // Version 3 replaces 2: version 2's snapshot keys get the grace TTL.
    let mut w = store.writer(&plan("3.0.0", 0, 1)).unwrap();
    w.put_features(&big).unwrap();
    assert!(w.finish().unwrap().activated);
    let t = ttl(con.as_mut(), &header_key);
    assert!(t > 0 && t <= GRACE, "replaced version's header TTL {t}");
    assert_eq!(store_features_of(&url, "3.0.0"), Some(big));

    // A damaged chunk is refused as corrupt.
    let header: String = redis::cmd("GET")
        .arg(format!("{}:v:{{3.0.0}}:feat", ns.ns))
        .query(con.as_mut())
        .unwrap();
    let header: serde_json::Value = serde_json::from_str(&header).unwrap();
    let chunk = format!("{}:v:{{3.0.0}}:feat:{}:1", ns.ns, header["token"].as_str().unwrap());
    let _: () = redis::cmd("SETRANGE")
        .arg(&chunk)
        .arg(10)
        .arg("xx")
        .query(con.as_mut())
        .unwrap();
    match store.open_version("3.0.0").unwrap().features() {
        Err(Error::Corrupt { .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// The feature snapshot of a store version, `None` when it is missing or not readable yet.
fn store_features_of(url: &str, version: &str) -> Option<recsys_core::store::FeatureSnapshot> {
    open_store(url).unwrap().open_version(version).ok()?.features().unwrap()
}
