//! JSON written the way Python's `json.dumps` writes it, from serde values.

use std::io::{self, Write};

use serde::{Serialize, Serializer as _};
use serde_json::ser::Formatter;

/// Serializes `value` as Python's `json.dumps(value)` would.
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Writing into a `Vec` cannot fail for values whose keys are strings
    // (a `Value`'s, a struct's).
    let _ = value.serialize(&mut serializer);
    out
}

/// Appends `text` as a JSON string, quoted and escaped as Python's
/// `json.dumps` writes it: for building a body field by field without a
/// `Value` in between.
pub fn write_python_str(out: &mut Vec<u8>, text: &str) {
    let mut serializer = serde_json::Serializer::with_formatter(out, PythonFormatter);
    // Writing a string into a `Vec` cannot fail.
    let _ = serializer.serialize_str(text);
}

/// Appends an object of values already written as JSON, in the order
/// given, as `json.dumps` writes a `dict`: for a body whose parts are
/// JSON text already (a raw `reason_data`).
pub fn write_python_object<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = (&'a str, &'a [u8])>) {
    out.push(b'{');
    for (index, (key, value)) in fields.into_iter().enumerate() {
        if index > 0 {
            out.extend_from_slice(b", ");
        }
        write_python_str(out, key);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
    }
    out.push(b'}');
}

/// Python's `repr(float)`: the shortest digits that round-trip, in decimal
/// notation when the exponent is in `-4..16` (`97.0`, `0.0001`), else in
/// scientific notation with a signed two-digit exponent (`1e+16`, `1e-05`);
/// `json.dumps`'s words for the non-finite ones.
pub(super) fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let decimal = format!("{value}");
        if decimal.contains('.') { decimal } else { format!("{decimal}.0") }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// serde_json formatter with Python's defaults.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        // Printable ASCII goes out in runs; anything else as `\uXXXX` units.
        let mut rest = fragment;
        while !rest.is_empty() {
            let run = rest.bytes().position(|b| !(b' '..=b'~').contains(&b)).unwrap_or(rest.len());
            writer.write_all(&rest.as_bytes()[..run])?;
            rest = &rest[run..];
            if let Some(c) = rest.chars().next() {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                rest = &rest[c.len_utf8()..];
            }
        }
        Ok(())
    }

    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(python_float_repr(value).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn strings_written_alone_match_the_value_serializer() {
        for text in ["plain", "quote \" and \\ back", "tab\tnew\nline\u{1}", "é😀\u{7f}"] {
            let mut out = Vec::new();
            write_python_str(&mut out, text);
            assert_eq!(out, to_python_json(&Value::String(text.into())));
        }
    }

    #[test]
    fn python_escapes_and_float_forms() {
        let value: Value = serde_json::from_str(
            r#"{"s": "é😀\u007f\n\"", "a": [1e16, 1e-5, 0.5, -2, 1e15, 0.0001, 1.5e-7, 97.0, -0.0]}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(to_python_json(&value)).unwrap(),
            r#"{"s": "\u00e9\ud83d\ude00\u007f\n\"", "a": [1e+16, 1e-05, 0.5, -2, 1000000000000000.0, 0.0001, 1.5e-07, 97.0, -0.0]}"#
        );
    }
}
