//! Options of components and pipelines, as the macros parse them from attributes.
//!
//! Everything here is `const`-constructible so that a descriptor can be a `static` and be
//! registered through `inventory` without running code at start-up.

use crate::codec::Codec;
use crate::dag::DagNode;
use crate::status::NodeStatus;
use std::time::Duration;

/// Called before a node is sent for execution; `false` skips the node and its descendants.
pub type PreExecuteCallback = fn(&DagNode) -> bool;
/// Called after a node finished (whatever its outcome).
pub type PostExecuteCallback = fn(&DagNode);
/// Called on every state change of a node, with the previous state.
pub type StatusChangeCallback = fn(&DagNode, NodeStatus);
/// Called when a node failed, with the number of retries so far; `true` retries it.
pub type RetryCallback = fn(&DagNode, u32) -> bool;

/// How often a failed step is tried again (`retry_on_failure`).
#[derive(Debug, Clone, Copy)]
pub enum RetryPolicy {
    /// A failure is final.
    Never,
    /// Retry up to this many times (so at most `n + 1` attempts).
    Count(u32),
    /// Ask the callback after each failure.
    Callback(RetryCallback),
}

impl RetryPolicy {
    /// Whether a node that has already been retried `retries` times may be tried again.
    pub fn allows(&self, node: &DagNode, retries: u32) -> bool {
        match self {
            Self::Never => false,
            Self::Count(n) => retries < *n,
            Self::Callback(f) => f(node, retries),
        }
    }

    /// True when no further attempt can follow attempt number `retries` (0-based), so inputs
    /// may be moved into it instead of copied.
    pub fn is_last_attempt(&self, retries: u32) -> bool {
        match self {
            Self::Never => true,
            Self::Count(n) => retries >= *n,
            Self::Callback(_) => false,
        }
    }
}

/// How long a failed step waits before each retry (Prefect's `retry_delay_seconds` and
/// `retry_jitter_factor`): `delay` before the first retry, multiplied by `factor` before each
/// later one, each wait then lengthened by a random share of at most `jitter` of itself, so
/// that steps failing together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBackoff {
    /// The wait before the first retry (zero: retry at once).
    pub delay: Duration,
    /// Each later wait is this many times the one before (1: a constant wait).
    pub factor: f64,
    /// Up to this share of a wait is added to it, at random (0: none).
    pub jitter: f64,
}

impl RetryBackoff {
    /// Retries start at once.
    pub const NONE: Self = Self {
        delay: Duration::ZERO,
        factor: 1.0,
        jitter: 0.0,
    };

    /// The wait before retry number `retry` (1 for the first), with `random` in `[0, 1)`
    /// drawing the jitter. Capped at a day, so a large factor cannot overflow.
    pub fn wait(&self, retry: u32, random: f64) -> Duration {
        if self.delay.is_zero() {
            return Duration::ZERO;
        }
        let exponent = retry.saturating_sub(1).min(1024) as i32;
        let base = self.delay.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let seconds = base * (1.0 + self.jitter.max(0.0) * random.clamp(0.0, 1.0));
        Duration::from_secs_f64(seconds.min(86_400.0))
    }
}

impl Default for RetryBackoff {
    fn default() -> Self {
        Self::NONE
    }
}

/// What a failed or aborted step means for the rest of the pipeline (`continue_behaviour`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContinueBehaviour {
    /// The pipeline is not marked failed because of this step.
    pub continue_on_fail: bool,
    /// The pipeline is not marked aborted because of this step.
    pub continue_on_abort: bool,
    /// Children of a failed step are skipped. Children that take one of its outputs as an
    /// input are always skipped: there is no value to give them.
    pub skip_children_on_fail: bool,
    /// Children of an aborted step are skipped (same rule for data children).
    pub skip_children_on_abort: bool,
}

impl ContinueBehaviour {
    /// The behaviour when nothing is said: stop on failure, skip children.
    pub const DEFAULT: Self = Self {
        continue_on_fail: false,
        continue_on_abort: false,
        skip_children_on_fail: true,
        skip_children_on_abort: true,
    };
}

impl Default for ContinueBehaviour {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The step callbacks (`pre_execute_callback`, `post_execute_callback`, `status_change_callback`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Callbacks {
    /// See [`PreExecuteCallback`].
    pub pre_execute: Option<PreExecuteCallback>,
    /// See [`PostExecuteCallback`].
    pub post_execute: Option<PostExecuteCallback>,
    /// See [`StatusChangeCallback`].
    pub status_change: Option<StatusChangeCallback>,
}

impl Callbacks {
    /// No callbacks.
    pub const NONE: Self = Self {
        pre_execute: None,
        post_execute: None,
        status_change: None,
    };
}

/// Options of one component (`#[component(...)]`).
#[derive(Debug, Clone, Copy)]
pub struct ComponentOptions {
    /// Names of the outputs (`return_values`); one name per element of a returned tuple.
    pub return_values: &'static [&'static str],
    /// Reuse an earlier result when code, inputs and options match (`cache`).
    pub cache: bool,
    /// A salt that invalidates cached results when bumped (`version`).
    pub version: Option<&'static str>,
    /// Parameters left out of the cache key (`cache_ignore`).
    pub cache_ignore: &'static [&'static str],
    /// Steps that must finish before this one, by node name (`parents`).
    pub parents: &'static [&'static str],
    /// The queue the step is sent to in remote mode (`execution_queue`).
    pub execution_queue: Option<&'static str>,
    /// `retry_on_failure` (alias `retries`).
    pub retry: RetryPolicy,
    /// The waits before retries (`retry_delay`, `retry_backoff`, `retry_jitter`).
    pub retry_backoff: RetryBackoff,
    /// `continue_behaviour`, or the deprecated `continue_on_fail`.
    pub continue_behaviour: ContinueBehaviour,
    /// The step is stopped once it ran this long (`time_limit`).
    pub time_limit: Option<Duration>,
    /// Tags of the step (`tags`).
    pub tags: &'static [&'static str],
    /// Step metrics copied onto the pipeline run: `(title, series, target title, target series)`.
    pub monitor_metrics: &'static [(&'static str, &'static str, &'static str, &'static str)],
    /// Step artifacts copied onto the pipeline run: `(name, target name)`.
    pub monitor_artifacts: &'static [(&'static str, &'static str)],
    /// Step models copied onto the pipeline run: `(name, target name)`.
    pub monitor_models: &'static [(&'static str, &'static str)],
    /// Where the step's artifacts go (`output_uri`); the pipeline's when `None`.
    pub output_uri: Option<&'static str>,
    /// A free-form kind of step (`task_type`: training, data_processing, ...).
    pub task_type: Option<&'static str>,
    /// CPUs the step asks of a remote scheduler (`num_cpus`).
    pub num_cpus: Option<f64>,
    /// GPUs the step asks of a remote scheduler (`num_gpus`).
    pub num_gpus: Option<f64>,
    /// Step callbacks.
    pub callbacks: Callbacks,
}

