//! `recsys-train features`: the ADR's offline features, point-in-time correct.
//!
//! The dataset's events strictly before `as_of` are folded, day by day in time order, through
//! [`recsys_core::features::FeatureEngine`] (the same engine the server feeds online), and every
//! user's and item's snapshot at `as_of` is written to `OUT/user_features.parquet` and
//! `OUT/item_features.parquet`, with `OUT/features.json` describing the run.

use crate::arrow;
use crate::dataset::{Dataset, ItemTable, write_parquet};
use crate::progress::Progress;
use crate::{Error, Result};
use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMillisecondBuilder, UInt8Array, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef, TimeUnit};
use rayon::prelude::*;
use recsys_core::atomic::write_atomic;
use recsys_core::features::{FeatureConfig, FeatureEngine, FeatureEvent, ItemCatalog};
use recsys_core::schema::{EventType, columns as col};
use recsys_core::store::FeatureSnapshot;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// Columns the feature fold reads from the event partitions.
pub const FEATURE_COLUMNS: &[&str] = &[
    col::USER_IDX,
    col::ITEM_IDX,
    col::EVENT_TYPE,
    col::TIMESTAMP,
    col::SESSION_ID,
    col::PRICE,
    col::QUANTITY,
    col::RATING,
];

/// The feature engine's catalogue for an item table, and the category names by category index
/// (sorted, so the same categories always get the same indices).
pub fn catalog_from(items: &ItemTable) -> (ItemCatalog, Vec<String>) {
    let (category, names) = dictionary_codes(&items.category);
    let catalog = ItemCatalog::new(category, items.price.clone(), items.avg_rating.clone());
    (catalog, names)
}

/// Dictionary-codes optional strings: the distinct values sorted (so the same values always get
/// the same codes), and each value's index among them (`None` stays `None`).
pub fn dictionary_codes(values: &[Option<String>]) -> (Vec<Option<u32>>, Vec<String>) {
    let mut names: Vec<String> = values.iter().flatten().cloned().collect();
    names.sort();
    names.dedup();
    let index: ahash::AHashMap<&str, u32> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
    let codes = values
        .iter()
        .map(|c| c.as_deref().and_then(|c| index.get(c).copied()))
        .collect();
    (codes, names)
}

/// Converts a batch with [`FEATURE_COLUMNS`] into feature events (in row order).
pub fn feature_events(batch: &RecordBatch) -> Result<Vec<FeatureEvent>> {
    let need = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::Internal(format!("feature scan without column `{name}`")))
    };
    let users = need(col::USER_IDX)?.as_primitive::<arrow::datatypes::UInt32Type>();
    let items = need(col::ITEM_IDX)?.as_primitive::<arrow::datatypes::UInt32Type>();
    let types = need(col::EVENT_TYPE)?
        .as_dictionary_opt::<Int8Type>()
        .ok_or_else(|| Error::Internal("event_type is not dictionary-encoded".into()))?;
    let type_values = types.values().as_string::<i32>();
    let mut code_of = Vec::with_capacity(type_values.len());
    for v in type_values.iter() {
        let v = v.unwrap_or("");
        code_of.push(EventType::parse(v).ok_or_else(|| Error::invalid_event_type(v))?);
    }
    let keys = types.keys();
    let ts = need(col::TIMESTAMP)?.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
    let session = need(col::SESSION_ID)?.as_string::<i32>();
    let price = need(col::PRICE)?.as_primitive::<arrow::datatypes::Float64Type>();
    let qty = need(col::QUANTITY)?.as_primitive::<arrow::datatypes::UInt32Type>();
    let rating = need(col::RATING)?.as_primitive::<arrow::datatypes::Float32Type>();
    let n = batch.num_rows();
    let events: Vec<FeatureEvent> = (0..n)
        .into_par_iter()
        .with_min_len(1 << 14)
        .map(|i| {
            FeatureEvent::new(
                users.value(i),
                items.value(i),
                code_of[keys.value(i) as usize],
                ts.value(i),
                price.is_valid(i).then(|| price.value(i)),
                qty.is_valid(i).then(|| qty.value(i)),
                session.is_valid(i).then(|| session.value(i)),
                rating.is_valid(i).then(|| rating.value(i)),
            )
        })
        .collect();
    Ok(events)
}

impl Error {
    fn invalid_event_type(v: &str) -> Self {
        Error::InvalidData {
            path: "events".into(),
            message: format!("unknown event type {v:?} in a partition"),
        }
    }
}

