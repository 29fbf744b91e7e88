//! Remote mode (the default): every step is a job on a Ray cluster, submitted through the Jobs
//! REST API. The job runs this same binary (uploaded once per build as a `working_dir`
//! package) in worker mode. A queue is a custom resource: a step of queue `q` asks for one
//! `queue_q`, so only nodes started with that resource serve it.

use super::{Backend, Ended, LogSink, WorkerJob, not_started_in_time, unless_stopped};
use crate::exec::Cancel;
use crate::remote::Cluster;
use crate::remote::ray::{JobInfo, RayError};
use crate::worker::MANIFEST_JSON_ENV;
use pipeline_core::{ErrorKind, StepError};
use std::time::Duration;

/// How often a job's state is read.
const POLL: Duration = Duration::from_millis(50);
/// How long a stopped job may take to reach its final state.
const STOP_BOUND: Duration = Duration::from_secs(10);

/// How long a job waits for the run's first job to have its environment set up.
const WARM_UP_BOUND: Duration = Duration::from_secs(20);

/// Runs workers as Ray jobs.
pub(crate) struct RayBackend {
    cluster: Cluster,
    default_queue: String,
    /// Whether a job of this run has had its `working_dir` set up. Until one has, jobs are
    /// submitted one at a time: Ray's runtime-env agent fails jobs that unpack one package
    /// concurrently on a node that does not have it yet.
    warm: tokio::sync::Mutex<bool>,
}

impl RayBackend {
    /// Submits steps to `cluster`; a step that names no queue goes to `default_queue`.
    pub(crate) fn new(cluster: Cluster, default_queue: String) -> Self {
        Self {
            cluster,
            default_queue,
            warm: tokio::sync::Mutex::new(false),
        }
    }

    /// The custom resource of the queue `job`'s step goes to: `queue_<name>`.
    pub(super) fn queue_resource(&self, job: &WorkerJob<'_>) -> String {
        let queue = job.descriptor.options.execution_queue.unwrap_or(&self.default_queue);
        format!("queue_{queue}")
    }

    fn body(&self, job: &WorkerJob<'_>, id: &str) -> serde_json::Value {
        let options = &job.descriptor.options;
        let mut body = serde_json::json!({
            "entrypoint": self.cluster.binary_entrypoint(),
            "submission_id": id,
            "runtime_env": self.cluster.runtime_env(serde_json::json!({
                MANIFEST_JSON_ENV: job.manifest_json,
                "PIPELINE_LOG_ECHO": "0",
            })),
            "entrypoint_resources": { self.queue_resource(job): 1 },
            "metadata": { "step": job.step, "component": job.descriptor.name },
        });
        if let Some(cpus) = options.num_cpus {
            body["entrypoint_num_cpus"] = cpus.into();
        }
        if let Some(gpus) = options.num_gpus {
            body["entrypoint_num_gpus"] = gpus.into();
        }
        body
    }

    /// Waits until Ray runs the job `id` (or it has ended): its state is no longer `PENDING`.
    async fn wait_started(&self, id: &str) -> Result<JobInfo, RayError> {
        self.wait_until(id, |info| info.status != "PENDING").await
    }

    async fn wait_final(&self, id: &str) -> Result<JobInfo, RayError> {
        self.wait_until(id, JobInfo::is_terminal).await
    }

    /// Reads the job's state every `POLL` until `reached` holds for it.
    async fn wait_until(&self, id: &str, reached: impl Fn(&JobInfo) -> bool) -> Result<JobInfo, RayError> {
        loop {
            let info = self.cluster.client.status(id).await?;
            if reached(&info) {
                return Ok(info);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The Ray submission id of an attempt: letters, digits, `-` and `_` only. It is derived, so a
/// retried submit never runs twice, and a resumed run finds its dead controller's jobs.
fn job_id(attempt_id: &str) -> String {
    attempt_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect()
}

impl Backend for RayBackend {
    fn attachable(&self, attempt_id: &str) -> impl std::future::Future<Output = bool> + Send + 'static {
        let (client, id) = (self.cluster.client.clone(), job_id(attempt_id));
        async move {
            client
                .status(&id)
                .await
                .is_ok_and(|info| matches!(info.status.as_str(), "PENDING" | "RUNNING" | "SUCCEEDED"))
        }
    }

    fn missing_result_hint(&self) -> &'static str {
        ": a Ray node that does not mount this state folder cannot write it; set `output_uri` to an object \
         store (s3://, gs://, az://) so that results travel through it"
    }

    async fn execute(
        &self,
        job: &WorkerJob<'_>,
        log: &LogSink,
        cancel: &Cancel,
        limit: Option<Duration>,
    ) -> Result<Ended, StepError> {
        let cluster = |e: RayError| {
            StepError::new(
                ErrorKind::Setup,
                format!("Ray cluster {}: {e}", self.cluster.client.address()),
            )
        };
        let id = job_id(job.attempt_id);
        // The time limit counts from when Ray runs the job: until then (a node of its queue free,
        // its process started, its environment set up) only a cancel, or a wait longer than the
        // limit and the start allowance, stops it (dropping this future releases the warm-up lock).
        let start = async {
            match tokio::time::timeout(WARM_UP_BOUND, self.warm.lock()).await {
                Ok(mut warm) if !*warm => {
                    self.cluster.client.submit(&self.body(job, &id)).await?;
                    // Held until this job is past its environment set-up (or the bound passes).
                    match tokio::time::timeout(WARM_UP_BOUND, self.wait_started(&id)).await {
                        Ok(info) => {
                            let info = info?;
                            *warm = info.status != "FAILED";
                            Ok(info)
                        }
                        Err(_) => {
                            drop(warm);
                            self.wait_started(&id).await
                        }
                    }
                }
                _ => {
                    self.cluster.client.submit(&self.body(job, &id)).await?;
                    self.wait_started(&id).await
                }
            }
        };
        let started = tokio::select! {
            info = start => Ok(info),
            reason = cancel.requested() => Err(reason),
            reason = not_started_in_time(limit) => Err(reason),
        };
        let outcome = match started {
            Ok(Ok(info)) if info.is_terminal() => Ok(Ok(info)),
            Ok(Ok(_running)) => unless_stopped(self.wait_final(&id), cancel, limit).await,
            Ok(Err(e)) => Ok(Err(e)),
            Err(reason) => Err(reason),
        };
        let outcome = match outcome {
            Ok(info) => Ok(info.map_err(cluster)?),
            Err(reason) => Err(reason),
        };
        if outcome.is_err() {
            let _ = self.cluster.client.stop(&id).await;
            let _ = tokio::time::timeout(STOP_BOUND, self.wait_final(&id)).await;
        }
        match self.cluster.client.logs(&id).await {
            Ok(text) => text.lines().for_each(|line| log.line(line)),
            Err(e) => log.line(&format!("(the job's logs could not be read: {e})")),
        }
        Ok(match outcome {
            Err(reason) => Ended::Stopped(reason),
            Ok(info) => match info.status.as_str() {
                "SUCCEEDED" => Ended::Exited {
                    success: true,
                    how: "succeeded".into(),
                    signalled: false,
                },
                "STOPPED" => Ended::Stopped(format!("the Ray job `{id}` was stopped on the cluster")),
                _ => Ended::Exited {
                    success: false,
                    signalled: false,
                    how: format!(
                        "failed as Ray job `{id}` (driver exit code {}): {}",
                        info.driver_exit_code
                            .map_or_else(|| "unknown".into(), |c| c.to_string()),
                        info.message.unwrap_or_default()
                    ),
                },
            },
        })
    }
}
