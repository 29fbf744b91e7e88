use pipeline_runtime::prelude::*;

struct Settings {
    rows: u64,
}

#[component]
fn load(n: u64) -> Vec<f64> {
    (0..n).map(|x| x as f64).collect()
}

#[pipeline(name = "p", project = "examples")]
fn p(settings: Settings) -> anyhow::Result<usize> {
    Ok(load(settings.rows).get()?.len())
}

fn main() {}
