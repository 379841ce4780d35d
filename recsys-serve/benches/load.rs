//! Load test of the serving layer (run by `benches/serve_load.sh`; not a Criterion bench).
//!
//! * `http`: an open-loop generator at constant arrival rates against a running `recsys-serve`.
//!   Request `i` is due at `start + i / rate` whether or not earlier ones finished, and its
//!   latency counts from that due time, so a stalled server shows up in the percentiles instead of
//!   slowing the generator down (no coordinated omission). By default a request that finds every
//!   connection busy opens a new one (as many independent clients would); `--connections N` caps
//!   them at N reused connections, as a proxy pooling its connections to the service does, and a
//!   request then waits for a free one (the wait counts in its latency; the 5 s limit too).
//! * `library`: `Recommender::recommend` called in process, one request at a time (no HTTP).
//!
//! Prints one JSON line per measured point.
//!
//! ```text
//! cargo bench -p recsys-serve --bench load -- http --url http://127.0.0.1:8080 --rates 1000,5000 --seconds 30 --users 500000
//! cargo bench -p recsys-serve --bench load -- library --registry R --data D --store file:S --requests 20000 --users 500000 [--order random|sequential] [--config FILE]
//! ```

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use recsys_serve::{RecQuery, Recommender, RecommenderOptions};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn args() -> (String, HashMap<String, String>) {
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    let mode = it.next().unwrap_or_else(|| {
        eprintln!("usage: load http|library --key value ...");
        std::process::exit(2)
    });
    let mut kv = HashMap::new();
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        kv.insert(k.trim_start_matches("--").to_string(), v);
    }
    (mode, kv)
}

