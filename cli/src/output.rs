//! Output: rows are JSON objects with stable keys; a table shows some of those keys as
//! columns (comfy-table, aligned, no borders), `-o wide` shows more, `--json` prints the
//! objects themselves. Waits show progress (indicatif on a terminal, a line per change
//! otherwise, so that logs and tests see it too).

use std::io::IsTerminal as _;

use comfy_table::{presets, ContentArrangement, Table};
use serde_json::Value;

/// One column of a table: the header and the row key it shows.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The header, upper case.
    pub header: &'static str,
    /// The key in each row object.
    pub key: &'static str,
    /// Shown only with `-o wide`.
    pub wide: bool,
    /// The cell's text from the whole row (default: the key's value).
    pub render: Option<fn(&Value) -> String>,
}

/// A column shown always.
pub const fn col(header: &'static str, key: &'static str) -> Column {
    Column {
        header,
        key,
        wide: false,
        render: None,
    }
}

/// A column shown with `-o wide`.
pub const fn wide(header: &'static str, key: &'static str) -> Column {
    Column {
        header,
        key,
        wide: true,
        render: None,
    }
}

/// A column whose cell is computed from the row (`key` names what it shows, for readers).
pub const fn shown(
    header: &'static str,
    key: &'static str,
    render: fn(&Value) -> String,
) -> Column {
    Column {
        header,
        key,
        wide: false,
        render: Some(render),
    }
}

impl Column {
    /// Shown only with `-o wide`.
    pub const fn wide(mut self) -> Column {
        self.wide = true;
        self
    }

    fn text(&self, row: &Value) -> String {
        match self.render {
            Some(render) => render(row),
            None => cell(&row[self.key]),
        }
    }
}

/// The CLUSTER column of `--all-contexts`.
pub const CLUSTER: Column = col("CLUSTER", "cluster");

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns.
    #[default]
    Table,
    /// Aligned columns, more of them.
    Wide,
    /// JSON.
    Json,
}

/// The text of one cell.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => {
                let text = format!("{f:.2}");
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            }
            _ => n.to_string(),
        },
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        // Attributes and the like, as Mesos writes them: `rack:r1;zone:a`.
        Value::Object(map) if map.is_empty() => "-".into(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}:{}", cell(v)))
            .collect::<Vec<_>>()
            .join(";"),
    }
}

/// `rows` as an aligned table of `columns` (the wide ones too with `wide`).
pub fn table(columns: &[Column], rows: &[Value], wide: bool) -> String {
    let shown: Vec<&Column> = columns.iter().filter(|c| wide || !c.wide).collect();
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(shown.iter().map(|c| c.header));
    for row in rows {
        table.add_row(shown.iter().map(|c| c.text(row)));
    }
    // The preset pads each cell by one space on both sides: trim the lines' ends.
    table
        .to_string()
        .lines()
        .map(|l| l.trim_end().strip_prefix(' ').unwrap_or(l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Key/value pairs as a two-column table (for `show` commands).
pub fn pairs(items: &[(&str, String)]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    for (k, v) in items {
        table.add_row(vec![format!("{k}:"), v.clone()]);
    }
    table
        .to_string()
        .lines()
        .map(|l| l.trim_end().strip_prefix(' ').unwrap_or(l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Print `rows` in `format`.
pub fn print_rows(format: Format, columns: &[Column], rows: &[Value]) {
    match format {
        Format::Json => print_json(&Value::Array(rows.to_vec())),
        Format::Table | Format::Wide => {
            outln!("{}", table(columns, rows, format == Format::Wide))
        }
    }
}

/// Print `value` as pretty JSON.
pub fn print_json(value: &Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialize")
    );
}

/// Progress of a wait: a bar on a terminal, a line per change elsewhere.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: String,
}

impl Progress {
    /// Progress towards `total`, titled `prefix`.
    pub fn new(prefix: &str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {msg} ({elapsed})")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(prefix.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            last: String::new(),
        }
    }

    /// Now at `position` of `total`, described by `message` ("3/5 healthy").
    pub fn update(&mut self, position: u64, total: u64, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total.max(1));
                bar.set_position(position.min(total));
                bar.set_message(message.to_string());
            }
            None if message != self.last => eprintln!("{message}"),
            None => {}
        }
        self.last = message.to_string();
    }

    /// The wait ended: the bar goes, `result` stays.
    pub fn finish(self, result: &str) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{result}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_aligns_fixed_json_and_wide_adds_columns() {
        let columns = [
            col("ID", "id"),
            col("INSTANCES", "instances"),
            col("CPUS", "cpus"),
            wide("CMD", "cmd"),
        ];
        let rows = [
            json!({"id": "/hello", "instances": "3/3", "cpus": 0.1, "cmd": "sleep 600"}),
            json!({"id": "/a-longer-name", "instances": "0/1", "cpus": 1.0, "cmd": null}),
        ];
        let text = table(&columns, &rows, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ID"), "{text}");
        assert!(!text.contains("CMD"));
        // Aligned: each column starts at the same offset on every line.
        let at = lines[0].find("INSTANCES").unwrap();
        assert_eq!(lines[1].find("3/3"), Some(at), "{text}");
        assert_eq!(lines[2].find("0/1"), Some(at), "{text}");
        assert!(
            lines[1].contains("0.1") && lines[2].contains(" 1"),
            "{text}"
        );
        let wide_text = table(&columns, &rows, true);
        assert!(wide_text.contains("CMD") && wide_text.contains("sleep 600"));
        assert!(
            wide_text.lines().nth(2).unwrap().ends_with('-'),
            "{wide_text}"
        );
    }

    #[test]
    fn cells_show_absent_values_as_a_dash_and_lists_joined() {
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&json!([1, "b"])), "1,b");
        assert_eq!(cell(&json!(2.50)), "2.5");
        assert_eq!(cell(&json!(7)), "7");
        assert_eq!(cell(&json!({"rack": "r1", "zone": "a"})), "rack:r1;zone:a");
    }
}
