// A component or pipeline with a mistake is reported once, at the mistake: its calls (with
// values, handles, `::call`, `::run`) report nothing more.
use pipeline_runtime::prelude::*;

#[component(retries = "3")]
fn load(n: u64) -> Vec<f64> {
    (0..n).map(|x| x as f64).collect()
}

#[component(return_values = ["lo", "hi"], cahce = true)]
fn bounds(rows: Vec<f64>) -> (f64, f64) {
    (rows[0], rows[rows.len() - 1])
}

#[pipeline(name = "p", project = "examples", max_paralel = 4)]
fn spread(n: u64) -> Result<f64, HandleError> {
    let rows = load(n);
    let (lo, hi) = bounds(&rows);
    Ok(hi.get()? - lo.get()?)
}

fn main() {
    debug_pipeline();
    let direct: Vec<f64> = load::call(3);
    let (lo, hi): (f64, f64) = bounds::call(direct);
    let total: f64 = spread::run(4).unwrap().output.unwrap() + spread(4).unwrap() + lo + hi;
    println!("{total}");
}
