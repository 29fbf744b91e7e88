// A component and a pipeline defined inside a function body.
use pipeline_runtime::prelude::*;

fn main() {
    #[component]
    fn square(x: i64) -> i64 {
        x * x
    }

    #[component]
    async fn add(a: i64, b: i64) -> i64 {
        a + b
    }

    #[pipeline(name = "local", project = "compile-pass")]
    fn sum_of_squares(a: i64, b: i64) -> Result<i64, HandleError> {
        add(square(a), square(b)).get()
    }

    debug_pipeline();
    assert_eq!(sum_of_squares(3, 4).unwrap(), 25);
    assert_eq!(square::call(5), 25);
}
