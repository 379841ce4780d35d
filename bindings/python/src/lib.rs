//! The native half of the Python package `techshop_recs` (`techshop_recs._native`).
//!
//! Thin by design: every behaviour lives in `recsys-train` and `recsys-core`; this crate converts
//! arguments, releases the GIL around each call and converts results (the same JSON reports the
//! `recsys-train` commands print, as dicts) and errors ([`errors`]). The pure-Python half
//! (`python/techshop_recs/__init__.py`) adds DataFrame and pyarrow inputs and numpy outputs.
//!
//! One module per area, each registered below: [`pipeline`] (the offline commands), [`measure`]
//! (simulate, off-policy evaluation, A/B report), [`registry`],
//! [`store`], and [`recommender`] (the online `Recommender`, wrapping `recsys_serve::Recommender`).

pub mod convert;
pub mod errors;
pub mod measure;
pub mod pipeline;
pub mod recommender;
pub mod registry;
pub mod store;

use pyo3::prelude::*;

/// The `techshop_recs._native` module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(pipeline::generate, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::import_files, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::compute_features, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::train, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::precompute, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::dataset_info, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::item_embeddings_raw, m)?)?;
    m.add_function(wrap_pyfunction!(measure::simulate, m)?)?;
    m.add_function(wrap_pyfunction!(measure::ope, m)?)?;
    m.add_function(wrap_pyfunction!(measure::ab_report, m)?)?;
    m.add_class::<registry::Registry>()?;
    m.add_class::<store::CandidateStore>()?;
    m.add_class::<recommender::Recommender>()?;
    Ok(())
}
