//! Where the framework keeps what it writes: the state folder.

use std::path::PathBuf;
use std::sync::RwLock;

/// The environment variable that moves the state folder.
pub const STATE_DIR_ENV: &str = "PIPELINE_STATE_DIR";

static OVERRIDE: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Moves the state folder for the pipelines started from now on (tests point it at a
/// temporary folder this way); `None` goes back to the default.
pub fn set_state_dir(dir: Option<PathBuf>) {
    *OVERRIDE.write().unwrap_or_else(|p| p.into_inner()) = dir;
}

/// The state folder: the one set by [`set_state_dir`], else `$PIPELINE_STATE_DIR`, else
/// `.pipeline` in the working directory.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = OVERRIDE.read().unwrap_or_else(|p| p.into_inner()).clone() {
        return dir;
    }
    match std::env::var_os(STATE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("."))
            .join(".pipeline"),
    }
}

static RECORDING: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Turns recording into the run store on or off for the pipelines started from now on
/// (default: on, unless `PIPELINE_RECORD=0`).
pub fn set_recording(on: bool) {
    RECORDING.store(if on { 1 } else { 2 }, std::sync::atomic::Ordering::Relaxed);
}

/// Whether pipelines started now are recorded.
pub fn recording() -> bool {
    match RECORDING.load(std::sync::atomic::Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => std::env::var("PIPELINE_RECORD").map_or(true, |v| v != "0"),
    }
}
