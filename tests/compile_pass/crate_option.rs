// `crate = ...` names the runtime crate explicitly; plain values, handles and `&str` all fit.
use pipeline_runtime::prelude::*;

#[component(crate = pipeline_runtime, cache = true, retries = 1, time_limit = "5m")]
fn greet(name: String, times: u32) -> String {
    format!("hello {name}").repeat(times as usize)
}

#[component(crate = "pipeline_runtime")]
fn shout(text: String) -> String {
    text.to_uppercase()
}

#[pipeline(
    crate = pipeline_runtime,
    name = "greeting",
    project = "compile-pass",
    version = "1.0.2",
    tags = ["a", "b"]
)]
fn greeting(who: String) -> Result<String, HandleError> {
    let g = greet(who, 1);
    shout(&g).get()
}

fn main() {
    debug_pipeline();
    assert_eq!(greeting("you".to_string()).unwrap(), "HELLO YOU");
    assert_eq!(greet("x", 2).get().unwrap(), "hello xhello x");
}
