//! How pipelines run, as one value: [`Config`] (mode, state folder, recording, default queue,
//! the run store's busy timeout, the Ray cluster). It is built from defaults, `pipeline.toml`
//! and the environment, then the process's defaults (what `debug_pipeline()`,
//! `set_state_dir()`... set), then the scopes a thread or task entered
//! ([`Config::scope`], [`with_mode`]). A run takes the [`Config::current`] value when it
//! starts and keeps it; its body runs inside it, so a pipeline started from a body inherits it.
//!
//! The lowest layer but `sync` and `diag`.

mod file;
mod mode;

pub use file::{
    CONFIG_FILE, LOG_CAP_ENV, PROGRESS_ENV, RAY_ADDRESS_ENV, RAY_BACKEND_ENV, RAY_TOKEN_ENV, RECORD_ENV,
    RUNNER_LISTEN_ENV, RUNNER_URL_ENV, STATE_DIR_ENV,
};
pub use mode::{Mode, debug_pipeline, mode, run_locally, set_default_execution_queue, start_locally, with_mode};

use crate::sync::lock;
use serde::Deserialize;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Where the cluster is and how to talk to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RayConfig {
    /// The dashboard's address, `http://127.0.0.1:8265` by default.
    pub address: Option<String>,
    /// A bearer token (Ray's token authentication).
    pub token: Option<String>,
    /// Extra headers, for clusters behind a proxy.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// How remote steps reach the cluster (`PIPELINE_RAY_BACKEND`).
    #[serde(default)]
    pub backend: RemoteBackend,
    /// The command that runs the runner's Python (one with `ray` importable) on the cluster:
    /// `python3` by default.
    pub python: Option<String>,
    /// Where this controller listens for its runner (`PIPELINE_RAY_RUNNER_LISTEN`):
    /// `127.0.0.1:0` when the cluster's address is on loopback, `0.0.0.0:0` (any port)
    /// otherwise.
    pub runner_listen: Option<String>,
    /// The address the runner is told to reach this controller at (`PIPELINE_RAY_RUNNER_URL`,
    /// `http://host:port`), when it is not the one listened on (NAT, a forwarded port). By
    /// default: the listening port on this machine's address on the route to the cluster.
    pub runner_url: Option<String>,
}

/// How remote steps reach the Ray cluster: `ray.backend` in `pipeline.toml`, or
/// `PIPELINE_RAY_BACKEND`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteBackend {
    /// A warm runner, falling back to one job per step when the runner cannot start or cannot
    /// reach this controller (the default).
    #[default]
    Auto,
    /// A warm runner per controller process: one Ray job, submitted once, that long-polls this
    /// controller over HTTP and runs each step as a Ray task (milliseconds per step). The
    /// cluster must reach this controller.
    Runner,
    /// One Ray job per step (about a second or two each); needs nothing from the cluster but
    /// the Jobs API.
    Jobs,
}

impl RemoteBackend {
    /// The name `pipeline.toml` and `PIPELINE_RAY_BACKEND` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Runner => "runner",
            Self::Jobs => "jobs",
        }
    }
}

impl std::str::FromStr for RemoteBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "runner" => Ok(Self::Runner),
            "jobs" => Ok(Self::Jobs),
            other => Err(format!("`{other}` is not one of auto, runner, jobs")),
        }
    }
}

/// How a run shows its progress on stderr while it runs (`PIPELINE_PROGRESS`, or `progress`
/// in `pipeline.toml`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Progress {
    /// A live bar when stderr is a terminal, plain lines when it is not.
    #[default]
    Auto,
    /// A live bar (drawn only on a terminal).
    Bar,
    /// Plain lines: a failed step when it fails; once the run has lasted 2 s, a summary every
    /// 10 s and one at the end.
    Plain,
    /// Nothing.
    Off,
}

impl std::str::FromStr for Progress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "bar" => Ok(Self::Bar),
            "plain" => Ok(Self::Plain),
            "off" | "0" | "false" => Ok(Self::Off),
            other => Err(format!("`{other}` is not one of auto, bar, plain, off")),
        }
    }
}

/// Which `cache = true` steps skip the cache lookup, run, and overwrite what was cached (a
/// refresh), in the runs started with the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheRefresh {
    /// The cache serves every step it can (the default).
    #[default]
    Off,
    /// No step is served from the cache; every cached step's entry is written again.
    All,
    /// Only steps of these components (by registered name) are refreshed.
    Components(Vec<String>),
}

impl CacheRefresh {
    /// Whether steps of `component` are refreshed.
    pub fn applies_to(&self, component: &str) -> bool {
        match self {
            Self::Off => false,
            Self::All => true,
            Self::Components(names) => names.iter().any(|n| n == component),
        }
    }
}

