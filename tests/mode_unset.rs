//! Without `debug_pipeline()` or `run_locally()` the mode is remote: with no Ray cluster at the
//! configured address, starting a pipeline must say so clearly instead of running anything.

use pipeline_runtime::prelude::*;
use pipeline_runtime::{Mode, PipelineError, mode};
use std::sync::atomic::{AtomicBool, Ordering};

static RAN: AtomicBool = AtomicBool::new(false);

#[component]
fn touch() -> bool {
    RAN.store(true, Ordering::SeqCst);
    true
}

#[pipeline(name = "unset", project = "tests")]
fn unset() -> bool {
    touch().get().unwrap()
}

#[test]
fn an_unreachable_cluster_is_a_clear_error_and_runs_nothing() {
    // SAFETY: this binary's only test; nothing else reads the environment concurrently.
    unsafe { std::env::set_var(pipeline_runtime::RAY_ADDRESS_ENV, "http://127.0.0.1:9") };
    assert_eq!(mode(), Mode::Remote);
    let err = unset::run().unwrap_err();
    assert!(
        matches!(err, PipelineError::Cluster { ref address, .. } if address == "http://127.0.0.1:9"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("cannot use the Ray cluster at http://127.0.0.1:9: no answer"),
        "{message}"
    );
    assert!(
        message.contains("debug_pipeline()") && !message.contains('\n'),
        "{message}"
    );
    let panic = std::panic::catch_unwind(unset).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("cannot use the Ray cluster"), "{message}");
    assert!(!RAN.load(Ordering::SeqCst));
}
