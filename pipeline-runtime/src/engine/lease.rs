//! The run's side of an executor's [`Lease`](crate::exec::Lease): beginning an attempt (the cache, the
//! scheduler's grant, the inputs as artifacts) and ending it (staging a worker's outputs, then
//! the scheduler's decision). The one attempt loop: a retry is another lease.

use super::run::Run;
use crate::exec::{AttemptSpec, LeaseHost, NodeKey, Work, WorkKind, WorkerSpec};
use crate::transport::artifacts::{ArgArtifacts, ArtifactRef};
use crate::transport::object_storage;
use crate::value::handle::ExportSink;
use crate::value::{Invoke, Job};
use pipeline_core::names::slug;
use pipeline_core::{ErrorKind, StepError};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

impl Run {
    /// The node's inputs as artifacts: written by the first attempt, reused by retries.
    fn inputs(
        &self,
        node: &NodeKey,
        job: &mut Job,
        node_dir: &Path,
        remote: Option<&str>,
    ) -> Result<Vec<ArgArtifacts>, StepError> {
        if let Some(inputs) = self.exported(node.index) {
            return Ok(inputs);
        }
        let mut sink = ExportSink {
            dir: node_dir.join("inputs"),
            codec: self.descriptor.options.codec,
            remote: remote.map(|p| object_storage::join(p, &["inputs"])),
            inputs: Vec::new(),
        };
        catch_unwind(AssertUnwindSafe(|| job(Invoke::Export(&mut sink)))).unwrap_or_else(|payload| {
            let panic = StepError::from_panic(&*payload);
            Err(StepError::new(
                ErrorKind::Setup,
                format!("writing the inputs panicked: {}", panic.message),
            ))
        })?;
        self.keep_exported(node.index, sink.inputs.clone());
        Ok(sink.inputs)
    }
}

impl LeaseHost for Run {
    fn begin(self: Arc<Self>, node: &NodeKey, kind: WorkKind, kept: &mut Option<Job>) -> Option<(AttemptSpec, Work)> {
        // Only a worker process can be stopped, and only it needs a folder, a log and a name.
        let in_process = kind == WorkKind::InProcess;
        let attempt = self.begin_attempt(node, !in_process)?;
        let (first, last, cancel) = (attempt.number(), attempt.last(), attempt.cancel);
        let mut job = attempt.job;
        let (step, descriptor) = (node.name.clone(), node.descriptor);
        // A step given `parents` depends on what they did rather than on their values (their
        // records, `${STEP.id}`): it starts once their ends are in the store.
        if !descriptor.options.parents.is_empty()
            && let Some(recorder) = &self.recorder
        {
            recorder.sync(recorder.flush_bound());
        }
        // A resumed run numbers its attempts after those of before (their logs stay), except
        // that it waits for the attempt its dead controller left running, if that still runs.
        let before = self.attempts_before(&node.name);
        let reattach = !in_process
            && first == 1
            && self.was_running(node)
            && self.attachable(&format!("{}-{}-{before}", self.key, slug(&step)));
        let number = if reattach { before } else { first + before };
        let (work, worker) = if in_process {
            (Work::InProcess(job), None)
        } else {
            let node_dir = crate::store::step_folder(&self.run_dir, &step);
            let remote_prefix = self.remote_prefix(Some(descriptor), &step);
            let log_path = node_dir.join(format!("attempt-{number}.log"));
            match self.inputs(node, &mut job, &node_dir, remote_prefix.as_deref()) {
                Ok(inputs) => {
                    self.set_log_path(node.index, log_path.clone());
                    let worker = WorkerSpec {
                        attempt_id: format!("{}-{}-{number}", self.key, slug(&step)),
                        reattach,
                        node_dir,
                        log_path,
                        remote_prefix,
                        state_dir: std::path::absolute(&self.config.state_dir)
                            .unwrap_or_else(|_| self.config.state_dir.clone()),
                    };
                    // The job stays with the lease while a worker process runs the attempt.
                    *kept = Some(job);
                    (Work::Artifacts(inputs), Some(Box::new(worker)))
                }
                Err(e) => {
                    self.end_attempt(node, job, Err(e));
                    return None;
                }
            }
        };
        let span = tracing::info_span!(target: "pipeline", parent: &self.span, "step", step = %step, attempt = number);
        tracing::debug!(target: "pipeline", parent: &span, kind = ?kind, "attempt started");
        let spec = AttemptSpec {
            span,
            context: self.step_context(Some(node)).map(Box::new),
            pipeline: self.descriptor.name,
            codec: self.descriptor.options.codec,
            limit: descriptor.options.time_limit,
            cancel,
            number,
            last,
            step,
            descriptor,
            worker,
        };
        Some((spec, work))
    }

    fn end(self: Arc<Self>, node: &NodeKey, job: Job, result: Result<Vec<ArtifactRef>, StepError>) {
        match &result {
            Ok(_) => tracing::debug!(target: "pipeline", run = %self.key, "attempt succeeded"),
            Err(e) => tracing::debug!(target: "pipeline", run = %self.key, error = %e, "attempt failed"),
        }
        let result = result.map(|outputs| {
            if !outputs.is_empty() {
                let (name, slots) = (&node.name, self.output_slots(node.index));
                for ((slot, artifact), output) in slots.iter().zip(outputs).zip(node.descriptor.outputs) {
                    self.record_output(name, output, &artifact);
                    slot.store(artifact, name.clone());
                }
            }
        });
        self.end_attempt(node, job, result);
    }
}
