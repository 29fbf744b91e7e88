//! Quickstart: a small training pipeline. Load a dataset, fan out over shards to fit one
//! model per shard, fan in to average them, evaluate, report.
//!
//! `cargo run --example quickstart` runs it in debug mode (in-process) and prints the result and
//! the DAG; `-- --local` runs every step as a subprocess instead; `-- --dot` or `-- --mermaid`
//! print the DAG as Graphviz DOT or Mermaid.

use pipeline_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sample {
    x: f64,
    y: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Model {
    slope: f64,
    intercept: f64,
}

/// Synthetic data: y = 3x + 2 plus deterministic noise, split 80/20 into train and test.
#[component(return_values = ["train", "test"], task_type = "data_processing")]
fn load_dataset(rows: usize, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    let mut state = seed;
    let mut noise = move || {
        // A small LCG: reproducible without a dependency.
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    let data: Vec<Sample> = (0..rows)
        .map(|i| {
            let x = i as f64 / rows as f64 * 10.0;
            Sample {
                x,
                y: 3.0 * x + 2.0 + noise(),
            }
        })
        .collect();
    let cut = rows * 4 / 5;
    let (train, test) = data.split_at(cut);
    (train.to_vec(), test.to_vec())
}

/// Every `shards`-th sample, starting at `index`.
#[component]
fn shard(data: Vec<Sample>, index: usize, shards: usize) -> Vec<Sample> {
    data.into_iter().skip(index).step_by(shards).collect()
}

/// Ordinary least squares on one shard.
#[component(task_type = "training", retries = 1)]
fn fit(samples: Vec<Sample>) -> anyhow::Result<Model> {
    let n = samples.len() as f64;
    anyhow::ensure!(
        samples.len() >= 2,
        "a shard of {} samples is too small to fit",
        samples.len()
    );
    let (mx, my) = (
        samples.iter().map(|s| s.x).sum::<f64>() / n,
        samples.iter().map(|s| s.y).sum::<f64>() / n,
    );
    let sxx: f64 = samples.iter().map(|s| (s.x - mx).powi(2)).sum();
    let sxy: f64 = samples.iter().map(|s| (s.x - mx) * (s.y - my)).sum();
    anyhow::ensure!(sxx > 0.0, "all x values in the shard are equal");
    let slope = sxy / sxx;
    Ok(Model {
        slope,
        intercept: my - slope * mx,
    })
}

#[component]
fn average(models: Vec<Model>) -> Model {
    let n = models.len() as f64;
    Model {
        slope: models.iter().map(|m| m.slope).sum::<f64>() / n,
        intercept: models.iter().map(|m| m.intercept).sum::<f64>() / n,
    }
}

/// Root mean squared error on the test set.
#[component(task_type = "testing")]
fn evaluate(model: Model, test: Vec<Sample>) -> f64 {
    let se: f64 = test
        .iter()
        .map(|s| (model.slope * s.x + model.intercept - s.y).powi(2))
        .sum();
    (se / test.len() as f64).sqrt()
}

#[component]
fn report(model: Model, rmse: f64) -> String {
    format!(
        "y = {:.3}x + {:.3}  (test RMSE {:.4})",
        model.slope, model.intercept, rmse
    )
}

#[pipeline(name = "quickstart", project = "examples", version = "1.0.0")]
fn train(rows: usize, shards: usize, seed: u64) -> anyhow::Result<String> {
    let (train, test) = load_dataset(rows, seed);
    // Fan-out: one shard and one fit per index; none of these calls waits.
    let models: Vec<Handle<Model>> = (0..shards).map(|i| fit(shard(&train, i, shards))).collect();
    // Fan-in: a Vec<Handle<Model>> fits a Vec<Model> parameter.
    let model = average(models);
    let rmse = evaluate(&model, test);
    // Reading a value is the only thing that waits.
    Ok(report(model, rmse).get()?)
}

fn main() -> anyhow::Result<()> {
    let flag = std::env::args().nth(1);
    if flag.as_deref() == Some("--local") {
        pipeline_runtime::run_locally();
    } else {
        pipeline_runtime::debug_pipeline();
    }
    let finished = train::run(10_000, 4, 7)?;
    let dag = finished.run.dag();
    match flag.as_deref() {
        Some("--dot") => print!("{}", dag.to_dot()),
        Some("--mermaid") => print!("{}", dag.to_mermaid()),
        _ => {
            println!("{}", finished.output?);
            let run = &finished.run;
            println!(
                "\nrun {} of {}/{}: {} in {:.1?}",
                run.id(),
                run.project(),
                run.name(),
                run.status(),
                run.elapsed()
            );
            print!("{}", dag.to_text());
        }
    }
    Ok(())
}

// A component is plain Rust: `fit::call` runs its body without any pipeline.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_line() {
        let model = fit::call(vec![Sample { x: 0.0, y: 1.0 }, Sample { x: 1.0, y: 3.0 }]).unwrap();
        assert_eq!((model.slope, model.intercept), (2.0, 1.0));
    }

    #[test]
    fn fit_rejects_a_shard_too_small() {
        let err = fit::call(vec![Sample { x: 0.0, y: 1.0 }]).unwrap_err();
        assert!(err.to_string().contains("too small"), "{err}");
    }

    #[test]
    fn the_pipeline_learns_the_generating_line() {
        pipeline_runtime::debug_pipeline();
        let finished = train::run(2_000, 3, 1).unwrap();
        assert!(finished.run.is_successful());
        assert!(finished.output.unwrap().starts_with("y = 3.0"));
        assert_eq!(finished.run.dag().len(), 1 + 3 * 2 + 3);
    }
}