/// Folds the dataset's events strictly before `as_of` into a fresh engine. Partitions are
/// decoded on a second thread while the previous one is folded.
pub fn build_engine(
    ds: &Dataset,
    as_of: i64,
    cfg: FeatureConfig,
    progress: Progress,
) -> Result<(FeatureEngine, Vec<String>, u64)> {
    let (catalog, categories) = catalog_from(&ds.items);
    let mut engine = FeatureEngine::new(cfg, catalog)?;
    let todo: u64 = ds
        .manifest
        .partitions
        .values()
        .filter(|p| p.min_ts < as_of)
        .map(|p| p.rows)
        .sum();
    let bar = progress.bar(todo, "features");
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<FeatureEvent>>(1);
    let mut used = 0u64;
    let reader = std::thread::scope(|s| {
        let handle = s.spawn(move || {
            ds.scan_events(Some(as_of), Some(FEATURE_COLUMNS), |_, batch| {
                let events = feature_events(&batch)?;
                tx.send(events)
                    .map_err(|_| Error::Internal("feature fold stopped".into()))
            })
        });
        for events in rx {
            engine.ingest_all(&events);
            used += events.len() as u64;
            bar.inc(events.len() as u64);
        }
        handle
            .join()
            .map_err(|_| Error::Internal("partition reader panicked".into()))
    });
    reader??;
    bar.finish_and_clear();
    Ok((engine, categories, used))
}

/// The online feature snapshot of the whole dataset (every event folded in, as of one millisecond
/// after the newest): what pre-computation publishes into the store for serving, and what serving
/// warmed from a dataset directory starts from. The same fold as [`build_engine`], so serving and
/// `recsys-train features` agree.
pub fn feature_snapshot(ds: &Dataset, cfg: FeatureConfig, progress: Progress) -> Result<FeatureSnapshot> {
    let end = ds.manifest.partitions.values().map(|p| p.max_ts).max().unwrap_or(0) + 1;
    let (engine, categories, _) = build_engine(ds, end, cfg, progress)?;
    let (brand_codes, brands) = dictionary_codes(&ds.items.brand);
    // Stock is tracked when the catalogue has inventory figures; an item without one counts as in stock.
    let in_stock = ds
        .items
        .inventory
        .iter()
        .any(Option::is_some)
        .then(|| ds.items.inventory.iter().map(|v| v.is_none_or(|n| n > 0)).collect());
    Ok(FeatureSnapshot {
        as_of_ms: end,
        user_ids: ds.users.ids.ids().to_vec(),
        item_ids: ds.items.ids.ids().to_vec(),
        categories,
        brand_codes,
        brands,
        titles: ds.items.title.clone(),
        in_stock,
        user_age: ds.users.age_bucket.clone(),
        user_region: ds.users.region.clone(),
        engine,
    })
}

/// What `features` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct FeaturesReport {
    /// The cut-off (UTC ms): only events strictly before it were used.
    pub as_of_ms: i64,
    /// The cut-off as RFC 3339.
    pub as_of: String,
    /// Feature definitions.
    pub config: FeatureConfig,
    /// Users written.
    pub users: u64,
    /// Items written.
    pub items: u64,
    /// Events folded.
    pub events_used: u64,
    /// Category names by category index.
    pub categories: Vec<String>,
    /// Price-bucket upper bounds.
    pub price_bounds: Vec<f64>,
}

fn list_utf8(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        false,
    )
}

/// Schema of `user_features.parquet`.
pub fn user_features_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(col::USER_IDX, DataType::UInt32, false),
        Field::new(col::USER_ID, DataType::Utf8, false),
        Field::new("total_purchases_30d", DataType::UInt32, false),
        Field::new("avg_order_value", DataType::Float64, true),
        list_utf8("favorite_categories"),
        Field::new("browsing_velocity", DataType::Float64, false),
        list_utf8("recent_items"),
        list_utf8("recent_event_types"),
        Field::new(
            "recent_timestamps",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ))),
            false,
        ),
    ]))
}

/// Schema of `item_features.parquet`.
pub fn item_features_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(col::ITEM_IDX, DataType::UInt32, false),
        Field::new(col::ITEM_ID, DataType::Utf8, false),
        Field::new("popularity_score", DataType::Float64, false),
        Field::new("avg_rating", DataType::Float64, true),
        Field::new("price_bucket", DataType::UInt8, true),
        Field::new("trending_score_1h", DataType::Float64, false),
        Field::new(col::CATEGORY, DataType::Utf8, true),
    ]))
}

