//! Printing: aligned tables for people, JSON with `--json`.

use serde::Serialize;

/// How to print results.
pub struct Output {
    /// Print JSON instead of tables.
    pub json: bool,
}

impl Output {
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

/// Renders rows (the first is the header) as left-aligned columns.
pub fn render(rows: &[Vec<String>]) -> String {
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
    fn durations_are_short() {
        assert_eq!(millis(850), "850ms");
        assert_eq!(millis(12_300), "12.3s");
        assert_eq!(millis(245_000), "4m05s");
    }
}
