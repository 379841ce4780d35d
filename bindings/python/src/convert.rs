//! Argument and result conversions: JSON reports to Python objects, Python dicts to JSON, option
//! strings to the Rust enums.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use recsys_train::Error;

/// A JSON value (a command's report) as plain Python objects: dict, list, str, int, float, bool, None.
pub fn to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value as V;
    Ok(match v {
        V::Null => py.None().into_bound(py),
        V::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        V::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        V::String(s) => s.into_pyobject(py)?.into_any(),
        V::Array(a) => {
            let list = PyList::empty(py);
            for x in a {
                list.append(to_py(py, x)?)?;
            }
            list.into_any()
        }
        V::Object(o) => {
            let dict = PyDict::new(py);
            for (k, x) in o {
                dict.set_item(k, to_py(py, x)?)?;
            }
            dict.into_any()
        }
    })
}

/// A serialisable Rust report as plain Python objects (the same shape as the CLI's JSON).
pub fn report<'py>(py: Python<'py>, v: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(v).map_err(|e| Error::Internal(e.to_string()));
    to_py(py, &crate::errors::IntoPy::py(value)?)
}

/// A Python object (dict, list, numbers, strings) as JSON, through the standard `json` module;
/// `name` is the argument named in the error when it is not JSON-serialisable.
pub fn from_py(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let json = obj.py().import("json")?;
    let kwargs = PyDict::new(obj.py());
    kwargs.set_item("allow_nan", false)?;
    let text: String = json
        .call_method("dumps", (obj,), Some(&kwargs))
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("invalid argument `{name}`: {e}")))?
        .extract()?;
    serde_json::from_str(&text)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("invalid argument `{name}`: {e}")))
}

/// Parses an option string into one of the CLI's value enums (`on_error="skip"`, `protocol="time-split"`).
pub fn parse_enum<T: clap::ValueEnum>(name: &str, value: &str) -> Result<T, Error> {
    T::from_str(value, true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        Error::arg(name, value, format!("expected one of {}", names.join(", ")))
    })
}
