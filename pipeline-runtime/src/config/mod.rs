//! Where and how pipelines run: the mode, the state folder, recording, the Ray cluster, and
//! the run id a controller process was started for. The lowest layer: it depends on nothing
//! else in the crate.

mod mode;
mod state;

#[cfg(feature = "ray")]
pub(crate) use mode::default_execution_queue;
pub use mode::{Mode, debug_pipeline, mode, run_locally, set_default_execution_queue, start_locally, with_mode};
pub use state::{
    RAY_ADDRESS_ENV, RAY_TOKEN_ENV, STATE_DIR_ENV, ray_config, recording, set_recording, set_state_dir, state_dir,
};

use serde::Deserialize;
use std::sync::Mutex;

/// Where the cluster is and how to talk to it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RayConfig {
    /// The dashboard's address, `http://127.0.0.1:8265` by default.
    pub address: Option<String>,
    /// A bearer token (Ray's token authentication).
    pub token: Option<String>,
    /// Extra headers, for clusters behind a proxy.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// The default dashboard address.
#[cfg(feature = "ray")]
pub(crate) const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8265";

/// A run id a controller process must use for its first run (the one it was started for).
static FORCED_RUN: Mutex<Option<String>> = Mutex::new(None);

/// Makes the next run started in this process use `key` (a controller on the cluster runs
/// under the id its caller chose, so the caller can find the run).
pub(crate) fn force_next_run_key(key: String) {
    *crate::sync::lock(&FORCED_RUN) = Some(key);
}

/// The forced run id, once.
pub(crate) fn take_forced_run_key() -> Option<String> {
    crate::sync::lock(&FORCED_RUN).take()
}
