// The macros reached through a renamed import of the runtime crate.
use pipeline_runtime as pr;

#[pr::component(return_values = ["rows"])]
fn load(n: u64) -> Vec<f64> {
    (0..n).map(|x| x as f64).collect()
}

#[pr::component]
fn total(rows: Vec<f64>) -> f64 {
    rows.iter().sum()
}

#[pr::pipeline(name = "renamed", project = "compile-pass")]
fn sum_up(n: u64) -> Result<f64, pr::HandleError> {
    let rows = load(n);
    total(&rows).get()
}

fn main() {
    pr::debug_pipeline();
    let finished = sum_up::run(4).expect("the pipeline starts");
    assert_eq!(finished.output.unwrap(), 6.0);
    assert_eq!(load::descriptor().name, "load");
}
