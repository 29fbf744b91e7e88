use pipeline_runtime::prelude::*;

#[component(continue_on_fail = true, continue_behaviour(skip_children_on_fail = false))]
fn double(x: u64) -> u64 {
    x * 2
}

fn main() {}
