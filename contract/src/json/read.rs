//! Reading what Python's `json.loads` reads, with serde_json.
//!
//! Why this is hand-written: Python's `json` writes a non-finite float as
//! `NaN`, `Infinity` or `-Infinity`, and Aodh's evaluators produce them (a
//! Prometheus ratio of `+Inf`, a `0/0`). They are not JSON: serde_json
//! refuses them, and no maintained Rust crate reads all three while
//! keeping serde_json's raw values. This module is one string-aware pass
//! that finds them, so that serde_json can read a copy of the text in
//! which each is replaced by a placeholder of the same length; a part of
//! the copy (a [`RawValue`](serde_json::value::RawValue)) maps back to the
//! same bytes of the original, a whole literal included. The same pass finds
//! what else Python reads differently: lone surrogate escapes (Python
//! keeps them; a Rust string cannot, so the copy has `\ufffd` in their
//! place) and integers longer than Python's limit of 4,300 digits (which
//! `json.loads` refuses). It is compared with Python's own `json` on
//! generated texts (`tests/tests/python_json.rs`).
//!
//! The placeholder is the list `[0]` padded with spaces inside its
//! brackets: it is valid wherever a value is and cannot run into a
//! neighbouring token, so placing it makes nothing valid that Python
//! refuses (`1NaN`, `-NaN` stay errors), and a field read as a string or a
//! number fails on it rather than reading a made-up value. (Python also
//! refuses what nests deeper than its recursion limit; serde_json's raw
//! values do not count depth, so such text is read here.)

/// Python 3.11's limit on the digits of an integer `json.loads` reads
/// (`sys.get_int_max_str_digits()`): a longer one is refused.
pub const MAX_INT_DIGITS: usize = 4300;

/// A non-finite float as Python's `json` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    /// `NaN`.
    NaN,
    /// `Infinity`.
    Infinity,
    /// `-Infinity`.
    NegInfinity,
}

impl NonFinite {
    /// The literal, as Python writes it.
    pub fn literal(self) -> &'static str {
        match self {
            NonFinite::NaN => "NaN",
            NonFinite::Infinity => "Infinity",
            NonFinite::NegInfinity => "-Infinity",
        }
    }

    /// The same-length placeholder serde_json reads in its place.
    fn placeholder(self) -> &'static str {
        match self {
            NonFinite::NaN => "[0]",
            NonFinite::Infinity => "[0     ]",
            NonFinite::NegInfinity => "[0      ]",
        }
    }
}

/// Why text is not what Python's `json.loads` reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PythonJsonError {
    /// An integer longer than [`MAX_INT_DIGITS`].
    #[error(
        "an integer of {digits} digits at byte {at} exceeds Python's limit of {MAX_INT_DIGITS} digits \
         for integer string conversion"
    )]
    IntegerTooLong {
        /// Its digits.
        digits: usize,
        /// Where it starts.
        at: usize,
    },
    /// Not JSON, even with Python's additions: serde_json's reason.
    #[error("{0}")]
    Syntax(String),
    /// Nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
}

/// Text that Python's `json.loads` may read, with the copy serde_json reads
/// in its place when it has Python's additions.
#[derive(Debug)]
pub struct PythonJson<'a> {
    original: &'a str,
    /// The same length as `original`: literals as placeholders, lone
    /// surrogates as `\ufffd`. None when there were none.
    readable: Option<String>,
    literals: Vec<(usize, NonFinite)>,
    /// Where each lone surrogate escape starts.
    lone_surrogates: Vec<usize>,
}

impl<'a> PythonJson<'a> {
    /// Scans `text` once: where its non-finite literals and lone surrogate
    /// escapes are, and whether its integers are within Python's limit.
    /// Whether it is JSON otherwise is serde_json's to say, when it reads
    /// [`readable`](Self::readable).
    ///
    /// # Errors
    /// [`PythonJsonError::IntegerTooLong`].
    pub fn scan(text: &'a str) -> Result<Self, PythonJsonError> {
        let bytes = text.as_bytes();
        let mut literals = Vec::new();
        let mut surrogates = Vec::new();
        let mut at = 0;
        while let Some(&byte) = bytes.get(at) {
            let rest = &bytes[at..];
            at = match byte {
                b'"' => skip_string(bytes, at + 1, &mut surrogates),
                b'N' if rest.starts_with(b"NaN") => literal(&mut literals, at, NonFinite::NaN),
                b'I' if rest.starts_with(b"Infinity") => literal(&mut literals, at, NonFinite::Infinity),
                b'-' if rest[1..].starts_with(b"Infinity") => {
                    literal(&mut literals, at, NonFinite::NegInfinity)
                }
                b'-' | b'0'..=b'9' => skip_number(bytes, at)?,
                _ => at + 1,
            };
        }
        let readable = (!literals.is_empty() || !surrogates.is_empty()).then(|| {
            let mut copy = text.as_bytes().to_vec();
            for &(at, kind) in &literals {
                copy[at..at + kind.literal().len()].copy_from_slice(kind.placeholder().as_bytes());
            }
            for &at in &surrogates {
                copy[at..at + 6].copy_from_slice(b"\\ufffd");
            }
            // Only ASCII was replaced by ASCII of the same length.
            String::from_utf8(copy).unwrap_or_default()
        });
        Ok(PythonJson { original: text, readable, literals, lone_surrogates: surrogates })
    }

