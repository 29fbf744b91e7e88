//! A pipeline assembled at run time (`PipelineController`) from a spec file,
//! `examples/controller/pipeline.toml`, whose steps call the components below.
//!
//! `cargo run --example controller` runs it in debug mode; `-- --local` runs each step as a
//! subprocess; `-- path/to/other.toml` runs another spec.

use pipeline_runtime::PipelineController;
use pipeline_runtime::prelude::*;

/// One sample: (x, y).
type Sample = (f64, f64);

/// Samples of y = 2x with deterministic noise, split into training and test halves.
#[component(return_values = ["train", "test"])]
fn generate(rows: u32) -> (Vec<Sample>, Vec<Sample>) {
    let samples: Vec<Sample> = (0..rows)
        .map(|i| {
            let x = f64::from(i) / f64::from(rows);
            (x, 2.0 * x + if i % 2 == 0 { 0.01 } else { -0.01 })
        })
        .collect();
    let (train, test) = samples.split_at(samples.len() / 2);
    (train.to_vec(), test.to_vec())
}

/// Fits the slope of y = a·x by gradient descent.
#[component(task_type = "training")]
fn fit_line(samples: Vec<Sample>, learning_rate: f64) -> f64 {
    let mut slope = 0.0;
    for _ in 0..500 {
        let gradient: f64 = samples.iter().map(|(x, y)| (slope * x - y) * x).sum::<f64>() / samples.len() as f64;
        slope -= learning_rate * 100.0 * gradient;
    }
    slope
}

/// The mean absolute error of the fitted line on held-out samples.
#[component]
fn mean_error(slope: f64, samples: Vec<Sample>) -> f64 {
    samples.iter().map(|(x, y)| (slope * x - y).abs()).sum::<f64>() / samples.len() as f64
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let local = args.iter().any(|a| a == "--local");
    let file = args.iter().find(|a| !a.starts_with("--")).cloned();
    let file = file.unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/controller/pipeline.toml").into());
    if local {
        run_locally()
    } else {
        debug_pipeline()
    }

    // The three lines a spec file needs:
    let pipe = PipelineController::from_file(&file)?;
    let finished = pipe.run()?;
    println!("{}", serde_json::to_string_pretty(&finished.output)?);

    println!("{}", finished.run.dag().to_text());
    anyhow::ensure!(finished.run.is_successful(), "the run did not succeed");
    Ok(())
}
