use pipeline_runtime::prelude::*;

struct Model;

impl Model {
    #[component]
    fn predict(&self, x: f64) -> f64 {
        x
    }
}

fn main() {}
