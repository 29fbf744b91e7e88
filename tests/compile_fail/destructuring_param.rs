use pipeline_runtime::prelude::*;

#[component]
fn add((a, b): (f64, f64)) -> f64 {
    a + b
}

fn main() {}
