//! # recsys-core
//!
//! The library half of techshop-recs that every other part embeds: the canonical data model
//! ([`schema`]) and the feature engine ([`features`]) that computes the same user and item
//! features offline (training) and online (serving).
//!
//! ```
//! use recsys_core::features::{FeatureConfig, FeatureEngine, FeatureEvent, ItemCatalog};
//! use recsys_core::schema::{order_key, EventType, DAY_MS};
//!
//! // Two items in categories 0 and 1.
//! let catalog = ItemCatalog::new(vec![Some(0), Some(1)], vec![Some(9.5), Some(120.0)], vec![None, None]);
//! let mut engine = FeatureEngine::new(FeatureConfig::default(), catalog)?;
//! let t = 20_000 * DAY_MS;
//! for (item, kind, ts) in [(1, EventType::View, t), (1, EventType::Purchase, t + 60_000)] {
//!     engine.ingest(&FeatureEvent {
//!         user: 0, item, event_type: kind, timestamp_ms: ts,
//!         price: None, quantity: None, order_key: order_key(None, ts), rating: None,
//!     });
//! }
//! let user = engine.user_features(0, t + DAY_MS)?;
//! assert_eq!(user.total_purchases_30d, 1);
//! assert_eq!(user.avg_order_value, Some(120.0));
//! assert_eq!(user.favorite_categories, vec![1]);
//! # Ok::<(), recsys_core::Error>(())
//! ```

pub mod ab;
pub mod atomic;
pub mod click_model;
pub mod diversify;
pub mod error;
pub mod exploration;
pub mod exposure;
pub mod features;
mod linalg;
pub mod memory;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod rerank;
pub mod retrieval;
pub mod rules;
pub mod schema;
pub mod simd;
pub mod stats;
pub mod store;

pub use error::{Error, Result};
pub use store::Scored;
