//! The Ray cluster: a client of its Jobs REST API, connecting to it (a check, then the
//! pipeline's binary uploaded once per build, with the warm runner's script), and the warm
//! runner's controller side (its endpoint, lease table and watcher). Below the executors that
//! run steps there and `enqueue`, which submits a pipeline's controller.

pub(crate) mod leases;
pub(crate) mod ray;
pub(crate) mod runner;

use crate::config::{DEFAULT_ADDRESS, RayConfig};
use ray::RayClient;

/// A cluster that answered and has this binary as a `working_dir` package.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub(crate) client: RayClient,
    /// The package's URI (`gcs://...zip`).
    pub(crate) package: String,
    /// The executable's file name inside the package.
    pub(crate) exe_name: String,
}

/// Why the cluster cannot be used: its address and the reason.
pub(crate) struct Unreachable {
    pub(crate) address: String,
    pub(crate) reason: String,
}

/// Checks the cluster `config` names and makes sure it has this binary, using `runtime` for the
/// requests (from any thread).
pub(crate) fn connect(runtime: &tokio::runtime::Runtime, config: &RayConfig) -> Result<Cluster, Unreachable> {
    let address = config.address.clone().unwrap_or_else(|| DEFAULT_ADDRESS.into());
    let fail = |reason: String| Unreachable {
        address: address.clone(),
        reason,
    };
    let client = RayClient::new(config).map_err(|e| fail(e.to_string()))?;
    let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    let exe_name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("worker").to_string();
    let checking = client.clone();
    let package = crate::sync::wait_on(runtime.handle(), async move {
        checking.check().await?;
        checking.ensure_package(&exe).await
    })
    .map_err(fail)?
    .map_err(|e| fail(e.to_string()))?;
    Ok(Cluster {
        client,
        package,
        exe_name,
    })
}
