//! A value's encoded bytes, decoded with the built-in codecs as several types.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| pipeline_runtime::fuzzing::payload(bytes));