/// What a step attempt's log keeps by default: 256 MiB.
pub const DEFAULT_LOG_CAP: u64 = 256 << 20;

/// The default dashboard address.
#[cfg(feature = "ray")]
pub(crate) const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8265";

/// How the pipelines started with it run.
///
/// ```
/// use pipeline_runtime::{Config, Mode};
///
/// // Two pipelines on two threads, each with its own state folder and mode:
/// let a = Config::current().with_mode(Mode::Debug).with_state_dir("runs-a");
/// assert_eq!(a.scope(|| Config::current().state_dir), std::path::PathBuf::from("runs-a"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Where steps run; remote (the Ray cluster) unless chosen otherwise.
    pub mode: Mode,
    /// The state folder: the run store (`runs.db`) and the runs' artifacts and logs.
    pub state_dir: PathBuf,
    /// Whether runs are recorded in the run store.
    pub recording: bool,
    /// The queue of remote steps that name none, when their pipeline names no `default_queue`.
    pub default_queue: String,
    /// How long a run-store connection waits for another process's write lock.
    pub busy_timeout: Duration,
    /// The most bytes a step attempt's log file keeps: past it, the oldest part is dropped (a
    /// line at the file's start says how much), so output never fills the disk or stops a step.
    pub log_cap: u64,
    /// The Ray cluster of remote mode and `enqueue`.
    pub ray: RayConfig,
    /// Steps that refresh their cache entry instead of reading it.
    pub cache_refresh: CacheRefresh,
    /// How runs show their progress on stderr.
    pub progress: Progress,
    /// The id the next run must take (a controller started on the cluster for a given run).
    pub(crate) run_id: Option<String>,
    /// The run the next run is started again from (`pipeline rerun`).
    pub(crate) origin: Option<String>,
    /// The failed, aborted or crashed run the next run takes up again (`resume`).
    pub(crate) resume: Option<String>,
}

/// Some fields of a [`Config`], laid over others.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layer {
    pub(crate) mode: Option<Mode>,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) recording: Option<bool>,
    pub(crate) default_queue: Option<String>,
    pub(crate) busy_timeout: Option<Duration>,
    pub(crate) log_cap: Option<u64>,
    pub(crate) ray: Option<RayConfig>,
    /// Over `ray.backend`.
    pub(crate) ray_backend: Option<RemoteBackend>,
    pub(crate) cache_refresh: Option<CacheRefresh>,
    pub(crate) progress: Option<Progress>,
    pub(crate) run_id: Option<String>,
    pub(crate) origin: Option<String>,
    pub(crate) resume: Option<String>,
}

impl Layer {
    /// `top` over `self`.
    fn under(mut self, top: &Layer) -> Layer {
        macro_rules! over {
            ($($field:ident),*) => {$(
                if top.$field.is_some() {
                    self.$field = top.$field.clone();
                }
            )*};
        }
        over!(
            mode,
            state_dir,
            recording,
            default_queue,
            busy_timeout,
            log_cap,
            ray,
            ray_backend,
            cache_refresh,
            progress,
            run_id,
            origin,
            resume
        );
        self
    }
}

/// What the process's setters chose (`debug_pipeline()`, `set_state_dir()`...).
static PROCESS: Mutex<Layer> = Mutex::new(Layer {
    mode: None,
    state_dir: None,
    recording: None,
    default_queue: None,
    busy_timeout: None,
    log_cap: None,
    ray: None,
    ray_backend: None,
    cache_refresh: None,
    progress: None,
    run_id: None,
    origin: None,
    resume: None,
});

thread_local! {
    /// The scopes this thread entered, merged.
    static THREAD: RefCell<Option<Layer>> = const { RefCell::new(None) };
    /// The run (its id) whose configuration this thread's innermost scope is; 0 for any other
    /// scope. See [`Config::scope_of_run`].
    static RUN_SCOPE: Cell<u64> = const { Cell::new(0) };
}

tokio::task_local! {
    /// The scopes the current async task entered, merged.
    static TASK: Layer;
}

/// Changes the process's defaults.
pub(crate) fn set_process(change: impl FnOnce(&mut Layer)) {
    change(&mut lock(&PROCESS));
}

/// Runs `f` with `layer` over this thread's configuration.
pub(crate) fn in_scope<R>(layer: Layer, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Layer>, u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD.with(|t| *t.borrow_mut() = self.0.take());
            RUN_SCOPE.set(self.1);
        }
    }
    let outer = THREAD.with(|t| t.borrow().clone());
    let merged = outer.clone().unwrap_or_default().under(&layer);
    let _restore = Restore(outer, RUN_SCOPE.replace(0));
    THREAD.with(|t| *t.borrow_mut() = Some(merged));
    f()
}

