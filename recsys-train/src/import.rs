//! `recsys-train import`: foreign event, item and user files into the canonical dataset.
//!
//! Every row is validated; a malformed row (missing id, unparseable timestamp, unknown event
//! type, negative or non-finite number) is never dropped silently: with [`OnError::Fail`] the import
//! stops at the first one naming file, row, column and value, with [`OnError::Skip`] it is skipped
//! and counted per reason. Nothing is committed until every input was read, so a failed or
//! interrupted import leaves the dataset as it was.

use crate::arrow;
use crate::dataset::{Dataset, PartitionWriter, event_type_array, events_schema};
use crate::progress::Progress;
use crate::read::{InputFormat, for_each_batch};
use crate::{Error, Result};
use arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt32Array,
};
use arrow::datatypes::{DataType, TimeUnit};
use recsys_core::schema::EventType;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// How timestamps in the input are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsFormat {
    /// RFC 3339 / ISO 8601 text (`2024-05-01T12:00:00Z`); also the default.
    Rfc3339,
    /// Seconds since the epoch (integer, float or text).
    Unix,
    /// Milliseconds since the epoch.
    UnixMs,
    /// A chrono `strftime` pattern (`%m/%d/%Y`); date-only patterns mean midnight UTC.
    Strftime(String),
}

impl FromStr for TsFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "rfc3339" | "iso8601" => TsFormat::Rfc3339,
            "unix" | "unix_s" => TsFormat::Unix,
            "unix_ms" => TsFormat::UnixMs,
            p if p.contains('%') => TsFormat::Strftime(p.to_string()),
            other => {
                return Err(Error::arg(
                    "ts-format",
                    other,
                    "expected rfc3339, unix, unix_ms or a strftime pattern such as %m/%d/%Y",
                ));
            }
        })
    }
}

/// What to do with a malformed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnError {
    /// Stop at the first malformed row, naming it; nothing is written.
    #[default]
    Fail,
    /// Skip malformed rows and report how many per reason.
    Skip,
}

/// Where the event type comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTypeSource {
    /// Every row has this type (e.g. `purchase` for a sales ledger).
    Const(EventType),
    /// The type is read from this column.
    Column(String),
}

impl FromStr for EventTypeSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match EventType::parse(s) {
            Some(t) => EventTypeSource::Const(t),
            None => EventTypeSource::Column(s.to_string()),
        })
    }
}

/// Input column names for each canonical field (`--map user=COL,item=COL,ts=COL,...`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnMap {
    /// User id column (required).
    pub user: String,
    /// Item id column (required).
    pub item: String,
    /// Timestamp column (required).
    pub ts: String,
    /// Event-type column (alternative to `--event-type COL`).
    pub event_type: Option<String>,
    /// Item category column (derives the item table when no `--items` file has it).
    pub category: Option<String>,
    /// Unit price column.
    pub price: Option<String>,
    /// Line total column; the unit price is `line_price / quantity`.
    pub line_price: Option<String>,
    /// Quantity column.
    pub quantity: Option<String>,
    /// Session id column.
    pub session: Option<String>,
    /// Explicit rating column.
    pub rating: Option<String>,
    /// Device column (context).
    pub device: Option<String>,
    /// Page column (context).
    pub page: Option<String>,
    /// User age-bucket column (derives the user table).
    pub age_bucket: Option<String>,
    /// User region column (derives the user table).
    pub region: Option<String>,
}

/// Keys `--map` accepts.
pub const MAP_KEYS: &[&str] = &[
    "user",
    "item",
    "ts",
    "event_type",
    "category",
    "price",
    "line_price",
    "quantity",
    "session",
    "rating",
    "device",
    "page",
    "age_bucket",
    "region",
];

