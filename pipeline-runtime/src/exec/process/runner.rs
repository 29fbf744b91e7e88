//! Remote mode through the warm runner (`ray.backend = "runner"`, and `auto`, the default): a
//! step is handed to the runner of this controller process ([`crate::remote::runner`]), which
//! runs it as a Ray task with the step's queue resource (`queue_<name>`), `num_cpus` (1 when
//! unset, Ray's own default for a task) and `num_gpus`. Results travel as in job-per-step mode
//! (the state folder, or object storage); the exit and the output come back from the runner.
//!
//! An attempt the runner never took (it could not start, or cannot reach this controller) goes
//! as a Ray job with `auto`; an attempt of an earlier controller still running as a Ray job is
//! waited for as one.

use super::ray::RayBackend;
use super::{Backend, Ended, LogSink, WorkerJob, not_started_in_time, unless_stopped};
use crate::config::RemoteBackend;
use crate::exec::Cancel;
use crate::remote::runner::{Completion, Handed, LOG_KEPT, Report, Service};
use crate::worker::MANIFEST_JSON_ENV;
use pipeline_core::{ErrorKind, StepError};
use std::sync::Arc;
use std::time::Duration;

/// How long a cancelled attempt's task has to end before it is given up on.
const STOP_BOUND: Duration = Duration::from_secs(15);

/// Runs workers as Ray tasks of the warm runner.
pub(crate) struct RunnerBackend {
    service: Arc<Service>,
    /// For attempts no runner takes (with `auto`) and attempts of an earlier controller.
    jobs: RayBackend,
}

impl RunnerBackend {
    /// Hands steps to `service`'s runner, on the queues `jobs` would send them to.
    pub(crate) fn new(service: Arc<Service>, jobs: RayBackend) -> Self {
        Self { service, jobs }
    }

    fn item(&self, job: &WorkerJob<'_>) -> serde_json::Value {
        let options = &job.descriptor.options;
        let mut item = serde_json::json!({
            "id": job.attempt_id,
            "step": job.step,
            "env": { MANIFEST_JSON_ENV: job.manifest_json },
            "resources": { self.jobs.queue_resource(job): 1 },
            "log_cap": job.log_cap.min(LOG_KEPT),
        });
        if let Some(cpus) = options.num_cpus {
            item["num_cpus"] = cpus.into();
        }
        if let Some(gpus) = options.num_gpus {
            item["num_gpus"] = gpus.into();
        }
        item
    }
}

impl Backend for RunnerBackend {
    fn attachable(&self, attempt_id: &str) -> impl std::future::Future<Output = bool> + Send + 'static {
        // Only a job-per-step attempt outlives its controller.
        self.jobs.attachable(attempt_id)
    }

    fn missing_result_hint(&self) -> &'static str {
        self.jobs.missing_result_hint()
    }

    async fn execute(
        &self,
        job: &WorkerJob<'_>,
        log: &LogSink,
        cancel: &Cancel,
        limit: Option<Duration>,
    ) -> Result<Ended, StepError> {
        if job.reattach || self.service.unavailable().is_some() {
            return self.jobs.execute(job, log, cancel, limit).await;
        }
        let id = job.attempt_id;
        let Handed {
            mut taken,
            mut started,
            mut done,
        } = self
            .service
            .submit(id, self.item(job))
            .map_err(|e| StepError::new(ErrorKind::Setup, e))?;
        // The time limit runs from when the attempt's task runs on the cluster: a runner that is
        // still starting, or a Ray worker process being started for the task, does not eat into
        // the step's time. Until then only a cancel, or a wait longer than the limit and the
        // start allowance after the runner took it (no free node of its queue, a lost report of
        // the start), stops it.
        let early = unless_stopped(
            async {
                tokio::select! {
                    biased;
                    completion = &mut done => Some(completion),
                    _ = &mut taken => None,
                }
            },
            cancel,
            None,
        )
        .await;
        let begun = match early {
            Ok(Some(completion)) => Ok(Some(completion)),
            Ok(None) => tokio::select! {
                biased;
                completion = &mut done => Ok(Some(completion)),
                // Told, or nothing more will be told (the attempt left the table): its end follows.
                _ = &mut started => Ok(None),
                reason = cancel.requested() => Err(reason),
                reason = not_started_in_time(limit) => Err(reason),
            },
            Err(reason) => Err(reason),
        };
        let completion = match begun {
            Ok(Some(completion)) => Ok(completion),
            Ok(None) => unless_stopped(&mut done, cancel, limit).await,
            Err(reason) => Err(reason),
        };
        let completion = match completion {
            Ok(completion) => completion,
            Err(reason) => {
                if !self.service.cancel(id) {
                    // Handed out: the runner cancels the task, which kills the worker's group.
                    if tokio::time::timeout(STOP_BOUND, &mut done).await.is_err() {
                        self.service.forget(id);
                        log.line(&format!(
                            "(the runner did not confirm the end of this attempt within {} s)",
                            STOP_BOUND.as_secs()
                        ));
                    }
                }
                return Ok(Ended::Stopped(reason));
            }
        };
        Ok(match completion {
            // The service keeps the sender while the attempt is in its table.
            Err(_) => Ended::Exited {
                success: false,
                how: "was dropped by the warm runner's endpoint".into(),
                signalled: true,
            },
            Ok(Completion::Done(report)) => ended(report, log),
            Ok(Completion::Lost(reason)) => Ended::Exited {
                success: false,
                how: format!("was lost: {reason}"),
                signalled: true,
            },
            Ok(Completion::Unavailable(why)) => {
                if self.service.backend() == RemoteBackend::Auto {
                    return self.jobs.execute(job, log, cancel, limit).await;
                }
                return Err(StepError::new(ErrorKind::Setup, why));
            }
        })
    }
}

/// How a reported attempt ended; its output goes to `log`.
fn ended(report: Report, log: &LogSink) -> Ended {
    if report.dropped > 0 {
        log.line(&format!(
            "pipeline: {} earlier bytes of this output were dropped on the cluster (log_cap)",
            report.dropped
        ));
    }
    report.log.lines().for_each(|line| log.line(line));
    if report.cancelled {
        return Ended::Stopped("the step's Ray task was cancelled on the cluster".into());
    }
    if let Some(error) = report.error {
        return Ended::Exited {
            success: false,
            how: format!("failed as a Ray task: {}", error.trim()),
            signalled: true,
        };
    }
    match (report.code, report.signal) {
        (Some(0), _) => Ended::Exited {
            success: true,
            how: "succeeded".into(),
            signalled: false,
        },
        (Some(code), _) => Ended::Exited {
            success: false,
            how: format!("exited with code {code}"),
            signalled: false,
        },
        (None, Some(signal)) => Ended::Exited {
            success: false,
            how: format!("was killed by signal {signal}"),
            signalled: true,
        },
        (None, None) => Ended::Exited {
            success: false,
            how: "ended without an exit status".into(),
            signalled: true,
        },
    }
}