impl ComponentOptions {
    /// The options of `#[component]` with nothing said.
    pub const DEFAULT: Self = Self {
        return_values: &["return_object"],
        cache: false,
        version: None,
        cache_ignore: &[],
        parents: &[],
        execution_queue: None,
        retry: RetryPolicy::Never,
        retry_backoff: RetryBackoff::NONE,
        continue_behaviour: ContinueBehaviour::DEFAULT,
        time_limit: None,
        tags: &[],
        monitor_metrics: &[],
        monitor_artifacts: &[],
        monitor_models: &[],
        output_uri: None,
        task_type: None,
        num_cpus: None,
        num_gpus: None,
        callbacks: Callbacks::NONE,
    };
}

impl Default for ComponentOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `multi_instance_support`: how repeated calls of one pipeline function behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiInstance {
    /// Each call is a run of its own, one after the other (the default here: runs never share
    /// state, so this is always safe).
    Sequential,
    /// Calls may run at the same time (`multi_instance_support = "parallel"`).
    Parallel,
}

/// Options of one pipeline (`#[pipeline(...)]`).
#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    /// Name of the artifact that stores the pipeline's return value (`return_value`).
    pub return_value: Option<&'static str>,
    /// Queue for steps that name none (`default_queue`).
    pub default_queue: Option<&'static str>,
    /// Stop every running step at the first failure (`abort_on_failure`).
    pub abort_on_failure: bool,
    /// Queue the controller itself runs on in remote mode (`pipeline_execution_queue`).
    pub pipeline_execution_queue: Option<&'static str>,
    /// `multi_instance_support`.
    pub multi_instance: MultiInstance,
    /// Number runs of the same pipeline (`add_run_number`).
    pub add_run_number: bool,
    /// Sections of parameters (`args_map`): `(section, parameters)`.
    pub args_map: &'static [(&'static str, &'static [&'static str])],
    /// Run the controller here while steps run remotely (`start_controller_locally`).
    pub start_controller_locally: bool,
    /// Default retry policy of the steps (`retry_on_failure`).
    pub retry: RetryPolicy,
    /// Where artifacts go (`output_uri`).
    pub output_uri: Option<&'static str>,
    /// Tags of the run (`tags`).
    pub tags: &'static [&'static str],
    /// Tag every step with the run (`add_pipeline_tags`).
    pub add_pipeline_tags: bool,
    /// Project the steps are recorded under (`target_project`).
    pub target_project: Option<&'static str>,
    /// The whole run is stopped once it ran this long (`time_limit`).
    pub time_limit: Option<Duration>,
    /// Steps running at once in parallel modes (`max_parallel`); number of cores when `None`.
    pub max_parallel: Option<usize>,
    /// How artifacts are encoded (`artifact_codec`).
    pub codec: Codec,
}

impl PipelineOptions {
    /// The options of `#[pipeline]` with nothing said.
    pub const DEFAULT: Self = Self {
        return_value: None,
        default_queue: None,
        abort_on_failure: false,
        pipeline_execution_queue: Some("services"),
        multi_instance: MultiInstance::Sequential,
        add_run_number: true,
        args_map: &[],
        start_controller_locally: false,
        retry: RetryPolicy::Never,
        output_uri: None,
        tags: &[],
        add_pipeline_tags: false,
        target_project: None,
        time_limit: None,
        max_parallel: None,
        codec: Codec::Bincode,
    };
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_waits_grow_by_the_factor_and_jitter_only_lengthens() {
        let b = RetryBackoff {
            delay: Duration::from_secs(2),
            factor: 3.0,
            jitter: 0.5,
        };
        assert_eq!(b.wait(1, 0.0), Duration::from_secs(2));
        assert_eq!(b.wait(2, 0.0), Duration::from_secs(6));
        assert_eq!(b.wait(3, 0.0), Duration::from_secs(18));
        assert_eq!(b.wait(1, 1.0), Duration::from_secs(3));
        assert_eq!(b.wait(1_000_000, 0.5), Duration::from_secs(86_400));
        assert_eq!(RetryBackoff::NONE.wait(5, 0.9), Duration::ZERO);
    }
}