fn get<T: std::str::FromStr>(kv: &HashMap<String, String>, k: &str, default: T) -> T {
    kv.get(k).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small xorshift generator: the user sequence is the same in every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// How one request of the `http` mode ended.
#[derive(Clone, Copy)]
enum Outcome {
    Ok,
    Shed,
    Failed,
}

fn http(kv: &HashMap<String, String>) {
    let url = kv.get("url").cloned().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let rates: Vec<u64> = kv
        .get("rates")
        .map(|r| r.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1000]);
    let seconds: f64 = get(kv, "seconds", 30.0);
    let users: u64 = get(kv, "users", 500_000);
    let label = kv.get("label").cloned().unwrap_or_default();
    let connections: usize = get(kv, "connections", 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(get(kv, "threads", 1))
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4096)
            .build_http();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // With `--connections N`: at most N requests in flight, so at most N connections.
        let pool = (connections > 0).then(|| std::sync::Arc::new(tokio::sync::Semaphore::new(connections)));
        for rate in rates {
            let n = (rate as f64 * seconds) as u64;
            // Per request: 2xx, shed (a 503 with Retry-After: the server's load shedding) or
            // failed (any other status, a refused connection, no answer in 5 s), and its latency.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Outcome, u64)>();
            let start = Instant::now() + Duration::from_millis(50);
            // How late the generator itself sends each request: when it falls behind, the figures
            // measure the generator, not the server.
            let mut late = Vec::with_capacity(n as usize);
            for i in 0..n {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                late.push(due.elapsed().as_micros() as u64);
                let uri: hyper::Uri = format!("{url}/api/v1/recommendations?user_id=U{:07}&k=20", rng.next() % users)
                    .parse()
                    .unwrap();
                let (client, tx, pool) = (client.clone(), tx.clone(), pool.clone());
                tokio::spawn(async move {
                    let res = tokio::time::timeout(Duration::from_secs(5), async {
                        let _permit = match &pool {
                            Some(p) => Some(p.acquire().await.ok()?),
                            None => None,
                        };
                        let resp = client.get(uri).await.ok()?;
                        let status = resp.status();
                        resp.into_body().collect().await.ok()?;
                        Some(status)
                    })
                    .await;
                    let outcome = match res {
                        Ok(Some(s)) if s.is_success() => Outcome::Ok,
                        Ok(Some(s)) if s == hyper::StatusCode::SERVICE_UNAVAILABLE => Outcome::Shed,
                        _ => Outcome::Failed,
                    };
                    let _ = tx.send((outcome, due.elapsed().as_micros() as u64));
                });
            }
            drop(tx);
            let mut lat = Vec::with_capacity(n as usize);
            let mut accepted = Vec::with_capacity(n as usize);
            let (mut errors, mut shed) = (0u64, 0u64);
            while let Some((outcome, us)) = rx.recv().await {
                match outcome {
                    Outcome::Ok => accepted.push(us),
                    Outcome::Shed => shed += 1,
                    Outcome::Failed => errors += 1,
                }
                lat.push(us);
            }
            let wall = start.elapsed().as_secs_f64();
            lat.sort_unstable();
            accepted.sort_unstable();
            late.sort_unstable();
            println!(
                "{}",
                serde_json::json!({
                    "mode": "http", "label": label, "rate": rate, "seconds": seconds, "requests": n,
                    "errors": errors, "shed": shed, "achieved_rps": n as f64 / wall,
                    "p50_ms": percentile(&lat, 0.50), "p99_ms": percentile(&lat, 0.99),
                    "p999_ms": percentile(&lat, 0.999), "max_ms": percentile(&lat, 1.0),
                    "accepted": accepted.len(), "accepted_p50_ms": percentile(&accepted, 0.50),
                    "accepted_p99_ms": percentile(&accepted, 0.99),
                    "sent_late_p99_ms": percentile(&late, 0.99), "connections": connections,
                })
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

fn library(kv: &HashMap<String, String>) {
    let mut opts = RecommenderOptions::new(kv.get("registry").expect("--registry"));
    opts.data = kv.get("data").map(Into::into);
    opts.store = kv.get("store").cloned();
    if let Some(path) = kv.get("config") {
        opts.config = recsys_serve::ServeConfig::load(std::path::Path::new(path)).unwrap_or_else(|e| {
            eprintln!("--config {path}: {e}");
            std::process::exit(2)
        });
    }
    // Every request is a distinct user: measure the pipeline, not the response cache.
    opts.config.cache.capacity = 0;
    let rec = Recommender::open(opts).unwrap();
    let users: u64 = get(kv, "users", 500_000);
    let n: usize = get(kv, "requests", 20_000);
    // `random` (default): seeded random users; `sequential`: U%07d of i % users, the order
    // benches/binding_overhead.sh gives the Python and Node sides.
    let sequential = match kv.get("order").map(String::as_str) {
        None | Some("random") => false,
        Some("sequential") => true,
        Some(other) => {
            eprintln!("--order must be random or sequential, not {other:?}");
            std::process::exit(2)
        }
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut user_of = |i: usize| {
        let u = if sequential {
            i as u64 % users
        } else {
            rng.next() % users
        };
        format!("U{u:07}")
    };
    let q = RecQuery::default();
    // Warm-up.
    for i in 0..200 {
        rec.recommend(&user_of(i), &q).unwrap();
    }
    let mut lat = Vec::with_capacity(n);
    // The calling thread's CPU time per request as well: wall time minus the time the guest's
    // scheduler gave to other threads. (In a VM without steal accounting, time the host takes the
    // vCPU away still counts as CPU time.)
    let mut cpu = Vec::with_capacity(n);
    let mut sources: HashMap<String, usize> = HashMap::new();
    for i in 0..n {
        let user = user_of(i);
        let c = thread_cpu_ns();
        let t = Instant::now();
        let r = rec.recommend(&user, &q).unwrap();
        lat.push(t.elapsed().as_nanos() as u64);
        cpu.push(thread_cpu_ns().saturating_sub(c));
        *sources.entry(r.source.to_string()).or_default() += 1;
    }
    lat.sort_unstable();
    cpu.sort_unstable();
    let us = |p: f64| percentile(&lat, p);
    let cpu_us = |p: f64| percentile(&cpu, p);
    println!(
        "{}",
        serde_json::json!({
            "mode": "library", "label": kv.get("label").cloned().unwrap_or_default(), "requests": n,
            "p50_us": us(0.5), "p99_us": us(0.99), "p999_us": us(0.999), "max_us": us(1.0),
            "cpu_p50_us": cpu_us(0.5), "cpu_p99_us": cpu_us(0.99), "cpu_p999_us": cpu_us(0.999),
            "sources": sources,
        })
    );
}

/// CPU time of the calling thread in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
#[allow(unsafe_code)] // one libc call; std has no per-thread CPU clock
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    // Logs (e.g. `RUST_LOG=recsys_serve=debug` for the background refresh's timings) on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let (mode, kv) = args();
    match mode.as_str() {
        "http" => http(&kv),
        "library" => library(&kv),
        other => {
            eprintln!("unknown mode {other:?}: expected http or library");
            std::process::exit(2)
        }
    }
}
