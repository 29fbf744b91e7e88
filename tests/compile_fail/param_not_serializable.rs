use pipeline_runtime::prelude::*;

#[derive(Clone)]
struct Config {
    scale: f64,
}

#[component]
fn scale(config: Config, x: f64) -> f64 {
    config.scale * x
}

fn main() {}
