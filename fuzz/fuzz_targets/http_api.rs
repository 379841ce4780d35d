//! The HTTP API in process (the router `recsys-serve` runs): every route's query string, path
//! and JSON body, the events API included. `data[0]` picks the method and whether the admin token
//! is sent; the bytes up to the first newline are the request target, the rest the body.
//! Contract: any request gets an answer and never a 500 (a panic in a handler is a counted 500).
#![no_main]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use recsys_serve::http::{AppState, router};
use recsys_serve::{Recommender, RecommenderOptions};
use std::sync::OnceLock;
use techshop_recs_fuzz::fixture;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";

fn app() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static APP: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    APP.get_or_init(|| {
        let f = fixture();
        let mut opts = RecommenderOptions::new(&f.registry);
        opts.store = Some(format!("file:{}", f.store_dir.display()));
        let rec = Recommender::open(opts).expect("open the recommender");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        (rt, router(AppState::new(rec, Some(TOKEN.to_string()))))
    })
}

fuzz_target!(|data: &[u8]| {
    techshop_recs_fuzz::only_uncaught_panics_crash();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (target, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(n) => (&rest[..n], &rest[n + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let method = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"][(pick % 6) as usize];
    let mut req = Request::builder().method(method).uri(target);
    if pick & 0x40 != 0 {
        req = req.header("content-type", "application/json");
    }
    if pick & 0x80 != 0 {
        req = req.header("authorization", format!("Bearer {TOKEN}"));
    }
    let Ok(req) = req.body(Body::from(body.to_vec())) else {
        return; // not a request a client could send (bad URI)
    };
    let (rt, app) = app();
    let (status, text) = rt.block_on(async {
        let resp = app.clone().oneshot(req).await.expect("the router is infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    });
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{method} {target:?}: {text}");
});
