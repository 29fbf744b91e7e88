//! A run's node log in the run store, as its readers fold it.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| pipeline_runtime::fuzzing::node_log(bytes));
