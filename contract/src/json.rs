//! JSON as Python's `json` module reads and writes it.
//!
//! OpenStack serialises with Python's `json`: `", "` and `": "` separators,
//! non-ASCII escaped as `\uXXXX`, floats in Python's `repr`, and, where
//! JSON has no word for them, `NaN`, `Infinity` and `-Infinity`, integers
//! of any size up to 4,300 digits, and lone surrogate escapes (`"\ud800"`).
//! Receivers built for OpenStack sometimes compare or sign these bytes, so
//! a notifier that replaces a Python one sends exactly the same body.
//!
//! - [`to_python_json`] and [`write_python_str`] write JSON as
//!   `json.dumps` does.
//! - [`PythonJson`] reads what `json.loads` reads, through serde_json.
//! - [`normalize`] rewrites JSON text as `json.dumps(json.loads(text))`.
//! - [`to_value`] reads it as a [`serde_json::Value`], for a plugin that
//!   wants `reason_data` as a tree.

mod normal;
mod read;
mod write;

pub use normal::{MAX_DEPTH, normalize, to_value};
pub use read::{MAX_INT_DIGITS, NonFinite, PythonJson, PythonJsonError, opens_object};
pub use write::{to_python_json, write_python_object, write_python_str};
