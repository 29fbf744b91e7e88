//! The engine's side of an executor's [`Lease`]: beginning an attempt (the cache, the
//! scheduler's grant, the inputs as artifacts) and ending it (staging a worker's outputs, then
//! the scheduler's decision). The one attempt loop: a retry is another lease.

use super::run::{Attempt, NodeKey, Run};
use crate::exec::{AttemptSpec, Lease, Outcome, Work, WorkKind};
use crate::transport::artifacts::ArgArtifacts;
use crate::transport::object_storage;
use crate::value::Invoke;
use crate::value::handle::ExportSink;
use pipeline_core::names::slug;
use pipeline_core::{ErrorKind, StepError};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A hold on node `index` of `run`, for one attempt.
pub(crate) struct NodeLease {
    run: Arc<Run>,
    node: NodeKey,
    /// The attempt, between `begin` and `end`.
    attempt: Option<Attempt>,
}

impl NodeLease {
    pub(crate) fn new(run: Arc<Run>, node: NodeKey) -> Self {
        Self {
            run,
            node,
            attempt: None,
        }
    }

    /// The node's inputs as artifacts: written by the first attempt, reused by retries.
    fn inputs(
        &self,
        attempt: &mut Attempt,
        node_dir: &Path,
        remote: Option<&str>,
    ) -> Result<Vec<ArgArtifacts>, StepError> {
        if let Some(inputs) = self.run.exported(self.node.index) {
            return Ok(inputs);
        }
        let mut sink = ExportSink {
            dir: node_dir.join("inputs"),
            codec: self.run.descriptor.options.codec,
            remote: remote.map(|p| object_storage::join(p, &["inputs"])),
            inputs: Vec::new(),
        };
        catch_unwind(AssertUnwindSafe(|| (attempt.job)(Invoke::Export(&mut sink)))).unwrap_or_else(|payload| {
            let panic = StepError::from_panic(&*payload);
            Err(StepError::new(
                ErrorKind::Setup,
                format!("writing the inputs panicked: {}", panic.message),
            ))
        })?;
        self.run.keep_exported(self.node.index, sink.inputs.clone());
        Ok(sink.inputs)
    }
}

impl Lease for NodeLease {
    fn begin(&mut self, kind: WorkKind) -> Option<(AttemptSpec, Work)> {
        // Only a worker process can be stopped, and only it needs a folder, a log and a name.
        let in_process = kind == WorkKind::InProcess;
        let mut attempt = self.run.begin_attempt(&self.node, !in_process)?;
        let (step, descriptor) = (self.node.name.clone(), self.node.descriptor);
        // A step given `parents` depends on what they did rather than on their values (their
        // records, `${STEP.id}`): it starts once their ends are in the store.
        if !descriptor.options.parents.is_empty()
            && let Some(recorder) = &self.run.recorder
        {
            recorder.sync(recorder.flush_bound());
        }
        // A resumed run numbers its attempts after those of before (their logs stay), except
        // that it waits for the attempt its dead controller left running, if that still runs.
        let before = self.run.attempts_before(&self.node.name);
        let reattach = !in_process
            && attempt.number() == 1
            && self.run.was_running(&self.node)
            && self
                .run
                .attachable(&format!("{}-{}-{before}", self.run.key, slug(&step)));
        let number = if reattach { before } else { attempt.number() + before };
        let (work, node_dir, log_path, attempt_id, remote_prefix) = if in_process {
            let job = std::mem::replace(&mut attempt.job, Box::new(|_| Ok(())));
            (
                Work::InProcess(job),
                PathBuf::new(),
                PathBuf::new(),
                String::new(),
                None,
            )
        } else {
            let node_dir = crate::store::step_folder(&self.run.run_dir, &step);
            let remote_prefix = self.run.remote_prefix(Some(descriptor), &step);
            let log_path = node_dir.join(format!("attempt-{number}.log"));
            match self.inputs(&mut attempt, &node_dir, remote_prefix.as_deref()) {
                Ok(inputs) => {
                    self.run.set_log_path(self.node.index, log_path.clone());
                    let attempt_id = format!("{}-{}-{number}", self.run.key, slug(&step));
                    (Work::Artifacts(inputs), node_dir, log_path, attempt_id, remote_prefix)
                }
                Err(e) => {
                    self.run.end_attempt(&self.node, attempt, Err(e));
                    return None;
                }
            }
        };
        let span =
            tracing::info_span!(target: "pipeline", parent: &self.run.span, "step", step = %step, attempt = number);
        tracing::debug!(target: "pipeline", parent: &span, kind = ?kind, "attempt started");
        let spec = AttemptSpec {
            span,
            attempt_id,
            reattach,
            context: self.run.step_context(Some(&self.node)),
            pipeline: self.run.descriptor.name,
            codec: self.run.descriptor.options.codec,
            limit: descriptor.options.time_limit,
            cancel: attempt.cancel.clone(),
            number,
            last: attempt.last(),
            step,
            descriptor,
            node_dir,
            log_path,
            remote_prefix,
            // Only a worker process needs it (and `absolute` may ask the OS for the working
            // folder: not on the in-process path).
            state_dir: if in_process {
                PathBuf::new()
            } else {
                std::path::absolute(&self.run.config.state_dir).unwrap_or_else(|_| self.run.config.state_dir.clone())
            },
        };
        self.attempt = Some(attempt);
        Some((spec, work))
    }

    fn end(mut self: Box<Self>, outcome: Outcome) {
        let Some(mut attempt) = self.attempt.take() else { return };
        match &outcome.result {
            Ok(_) => tracing::debug!(target: "pipeline", run = %self.run.key, "attempt succeeded"),
            Err(e) => tracing::debug!(target: "pipeline", run = %self.run.key, error = %e, "attempt failed"),
        }
        if let Work::InProcess(job) = outcome.work {
            attempt.job = job;
        }
        let result = outcome.result.map(|outputs| {
            if !outputs.is_empty() {
                let (name, slots) = (&self.node.name, self.run.output_slots(self.node.index));
                for ((slot, artifact), output) in slots.iter().zip(outputs).zip(self.node.descriptor.outputs) {
                    self.run.record_output(name, output, &artifact);
                    slot.store(artifact, name.clone());
                }
            }
        });
        self.run.end_attempt(&self.node, attempt, result);
    }
}

impl Drop for NodeLease {
    /// An attempt begun and never ended (its executor went away) still ends, so the run does
    /// not wait for it forever.
    fn drop(&mut self) {
        if let Some(attempt) = self.attempt.take() {
            let lost = StepError::new(ErrorKind::Crash, "the executor lost the attempt");
            self.run.end_attempt(&self.node, attempt, Err(lost));
        }
    }
}