impl Config {
    /// The configuration of pipelines started now, here: the defaults, `pipeline.toml` in the
    /// working directory, the environment (`PIPELINE_STATE_DIR`, `PIPELINE_RECORD`,
    /// `PIPELINE_RAY_ADDRESS`, `PIPELINE_RAY_TOKEN`), the process's setters, then the scopes
    /// this thread or task is in, each over the one before.
    pub fn current() -> Config {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let mut layer = file::layer(&cwd).under(&lock(&PROCESS));
        if let Some(thread) = THREAD.with(|t| t.borrow().clone()) {
            layer = layer.under(&thread);
        }
        if let Ok(task) = TASK.try_with(Layer::clone) {
            layer = layer.under(&task);
        }
        let ray = layer.ray.unwrap_or_default();
        Config {
            mode: layer.mode.unwrap_or(Mode::Remote),
            state_dir: layer.state_dir.unwrap_or_else(|| cwd.join(".pipeline")),
            recording: layer.recording.unwrap_or(true),
            default_queue: layer.default_queue.unwrap_or_else(|| "default".into()),
            busy_timeout: layer.busy_timeout.unwrap_or(Duration::from_secs(10)),
            log_cap: layer.log_cap.unwrap_or(DEFAULT_LOG_CAP),
            ray: RayConfig {
                backend: layer.ray_backend.unwrap_or(ray.backend),
                ..ray
            },
            cache_refresh: layer.cache_refresh.unwrap_or_default(),
            progress: layer.progress.unwrap_or_default(),
            run_id: layer.run_id,
            origin: layer.origin,
            resume: layer.resume,
        }
    }

    /// With steps running in `mode`.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// With the state folder `dir`.
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }

    /// Recording runs in the run store, or not.
    pub fn with_recording(mut self, on: bool) -> Self {
        self.recording = on;
        self
    }

    /// With remote steps that name no queue going to `queue`.
    pub fn with_default_queue(mut self, queue: impl Into<String>) -> Self {
        self.default_queue = queue.into();
        self
    }

    /// With run-store connections waiting up to `timeout` for a lock.
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// With step logs keeping at most `bytes` each.
    pub fn with_log_cap(mut self, bytes: u64) -> Self {
        self.log_cap = bytes;
        self
    }

    /// With the Ray cluster `ray`.
    pub fn with_ray(mut self, ray: RayConfig) -> Self {
        self.ray = ray;
        self
    }

    /// With runs showing their progress as `progress` says.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// With `refresh` for the runs started: those steps run and overwrite their cache entry
    /// instead of reading it (runs started from their bodies refresh too).
    pub fn with_cache_refresh(mut self, refresh: CacheRefresh) -> Self {
        self.cache_refresh = refresh;
        self
    }

    /// With the next run started recorded as started again from run `origin`.
    pub(crate) fn with_origin(mut self, origin: String) -> Self {
        self.origin = Some(origin);
        self
    }

    /// With the next run started taking up run `run` again (failed, aborted or crashed).
    pub(crate) fn with_resume(mut self, run: String) -> Self {
        self.resume = Some(run);
        self
    }

    /// With the next run started taking the id `run`.
    pub(crate) fn with_run_id(mut self, run: String) -> Self {
        self.run_id = Some(run);
        self
    }

    /// Every field as a layer.
    fn layer(&self) -> Layer {
        Layer {
            mode: Some(self.mode),
            state_dir: Some(self.state_dir.clone()),
            recording: Some(self.recording),
            default_queue: Some(self.default_queue.clone()),
            busy_timeout: Some(self.busy_timeout),
            log_cap: Some(self.log_cap),
            ray: Some(self.ray.clone()),
            ray_backend: Some(self.ray.backend),
            cache_refresh: Some(self.cache_refresh.clone()),
            progress: Some(self.progress),
            run_id: self.run_id.clone(),
            origin: self.origin.clone(),
            resume: self.resume.clone(),
        }
    }

    /// Runs `f` with this configuration for the pipelines it starts on this thread (a scope
    /// entered inside it may change some fields again).
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        in_scope(self.layer(), f)
    }

    /// [`Config::scope`] for the configuration of run `run` (its id): a thread whose innermost
    /// scope is already that one (the run's body, reading a value of the run) enters nothing,
    /// which spares a step run there the copies of a scope.
    pub(crate) fn scope_of_run<R>(&self, run: u64, f: impl FnOnce() -> R) -> R {
        if RUN_SCOPE.get() == run {
            return f();
        }
        in_scope(self.layer(), || {
            RUN_SCOPE.set(run);
            f()
        })
    }

    /// Runs `future` with this configuration for the pipelines it starts, on whichever thread
    /// it is polled.
    pub async fn scope_async<F: Future>(&self, future: F) -> F::Output {
        let outer = TASK.try_with(Layer::clone).unwrap_or_default();
        TASK.scope(outer.under(&self.layer()), future).await
    }
}

