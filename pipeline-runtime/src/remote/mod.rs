//! The Ray cluster: a client of its Jobs REST API, connecting to it (a check, then the
//! pipeline's binary uploaded once per build, with the warm runner's script), and the warm
//! runner's controller side (its endpoint, lease table and watcher). Below the executors that
//! run steps there and `enqueue`, which submits a pipeline's controller.

pub(crate) mod leases;
pub(crate) mod ray;
pub(crate) mod runner;

use crate::config::{DEFAULT_ADDRESS, RayConfig};
use ray::RayClient;

/// A cluster that answered and has this binary as a package.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub(crate) client: RayClient,
    /// The package's URI (`gcs://...zip`).
    pub(crate) package: String,
    /// The executable's file name inside the package.
    pub(crate) exe_name: String,
}

impl Cluster {
    /// The `runtime_env` of a job that runs from the package, with `env_vars`.
    pub(crate) fn runtime_env(&self, env_vars: serde_json::Value) -> serde_json::Value {
        // `py_modules`, not `working_dir`: Ray unpacks a `working_dir` package again for each
        // job that starts on a node before the first one's set-up ended (it overwrites), so a
        // job starting meanwhile finds the binary half-written ("Permission denied"); a
        // `py_modules` package is unpacked once per node, under a lock. Its folder comes first
        // in PYTHONPATH.
        serde_json::json!({ "py_modules": [self.package], "env_vars": env_vars })
    }

    /// A job's entrypoint that runs `command` (a shell word list) in the package's folder.
    pub(crate) fn entrypoint(command: &str) -> String {
        format!("cd \"${{PYTHONPATH%%:*}}\" && exec {command}")
    }

    /// A job's entrypoint that runs the package's binary (a step's worker, a controller).
    pub(crate) fn binary_entrypoint(&self) -> String {
        Self::entrypoint(&format!("./{}", self.exe_name))
    }
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
