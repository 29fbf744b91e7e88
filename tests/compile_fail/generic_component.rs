use pipeline_runtime::prelude::*;

#[component]
fn identity<T: Clone>(x: T) -> T {
    x
}

fn main() {}
