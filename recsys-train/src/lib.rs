//! # recsys-train
//!
//! The offline half of techshop-recs, one module per pipeline stage, data flowing one way:
//!
//! | stage | module | command |
//! |---|---|---|
//! | synthetic source data | [`generate`] | `recsys-train generate` |
//! | import into the canonical dataset | [`import`] (readers in [`read`]) | `recsys-train import` |
//! | dataset layout, id dictionary, atomic commits | [`dataset`] | — |
//! | point-in-time features | [`features`] | `recsys-train features` |
//! | two-tower training, registration | [`train`] | `recsys-train train` |
//! | tuning on the validation split | [`tune`] | `recsys-train train --tune` |
//! | evaluation against baselines | [`evaluate`], [`baselines`] | `recsys-train evaluate` |
//! | validation gates (the registry itself: [`recsys_core::registry`]) | [`gates`] | `recsys-train registry` |
//! | batch candidates into a store | [`precompute`] | `recsys-train precompute` |
//! | off-policy evaluation of a policy's CTR from the serving logs | [`ope`] | `recsys-train ope` |
//!
//! ```no_run
//! use recsys_train::{generate, import, features, progress::Progress};
//! use std::path::Path;
//!
//! let raw = Path::new("out/raw");
//! generate::generate(raw, &generate::GenerateConfig::default(), Progress::quiet())?;
//! let map = "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity,device=device,page=page"
//!     .parse()?;
//! let mut opts = import::ImportOptions::new(vec![raw.join("events")], map);
//! opts.items = Some(raw.join("items.parquet"));
//! opts.users = Some(raw.join("users.parquet"));
//! opts.event_type = Some("event_type".parse()?);
//! import::import(Path::new("out/data"), &opts)?;
//! let ds = recsys_train::dataset::Dataset::open("out/data")?;
//! let as_of = features::parse_as_of("end", Some(&ds))?;
//! features::compute_features(Path::new("out/data"), as_of, Path::new("out/features"), Default::default(), Progress::quiet())?;
//! # Ok::<(), recsys_train::Error>(())
//! ```

pub mod abtest;
pub mod arrow;
pub mod baselines;
pub mod dataset;
pub mod error;
pub mod evaluate;
pub mod exposures;
pub mod features;
pub mod generate;
pub mod import;
pub mod ope;
pub mod precompute;
pub mod progress;
pub mod read;
/// The model-version format and registry (in `recsys-core`, which serving reads without this crate).
pub use recsys_core::registry;
pub mod gates;
pub mod reranker;
pub mod train;
pub mod tune;

pub use error::{Error, Result};
