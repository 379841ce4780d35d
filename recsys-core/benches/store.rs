//! Candidate stores at production scale: 500,000 users × 500 candidates out of 100,000 items, written
//! into the file store (temporary directory) and into Redis (127.0.0.1:6379, throwaway namespace,
//! deleted afterwards); then open time, lookup latency and memory.
//!
//! Targets (issue "Candidate store"): file store ≤ 1.2 GB on disk, opens in < 1 s, lookups ≤ 5 µs
//! median; Redis lookups ≤ 0.5 ms median on loopback.
//!
//! Run: `cargo bench -p recsys-core --bench store`. Scale down with `STORE_BENCH_USERS=50000`;
//! also `STORE_BENCH_CANDIDATES`, `STORE_BENCH_ITEMS`, `STORE_BENCH_LOOKUPS`, `STORE_BENCH_REDIS`
//! (a `redis://` URL; `none` skips Redis).

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use recsys_core::store::{CandidateStore, FileStore, RedisStore, Scored, Snapshot, WritePlan};
use std::path::Path;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The candidate list of `user`: random items, random scores sorted best first (deterministic).
fn candidates(user: usize, n: usize, items: usize, out: &mut Vec<Scored>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(user as u64);
    out.clear();
    let mut score = 1.0f32;
    for _ in 0..n {
        out.push(Scored {
            item: rng.random_range(0..items as u32),
            score,
        });
        score -= rng.random::<f32>() * 2.0 / n as f32;
    }
}