impl FromStr for ColumnMap {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut m = ColumnMap::default();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| Error::arg("map", pair, "expected KEY=COLUMN"))?;
            let (k, v) = (k.trim(), v.trim().to_string());
            if v.is_empty() {
                return Err(Error::arg("map", pair, "empty column name"));
            }
            match k {
                "user" => m.user = v,
                "item" => m.item = v,
                "ts" | "timestamp" => m.ts = v,
                "event_type" | "type" => m.event_type = Some(v),
                "category" => m.category = Some(v),
                "price" => m.price = Some(v),
                "line_price" => m.line_price = Some(v),
                "quantity" => m.quantity = Some(v),
                "session" => m.session = Some(v),
                "rating" => m.rating = Some(v),
                "device" => m.device = Some(v),
                "page" => m.page = Some(v),
                "age_bucket" => m.age_bucket = Some(v),
                "region" => m.region = Some(v),
                other => {
                    return Err(Error::arg(
                        "map",
                        other,
                        format!("unknown key; expected one of {}", MAP_KEYS.join(", ")),
                    ));
                }
            }
        }
        for (k, v) in [("user", &m.user), ("item", &m.item), ("ts", &m.ts)] {
            if v.is_empty() {
                return Err(Error::arg("map", s, format!("`{k}=COLUMN` is required")));
            }
        }
        if m.price.is_some() && m.line_price.is_some() {
            return Err(Error::arg("map", s, "give either price or line_price, not both"));
        }
        Ok(m)
    }
}

/// Everything `import` needs besides the output directory.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Event files (or directories of them, read in name order).
    pub events: Vec<PathBuf>,
    /// Optional item catalogue file.
    pub items: Option<PathBuf>,
    /// Optional user file.
    pub users: Option<PathBuf>,
    /// Column mapping.
    pub map: ColumnMap,
    /// Timestamp format.
    pub ts_format: TsFormat,
    /// Event type constant or column; defaults to the map's `event_type`, else column `event_type`.
    pub event_type: Option<EventTypeSource>,
    /// Malformed-row policy.
    pub on_error: OnError,
    /// Force a format instead of detecting it from each file name.
    pub format: Option<InputFormat>,
    /// Progress reporting.
    pub progress: Progress,
}

impl ImportOptions {
    /// Options with defaults for everything but the events and the column map.
    pub fn new(events: Vec<PathBuf>, map: ColumnMap) -> Self {
        ImportOptions {
            events,
            items: None,
            users: None,
            map,
            ts_format: TsFormat::Rfc3339,
            event_type: None,
            on_error: OnError::Fail,
            format: None,
            progress: Progress::default(),
        }
    }
}

/// What an import did; printed as JSON by the CLI.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ImportReport {
    /// Event rows read from the inputs.
    pub rows_read: u64,
    /// Event rows written.
    pub rows_imported: u64,
    /// Skipped rows per reason (only with `--on-error skip`), events and tables together.
    pub skipped: BTreeMap<String, u64>,
    /// Dates whose partitions were written (replacing earlier ones of the same dates).
    pub partitions: Vec<String>,
    /// Users in the dataset after the import.
    pub users: u64,
    /// Items in the dataset after the import.
    pub items: u64,
    /// Events in the dataset after the import.
    pub events: u64,
}

/// Why a row was refused (the key of the skip counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
    MissingId,
    BadTimestamp,
    UnknownEventType,
    NegativePrice,
    NotFinite,
    BadNumber,
    BadQuantity,
}

impl Reason {
    fn key(self) -> &'static str {
        match self {
            Reason::MissingId => "missing_id",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::NegativePrice => "negative_price",
            Reason::NotFinite => "not_finite",
            Reason::BadNumber => "bad_number",
            Reason::BadQuantity => "bad_quantity",
        }
    }
    fn text(self) -> &'static str {
        match self {
            Reason::MissingId => "missing id",
            Reason::BadTimestamp => "unparseable timestamp",
            Reason::UnknownEventType => "unknown event type (expected view, click, add_to_cart or purchase)",
            Reason::NegativePrice => "negative price",
            Reason::NotFinite => "not a finite number",
            Reason::BadNumber => "not a number",
            Reason::BadQuantity => "quantity must be a positive integer",
        }
    }
}

#[derive(Debug)]
struct RowError {
    row: usize,
    column: String,
    value: String,
    reason: Reason,
}

/// Collects the first error per row and the skip policy.
struct Validator<'a> {
    file: &'a Path,
    first_row: u64,
    bad: Vec<bool>,
    errors: Vec<RowError>,
}

impl<'a> Validator<'a> {
    fn new(file: &'a Path, first_row: u64, rows: usize) -> Self {
        Validator {
            file,
            first_row,
            bad: vec![false; rows],
            errors: Vec::new(),
        }
    }

    fn flag(&mut self, row: usize, column: &str, value: impl ToString, reason: Reason) {
        if !self.bad[row] {
            self.bad[row] = true;
            self.errors.push(RowError {
                row,
                column: column.to_string(),
                value: value.to_string(),
                reason,
            });
        }
    }

