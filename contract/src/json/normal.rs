//! JSON text rewritten as `json.dumps(json.loads(text))` writes it, and
//! read as a tree.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::read::{PythonJson, PythonJsonError};
use super::write::python_float_repr;

/// How deep [`normalize`] follows nested lists and objects: as deep as
/// serde_json builds a tree ([`to_value`]).
pub const MAX_DEPTH: usize = 127;

/// `text` as Python's `json.dumps(json.loads(text))` writes it: `", "` and
/// `": "` separators; strings re-escaped (non-ASCII and lone surrogates as
/// `\uXXXX`); integers as they are (`-0` is `0`); other numbers as the
/// float Python reads, in its `repr` (`1E5` is `100000.0`, `1.10` is
/// `1.1`, `1e400` is `Infinity`); a repeated key keeps its first place and
/// its last value, as in a Python `dict`.
///
/// # Errors
/// What Python's `json.loads` refuses, and nesting deeper than
/// [`MAX_DEPTH`].
pub fn normalize(text: &str) -> Result<String, PythonJsonError> {
    let json = PythonJson::scan(text)?;
    let root: &RawValue = serde_json::from_str(json.readable()).map_err(syntax)?;
    let mut out = String::with_capacity(text.len());
    write_value(&json, root, &mut out, 0)?;
    Ok(out)
}

/// `text` read as Python's `json.loads` reads it, as a
/// [`serde_json::Value`]: `NaN`, `Infinity` and `-Infinity` (and floats
/// beyond `f64`, which Python reads as infinite) become `null`, as
/// serde_json writes a non-finite float; lone surrogates U+FFFD; integers
/// beyond 64 bits the nearest float. The exact text is the plugin's too,
/// as `alarm.reason_data`.
///
/// # Errors
/// What Python's `json.loads` refuses, and an integer beyond `f64`'s range
/// (over 308 digits), which a `Value` cannot hold.
pub fn to_value(text: &str) -> Result<Value, PythonJsonError> {
    // Normalized first, so that a float beyond f64 (`1e400`) is the
    // `Infinity` Python reads.
    let normal = normalize(text)?;
    let json = PythonJson::scan(&normal)?;
    let readable = json.readable();
    let mut nulls = String::with_capacity(readable.len() + json.literals().len());
    let mut from = 0;
    for &(at, kind) in json.literals() {
        nulls.push_str(&readable[from..at]);
        nulls.push_str("null");
        from = at + kind.literal().len();
    }
    nulls.push_str(&readable[from..]);
    serde_json::from_str(&nulls).map_err(syntax)
}

fn syntax(error: serde_json::Error) -> PythonJsonError {
    PythonJsonError::Syntax(error.to_string())
}

/// Appends `raw` (a part of `json`'s readable text) in `json.dumps` form.
fn write_value(
    json: &PythonJson<'_>,
    raw: &RawValue,
    out: &mut String,
    depth: usize,
) -> Result<(), PythonJsonError> {
    let text = raw.get();
    if let Some(kind) = json.literal_at(text) {
        out.push_str(kind.literal());
        return Ok(());
    }
    let nested = matches!(text.as_bytes().first(), Some(b'{' | b'['));
    if nested && depth >= MAX_DEPTH {
        return Err(PythonJsonError::TooDeep(MAX_DEPTH));
    }
    match text.as_bytes().first() {
        Some(b'{') => {
            let Entries(entries) = serde_json::from_str(text).map_err(syntax)?;
            let mut keys: HashMap<String, usize> = HashMap::with_capacity(entries.len());
            let mut kept: Vec<(String, &RawValue)> = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let mut written = String::with_capacity(key.get().len());
                write_string(original(json, key)?, &mut written);
                match keys.get(&written) {
                    Some(&index) => kept[index].1 = value,
                    None => {
                        keys.insert(written.clone(), kept.len());
                        kept.push((written, value));
                    }
                }
            }
            out.push('{');
            for (index, (key, value)) in kept.into_iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                out.push_str(&key);
                out.push_str(": ");
                write_value(json, value, out, depth + 1)?;
            }
            out.push('}');
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(syntax)?;
            out.push('[');
            for (index, item) in items.into_iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_value(json, item, out, depth + 1)?;
            }
            out.push(']');
        }
        Some(b'"') => write_string(original(json, raw)?, out),
        Some(b'-' | b'0'..=b'9') => write_number(text, out),
        _ => out.push_str(text),
    }
    Ok(())
}