    /// The text to hand serde_json: the original, or its copy.
    pub fn readable(&self) -> &str {
        self.readable.as_deref().unwrap_or(self.original)
    }

    /// Where `part`, a slice of [`readable`](Self::readable) (a raw value
    /// serde_json borrowed from it), starts in it; none when it is not
    /// from it.
    fn offset_of(&self, part: &str) -> Option<usize> {
        let start = (part.as_ptr() as usize).checked_sub(self.readable().as_ptr() as usize)?;
        (start.checked_add(part.len())? <= self.original.len()).then_some(start)
    }

    /// The bytes of the original under `part`, a slice of
    /// [`readable`](Self::readable); none when `part` is not from it.
    pub fn original_of(&self, part: &str) -> Option<&'a str> {
        let start = self.offset_of(part)?;
        self.original.get(start..start + part.len())
    }

    /// The non-finite literal whose placeholder is `part`, a slice of
    /// [`readable`](Self::readable).
    pub fn literal_at(&self, part: &str) -> Option<NonFinite> {
        let start = self.offset_of(part)?;
        let index = self.literals.binary_search_by_key(&start, |(at, _)| *at).ok()?;
        Some(self.literals[index].1)
    }

    /// The non-finite literals, where each starts, in order.
    pub fn literals(&self) -> &[(usize, NonFinite)] {
        &self.literals
    }

    /// How many lone surrogate escapes are in `part`, a slice of
    /// [`readable`](Self::readable) (which has `\ufffd` in their place).
    pub fn lone_surrogates_in(&self, part: &str) -> usize {
        let Some(start) = self.offset_of(part) else { return 0 };
        let from = self.lone_surrogates.partition_point(|at| *at < start);
        let to = self.lone_surrogates.partition_point(|at| *at < start + part.len());
        to - from
    }
}

