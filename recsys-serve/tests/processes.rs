//! The `recsys-serve` binary as deployed: two replicas sharing one Redis, Redis killed mid-test,
//! `POST /admin/reload` under load with zero failed requests, and SIGTERM flushing the exposure
//! log.

mod common;

use common::{fixture, precompute_into};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(registry: &std::path::Path, store: &str, extra: &[&str]) -> Server {
    // A generous store budget: the test machine runs several servers, trainings and Redis at once,
    // and a read over the default 20 ms budget would (correctly) fall back to the model.
    let config = std::env::temp_dir().join(format!("recsys-serve-test-config-{}.json", std::process::id()));
    std::fs::write(&config, r#"{"store_timeout_ms": 2000}"#).unwrap();
    start_with(registry, store, &config, extra)
}

fn start_with(registry: &std::path::Path, store: &str, config: &std::path::Path, extra: &[&str]) -> Server {
    let f = fixture();
    // The admin token from a file (first line), as a mounted secret would give it.
    let token_file = config.with_extension("token");
    std::fs::write(&token_file, "tok\n# comment lines after the first are ignored\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_recsys-serve"))
        .args([
            "--registry",
            registry.to_str().unwrap(),
            "--store",
            store,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--data", f.data.to_str().unwrap()])
        .args(["--admin-token-file", token_file.to_str().unwrap()])
        .args(["--config", config.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, base }
}

fn get(url: &str) -> (u16, Value) {
    match ureq::get(url).timeout(Duration::from_secs(10)).call() {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn post(url: &str, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut req = ureq::post(url).timeout(Duration::from_secs(60));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    match req.send_json(body) {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn items(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {v}"))
        .iter()
        .map(|i| i["item_id"].as_str().unwrap().to_string())
        .collect()
}

fn redis_up(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "ping"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
        .unwrap_or(false)
}

#[test]
fn two_replicas_on_one_redis_share_the_session() {
    let f = fixture();
    let ns = format!("serve-test-{}", std::process::id());
    let url = format!("redis://127.0.0.1:6379#{ns}");
    precompute_into(&f.data, &f.registry, &url);
    let a = start(&f.registry, &url, &[]);
    let b = start(&f.registry, &url, &[]);
    let user = "U0000123";
    let q = |s: &Server| get(&format!("{}/api/v1/recommendations?user_id={user}&k=10", s.base));
    let (sa, va) = q(&a);
    let (sb, vb) = q(&b);
    assert_eq!((sa, sb), (200, 200));
    assert_eq!(
        (va["source"].as_str(), vb["source"].as_str()),
        (Some("store"), Some("store"))
    );
    assert_eq!(items(&va), items(&vb), "same store, same answer");
    // A purchase posted to replica A changes replica B's answer.
    let bought = items(&vb)[0].clone();
    let (s, _) = post(
        &format!("{}/api/v1/events", a.base),
        json!({"user_id": user, "item_id": bought, "event_type": "purchase"}),
        None,
    );
    assert_eq!(s, 202);
    let (_, vb2) = q(&b);
    assert!(
        !items(&vb2).contains(&bought),
        "replica B still recommends {bought}: {vb2}"
    );
    // A brand-new visitor's session on A makes B answer from the model, not the popular list.
    post(
        &format!("{}/api/v1/events", a.base),
        json!({"user_id": "visitor-77", "item_id": "P000004", "event_type": "view"}),
        None,
    );
    let (_, v) = get(&format!("{}/api/v1/recommendations?user_id=visitor-77", b.base));
    assert_eq!(v["source"], "model", "{v}");
}

#[test]
fn killing_redis_mid_test_falls_back_without_errors() {
    let f = fixture();
    let mut redis = private_redis();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    precompute_into(&f.data, &f.registry, &url);
    let server = start(&f.registry, &url, &[]);
    let (s, v) = get(&format!("{}/api/v1/recommendations?user_id=U0000005&k=10", server.base));
    assert_eq!((s, v["source"].as_str()), (200, Some("store")), "{v}");

    redis.child.kill().unwrap();
    redis.child.wait().unwrap();
    // Users not asked before (U0000005's answer may come from the response cache).
    for user in ["U0000006", "U0000009", "someone-new"] {
        let (s, v) = get(&format!("{}/api/v1/recommendations?user_id={user}&k=10", server.base));
        assert_eq!(s, 200, "{user}: {v}");
        assert_eq!(items(&v).len(), 10);
        assert_ne!(v["source"], "store");
    }
    let (s, v) = get(&format!("{}/api/v1/similar?item_id=P000002&k=5", server.base));
    assert_eq!((s, items(&v).len()), (200, 5), "{v}");
    let (s, _) = post(
        &format!("{}/api/v1/events", server.base),
        json!({"user_id": "U0000005", "item_id": "P000002", "event_type": "view"}),
        None,
    );
    assert_eq!(s, 202, "events still accepted");
    let metrics = ureq::get(&format!("{}/metrics", server.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("recsys_fallbacks_total{reason=\"store_skipped\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("recsys_fallbacks_total{reason=\"session_error\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("status=\"5xx\""), "{metrics}");
    let (s, v) = get(&format!("{}/readyz", server.base));
    assert_eq!((s, v["store_reachable"].as_bool()), (200, Some(false)), "{v}");
}

#[test]
fn reload_under_load_fails_no_request() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let registry = common::copy_registry(tmp.path());
    let server = Arc::new(start(&registry, &f.store, &[]));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let versions = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (server, stop, done, failed, versions) = (
                server.clone(),
                stop.clone(),
                done.clone(),
                failed.clone(),
                versions.clone(),
            );
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let user = format!("U{:07}", (t * 997 + i * 13) % 1500);
                    let url = format!("{}/api/v1/recommendations?user_id={user}&k=10", server.base);
                    match ureq::get(&url).timeout(Duration::from_secs(10)).call() {
                        Ok(r) => {
                            let v: Value = r.into_json().unwrap();
                            versions
                                .lock()
                                .unwrap()
                                .insert(v["model_version"].as_str().unwrap().to_string());
                        }
                        Err(e) => failed.lock().unwrap().push(format!("{url}: {e}")),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let reg = recsys_train::registry::Registry::open(&registry).unwrap();
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(300));
        let v = if round % 2 == 0 { &f.versions.0 } else { &f.versions.1 };
        reg.promote(v).unwrap();
        let (s, body) = post(&format!("{}/admin/reload", server.base), json!({}), Some("tok"));
        assert_eq!((s, body["model_version"].as_str()), (200, Some(v.as_str())), "{body}");
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} failed requests, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        done.load(Ordering::Relaxed) > 50,
        "load ran: {}",
        done.load(Ordering::Relaxed)
    );
    assert_eq!(
        versions.lock().unwrap().len(),
        2,
        "both versions answered during the test"
    );
}

#[test]
fn bad_command_lines_exit_2_naming_the_value() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-registry");
    let missing = missing.to_str().unwrap();
    for (args, needle) in [
        (vec!["--registry", missing, "--store", "file:/tmp/x"], missing),
        (
            vec!["--registry", f.registry.to_str().unwrap(), "--store", "ftp://x"],
            "ftp://x",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_recsys-serve"))
            .args(&args)
            .args(["--data", f.data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn sigterm_flushes_one_exposure_record_per_answered_request() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("exposures");
    let config = tmp.path().join("config.json");
    // The response cache on (the default), a queue far larger than the test's requests.
    std::fs::write(
        &config,
        json!({"store_timeout_ms": 2000, "exposure_log": log, "exposure_queue": 10_000}).to_string(),
    )
    .unwrap();
    let mut server = start_with(&f.registry, &f.store, &config, &[]);
    let n = 45;
    let mut ids = Vec::new();
    for i in 0..n {
        // 15 users, 3 times each: 30 of the answers are cache hits.
        let url = format!(
            "{}/api/v1/recommendations?user_id=U{:07}&k=5&device=app",
            server.base,
            i % 15
        );
        let (s, v) = get(&url);
        assert_eq!(s, 200, "{v}");
        ids.push(v["request_id"].as_str().unwrap().to_string());
    }
    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "recsys-serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let records = recsys_core::exposure::read_exposures(&log).unwrap();
    assert_eq!(records.len(), n, "N requests, N records on disk");
    let logged: Vec<String> = records.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(logged, ids);
    assert_eq!(records.iter().filter(|r| r.cached).count(), 30);
    assert!(records.iter().all(|r| r.context.device.as_deref() == Some("app")));
}

/// Starts a private `redis-server` on a free port; killed when the guard drops.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn private_redis() -> PrivateRedis {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis_up(port) {
        assert!(Instant::now() < deadline, "redis did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    PrivateRedis { child, port }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn a_hung_redis_costs_event_posts_and_requests_no_more_than_the_store_budget() {
    let f = fixture();
    let redis = private_redis();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    precompute_into(&f.data, &f.registry, &url);
    // The default store budget (20 ms), as deployed.
    let config = std::env::temp_dir().join(format!("recsys-serve-test-hung-{}.json", std::process::id()));
    std::fs::write(&config, "{}").unwrap();
    let server = start_with(&f.registry, &url, &config, &[]);
    let (s, v) = get(&format!("{}/api/v1/recommendations?user_id=U0000005&k=10", server.base));
    assert_eq!((s, v["source"].as_str()), (200, Some("store")), "{v}");
    // Hung, not dead: the process stops answering, its connections stay open.
    let stopped = Command::new("kill")
        .args(["-STOP", &redis.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let (mut posts, mut gets) = (Vec::new(), Vec::new());
    for i in 0..150 {
        let user = format!("U{:07}", 10 + i % 40);
        let t = Instant::now();
        let (s, v) = post(
            &format!("{}/api/v1/events", server.base),
            json!({"user_id": user, "item_id": "P000002", "event_type": "click"}),
            None,
        );
        posts.push(t.elapsed());
        assert_eq!(s, 202, "{v}");
        let t = Instant::now();
        let (s, v) = get(&format!("{}/api/v1/recommendations?user_id={user}&k=10", server.base));
        gets.push(t.elapsed());
        assert_eq!((s, items(&v).len()), (200, 10), "{v}");
    }
    let (worst_post, worst_get) = (*posts.iter().max().unwrap(), *gets.iter().max().unwrap());
    let (post_p50, get_p50) = (median(posts), median(gets));
    // Without the circuit breaker on the event path every post waited for the store's timeout.
    assert!(post_p50 < Duration::from_millis(15), "event post p50 {post_p50:?}");
    assert!(get_p50 < Duration::from_millis(15), "request p50 {get_p50:?}");
    assert!(
        worst_post < Duration::from_secs(1) && worst_get < Duration::from_secs(1),
        "{worst_post:?} {worst_get:?}"
    );
    let metrics = ureq::get(&format!("{}/metrics", server.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(!metrics.contains("status=\"5xx\""), "{metrics}");
    // Redis back: serving returns to it after the back-off.
    let _ = Command::new("kill")
        .args(["-CONT", &redis.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    // A user not asked before each time (an answer without the store stays in the response cache).
    for n in 60.. {
        let (_, v) = get(&format!("{}/api/v1/recommendations?user_id=U{n:07}&k=10", server.base));
        if v["source"] == "store" {
            break;
        }
        assert!(Instant::now() < deadline, "not back on Redis: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
