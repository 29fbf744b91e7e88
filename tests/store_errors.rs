//! A run store that cannot be used stops a pipeline before anything runs, with one clear line.

use pipeline_runtime::prelude::*;
use pipeline_runtime::{Mode, PipelineError, store, with_mode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static RAN: AtomicBool = AtomicBool::new(false);

#[component]
fn touch() -> u32 {
    RAN.store(true, Ordering::SeqCst);
    1
}

#[pipeline(name = "store_errors", project = "tests")]
fn guarded() -> u32 {
    touch().get().unwrap()
}

#[test]
fn corrupt_and_locked_stores_are_clear_errors() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("store_errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    pipeline_runtime::set_state_dir(Some(dir.clone()));
    debug_pipeline();

    // Garbage where the database should be.
    std::fs::write(dir.join("runs.db"), vec![0x5a; 8192]).unwrap();
    let err = guarded::run().unwrap_err();
    assert!(matches!(err, PipelineError::Store(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("runs.db") && message.contains("not a run store"),
        "{message}"
    );
    assert!(!message.contains('\n'));
    assert!(!RAN.load(Ordering::SeqCst));

    // A healthy store held under an exclusive lock by another connection.
    std::fs::remove_file(dir.join("runs.db")).unwrap();
    assert_eq!(guarded(), 1);
    let holder = rusqlite::Connection::open(dir.join("runs.db")).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    store::set_busy_timeout(Duration::from_millis(300));
    let err = guarded::run().unwrap_err();
    assert!(err.to_string().contains("locked by another process"), "{err}");
    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(guarded(), 1, "works again once the lock is gone");

    // A state folder that is a file: every mode names the path.
    let file = dir.join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    pipeline_runtime::set_state_dir(Some(file.clone()));
    RAN.store(false, Ordering::SeqCst);
    for mode in [Mode::Debug, Mode::Local] {
        let err = with_mode(mode, guarded::run).unwrap_err().to_string();
        assert!(err.contains(&file.display().to_string()), "{mode:?}: {err}");
    }
    assert!(!RAN.load(Ordering::SeqCst));
}
