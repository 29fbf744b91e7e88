use pipeline_runtime::prelude::*;

#[component]
fn load(n: u64) -> Vec<f64> {
    (0..n).map(|x| x as f64).collect()
}

#[component]
fn mean(rows: Vec<f64>) -> f64 {
    rows.iter().sum::<f64>() / rows.len() as f64
}

#[pipeline(name = "stats", project = "examples")]
fn stats(n: u64) -> anyhow::Result<f64> {
    let rows = load(n);
    let m = mean(&rows);
    let again = mean(m);
    Ok(again.get()?)
}

fn main() {}
