//! A pipeline's controller run as a job on the Ray cluster (ClearML's `enqueue` onto
//! `pipeline_execution_queue`): the job runs this same binary, whose constructor sees the
//! controller request, runs the pipeline from its JSON parameters (its steps become jobs too)
//! and exits. The run is recorded in the state folder the request names, so the caller can
//! follow it when that folder is shared with the cluster (one machine, or a shared filesystem).

use super::PipelineRun;
use crate::error::PipelineError;
use crate::remote::ray::{JobInfo, RayClient, RayError};
use crate::worker::controller::{CONTROLLER_ENV, Request};
use pipeline_core::{PipelineDescriptor, registry};
use std::time::{Duration, Instant};

/// A run whose controller was enqueued on the cluster.
pub struct RemoteRun {
    client: RayClient,
    runtime: tokio::runtime::Runtime,
    job: String,
    run: String,
}

impl RemoteRun {
    /// The run's id in the run store.
    pub fn id(&self) -> &str {
        &self.run
    }

    /// The controller's Ray job (submission id).
    pub fn job(&self) -> &str {
        &self.job
    }

    fn cluster_error(&self, reason: String) -> PipelineError {
        PipelineError::Cluster {
            address: self.client.address().into(),
            reason,
        }
    }

    /// Sends `request(client, job id)` to the cluster and waits for the answer, from any thread.
    fn ask<T, F>(&self, request: impl FnOnce(RayClient, String) -> F) -> Result<T, PipelineError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, RayError>> + Send + 'static,
    {
        let future = request(self.client.clone(), self.job.clone());
        crate::sync::wait_on(self.runtime.handle(), future)
            .map_err(|panicked| self.cluster_error(panicked))?
            .map_err(|e| self.cluster_error(e.to_string()))
    }

    fn status(&self) -> Result<JobInfo, PipelineError> {
        self.ask(|client, job| async move { client.status(&job).await })
    }

    /// Waits (at most `timeout`) for the controller to end, then loads the run from the run
    /// store. `Ok(None)` when it is still running.
    pub fn wait(&self, timeout: Duration) -> Result<Option<PipelineRun>, PipelineError> {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.status()?;
            if info.is_terminal() {
                return match PipelineRun::get(&self.run)? {
                    Some(run) => Ok(Some(run)),
                    None => Err(self.cluster_error(format!(
                        "the controller job `{}` ended ({}{}) but its run `{}` is not in this run store: the \
                             cluster must share the state folder",
                        self.job,
                        info.status,
                        info.message.map(|m| format!(": {m}")).unwrap_or_default(),
                        self.run
                    ))),
                };
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(100).min(deadline - Instant::now()));
        }
    }

    /// The controller job's output so far.
    pub fn logs(&self) -> Result<String, PipelineError> {
        self.ask(|client, job| async move { client.logs(&job).await })
    }

    /// Stops the controller job (its running steps are stopped by their own jobs' end).
    pub fn stop(&self) -> Result<(), PipelineError> {
        self.ask(|client, job| async move { client.stop(&job).await })
    }
}

/// Submits `descriptor`'s pipeline with `params` (name, JSON form) as a controller job on the
/// Ray cluster, on the queue `pipeline_execution_queue` names; returns at once. Called by
/// `my_pipeline::enqueue(...)`.
pub fn enqueue_pipeline(
    descriptor: &'static PipelineDescriptor,
    params: Vec<(&'static str, String)>,
) -> Result<RemoteRun, PipelineError> {
    let params: serde_json::Map<String, serde_json::Value> = params
        .into_iter()
        .map(|(name, json)| {
            (
                name.to_string(),
                serde_json::from_str(&json).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect();
    enqueue_with(descriptor, params, None)
}

/// [`enqueue_pipeline`] with the parameters as JSON, and the spec of a pipeline assembled at
/// run time (`PipelineController`), which the controller job builds again.
pub(crate) fn enqueue_with(
    descriptor: &'static PipelineDescriptor,
    params: serde_json::Map<String, serde_json::Value>,
    spec: Option<serde_json::Value>,
) -> Result<RemoteRun, PipelineError> {
    registry::validate()?;
    let runtime = crate::exec::process::runtime("pipeline-enqueue")
        .map_err(crate::error::ExecutorError::thread("the async runtime of enqueue"))?;
    let config = crate::config::Config::current();
    let ray = super::pipeline::connect_ray(&runtime, &config.ray)?;
    let run = crate::engine::run_key(descriptor.name);
    let request = Request {
        pipeline: descriptor.qualified_function(),
        params: params.into(),
        run: Some(run.clone()),
        mode: None,
        origin: None,
        resume: None,
        // The caller's refresh goes with the run it enqueues.
        refresh: config.cache_refresh.clone(),
        spec,
    };
    let job = format!("controller-{run}");
    let queue = descriptor.options.pipeline_execution_queue.unwrap_or("services");
    let state = std::path::absolute(&config.state_dir).unwrap_or_else(|_| config.state_dir.clone());
    let body = serde_json::json!({
        "entrypoint": ray.binary_entrypoint(),
        "submission_id": job,
        "runtime_env": ray.runtime_env(serde_json::json!({
            CONTROLLER_ENV: serde_json::to_string(&request).expect("requests serialize"),
            crate::config::RAY_ADDRESS_ENV: ray.client.address(),
            crate::config::STATE_DIR_ENV: state.display().to_string(),
            // Its steps reach the cluster the way the caller's would.
            crate::config::RAY_BACKEND_ENV: config.ray.backend.as_str(),
            "PIPELINE_LOG_ECHO": "0",
        })),
        "entrypoint_resources": { format!("queue_{queue}"): 1 },
        "metadata": { "pipeline": descriptor.name, "run": run },
    });
    let remote = RemoteRun {
        client: ray.client,
        runtime,
        job,
        run,
    };
    remote.ask(move |client, _| async move { client.submit(&body).await })?;
    Ok(remote)
}
