// Components in nested modules, called from a pipeline in another module.
use pipeline_runtime::prelude::*;

mod data {
    use pipeline_runtime::prelude::*;

    #[component]
    pub fn load(n: u64) -> Vec<f64> {
        (0..n).map(|x| x as f64).collect()
    }

    pub mod stats {
        use pipeline_runtime::prelude::*;

        #[component(return_values = ["lo", "hi"])]
        pub fn bounds(rows: Vec<f64>) -> (f64, f64) {
            let lo = rows.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = rows.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, hi)
        }

        // Same function name as `data::load`, told apart by an explicit component name.
        #[component(name = "stats.load")]
        pub fn load(rows: Vec<f64>) -> Vec<f64> {
            rows
        }
    }
}

#[pipeline(name = "nested", project = "compile-pass")]
fn range(n: u64) -> Result<f64, HandleError> {
    let rows = data::stats::load(data::load(n));
    let (lo, hi) = data::stats::bounds(rows);
    Ok(hi.get()? - lo.get()?)
}

fn main() {
    debug_pipeline();
    assert_eq!(range(5).unwrap(), 4.0);
    assert_eq!(data::stats::bounds::call(vec![2.0, 1.0]), (1.0, 2.0));
}