    /// In fail mode: the earliest error as [`Error::BadRow`]; in skip mode: counts them.
    fn settle(self, on_error: OnError, skipped: &mut BTreeMap<String, u64>) -> Result<Vec<bool>> {
        if self.errors.is_empty() {
            return Ok(self.bad);
        }
        match on_error {
            OnError::Fail => {
                let e = self.errors.into_iter().min_by_key(|e| e.row).expect("non-empty");
                Err(Error::BadRow {
                    file: self.file.display().to_string(),
                    row: self.first_row + e.row as u64,
                    column: e.column,
                    value: e.value,
                    reason: e.reason.text().to_string(),
                })
            }
            OnError::Skip => {
                for e in &self.errors {
                    *skipped.entry(e.reason.key().to_string()).or_default() += 1;
                }
                Ok(self.bad)
            }
        }
    }
}

fn get_column<'b>(file: &Path, batch: &'b RecordBatch, name: &str, what: &str) -> Result<&'b ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        let have: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        Error::arg(
            what,
            name,
            format!("{} has no such column (columns: {})", file.display(), have.join(", ")),
        )
    })
}

fn as_strings(a: &ArrayRef) -> Result<StringArray> {
    let c = arrow::compute::cast(a, &DataType::Utf8)?;
    Ok(c.as_string::<i32>().clone())
}

/// Parses a time column into UTC milliseconds, flagging rows it cannot read.
fn parse_times(
    a: &ArrayRef,
    fmt: &TsFormat,
    column: &str,
    v: &mut Validator,
    required: bool,
) -> Result<Vec<Option<i64>>> {
    let n = a.len();
    let mut out = vec![None; n];
    match a.data_type() {
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
            let c = arrow::compute::cast(a, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            let c = arrow::compute::cast(&c, &DataType::Int64)?;
            for (i, x) in c.as_primitive::<arrow::datatypes::Int64Type>().iter().enumerate() {
                out[i] = x;
            }
        }
        t if t.is_numeric() => {
            let scale = match fmt {
                TsFormat::Unix => 1000.0,
                TsFormat::UnixMs => 1.0,
                _ => {
                    return Err(Error::arg(
                        "ts-format",
                        format!("{fmt:?}"),
                        format!("column `{column}` is numeric ({t}); pass --ts-format unix or unix_ms"),
                    ));
                }
            };
            let c = arrow::compute::cast(a, &DataType::Float64)?;
            for (i, x) in c.as_primitive::<arrow::datatypes::Float64Type>().iter().enumerate() {
                out[i] = x.filter(|x| x.is_finite()).map(|x| (x * scale).round() as i64);
                if x.is_some() && out[i].is_none() {
                    v.flag(i, column, x.unwrap_or(f64::NAN), Reason::BadTimestamp);
                }
            }
        }
        _ => {
            let s = as_strings(a)?;
            for (i, x) in s.iter().enumerate() {
                let Some(x) = x.map(str::trim).filter(|x| !x.is_empty()) else {
                    continue;
                };
                out[i] = parse_time_text(x, fmt);
                if out[i].is_none() {
                    v.flag(i, column, x, Reason::BadTimestamp);
                }
            }
        }
    }
    if required {
        for (i, t) in out.iter().enumerate() {
            if t.is_none() && !v.bad[i] {
                v.flag(i, column, "", Reason::BadTimestamp);
            }
        }
    }
    Ok(out)
}

/// Parses one timestamp text in a format; `None` when it does not match.
pub fn parse_time_text(x: &str, fmt: &TsFormat) -> Option<i64> {
    match fmt {
        TsFormat::Rfc3339 => chrono::DateTime::parse_from_rfc3339(x)
            .map(|d| d.timestamp_millis())
            .ok()
            .or_else(|| {
                chrono::NaiveDateTime::parse_from_str(x, "%Y-%m-%d %H:%M:%S%.f")
                    .ok()
                    .map(|d| d.and_utc().timestamp_millis())
            })
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(x, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|d| d.and_utc().timestamp_millis())
            }),
        TsFormat::Unix => x
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(|v| (v * 1000.0).round() as i64),
        TsFormat::UnixMs => x.parse::<i64>().ok().or_else(|| {
            x.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(|v| v.round() as i64)
        }),
        TsFormat::Strftime(p) => chrono::DateTime::parse_from_str(x, p)
            .map(|d| d.timestamp_millis())
            .ok()
            .or_else(|| {
                chrono::NaiveDateTime::parse_from_str(x, p)
                    .ok()
                    .map(|d| d.and_utc().timestamp_millis())
            })
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(x, p)
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|d| d.and_utc().timestamp_millis())
            }),
    }
}

