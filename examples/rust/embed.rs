//! A Rust service embedding techshop-recs directly (no HTTP hop): opens the registry's current model
//! and the candidate store, answers recommendations, applies a live event, and answers again.
//!
//! ```text
//! cargo run -p recsys-serve --example embed -- out/quickstart/registry file:out/quickstart/store U0000007
//! ```

use recsys_serve::online::EventIn;
use recsys_serve::{RecQuery, Recommender, RecommenderOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(registry), Some(store)) = (args.next(), args.next()) else {
        eprintln!("usage: embed REGISTRY STORE_URL [USER_ID]");
        std::process::exit(2);
    };
    let user = args.next().unwrap_or_else(|| "U0000007".to_string());

    let mut options = RecommenderOptions::new(registry);
    options.store = Some(store);
    let rec = Recommender::open(options)?;

    let query = RecQuery {
        k: Some(5),
        context: Some("home".into()),
        device: Some("mobile".into()),
        ..Default::default()
    };
    let before = rec.recommend(&user, &query)?;
    println!("{}", serde_json::to_string(&before)?);

    // The user buys the first recommendation: it leaves the next answer at once.
    let bought = before.items[0].item_id.clone();
    rec.ingest(&[EventIn {
        user_id: user.clone(),
        item_id: bought.clone(),
        event_type: "purchase".into(),
        timestamp: None,
        session_id: None,
        price: None,
        quantity: None,
        rating: None,
        // Attributes the purchase to the answer it came from (the exposure log records the id).
        request_id: Some(before.request_id.clone()),
    }])?;
    let after = rec.recommend(&user, &query)?;
    println!("{}", serde_json::to_string(&after)?);
    if after.items.iter().any(|i| i.item_id == bought) {
        return Err(format!("{bought} is still recommended after its purchase").into());
    }
    let similar = rec.similar(&bought, 3)?;
    println!("{}", serde_json::to_string(&similar)?);
    Ok(())
}
