//! A worker's result file, as the controller reads it.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| pipeline_runtime::fuzzing::worker_result(bytes));
