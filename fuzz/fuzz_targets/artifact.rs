//! An artifact file: header, checked payload, values, a fan-in of it.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| pipeline_runtime::fuzzing::artifact(bytes));
