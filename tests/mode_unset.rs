//! Without `debug_pipeline()` the default mode is remote, which this build does not provide:
//! starting a pipeline must say so clearly instead of running anything.

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
fn no_mode_chosen_is_a_clear_error_and_runs_nothing() {
    assert_eq!(mode(), Mode::Remote);
    let err = unset::run().unwrap_err();
    assert!(matches!(err, PipelineError::RemoteUnavailable(ref name) if name == "unset"));
    assert!(
        err.to_string().contains("call `pipeline_runtime::debug_pipeline()`"),
        "{err}"
    );
    let panic = std::panic::catch_unwind(unset).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("no execution mode chosen for pipeline `unset`"),
        "{message}"
    );
    assert!(!RAN.load(Ordering::SeqCst));
}
