use pipeline_runtime::prelude::*;

#[component(return_values = ["lo", "mid", "hi"])]
fn split(rows: Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    let mid = rows.len() / 2;
    (rows[..mid].to_vec(), rows[mid..].to_vec())
}

#[component(return_values = ["lo", "hi"])]
fn halve(x: f64) -> anyhow::Result<f64> {
    Ok(x / 2.0)
}

fn main() {}