/// Parses a numeric column, flagging non-numbers, non-finite values and (when `non_negative`)
/// negative values.
fn parse_numbers(a: &ArrayRef, column: &str, v: &mut Validator, non_negative: bool) -> Result<Vec<Option<f64>>> {
    let n = a.len();
    let mut out = vec![None; n];
    // The input's own text of each value, for error messages.
    let text = as_strings(a)?;
    if a.data_type().is_numeric() {
        let c = arrow::compute::cast(a, &DataType::Float64)?;
        for (i, x) in c.as_primitive::<arrow::datatypes::Float64Type>().iter().enumerate() {
            out[i] = x;
        }
    } else {
        for (i, x) in text.iter().enumerate() {
            let Some(x) = x.map(str::trim).filter(|x| !x.is_empty()) else {
                continue;
            };
            match x.parse::<f64>() {
                Ok(p) => out[i] = Some(p),
                Err(_) => v.flag(i, column, x, Reason::BadNumber),
            }
        }
    }
    for (i, x) in out.iter_mut().enumerate() {
        if let Some(p) = *x {
            let original = || {
                if text.is_valid(i) {
                    text.value(i).to_string()
                } else {
                    String::new()
                }
            };
            if !p.is_finite() {
                v.flag(i, column, original(), Reason::NotFinite);
                *x = None;
            } else if non_negative && p < 0.0 {
                v.flag(i, column, original(), Reason::NegativePrice);
                *x = None;
            }
        }
    }
    Ok(out)
}

fn optional_strings(a: Option<&ArrayRef>) -> Result<Option<StringArray>> {
    a.map(|a| {
        let s = as_strings(a)?;
        // Empty strings mean "absent".
        Ok(s.iter()
            .map(|x| x.map(str::trim).filter(|x| !x.is_empty()))
            .collect::<StringArray>())
    })
    .transpose()
}

/// Checks ids: null, empty or whitespace-only ids are missing.
fn check_ids(s: &StringArray, column: &str, v: &mut Validator) {
    for i in 0..s.len() {
        if s.is_null(i) || s.value(i).trim().is_empty() {
            v.flag(i, column, if s.is_null(i) { "" } else { s.value(i) }, Reason::MissingId);
        }
    }
}

struct EventColumns<'m> {
    map: &'m ColumnMap,
    event_type: EventTypeSource,
}

