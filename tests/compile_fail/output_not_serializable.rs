use pipeline_runtime::prelude::*;

#[derive(Clone)]
struct Model {
    weights: Vec<f64>,
}

#[component]
fn train(n: usize) -> anyhow::Result<Model> {
    Ok(Model { weights: vec![0.0; n] })
}

fn main() {}
