use pipeline_runtime::prelude::*;

#[component]
fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

fn main() {}
