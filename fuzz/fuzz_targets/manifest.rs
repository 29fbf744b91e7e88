//! A worker manifest, as a worker reads it.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| pipeline_runtime::fuzzing::manifest(bytes));
