//! Scalars reduced to what a summary shows: the last value reported per title and series.

use pipeline_runtime::store::MetricRecord;
use std::collections::BTreeMap;

/// The last value of each `(title, series)`: the highest iteration, the latest report among equal
/// iterations (the store lists them in that order).
pub fn last_values(metrics: &[MetricRecord]) -> BTreeMap<(String, String), f64> {
    let mut last = BTreeMap::new();
    for m in metrics {
        last.insert((m.title.clone(), m.series.clone()), m.value);
    }
    last
}

/// `title/series`, or just `title` when the series repeats it.
pub fn label(title: &str, series: &str) -> String {
    if series.is_empty() || series == title {
        title.to_string()
    } else {
        format!("{title}/{series}")
    }
}