/// Moves the state folder for the pipelines started from now on (tests point it at a
/// temporary folder this way); `None` goes back to the default.
pub fn set_state_dir(dir: Option<PathBuf>) {
    set_process(|l| l.state_dir = dir);
}

/// The state folder pipelines started now, here, use: see [`Config::current`]. Without
/// anything set, `.pipeline` in the working directory; `state_dir = "..."` in `pipeline.toml`
/// is relative to that directory.
pub fn state_dir() -> PathBuf {
    Config::current().state_dir
}

/// Turns recording into the run store on or off for the pipelines started from now on
/// (default: on, unless `PIPELINE_RECORD=0` or `record = false` in `pipeline.toml`).
pub fn set_recording(on: bool) {
    set_process(|l| l.recording = Some(on));
}

/// Whether pipelines started now, here, are recorded.
pub fn recording() -> bool {
    Config::current().recording
}

/// The Ray cluster to use: `[ray]` in `pipeline.toml` (`address`, `token`, `headers`), with
/// `$PIPELINE_RAY_ADDRESS` and `$PIPELINE_RAY_TOKEN` taking precedence.
pub fn ray_config() -> RayConfig {
    Config::current().ray
}

/// Sets how remote steps reach the Ray cluster in runs started from now on (over
/// `PIPELINE_RAY_BACKEND` and `pipeline.toml`).
pub fn set_ray_backend(backend: RemoteBackend) {
    set_process(|l| l.ray_backend = Some(backend));
}

/// Sets how long run-store connections opened from now on wait for another process's write
/// lock before reporting the store locked (default 10 s).
pub fn set_busy_timeout(timeout: Duration) {
    set_process(|l| l.busy_timeout = Some(timeout));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_lay_fields_over_the_process_defaults_and_nest() {
        let outer = Config::current().with_state_dir("outer").with_mode(Mode::Local);
        outer.scope(|| {
            assert_eq!(Config::current().state_dir, PathBuf::from("outer"));
            with_mode(Mode::Debug, || {
                let inner = Config::current();
                assert_eq!((inner.mode, inner.state_dir), (Mode::Debug, PathBuf::from("outer")));
            });
            assert_eq!(mode(), Mode::Local);
        });
        assert_ne!(Config::current().state_dir, PathBuf::from("outer"));
    }

    #[test]
    fn the_ray_backend_parses_and_its_setter_and_scopes_lay_over_the_file() {
        assert_eq!(" Runner ".parse::<RemoteBackend>(), Ok(RemoteBackend::Runner));
        assert!(
            "serve"
                .parse::<RemoteBackend>()
                .unwrap_err()
                .contains("auto, runner, jobs")
        );
        for b in [RemoteBackend::Auto, RemoteBackend::Runner, RemoteBackend::Jobs] {
            assert_eq!(b.as_str().parse::<RemoteBackend>(), Ok(b));
        }
        let scoped = Config::current().with_ray(RayConfig {
            backend: RemoteBackend::Jobs,
            ..RayConfig::default()
        });
        assert_eq!(scoped.scope(|| Config::current().ray.backend), RemoteBackend::Jobs);
    }

    #[test]
    fn threads_have_scopes_of_their_own() {
        let a = std::thread::spawn(|| Config::current().with_state_dir("a").scope(state_dir));
        let b = std::thread::spawn(|| Config::current().with_state_dir("b").scope(state_dir));
        assert_eq!(a.join().unwrap(), PathBuf::from("a"));
        assert_eq!(b.join().unwrap(), PathBuf::from("b"));
    }

    #[test]
    fn a_task_keeps_its_scope_across_threads() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let config = Config::current().with_state_dir("task");
        let seen = runtime.block_on(config.scope_async(async {
            let mut seen = Vec::new();
            for _ in 0..4 {
                tokio::task::yield_now().await;
                seen.push(state_dir());
            }
            seen
        }));
        assert!(seen.iter().all(|d| d == &PathBuf::from("task")), "{seen:?}");
    }

    #[test]
    fn the_clearml_style_setters_set_the_process_default() {
        // Tests beside this one read the process default: it is put back as it was.
        let saved = lock(&PROCESS).clone();
        start_locally(true);
        assert_eq!(mode(), Mode::Local);
        start_locally(false);
        assert_eq!(mode(), Mode::Remote);
        with_mode(Mode::Debug, || assert_eq!(mode(), Mode::Debug));
        assert_eq!(mode(), Mode::Remote);
        assert_eq!(Config::current().default_queue, "default");
        set_default_execution_queue("gpu");
        assert_eq!(Config::current().default_queue, "gpu");
        set_busy_timeout(Duration::from_millis(1234));
        assert_eq!(Config::current().busy_timeout, Duration::from_millis(1234));
        *lock(&PROCESS) = saved;
    }
}
