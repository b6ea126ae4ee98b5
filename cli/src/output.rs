//! Printing: aligned tables for people, JSON with `--json`.

use serde::Serialize;
use std::borrow::Cow;
use std::fmt::Write as _;

/// How to print results.
pub struct Output {
    /// Print JSON instead of tables.
    pub json: bool,
}

impl Output {
    /// Printing as `json` says; under `--json`, [`note`] and [`say`] write to stderr.
    pub fn new(json: bool) -> Output {
        JSON.store(json, std::sync::atomic::Ordering::Relaxed);
        Output { json }
    }

    /// Prints `value` as JSON if asked, else the table made by `table`.
    pub fn print<T: Serialize>(&self, value: &T, table: impl FnOnce() -> Vec<Vec<String>>) {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: cannot print JSON: {e}"),
            }
        } else {
            print!("{}", render(&table()));
        }
    }
}

/// Whether printing `c` as it is could steer a terminal or fake output: control characters
/// (escape sequences, carriage returns, newlines, backspaces, C1 controls) and the
/// bidirectional overrides that reorder what is shown.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` safe to print: every character that could steer a terminal is shown escaped
/// (`\u{1b}`), so a name, host, id or message from the cluster cannot rewrite the screen.
/// Every value from the cluster goes through this before it is printed.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether `--json` was given: standard output then holds JSON only, and the lines meant for
/// people go to standard error.
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints one line to stdout, cleaned (see [`clean`]); to stderr under `--json`.
pub fn say(text: &str) {
    note(text);
}

/// A line for people: to stdout, or to stderr under `--json` (so that stdout stays JSON).
pub fn note(text: &str) {
    if JSON.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{}", clean(text));
    } else {
        println!("{}", clean(text));
    }
}

/// Prints one line to stderr, cleaned (see [`clean`]).
pub fn warn(text: &str) {
    eprintln!("{}", clean(text));
}

/// The first 12 characters of a sha256 for display: never panics on a short, non-hex or
/// non-ASCII value from a reply, which is shown (cleaned) as it is.
pub fn short_hash(hash: &str) -> Cow<'_, str> {
    if hash.len() >= 12 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Cow::Borrowed(&hash[..12])
    } else {
        let short: String = hash.chars().take(12).collect();
        Cow::Owned(clean(&short).into_owned())
    }
}

/// Renders rows (the first is the header) as left-aligned columns, every cell cleaned.
pub fn render(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<Cow<'_, str>>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Milliseconds as a short duration ("850ms", "12.3s", "4m05s").
pub fn millis(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let rows = vec![
            vec!["id".into(), "state".into()],
            vec!["node-1".into(), "alive".into()],
        ];
        assert_eq!(render(&rows), "id      state\nnode-1  alive\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("node-1"), "node-1");
        assert!(matches!(clean("plain név"), Cow::Borrowed(_)));
        assert_eq!(clean("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(clean("x\ry\u{8}\u{7}"), "x\\u{d}y\\u{8}\\u{7}");
        assert_eq!(clean("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        assert_eq!(clean("evil\u{202e}gnp.exe"), "evil\\u{202e}gnp.exe");
        assert_eq!(clean("fake\nrow"), "fake\\u{a}row");
        let rows = vec![vec!["\u{1b}]0;title\u{7}".to_string(), "ok".into()]];
        assert!(!render(&rows).contains('\u{1b}'));
    }

    #[test]
    fn short_hashes_never_panic() {
        let full = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(short_hash(full), "0123456789ab");
        assert_eq!(short_hash(""), "");
        assert_eq!(short_hash("abc"), "abc");
        assert_eq!(short_hash("ééééééééééééééé"), "éééééééééééé");
        assert_eq!(short_hash("\u{1b}[2J0123456789"), "\\u{1b}[2J01234567");
    }

    proptest::proptest! {
        #[test]
        fn cleaned_text_has_no_control_characters(text in "\\PC*|[\\x00-\\x{9f}\\u{202a}-\\u{202e}]{0,64}") {
            let out = clean(&text);
            proptest::prop_assert!(!out.chars().any(unsafe_char));
            let _ = short_hash(&text);
        }
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(millis(850), "850ms");
        assert_eq!(millis(12_300), "12.3s");
        assert_eq!(millis(245_000), "4m05s");
    }
}