/// The original text of `raw`, lone surrogate escapes as they were.
fn original<'a>(json: &PythonJson<'a>, raw: &RawValue) -> Result<&'a str, PythonJsonError> {
    json.original_of(raw.get()).ok_or_else(|| PythonJsonError::Syntax("a value outside the text".into()))
}

/// A number as Python reads and writes it: an integer as it is (`-0` is
/// `0`), anything with a fraction or exponent as the nearest float.
fn write_number(text: &str, out: &mut String) {
    if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        // serde_json accepted it as a number, which Rust's float parser reads.
        out.push_str(&python_float_repr(text.parse().unwrap_or(f64::NAN)));
    } else if text.trim_start_matches('-').bytes().all(|b| b == b'0') {
        out.push('0');
    } else {
        out.push_str(text);
    }
}

/// A JSON string token (quotes included, already checked by serde_json) as
/// `json.dumps` writes the string Python reads from it: by UTF-16 unit, so
/// that a lone surrogate is written back as it came.
fn write_string(token: &str, out: &mut String) {
    out.push('"');
    let mut chars = token.get(1..token.len().saturating_sub(1)).unwrap_or_default().chars();
    let mut units = [0u16; 2];
    while let Some(c) = chars.next() {
        if c != '\\' {
            for &unit in c.encode_utf16(&mut units).iter() {
                write_unit(unit, out);
            }
            continue;
        }
        let unit = match chars.next() {
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                u16::from_str_radix(&hex, 16).unwrap_or(0xfffd)
            }
            Some('b') => 0x08,
            Some('f') => 0x0c,
            Some('n') => 0x0a,
            Some('r') => 0x0d,
            Some('t') => 0x09,
            Some(escaped) => u16::try_from(u32::from(escaped)).unwrap_or(0xfffd),
            None => break,
        };
        write_unit(unit, out);
    }
    out.push('"');
}

/// One UTF-16 unit of a string, escaped as `json.dumps` escapes it.
fn write_unit(unit: u16, out: &mut String) {
    match unit {
        0x22 => out.push_str("\\\""),
        0x5c => out.push_str("\\\\"),
        0x0a => out.push_str("\\n"),
        0x0d => out.push_str("\\r"),
        0x09 => out.push_str("\\t"),
        0x08 => out.push_str("\\b"),
        0x0c => out.push_str("\\f"),
        0x20..=0x7e => out.push(char::from(u8::try_from(unit).unwrap_or(b'?'))),
        _ => {
            let _ = write!(out, "\\u{unit:04x}");
        }
    }
}

/// An object's entries in order, repeats included, keys and values raw.
struct Entries<'a>(Vec<(&'a RawValue, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_json_dumps_writes_it() {
        let text = r#" {"b" :[1E5,-0, 1.10,18446744073709551616, -0.0, 1e400, NaN,-Infinity] ,
            "s":"\u00e9\/\ud800\ud83d\ude00\u007f\"\t", "a":{}, "b": true, "n": [null, false, []]}"#;
        assert_eq!(
            normalize(text).unwrap(),
            r#"{"b": true, "s": "\u00e9/\ud800\ud83d\ude00\u007f\"\t", "a": {}, "n": [null, false, []]}"#
        );
        assert_eq!(
            normalize("[1E5,-0, 1.10,18446744073709551616, -0.0, 1e400, -1e400, NaN,-Infinity, 5e-324]")
                .unwrap(),
            "[100000.0, 0, 1.1, 18446744073709551616, -0.0, Infinity, -Infinity, NaN, -Infinity, 5e-324]"
        );
        assert_eq!(normalize(r#""é😀""#).unwrap(), r#""\u00e9\ud83d\ude00""#);
    }

    #[test]
    fn refuses_what_python_refuses_and_what_is_too_deep() {
        for text in ["[1,]", "NaN1", "{\"a\" 1}", "\"\t\"", "", "[1] 2"] {
            assert!(matches!(normalize(text), Err(PythonJsonError::Syntax(_))), "{text}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(normalize(&deep), Err(PythonJsonError::TooDeep(MAX_DEPTH)));
        let deepest = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(normalize(&deepest).unwrap(), deepest);
        assert!(to_value(&deepest).is_ok(), "a tree as deep as normalize goes");
    }

    #[test]
    fn trees_have_null_for_non_finite_floats() {
        let value =
            to_value(r#"{"a": NaN, "b": [Infinity, -Infinity, 1.5, -1e400], "s": "\ud800NaN"}"#).unwrap();
        assert_eq!(value, serde_json::json!({"a": null, "b": [null, null, 1.5, null], "s": "\u{fffd}NaN"}));
    }
}