fn user_key(u: usize) -> String {
    format!("user-{u}")
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            total += if p.is_dir() {
                dir_size(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    total
}

/// Writes every user through `store`; returns the time taken and the bytes reported.
fn write_all(store: &dyn CandidateStore, users: usize, n: usize, items: usize) -> (Duration, u64) {
    let dict: Vec<String> = (0..items).map(|i| format!("item-{i}")).collect();
    let mut plan = WritePlan::new("1.0.0", dict);
    plan.top_candidates = n as u32;
    let start = Instant::now();
    let mut w = store.writer(&plan).expect("writer");
    let mut list = Vec::with_capacity(n);
    for u in 0..users {
        candidates(u, n, items, &mut list);
        w.put_candidates(&user_key(u), &list).expect("put");
        if u > 0 && u % 100_000 == 0 {
            eprintln!("  {u} users written ({:.1} s)", start.elapsed().as_secs_f64());
        }
    }
    let report = w.finish().expect("finish");
    assert!(report.activated);
    (start.elapsed(), report.bytes)
}

struct Latency {
    median: Duration,
    p99: Duration,
    /// The same lookups again: pages already mapped, connections warm.
    warm_median: Duration,
    warm_p99: Duration,
}

/// Times `lookups` random lookups one by one (keys prepared beforehand), checking every answer.
fn lookups(snap: &dyn Snapshot, users: usize, lookups: usize, n: usize) -> Latency {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    let picks: Vec<(usize, String)> = (0..lookups)
        .map(|_| {
            let u = rng.random_range(0..users);
            (u, user_key(u))
        })
        .collect();
    // Warm-up of 1000 lookups; the first timed pass still maps most pages (minor faults) for the
    // first time, the second pass over the same users shows the steady state of a long-running server.
    for (_, k) in picks.iter().take(1000) {
        snap.candidates(k).expect("lookup");
    }
    let mut expect = Vec::with_capacity(n);
    let items = snap.meta().items.len();
    let mut pass = || {
        let mut times = Vec::with_capacity(lookups);
        for (u, k) in &picks {
            let t = Instant::now();
            let got = snap.candidates(k).expect("lookup");
            times.push(t.elapsed());
            let got = got.expect("user present");
            candidates(*u, n, items, &mut expect);
            assert_eq!(got.len(), n);
            assert_eq!(got[n / 2].item, expect[n / 2].item);
        }
        times.sort_unstable();
        (times[times.len() / 2], times[times.len() * 99 / 100])
    };
    let (median, p99) = pass();
    let (warm_median, warm_p99) = pass();
    Latency {
        median,
        p99,
        warm_median,
        warm_p99,
    }
}

fn used_memory(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(con).expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}

fn delete_namespace(con: &mut redis::Connection, ns: &str) -> u64 {
    let mut cursor = 0u64;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{ns}:*"))
            .arg("COUNT")
            .arg(5000)
            .query(con)
            .expect("SCAN");
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK").arg(&keys).query(con).expect("UNLINK");
            deleted += n;
        }
        if next == 0 {
            return deleted;
        }
        cursor = next;
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let users = env_usize("STORE_BENCH_USERS", 500_000);
    let n = env_usize("STORE_BENCH_CANDIDATES", 500);
    let items = env_usize("STORE_BENCH_ITEMS", 100_000);
    let n_lookups = env_usize("STORE_BENCH_LOOKUPS", 100_000);
    let redis_base = std::env::var("STORE_BENCH_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    println!("store bench: {users} users × {n} candidates, {items} items, {n_lookups} lookups");

    let mut list = Vec::new();
    let t = Instant::now();
    for u in 0..users {
        candidates(u, n, items, &mut list);
    }
    let gen_time = t.elapsed();
    println!(
        "generating the lists alone: {} (included in the write times)",
        secs(gen_time)
    );

    let mut rows: Vec<(String, String, String)> = Vec::new();

    // File store.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = FileStore::open(dir.path()).expect("file store");
    println!("file store in {}", dir.path().display());
    let (file_write, file_bytes) = write_all(&file, users, n, items);
    let size = dir_size(dir.path());
    let t = Instant::now();
    let reopened = FileStore::open(dir.path()).expect("reopen");
    let snap = reopened.open_active().expect("open").expect("active");
    let open_time = t.elapsed();
    let file_lat = lookups(snap.as_ref(), users, n_lookups, n);
    println!(
        "file: write {}, {:.3} GB on disk ({} bytes reported, {:.0} B/user), open {:.1} ms, lookup median {} p99 {}",
        secs(file_write),
        size as f64 / 1e9,
        file_bytes,
        size as f64 / users as f64,
        open_time.as_secs_f64() * 1e3,
        us(file_lat.median),
        us(file_lat.p99)
    );
    rows.push(("file: write".into(), secs(file_write), "-".into()));
    rows.push((
        "file: size on disk".into(),
        format!("{:.3} GB ({:.0} B/user)", size as f64 / 1e9, size as f64 / users as f64),
        "≤ 1.2 GB".into(),
    ));
    rows.push((
        "file: open".into(),
        format!("{:.1} ms", open_time.as_secs_f64() * 1e3),
        "< 1 s".into(),
    ));
    rows.push(("file: lookup median".into(), us(file_lat.median), "≤ 5 µs".into()));
    rows.push(("file: lookup p99".into(), us(file_lat.p99), "-".into()));
    rows.push((
        "file: lookup again, median".into(),
        us(file_lat.warm_median),
        "-".into(),
    ));
    rows.push(("file: lookup again, p99".into(), us(file_lat.warm_p99), "-".into()));
    drop(snap);
    drop(dir);

    // Redis.
    if redis_base != "none" {
        let ns = format!("tsrbench-{}", std::process::id());
        let mut con = redis::Client::open(redis_base.as_str())
            .and_then(|c| c.get_connection())
            .expect("Redis (STORE_BENCH_REDIS, default redis://127.0.0.1:6379; `none` skips)");
        let store = RedisStore::open(&format!("{redis_base}#{ns}")).expect("redis store");
        let before = used_memory(&mut con);
        let (redis_write, redis_bytes) = write_all(&store, users, n, items);
        let after = used_memory(&mut con);
        let snap = store.open_active().expect("open").expect("active");
        let redis_lat = lookups(snap.as_ref(), users, n_lookups, n);
        let per_user = after.saturating_sub(before) as f64 / users as f64;
        println!(
            "redis: write {}, {} value+key bytes ({:.0} B/user), used_memory +{:.3} GB ({per_user:.0} B/user), \
             lookup median {} p99 {}",
            secs(redis_write),
            redis_bytes,
            redis_bytes as f64 / users as f64,
            after.saturating_sub(before) as f64 / 1e9,
            us(redis_lat.median),
            us(redis_lat.p99)
        );
        drop(snap);
        drop(store);
        let deleted = delete_namespace(&mut con, &ns);
        println!("redis: deleted {deleted} keys of namespace {ns}");
        rows.push(("redis: write".into(), secs(redis_write), "-".into()));
        rows.push((
            "redis: value+key bytes".into(),
            format!("{:.0} B/user", redis_bytes as f64 / users as f64),
            "-".into(),
        ));
        rows.push((
            "redis: used_memory growth".into(),
            format!("{per_user:.0} B/user"),
            "-".into(),
        ));
        rows.push(("redis: lookup median".into(), us(redis_lat.median), "≤ 500 µs".into()));
        rows.push(("redis: lookup p99".into(), us(redis_lat.p99), "-".into()));
        rows.push((
            "redis: lookup again, median".into(),
            us(redis_lat.warm_median),
            "-".into(),
        ));
        rows.push(("redis: lookup again, p99".into(), us(redis_lat.warm_p99), "-".into()));
    }

    println!();
    println!("{:<28} {:<28} target", "measure", "value");
    println!("{}", "-".repeat(70));
    for (a, b, c) in rows {
        println!("{a:<28} {b:<28} {c}");
    }
}