impl EventColumns<'_> {
    /// Converts one input batch into a canonical events batch, interning ids into `ds`.
    fn convert(
        &self,
        ds: &mut Dataset,
        file: &Path,
        batch: &RecordBatch,
        first_row: u64,
        opts: &ImportOptions,
        skipped: &mut BTreeMap<String, u64>,
    ) -> Result<RecordBatch> {
        let m = self.map;
        let n = batch.num_rows();
        let mut v = Validator::new(file, first_row, n);
        let user = as_strings(get_column(file, batch, &m.user, "map.user")?)?;
        let item = as_strings(get_column(file, batch, &m.item, "map.item")?)?;
        check_ids(&user, &m.user, &mut v);
        check_ids(&item, &m.item, &mut v);
        let ts = parse_times(
            get_column(file, batch, &m.ts, "map.ts")?,
            &opts.ts_format,
            &m.ts,
            &mut v,
            true,
        )?;
        let mut types = vec![0i8; n];
        match &self.event_type {
            EventTypeSource::Const(t) => types.fill(*t as i8),
            EventTypeSource::Column(c) => {
                let s = as_strings(get_column(file, batch, c, "event-type")?)?;
                let mut last: Option<(&str, i8)> = None;
                for (i, x) in s.iter().enumerate() {
                    let x = x.unwrap_or("");
                    match last {
                        Some((p, code)) if p == x => types[i] = code,
                        _ => match EventType::parse(x) {
                            Some(t) => {
                                types[i] = t as i8;
                                last = Some((x, t as i8));
                            }
                            None => v.flag(i, c, x, Reason::UnknownEventType),
                        },
                    }
                }
            }
        }
        let opt_col = |name: &Option<String>, what: &str| -> Result<Option<&ArrayRef>> {
            name.as_ref().map(|c| get_column(file, batch, c, what)).transpose()
        };
        let quantity = match opt_col(&m.quantity, "map.quantity")? {
            Some(a) => {
                let q = parse_numbers(a, m.quantity.as_deref().unwrap_or_default(), &mut v, false)?;
                let mut out = Vec::with_capacity(n);
                for (i, x) in q.into_iter().enumerate() {
                    out.push(match x {
                        Some(x) if x >= 1.0 && x.fract() == 0.0 && x <= u32::MAX as f64 => Some(x as u32),
                        Some(x) => {
                            v.flag(i, m.quantity.as_deref().unwrap_or_default(), x, Reason::BadQuantity);
                            None
                        }
                        None => None,
                    });
                }
                Some(out)
            }
            None => None,
        };
        let price = if let Some(a) = opt_col(&m.price, "map.price")? {
            Some(parse_numbers(a, m.price.as_deref().unwrap_or_default(), &mut v, true)?)
        } else if let Some(a) = opt_col(&m.line_price, "map.line_price")? {
            let total = parse_numbers(a, m.line_price.as_deref().unwrap_or_default(), &mut v, true)?;
            Some(
                total
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| t.map(|t| t / f64::from(quantity.as_ref().and_then(|q| q[i]).unwrap_or(1))))
                    .collect(),
            )
        } else {
            None
        };
        let rating = match opt_col(&m.rating, "map.rating")? {
            Some(a) => Some(parse_numbers(
                a,
                m.rating.as_deref().unwrap_or_default(),
                &mut v,
                false,
            )?),
            None => None,
        };
        let session = optional_strings(opt_col(&m.session, "map.session")?)?;
        let device = optional_strings(opt_col(&m.device, "map.device")?)?;
        let page = optional_strings(opt_col(&m.page, "map.page")?)?;
        let category = optional_strings(opt_col(&m.category, "map.category")?)?;
        let age = optional_strings(opt_col(&m.age_bucket, "map.age_bucket")?)?;
        let region = optional_strings(opt_col(&m.region, "map.region")?)?;

        let bad = v.settle(opts.on_error, skipped)?;
        let keep: Vec<usize> = (0..n).filter(|&i| !bad[i]).collect();
        let mut uidx = Vec::with_capacity(keep.len());
        let mut iidx = Vec::with_capacity(keep.len());
        for &i in &keep {
            let u = ds.users.intern(user.value(i));
            let it = ds.items.intern(item.value(i));
            uidx.push(u);
            iidx.push(it);
            // Attributes carried by events fill gaps in the tables; explicit tables win.
            let slot = it as usize;
            if let Some(c) = &category
                && ds.items.category[slot].is_none()
                && c.is_valid(i)
            {
                ds.items.category[slot] = Some(c.value(i).to_string());
            }
            if let Some(p) = &price
                && ds.items.price[slot].is_none()
            {
                ds.items.price[slot] = p[i];
            }
            let us = u as usize;
            if let Some(a) = &age
                && ds.users.age_bucket[us].is_none()
                && a.is_valid(i)
            {
                ds.users.age_bucket[us] = Some(a.value(i).to_string());
            }
            if let Some(r) = &region
                && ds.users.region[us].is_none()
                && r.is_valid(i)
            {
                ds.users.region[us] = Some(r.value(i).to_string());
            }
        }
        let take = |s: &StringArray| -> StringArray {
            if keep.len() == n {
                s.clone()
            } else {
                keep.iter().map(|&i| s.is_valid(i).then(|| s.value(i))).collect()
            }
        };
        let take_opt_str = |s: &Option<StringArray>| -> ArrayRef {
            match s {
                Some(s) => Arc::new(take(s)),
                None => arrow::array::new_null_array(&DataType::Utf8, keep.len()),
            }
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(uidx)),
            Arc::new(UInt32Array::from(iidx)),
            Arc::new(take(&user)),
            Arc::new(take(&item)),
            event_type_array(keep.iter().map(|&i| types[i]).collect())?,
            Arc::new(
                TimestampMillisecondArray::from(keep.iter().map(|&i| ts[i].unwrap_or(0)).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
            take_opt_str(&session),
            Arc::new(Float64Array::from(
                keep.iter()
                    .map(|&i| price.as_ref().and_then(|p| p[i]))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(UInt32Array::from(
                keep.iter()
                    .map(|&i| quantity.as_ref().and_then(|q| q[i]))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Float32Array::from(
                keep.iter()
                    .map(|&i| rating.as_ref().and_then(|r| r[i]).map(|r| r as f32))
                    .collect::<Vec<_>>(),
            )),
            take_opt_str(&device),
            take_opt_str(&page),
        ];
        Ok(RecordBatch::try_new(events_schema(), cols)?)
    }
}

/// Expands directories into their files (name order) and keeps files as given.
fn expand_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(Error::io(p))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.is_file() && !f.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(Error::Io {
                path: p.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
    }
    Ok(out)
}

fn column_or<'b>(batch: &'b RecordBatch, preferred: Option<&str>, canonical: &str) -> Option<&'b ArrayRef> {
    preferred
        .and_then(|p| batch.column_by_name(p))
        .or_else(|| batch.column_by_name(canonical))
}

