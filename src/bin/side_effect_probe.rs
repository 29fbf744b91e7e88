//! A test fixture: a program whose `main` has a side effect before it runs a pipeline with
//! `run_locally()`. The workers are this same binary; the test checks that the side effect
//! happened once, i.e. that no worker ran `main`.
//!
//! Usage: `side_effect_probe <marker file> <state folder>`.

use pipeline_runtime::prelude::*;
use std::io::Write;

#[component]
fn triple(x: u64) -> u64 {
    x * 3
}

#[component]
fn add_all(values: Vec<u64>) -> u64 {
    values.iter().sum()
}

#[pipeline(name = "side_effect_probe", project = "tests")]
fn probe(n: u64) -> u64 {
    add_all((1..=n).map(triple).collect::<Vec<_>>())
        .get()
        .expect("the probe pipeline runs")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (marker, state) = (args.next().expect("marker path"), args.next().expect("state folder"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(marker)
        .expect("marker file");
    writeln!(file, "main ran in process {}", std::process::id()).expect("marker written");
    pipeline_runtime::set_state_dir(Some(state.into()));
    run_locally();
    println!("{}", probe(4));
}
