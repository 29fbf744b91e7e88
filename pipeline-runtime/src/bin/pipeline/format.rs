//! How values are shown to people: times (UTC), durations, sizes, Rust type names, parameters.

use pipeline_core::dag::format_duration;
pub use pipeline_core::format::{one_line, rfc3339, short_type, size, timestamp};
use std::time::Duration;

/// A duration as the DAG renderings show it, or `-` when there is none.
pub fn duration(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_string(), format_duration)
}

/// A parameter's recorded JSON text as a value (plain text when it is not JSON).
pub fn parameter_value(json: &str) -> serde_json::Value {
    serde_json::from_str(json).unwrap_or_else(|_| serde_json::Value::String(json.to_string()))
}

/// A float as short as it reads exactly (`0.5`, `12`, `1e-7`).
pub fn number(v: f64) -> String {
    format!("{v}")
}

/// `-` for an empty text.
pub fn or_dash(text: String) -> String {
    if text.is_empty() { "-".to_string() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_removes_breaks() {
        assert_eq!(one_line("a\nb\r\n\tc\u{7}"), "a b  c");
    }
}