/// The format of an item or user table: `--format` applies unless it names an events-only format
/// (sequences; JSON only holds item attributes).
fn table_format(path: &Path, forced: Option<InputFormat>, json_allowed: bool) -> Result<InputFormat> {
    match forced {
        Some(InputFormat::Sequences) | None => InputFormat::detect(path),
        Some(InputFormat::Json) if !json_allowed => InputFormat::detect(path),
        Some(f) => Ok(f),
    }
}

/// The id column of an item or user table (the mapped name, else the canonical one), checked.
fn table_ids(
    path: &Path,
    batch: &RecordBatch,
    what: &str,
    mapped: &str,
    canonical: &str,
    v: &mut Validator,
) -> Result<StringArray> {
    let col = column_or(batch, Some(mapped), canonical).ok_or_else(|| {
        Error::arg(
            what,
            path.display(),
            format!("needs an id column (`{mapped}` or `{canonical}`)"),
        )
    })?;
    let ids = as_strings(col)?;
    check_ids(&ids, canonical, v);
    Ok(ids)
}

/// Upserts an item catalogue file into the dataset's item table.
fn import_items(
    ds: &mut Dataset,
    path: &Path,
    opts: &ImportOptions,
    skipped: &mut BTreeMap<String, u64>,
) -> Result<()> {
    use recsys_core::schema::columns as col;
    let format = table_format(path, opts.format, true)?;
    let m = &opts.map;
    for_each_batch(path, format, &mut |batch, first_row| {
        let mut v = Validator::new(path, first_row, batch.num_rows());
        let ids = table_ids(path, &batch, "items", &m.item, col::ITEM_ID, &mut v)?;
        let category = optional_strings(column_or(&batch, m.category.as_deref(), col::CATEGORY))?;
        let price = column_or(&batch, m.price.as_deref(), col::PRICE)
            .map(|a| parse_numbers(a, col::PRICE, &mut v, true))
            .transpose()?;
        let brand = optional_strings(batch.column_by_name(col::BRAND))?;
        let rating = batch
            .column_by_name(col::AVG_RATING)
            .map(|a| parse_numbers(a, col::AVG_RATING, &mut v, false))
            .transpose()?;
        let inventory = batch
            .column_by_name(col::INVENTORY)
            .map(|a| parse_numbers(a, col::INVENTORY, &mut v, false))
            .transpose()?;
        let created = batch
            .column_by_name(col::CREATED_AT)
            .map(|a| parse_times(a, &opts.ts_format, col::CREATED_AT, &mut v, false))
            .transpose()?;
        let title = optional_strings(batch.column_by_name(col::TITLE))?;
        let bad = v.settle(opts.on_error, skipped)?;
        for i in (0..batch.num_rows()).filter(|&i| !bad[i]) {
            let k = ds.items.intern(ids.value(i)) as usize;
            let t = &mut ds.items;
            let s = |a: &Option<StringArray>| a.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string());
            t.category[k] = s(&category).or(t.category[k].take());
            t.brand[k] = s(&brand).or(t.brand[k].take());
            t.title[k] = s(&title).or(t.title[k].take());
            t.price[k] = price.as_ref().and_then(|p| p[i]).or(t.price[k]);
            t.avg_rating[k] = rating.as_ref().and_then(|p| p[i]).or(t.avg_rating[k]);
            t.inventory[k] = inventory
                .as_ref()
                .and_then(|p| p[i])
                .map(|x| x as i64)
                .or(t.inventory[k]);
            t.created_at[k] = created.as_ref().and_then(|p| p[i]).or(t.created_at[k]);
        }
        Ok(())
    })
}

