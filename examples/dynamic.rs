//! Dynamic control flow: which steps run depends on values read during the run.
//!
//! A data-quality check decides whether a cleaning step runs, then a search halves the
//! learning rate until the loss is low enough. Run: `cargo run --example dynamic`.

use pipeline_runtime::prelude::*;

#[component]
fn load(rows: usize) -> Vec<f64> {
    // Every tenth value is missing (NaN).
    (0..rows)
        .map(|i| if i % 10 == 0 { f64::NAN } else { i as f64 / rows as f64 })
        .collect()
}

#[component]
fn missing_share(values: Vec<f64>) -> f64 {
    values.iter().filter(|v| v.is_nan()).count() as f64 / values.len() as f64
}

#[component]
fn drop_missing(values: Vec<f64>) -> Vec<f64> {
    values.into_iter().filter(|v| !v.is_nan()).collect()
}

/// A stand-in for training: the loss falls as the learning rate nears the best one (0.05).
#[component(task_type = "training")]
fn train(values: Vec<f64>, learning_rate: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(values.iter().all(|v| v.is_finite()), "training data has missing values");
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    Ok((learning_rate - 0.05).abs() * 10.0 + mean * 0.01)
}

#[pipeline(name = "dynamic", project = "examples", version = "1.0.0")]
fn search(rows: usize, target_loss: f64) -> anyhow::Result<(f64, f64)> {
    let mut data = load(rows);
    // Branch on a value read from an earlier step.
    if missing_share(&data).get()? > 0.0 {
        data = drop_missing(data);
    }
    let mut learning_rate = 1.0;
    loop {
        let loss = train(&data, learning_rate).get()?;
        println!("learning rate {learning_rate:.4}: loss {loss:.4}");
        if loss <= target_loss || learning_rate < 1e-3 {
            return Ok((learning_rate, loss));
        }
        learning_rate /= 2.0;
    }
}

fn main() -> anyhow::Result<()> {
    pipeline_runtime::debug_pipeline();
    let finished = search::run(1_000, 0.2)?;
    let (rate, loss) = finished.output?;
    println!("\nbest learning rate {rate} (loss {loss:.4}); the run took these steps:");
    print!("{}", finished.run.dag().to_text());
    Ok(())
}