/// Whether `text` is a JSON object, as far as its first byte after JSON's
/// whitespace tells: serde reads a struct from a list too, which no sender
/// of an object means.
pub fn opens_object(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{')
}

fn literal(literals: &mut Vec<(usize, NonFinite)>, at: usize, kind: NonFinite) -> usize {
    literals.push((at, kind));
    at + kind.literal().len()
}

/// The index after the string whose contents start at `at` (the end of
/// the text when it is not closed: serde_json reports that), noting where
/// each lone surrogate escape starts.
fn skip_string(bytes: &[u8], mut at: usize, surrogates: &mut Vec<usize>) -> usize {
    loop {
        let Some(next) = bytes.get(at..).and_then(|rest| rest.iter().position(|&b| b == b'"' || b == b'\\'))
        else {
            return bytes.len();
        };
        at += next;
        if bytes[at] == b'"' {
            return at + 1;
        }
        match unicode_escape(bytes, at) {
            Some(0xd800..=0xdbff)
                if unicode_escape(bytes, at + 6).is_some_and(|low| (0xdc00..=0xdfff).contains(&low)) =>
            {
                at += 12;
            }
            Some(0xd800..=0xdfff) => {
                surrogates.push(at);
                at += 6;
            }
            _ => at += 2,
        }
    }
}

/// The UTF-16 unit of the `\uXXXX` escape at `at`.
fn unicode_escape(bytes: &[u8], at: usize) -> Option<u16> {
    let escape = bytes.get(at..at + 6)?;
    if !escape.starts_with(b"\\u") {
        return None;
    }
    let hex = std::str::from_utf8(&escape[2..]).ok()?;
    u16::from_str_radix(hex, 16).ok().filter(|_| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The index after the number starting at `at`, refusing an integer
/// longer than Python reads. Its grammar is serde_json's to check.
fn skip_number(bytes: &[u8], at: usize) -> Result<usize, PythonJsonError> {
    let digits_from = at + usize::from(bytes[at] == b'-');
    let digits = count_digits(bytes, digits_from);
    let mut end = digits_from + digits;
    let mut is_integer = true;
    if bytes.get(end) == Some(&b'.') {
        is_integer = false;
        end += 1 + count_digits(bytes, end + 1);
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        is_integer = false;
        end += 1 + usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
        end += count_digits(bytes, end);
    }
    if is_integer && digits > MAX_INT_DIGITS {
        return Err(PythonJsonError::IntegerTooLong { digits, at });
    }
    Ok(end.max(at + 1))
}

fn count_digits(bytes: &[u8], from: usize) -> usize {
    bytes.get(from..).map_or(0, |rest| rest.iter().take_while(|b| b.is_ascii_digit()).count())
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    #[test]
    fn literals_outside_strings_are_read_and_map_back() {
        let text = r#"{"a": NaN, "s": "NaN Infinity \" -Infinity", "b": [Infinity, -Infinity, -1]}"#;
        let json = PythonJson::scan(text).unwrap();
        assert_eq!(json.readable().len(), text.len());
        assert_eq!(
            json.literals().iter().map(|(_, kind)| *kind).collect::<Vec<_>>(),
            [NonFinite::NaN, NonFinite::Infinity, NonFinite::NegInfinity]
        );
        #[derive(serde::Deserialize)]
        struct Parts<'a> {
            #[serde(borrow)]
            a: &'a RawValue,
            s: String,
            #[serde(borrow)]
            b: &'a RawValue,
        }
        let parts: Parts<'_> = serde_json::from_str(json.readable()).unwrap();
        assert_eq!(json.original_of(parts.a.get()), Some("NaN"));
        assert_eq!(json.literal_at(parts.a.get()), Some(NonFinite::NaN));
        assert_eq!(parts.s, "NaN Infinity \" -Infinity");
        assert_eq!(json.original_of(parts.b.get()), Some("[Infinity, -Infinity, -1]"));
        // A whole value that is a literal maps back whole.
        for literal in ["Infinity", "-Infinity", "NaN"] {
            let text = format!("{{\"v\": {literal}}}");
            let json = PythonJson::scan(&text).unwrap();
            let raw: std::collections::HashMap<String, &RawValue> =
                serde_json::from_str(json.readable()).unwrap();
            assert_eq!(json.original_of(raw["v"].get()), Some(literal));
            assert!(json.literal_at(raw["v"].get()).is_some());
        }
        assert_eq!(json.original_of("elsewhere"), None);
    }

    #[test]
    fn what_python_refuses_stays_refused() {
        for text in
            ["[1NaN]", "[NaN1]", "[-NaN]", "[+Infinity]", "[nan]", "{NaN: 1}", "[Infinityx]", "NaN NaN"]
        {
            let json = PythonJson::scan(text).unwrap();
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(json.readable()).is_err(), "{text}");
        }
    }

    #[test]
    fn lone_surrogates_become_replacement_characters_in_the_copy_only() {
        let text = r#"["\ud800", "\udc00x", "\ud83d\ude00", "\\ud800", "\uD800\u0041"]"#;
        let json = PythonJson::scan(text).unwrap();
        assert_eq!(json.lone_surrogates_in(json.readable()), 3);
        assert_eq!(json.lone_surrogates_in(&json.readable()[..10]), 1);
        let read: Vec<String> = serde_json::from_str(json.readable()).unwrap();
        assert_eq!(read, ["\u{fffd}", "\u{fffd}x", "😀", "\\ud800", "\u{fffd}A"]);
        let pair = r#"["\ud83d\ude00"]"#;
        assert_eq!(PythonJson::scan(pair).unwrap().readable().as_ptr(), pair.as_ptr(), "no copy");
    }

    #[test]
    fn integers_beyond_pythons_limit_are_refused() {
        let at_limit =
            format!("[-{}, 1.{}, 1e{}]", "9".repeat(MAX_INT_DIGITS), "9".repeat(9000), "0".repeat(9000));
        assert_eq!(PythonJson::scan(&at_limit).unwrap().readable().as_ptr(), at_limit.as_ptr());
        let over = format!("[0, {}]", "9".repeat(MAX_INT_DIGITS + 1));
        assert_eq!(
            PythonJson::scan(&over).unwrap_err(),
            PythonJsonError::IntegerTooLong { digits: MAX_INT_DIGITS + 1, at: 4 }
        );
        let quoted = format!("\"{}\"", "9".repeat(MAX_INT_DIGITS + 1));
        assert!(PythonJson::scan(&quoted).is_ok(), "digits in a string are text");
    }
}