/// Upserts a user file into the dataset's user table.
fn import_users(
    ds: &mut Dataset,
    path: &Path,
    opts: &ImportOptions,
    skipped: &mut BTreeMap<String, u64>,
) -> Result<()> {
    use recsys_core::schema::columns as col;
    let format = table_format(path, opts.format, false)?;
    let m = &opts.map;
    for_each_batch(path, format, &mut |batch, first_row| {
        let mut v = Validator::new(path, first_row, batch.num_rows());
        let ids = table_ids(path, &batch, "users", &m.user, col::USER_ID, &mut v)?;
        let age = optional_strings(column_or(&batch, m.age_bucket.as_deref(), col::AGE_BUCKET))?;
        let region = optional_strings(column_or(&batch, m.region.as_deref(), col::REGION))?;
        let signup = batch
            .column_by_name(col::SIGNUP_TS)
            .map(|a| parse_times(a, &opts.ts_format, col::SIGNUP_TS, &mut v, false))
            .transpose()?;
        let bad = v.settle(opts.on_error, skipped)?;
        for i in (0..batch.num_rows()).filter(|&i| !bad[i]) {
            let k = ds.users.intern(ids.value(i)) as usize;
            let t = &mut ds.users;
            let s = |a: &Option<StringArray>| a.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string());
            t.age_bucket[k] = s(&age).or(t.age_bucket[k].take());
            t.region[k] = s(&region).or(t.region[k].take());
            t.signup_ts[k] = signup.as_ref().and_then(|p| p[i]).or(t.signup_ts[k]);
        }
        Ok(())
    })
}

/// Imports events (and optionally items and users) into the dataset at `out`, creating it when
/// needed. Days present in the input replace the same days in the dataset; other days are kept.
pub fn import(out: &Path, opts: &ImportOptions) -> Result<ImportReport> {
    // Lock first, then read: a concurrent import must not commit a view older than ours.
    let _lock = Dataset::lock_dir(out)?;
    let mut ds = Dataset::open_or_create(out)?;
    // What a killed import left (part files outside the manifest, temporary files) goes first.
    ds.collect_garbage()?;
    let mut report = ImportReport::default();
    if let Some(items) = &opts.items {
        import_items(&mut ds, items, opts, &mut report.skipped)?;
    }
    if let Some(users) = &opts.users {
        import_users(&mut ds, users, opts, &mut report.skipped)?;
    }
    let event_type = match (&opts.event_type, &opts.map.event_type) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => EventTypeSource::Column(c.clone()),
        (None, None) => EventTypeSource::Column("event_type".into()),
    };
    let conv = EventColumns {
        map: &opts.map,
        event_type,
    };
    let files = expand_inputs(&opts.events)?;
    if files.is_empty() {
        return Err(Error::arg("events", format!("{:?}", opts.events), "no input files"));
    }
    let mut writer = PartitionWriter::new(out, 4_000_000);
    let bar = opts.progress.counter("import");
    let read_all = (|| -> Result<()> {
        for file in &files {
            let format = match opts.format {
                Some(f) => f,
                None => InputFormat::detect(file)?,
            };
            for_each_batch(file, format, &mut |batch, first_row| {
                report.rows_read += batch.num_rows() as u64;
                let canonical = conv.convert(&mut ds, file, &batch, first_row, opts, &mut report.skipped)?;
                report.rows_imported += canonical.num_rows() as u64;
                bar.inc(batch.num_rows() as u64);
                writer.push(canonical)
            })?;
        }
        Ok(())
    })();
    bar.finish_and_clear();
    let parts = read_all.and_then(|()| writer.finish());
    let parts = match parts {
        Ok(p) => p,
        Err(e) => {
            // Part files already flushed are not in the manifest: remove them now.
            let _ = ds.collect_garbage();
            return Err(e);
        }
    };
    report.partitions = parts.keys().cloned().collect();
    ds.commit(parts)?;
    report.users = ds.manifest.num_users;
    report.items = ds.manifest.num_items;
    report.events = ds.manifest.num_events;
    let skipped: u64 = report.skipped.values().sum();
    opts.progress.summary(format!(
        "imported {} of {} event rows into {} partition(s); skipped {skipped} {:?}",
        report.rows_imported,
        report.rows_read,
        report.partitions.len(),
        report.skipped
    ));
    Ok(report)
}
