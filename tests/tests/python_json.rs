//! The guest SDK's reading and writing of what Python's `json` reads and
//! writes, compared with Python's own `json` on generated texts: `NaN`,
//! `Infinity` and `-Infinity` where values go and inside strings, integers
//! beyond 64 bits and around Python's 4,300-digit limit, floats in every
//! form, escapes including lone surrogates, repeated keys, odd whitespace,
//! and small edits that make most of them invalid. For each text, tocsin
//! must accept exactly what `json.loads` accepts and write what
//! `json.dumps(json.loads(text))` writes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;
use tocsin_contract::json::{normalize, to_value};
use tocsin_tests::pypi_python;

/// How many texts one run compares; `TOCSIN_PYTHON_JSON_CASES` asks for
/// more (a longer search, run by hand).
const CASES: usize = 4000;

fn whitespace() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just(""), 2 => Just(" "), 1 => Just("\n\t "), 1 => Just("\r")]
}

fn digits(length: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    proptest::collection::vec(0..10u8, length)
        .prop_map(|digits| digits.iter().map(|d| char::from(b'0' + d)).collect())
}

fn number() -> impl Strategy<Value = String> {
    let integer = prop_oneof![
        4 => any::<i64>().prop_map(|n| n.to_string()),
        2 => ("-?", "[1-9]", digits(0..30)).prop_map(|(sign, first, rest)| format!("{sign}{first}{rest}")),
        1 => ("-?", "[1-9]", digits(4297..4302)).prop_map(|(sign, first, rest)| format!("{sign}{first}{rest}")),
        1 => Just("-0".to_owned()),
        1 => Just("0".to_owned()),
    ];
    let float = prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
        ("-?[0-9]", digits(1..20)).prop_map(|(int, frac)| format!("{int}.{frac}")),
        ("-?[1-9][0-9]{0,3}", "[eE]", "[+-]?", "[0-9]{1,3}").prop_map(|(m, e, s, x)| format!("{m}{e}{s}{x}")),
        Just("1E5".to_owned()),
        Just("1.10".to_owned()),
        Just("-0.0".to_owned()),
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just("5e-324".to_owned()),
        Just("1e16".to_owned()),
        Just("0.0001".to_owned()),
    ];
    prop_oneof![integer, float]
}

fn string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => "[ -!#-\\[\\]-~]{1,6}",
        1 => Just("\\\"".to_owned()),
        1 => Just("\\\\".to_owned()),
        1 => Just("\\/".to_owned()),
        1 => "\\\\[bfnrt]",
        2 => any::<u16>().prop_map(|unit| format!("\\u{unit:04x}")),
        2 => (0xd800..0xe000u16).prop_map(|unit| format!("\\u{unit:04X}")),
        1 => Just("\\ud83d\\ude00".to_owned()),
        2 => "[é😀\u{7f}\u{fffd}\u{2028}]",
        1 => Just("NaN Infinity -Infinity 123".to_owned()),
    ];
    proptest::collection::vec(piece, 0..5).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
}

/// Text of a value as Python's `json` might read it.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        1 => Just("null".to_owned()),
        1 => Just("true".to_owned()),
        1 => Just("false".to_owned()),
        2 => Just("NaN".to_owned()),
        2 => Just("Infinity".to_owned()),
        2 => Just("-Infinity".to_owned()),
        6 => number(),
        5 => string(),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let key = prop_oneof![3 => "\"[abc]\"", 1 => string()];
        prop_oneof![
            (proptest::collection::vec((whitespace(), inner.clone(), whitespace()), 0..4)).prop_map(
                |items| format!(
                    "[{}]",
                    items.iter().map(|(a, v, b)| format!("{a}{v}{b}")).collect::<Vec<_>>().join(",")
                )
            ),
            (proptest::collection::vec((key, whitespace(), inner), 0..4)).prop_map(|entries| format!(
                "{{{}}}",
                entries.iter().map(|(k, w, v)| format!("{k}{w}:{w}{v}")).collect::<Vec<_>>().join(",")
            )),
        ]
    })
}

/// A value, now and then edited by a byte or two into something odd.
fn text() -> impl Strategy<Value = String> {
    let edit = (any::<usize>(), prop_oneof![Just(None), "[,\\]}\"\\\\N1 -.eI\\[{:]".prop_map(Some)]);
    (whitespace(), value(), whitespace(), proptest::collection::vec(edit, 0..2)).prop_map(
        |(a, value, b, edits)| {
            let mut text = format!("{a}{value}{b}");
            for (at, insert) in edits {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match insert {
                    Some(byte) => text.insert_str(at, &byte),
                    None if at < text.len() => {
                        text.remove(at);
                    }
                    None => {}
                }
            }
            text
        },
    )
}

/// Python's `json.dumps(json.loads(text))` of each text, or its error.
fn python(texts: &[String]) -> Vec<Result<String, String>> {
    let script = r#"
import json, sys
out = []
for text in json.load(sys.stdin):
    try:
        out.append({"ok": json.dumps(json.loads(text))})
    except (ValueError, RecursionError) as error:
        out.append({"error": str(error)})
json.dump(out, sys.stdout)
"#;
    let mut child = std::process::Command::new(pypi_python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(texts).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success());
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    results
        .into_iter()
        .map(|result| match result.get("ok") {
            Some(ok) => Ok(ok.as_str().unwrap().to_owned()),
            None => Err(result["error"].as_str().unwrap().to_owned()),
        })
        .collect()
}

#[test]
fn reads_and_writes_as_pythons_json_does() {
    let cases = std::env::var("TOCSIN_PYTHON_JSON_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(CASES);
    let mut runner =
        if cases == CASES { TestRunner::deterministic() } else { TestRunner::new(ProptestConfig::default()) };
    let strategy = text();
    let texts: Vec<String> = (0..cases).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect();
    let expected = python(&texts);
    let (mut accepted, mut literals, mut surrogates, mut long) = (0, 0, 0, 0);
    for (text, python) in texts.iter().zip(expected) {
        let ours = normalize(text);
        match (&ours, &python) {
            (Ok(ours), Ok(python)) => {
                assert_eq!(ours, python, "json.dumps(json.loads({text:?}))");
                // A tree has no room for an integer beyond f64 only.
                let tree = to_value(text);
                assert!(
                    tree.is_ok() || python.split(|c: char| !c.is_ascii_digit()).any(|run| run.len() > 308),
                    "{text:?} is read as a tree too: {tree:?}"
                );
                accepted += 1;
                literals += usize::from(python.contains("NaN") || python.contains("Infinity"));
                surrogates += usize::from(python.contains("\\ud8") || python.contains("\\udc"));
            }
            (Err(_), Err(why)) => long += usize::from(why.contains("4300")),
            _ => panic!("{text:?}: tocsin {ours:?}, Python {python:?}"),
        }
    }
    // The generator reaches what the comparison is for.
    println!(
        "{accepted} of {cases} accepted; {literals} with NaN or Infinity, {surrogates} with lone surrogates"
    );
    assert!(accepted > cases / 3 && accepted < cases, "{accepted} of {cases} accepted");
    assert!(literals > 100 && surrogates > 100 && long > 5, "{literals} {surrogates} {long}");
}
