// `return_value = "..."` records the body's value as the run's output, sync and async; early
// `return`s in the body still give their value.
use pipeline_runtime::prelude::*;

#[component]
fn twice(x: u64) -> u64 {
    x * 2
}

#[pipeline(name = "returns_sync", project = "compile-pass", return_value = "total")]
fn returns_sync(x: u64) -> u64 {
    if x == 0 {
        return 0;
    }
    twice(x).get().unwrap()
}

#[pipeline(name = "returns_async", project = "compile-pass", return_value = "total")]
async fn returns_async(x: u64) -> u64 {
    twice(x).await.unwrap()
}

fn main() {
    pipeline_runtime::set_recording(false);
    debug_pipeline();
    assert_eq!(returns_sync(0), 0);
    assert_eq!(returns_sync(4), 8);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(runtime.block_on(returns_async(5)), 10);
}
