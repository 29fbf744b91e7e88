use pipeline_runtime::prelude::*;

#[component(return_values = ["rows"], cache = true, retries = 2)]
fn load(n: u64) -> Vec<f64> {
    (0..n).map(|x| x as f64).collect()
}

#[component]
fn mean(rows: Vec<f64>) -> f64 {
    rows.iter().sum::<f64>() / rows.len() as f64
}

#[component(return_values = ["lo", "hi"])]
fn split(rows: Vec<f64>) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mid = rows.len() / 2;
    Ok((rows[..mid].to_vec(), rows[mid..].to_vec()))
}

#[component]
async fn add(a: f64, b: f64) -> f64 {
    a + b
}

#[pipeline(name = "stats", project = "examples", version = "1.0.0")]
fn stats(n: u64) -> anyhow::Result<f64> {
    let rows = load(n);
    let m = mean(&rows);
    let (lo, hi) = split(rows);
    let s = add(mean(lo), mean(hi));
    Ok(m.get()? + s.get()?)
}

fn main() -> anyhow::Result<()> {
    debug_pipeline();
    let f = stats::run(10)?;
    println!("{:?}", f.output);
    print!("{}", f.run.dag().to_text());
    Ok(())
}
