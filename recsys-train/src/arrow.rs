//! The parts of Apache Arrow this crate reads and writes, under the paths of the `arrow` facade
//! crate, built from Arrow's own sub-crates.
//!
//! The facade also compiles the arithmetic, string and row-format kernels (arrow-arith,
//! arrow-string, arrow-row), which nothing here uses: 55.7 CPU seconds of a cold build under the
//! test profile (opt-level 1).
//! Callers that build [`array::RecordBatch`]es for this crate (tests, embedding programs) can
//! take the types from here, so that they always match the Arrow version the crate links.

/// Arrays, builders and record batches (`arrow::array`).
pub mod array {
    pub use arrow_array::builder::*;
    pub use arrow_array::cast::*;
    pub use arrow_array::*;
}

/// Data types, fields and schemas (`arrow::datatypes`).
pub mod datatypes {
    pub use arrow_array::types::*;
    pub use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
}

/// Kernels: casts, concatenation, filters and takes (`arrow::compute`).
pub mod compute {
    pub use arrow_cast::cast;
    pub use arrow_select::concat::concat_batches;
    pub use arrow_select::filter::filter_record_batch;
    pub use arrow_select::take::take_record_batch;
}

/// Arrow's error type (`arrow::error`).
pub mod error {
    pub use arrow_schema::ArrowError;
}

/// Arrow IPC files and streams (`arrow::ipc`).
pub use arrow_ipc as ipc;

/// CSV reading (`arrow::csv`).
pub use arrow_csv as csv;