fn user_batch(ds: &Dataset, engine: &FeatureEngine, categories: &[String], as_of: i64) -> Result<RecordBatch> {
    let n = ds.users.len();
    let feats = (0..n as u32)
        .into_par_iter()
        .map(|u| engine.user_features(u, as_of))
        .collect::<recsys_core::Result<Vec<_>>>()?;
    let item_id = |i: u32| ds.items.ids.id(i).unwrap_or("");
    let mut fav = ListBuilder::new(StringBuilder::new());
    let mut recent = ListBuilder::new(StringBuilder::new());
    let mut recent_types = ListBuilder::new(StringBuilder::new());
    let mut recent_ts = ListBuilder::new(TimestampMillisecondBuilder::new().with_timezone("UTC"));
    for f in &feats {
        for &c in &f.favorite_categories {
            fav.values().append_value(&categories[c as usize]);
        }
        fav.append(true);
        for &(item, t, ts) in &f.recent {
            recent.values().append_value(item_id(item));
            recent_types.values().append_value(t.as_str());
            recent_ts.values().append_value(ts);
        }
        recent.append(true);
        recent_types.append(true);
        recent_ts.append(true);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(0..n as u32)),
        Arc::new(StringArray::from_iter_values(ds.users.ids.ids())),
        Arc::new(UInt32Array::from_iter_values(
            feats.iter().map(|f| f.total_purchases_30d),
        )),
        Arc::new(Float64Array::from(
            feats.iter().map(|f| f.avg_order_value).collect::<Vec<_>>(),
        )),
        Arc::new(fav.finish()),
        Arc::new(Float64Array::from_iter_values(
            feats.iter().map(|f| f.browsing_velocity),
        )),
        Arc::new(recent.finish()),
        Arc::new(recent_types.finish()),
        Arc::new(recent_ts.finish()),
    ];
    Ok(RecordBatch::try_new(user_features_schema(), cols)?)
}

fn item_batch(ds: &Dataset, engine: &FeatureEngine, categories: &[String], as_of: i64) -> Result<RecordBatch> {
    let n = ds.items.len();
    let feats = (0..n as u32)
        .into_par_iter()
        .map(|i| engine.item_features(i, as_of))
        .collect::<recsys_core::Result<Vec<_>>>()?;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(0..n as u32)),
        Arc::new(StringArray::from_iter_values(ds.items.ids.ids())),
        Arc::new(Float64Array::from_iter_values(feats.iter().map(|f| f.popularity_score))),
        Arc::new(Float64Array::from(
            feats.iter().map(|f| f.avg_rating).collect::<Vec<_>>(),
        )),
        Arc::new(UInt8Array::from(
            feats.iter().map(|f| f.price_bucket).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from_iter_values(
            feats.iter().map(|f| f.trending_score_1h),
        )),
        Arc::new(StringArray::from(
            feats
                .iter()
                .map(|f| f.category.map(|c| categories[c as usize].as_str()))
                .collect::<Vec<_>>(),
        )),
    ];
    Ok(RecordBatch::try_new(item_features_schema(), cols)?)
}

/// Computes the features of every user and item in the dataset at `data` as of `as_of` (UTC ms;
/// only events strictly before it count) and writes them to `out`.
pub fn compute_features(
    data: &Path,
    as_of: i64,
    out: &Path,
    cfg: FeatureConfig,
    progress: Progress,
) -> Result<FeaturesReport> {
    compute_features_of(&Dataset::open(data)?, as_of, out, cfg, progress)
}

/// [`compute_features`] on an already opened dataset.
pub fn compute_features_of(
    ds: &Dataset,
    as_of: i64,
    out: &Path,
    cfg: FeatureConfig,
    progress: Progress,
) -> Result<FeaturesReport> {
    // Temporary files of a killed earlier run into the same directory (an hour old or more).
    recsys_core::atomic::sweep_stale(out, recsys_core::atomic::STALE_AFTER)?;
    let (engine, categories, used) = build_engine(ds, as_of, cfg, progress)?;
    let users = user_batch(ds, &engine, &categories, as_of)?;
    let items = item_batch(ds, &engine, &categories, as_of)?;
    write_parquet(&out.join("user_features.parquet"), user_features_schema(), &[users])?;
    write_parquet(&out.join("item_features.parquet"), item_features_schema(), &[items])?;
    let report = FeaturesReport {
        as_of_ms: as_of,
        as_of: chrono::DateTime::from_timestamp_millis(as_of)
            .map(|d| d.to_rfc3339())
            .unwrap_or_default(),
        config: engine.config().clone(),
        users: ds.users.len() as u64,
        items: ds.items.len() as u64,
        events_used: used,
        categories,
        price_bounds: engine.catalog().price_bounds.clone(),
    };
    let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Internal(e.to_string()))?;
    let meta = out.join("features.json");
    write_atomic(&meta, |f| {
        use std::io::Write;
        f.write_all(text.as_bytes()).map_err(Error::io(&meta))
    })?;
    progress.summary(format!(
        "features as of {} from {} events: {} users, {} items",
        report.as_of, used, report.users, report.items
    ));
    Ok(report)
}

/// Parses a cut-off: integer milliseconds, `YYYY-MM-DD` (midnight UTC), RFC 3339, or `end`
/// (one millisecond after the dataset's last event, when `ds` is given).
pub fn parse_as_of(s: &str, ds: Option<&Dataset>) -> Result<i64> {
    if s == "end" {
        return ds
            .and_then(|d| d.manifest.partitions.values().map(|p| p.max_ts).max())
            .map(|t| t + 1)
            .ok_or_else(|| Error::arg("as-of", s, "the dataset has no events"));
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    crate::import::parse_time_text(s, &crate::import::TsFormat::Rfc3339)
        .ok_or_else(|| Error::arg("as-of", s, "expected milliseconds, YYYY-MM-DD, RFC 3339 or `end`"))
}
