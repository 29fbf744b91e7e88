//! A build with `--no-default-features` is a debug/local-only library: what needs a left-out
//! feature is a clear error naming it, and nothing runs. Compiled only in such a build
//! (`cargo test -p pipeline-runtime --no-default-features`).
#![cfg(not(any(feature = "ray", feature = "object-store")))]

use pipeline_runtime::prelude::*;
use pipeline_runtime::{Mode, PipelineError, with_mode};
use std::sync::atomic::{AtomicBool, Ordering};

static RAN: AtomicBool = AtomicBool::new(false);

#[component]
fn touch() -> u32 {
    RAN.store(true, Ordering::SeqCst);
    1
}

#[pipeline(name = "featureless", project = "tests")]
fn featureless() -> u32 {
    touch().get().unwrap()
}

#[component(output_uri = "s3://bucket/prefix")]
fn stored() -> u32 {
    2
}

#[pipeline(name = "featureless_store", project = "tests")]
fn featureless_store() -> Result<u32, String> {
    stored().get().map_err(|e| e.to_string())
}

/// One test, so that no other test moves the (process-wide) state folder meanwhile.
fn state_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pipeline-featureless-{}", std::process::id()));
    pipeline_runtime::set_state_dir(Some(dir.clone()));
    dir
}

#[test]
fn what_needs_a_left_out_feature_names_it() {
    let dir = state_dir();
    let err = with_mode(Mode::Remote, featureless::run).unwrap_err();
    assert!(matches!(err, PipelineError::Disabled { feature: "ray", .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("remote mode (the default when no mode is chosen) needs"),
        "{message}"
    );
    assert!(
        message.contains("`ray` feature") && message.contains("run_locally()"),
        "{message}"
    );
    let Err(err) = featureless::enqueue() else {
        panic!("enqueue cannot succeed without the `ray` feature")
    };
    assert!(err.to_string().contains("`ray` feature"), "{err}");
    assert!(!RAN.load(Ordering::SeqCst));
    // Debug mode still works.
    assert_eq!(with_mode(Mode::Debug, featureless), 1);

    // An `output_uri` in object storage.
    let message = with_mode(Mode::Local, featureless_store).unwrap_err();
    assert!(message.contains("`s3://bucket/prefix/"), "{message}");
    assert!(
        message.contains("enable pipeline-runtime's `object-store` feature"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
