//! A plugin's text on its way to the operator's log: escaped, so that one
//! line stays one line and carries no terminal sequence, and bounded.
//!
//! The log capability writes plugins' lines through it, the sandbox their
//! failure reasons, and the text log every field.

/// The `tracing` target of plugins' lines: the text log quotes their
/// messages.
pub const PLUGIN_TARGET: &str = "tocsin::plugin";

/// Characters that would let one log line pose as several, or reorder
/// what a reader sees: control characters, line and paragraph separators,
/// and bidirectional overrides.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Writes `text` with the characters of [`needs_escape`] escaped (`\n` →
/// `\\n`, ESC → `\\u{1b}`), the runs between them in whole pieces: for a
/// plugin's lines, and every field of the text log (`telemetry`), so that
/// a line stays one line and carries no terminal sequence.
pub fn write_escaped(out: &mut impl std::fmt::Write, text: &str) -> std::fmt::Result {
    // Printable ASCII (almost every line) needs no escape: a byte scan
    // settles it without decoding characters.
    if text.bytes().all(|b| matches!(b, b' '..=b'~')) {
        return out.write_str(text);
    }
    let mut clean = 0;
    for (at, c) in text.char_indices().filter(|&(_, c)| needs_escape(c)) {
        out.write_str(&text[clean..at])?;
        write!(out, "{}", c.escape_default())?;
        clean = at + c.len_utf8();
    }
    out.write_str(&text[clean..])
}

/// `text` as [`write_escaped`] writes it.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    // A String takes every write.
    write_escaped(&mut escaped, text).unwrap_or(());
    escaped
}

/// `text` escaped and cut to at most `max` bytes (plus `…` when cut);
/// sets `cut` when it was. Only the first `max` bytes are ever escaped, so
/// a huge input costs no more than a short one.
pub fn bounded(text: &str, max: usize, cut: &mut bool) -> String {
    let end = text.floor_char_boundary(max);
    let mut out = escape(&text[..end]);
    let mut was_cut = end < text.len();
    if out.len() > max {
        out.truncate(out.floor_char_boundary(max));
        was_cut = true;
    }
    if was_cut {
        out.push('…');
        *cut = true;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_separator_and_bidi_characters_are_escaped() {
        assert_eq!(escape("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(escape("x\u{2028}y\u{202e}z"), "x\\u{2028}y\\u{202e}z");
        assert_eq!(escape("plain é"), "plain é");
        assert_eq!(escape("printable ASCII ~"), "printable ASCII ~");
        assert_eq!(escape("del\u{7f}"), "del\\u{7f}");
    }
}
