//! The warm runner's controller side. One runner per controller process, cluster and binary:
//! a Ray job, submitted once, that runs `runner.py` (shipped in the binary's package). It
//! long-polls a small HTTP endpoint this module serves for step attempts and runs each as a
//! Ray task that starts the binary in worker mode; it posts each attempt's exit and output
//! back. This side keeps the lease table ([`super::leases`]) and watches the runner:
//!
//! - a runner whose Ray job ends, or that stops polling, loses the attempts it held: they end
//!   as lost (a crash; the retry policy decides), never handed out again;
//! - a runner that never served (it could not start, or cannot reach this controller) hands
//!   the attempts waiting for it back as unavailable, and with `backend = "auto"` remote steps
//!   go as one Ray job each from then on (said on stderr);
//! - a runner that is idle exits by itself; another starts when work comes.
//!
//! The endpoint wants the runner's bearer token (random per process, in the runner job's
//! environment) and sets TCP_NODELAY (a Nagle stall costs 40 ms a step otherwise).

use super::Cluster;
use super::leases::{Cancelled, Leases};
use crate::config::{RayConfig, RemoteBackend};
use crate::sync::lock;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// The runner's script, as shipped in the binary's package.
pub(crate) const SCRIPT: &str = include_str!("runner.py");
/// Its file name in the package.
pub(crate) const SCRIPT_NAME: &str = "pipeline_runner.py";

/// How long a poll is held when there is nothing for the runner.
const POLL_WAIT: Duration = Duration::from_secs(10);
/// A serving runner silent for longer than its poll wait plus this is gone.
const SILENCE_GRACE: Duration = Duration::from_secs(10);
/// How long a runner may take from its submission to its first poll.
const START_BOUND: Duration = Duration::from_secs(120);
/// How often the runner's job state is read.
const WATCH: Duration = Duration::from_millis(250);
/// Said where `auto` falls back to a job per step.
pub(crate) const FALLBACK_HINT: &str = " (set ray.backend = \"jobs\" to skip the runner)";

/// The most output of one attempt that comes back from the runner (its end).
pub(crate) const LOG_KEPT: u64 = 64 << 20;
/// How long a runner without work stays.
const IDLE_EXIT: Duration = Duration::from_secs(300);

/// How an attempt handed to the runner ended.
pub(crate) enum Completion {
    /// The runner reports its end.
    Done(Report),
    /// The runner died, or never got the attempt: it may have run in part.
    Lost(String),
    /// No runner took it (nothing ran): it may go another way.
    Unavailable(String),
}

/// A runner's reports of attempts' ends.
#[derive(Deserialize)]
struct Reports {
    runner: String,
    reports: Vec<Report>,
}

/// A runner's report of an attempt's end.
#[derive(Deserialize)]
pub(crate) struct Report {
    id: String,
    /// The worker's exit code, when it exited.
    #[serde(default)]
    pub(crate) code: Option<i32>,
    /// The signal that ended the worker.
    #[serde(default)]
    pub(crate) signal: Option<i32>,
    /// The end of its output.
    #[serde(default)]
    pub(crate) log: String,
    /// Bytes of output dropped before `log`.
    #[serde(default)]
    pub(crate) dropped: u64,
    /// The task was cancelled.
    #[serde(default)]
    pub(crate) cancelled: bool,
    /// The task failed in Ray (its worker or node died, it could not be scheduled).
    #[serde(default)]
    pub(crate) error: Option<String>,
}

/// What [`Service::submit`] hands back: when the runner takes the attempt, when its task runs
/// (a closed channel says nothing more will be told), how it ended.
pub(crate) struct Handed {
    pub(crate) taken: oneshot::Receiver<()>,
    pub(crate) started: oneshot::Receiver<()>,
    pub(crate) done: oneshot::Receiver<Completion>,
}

struct Pending {
    /// What the runner is handed.
    item: serde_json::Value,
    /// Told when the runner takes it.
    taken: Option<oneshot::Sender<()>>,
    /// Told when its task runs on the cluster.
    started: Option<oneshot::Sender<()>>,
    done: oneshot::Sender<Completion>,
}

impl Pending {
    fn end(self, completion: Completion) {
        // A waiter that gave up is not waiting any more.
        let _ = self.done.send(completion);
    }
}

#[derive(Deserialize)]
struct PollRequest {
    runner: String,
    seq: u64,
    #[serde(default)]
    held: Vec<String>,
    #[serde(default)]
    wait_ms: u64,
}

/// The runner's Ray job.
#[derive(Clone)]
struct Job {
    runner: String,
    job_id: String,
    submitted: Instant,
    /// It has polled.
    served: bool,
}

/// The endpoint, the lease table and the runner of one cluster and binary.
pub(crate) struct Service {
    leases: Mutex<Leases<Pending>>,
    /// Work or a cancel for the runner.
    wake: Notify,
    /// A runner is wanted.
    kick: Notify,
    token: String,
    url: String,
    cluster: Cluster,
    python: String,
    backend: RemoteBackend,
    job: Mutex<Option<Job>>,
    /// Why no runner serves (with `auto`: remote steps go as jobs from then on).
    unavailable: Mutex<Option<String>>,
}

/// The runtime of every service: its endpoint and watcher outlive any one run.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pipeline-runner")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runner endpoint's thread: {e}"))?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// The service of `cluster` as `ray` configures it, started on first use.
pub(crate) fn service(cluster: &Cluster, ray: &RayConfig) -> Result<Arc<Service>, String> {
    type Key = (String, String, String, Option<String>, Option<String>, RemoteBackend);
    static SERVICES: Mutex<Vec<(Key, Arc<Service>)>> = Mutex::new(Vec::new());
    let python = ray.python.clone().unwrap_or_else(|| "python3".into());
    let key: Key = (
        cluster.client.address().to_string(),
        cluster.package.clone(),
        python.clone(),
        ray.runner_listen.clone(),
        ray.runner_url.clone(),
        ray.backend,
    );
    let mut services = lock(&SERVICES);
    if let Some((_, service)) = services.iter().find(|(k, _)| *k == key) {
        return Ok(service.clone());
    }
    let runtime = runtime()?;
    let ray_host = host_port(cluster.client.address());
    let listen = match &ray.runner_listen {
        Some(listen) => listen.clone(),
        None if resolves_to_loopback(&ray_host) => "127.0.0.1:0".into(),
        None => "0.0.0.0:0".into(),
    };
    let listener = std::net::TcpListener::bind(&listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot listen for the warm runner on {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let url = match &ray.runner_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!(
            "http://{}",
            SocketAddr::new(reachable_ip(bound.ip(), &ray_host)?, bound.port())
        ),
    };
    let service = Arc::new(Service {
        leases: Mutex::new(Leases::default()),
        wake: Notify::new(),
        kick: Notify::new(),
        token: crate::os::random_token(),
        url,
        cluster: cluster.clone(),
        python,
        backend: ray.backend,
        job: Mutex::new(None),
        unavailable: Mutex::new(None),
    });
    let router = axum::Router::new()
        .route("/poll", axum::routing::post(poll))
        .route("/started", axum::routing::post(started))
        .route(
            "/done",
            // Reports carry the end of the steps' output: at most `LOG_KEPT` each, about 32 MiB
            // a request (one report may be larger alone), which JSON's escapes may make grow.
            axum::routing::post(done).layer(axum::extract::DefaultBodyLimit::max(8 * LOG_KEPT as usize)),
        )
        .with_state(service.clone());
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?
    };
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    runtime.spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            crate::diag::warn(format_args!("the warm runner's endpoint stopped: {e}"));
        }
    });
    runtime.spawn(watch(service.clone()));
    services.push((key, service.clone()));
    Ok(service)
}

/// `host:port` of an `http(s)://host:port/...` address.
fn host_port(address: &str) -> String {
    let (scheme, rest) = address.split_once("://").unwrap_or(("http", address));
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:{}", if scheme == "https" { 443 } else { 80 })
    }
}

fn resolves_to_loopback(host_port: &str) -> bool {
    host_port
        .to_socket_addrs()
        .is_ok_and(|mut addrs| addrs.all(|a| a.ip().is_loopback()))
}

/// The address the cluster reaches this machine at: `bound` itself, unless it is "any", then
/// this machine's address on the route to the cluster (a UDP socket's choice: nothing is sent).
fn reachable_ip(bound: IpAddr, ray_host_port: &str) -> Result<IpAddr, String> {
    if !bound.is_unspecified() {
        return Ok(bound);
    }
    let cluster = ray_host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve the Ray cluster's address `{ray_host_port}`"))?;
    let probe = std::net::UdpSocket::bind((
        if cluster.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        },
        0,
    ))
    .and_then(|s| s.connect(cluster).and_then(|()| s.local_addr()))
    .map_err(|e| format!("cannot tell this machine's address on the route to `{ray_host_port}`: {e}"))?;
    Ok(probe.ip())
}

impl Service {
    /// The backend the service was configured with (`auto` or `runner`).
    pub(crate) fn backend(&self) -> RemoteBackend {
        self.backend
    }

    /// Why no runner serves, once `auto` has fallen back to jobs.
    pub(crate) fn unavailable(&self) -> Option<String> {
        lock(&self.unavailable).clone()
    }

    /// Queues attempt `id` with its work `item`; the receivers learn when the runner takes
    /// it, when its task runs and how it ended.
    pub(crate) fn submit(&self, id: &str, item: serde_json::Value) -> Result<Handed, String> {
        let (taken, taken_rx) = oneshot::channel();
        let (started, started_rx) = oneshot::channel();
        let (done, done_rx) = oneshot::channel();
        let pending = Pending {
            item,
            taken: Some(taken),
            started: Some(started),
            done,
        };
        if !lock(&self.leases).add(id, pending) {
            return Err(format!("attempt `{id}` is with the runner already"));
        }
        self.wake.notify_waiters();
        // The watcher starts a runner if none is up; with one up, its regular check suffices
        // (a check per step would ask the Jobs API once per step).
        if lock(&self.job).is_none() {
            self.kick.notify_one();
        }
        Ok(Handed {
            taken: taken_rx,
            started: started_rx,
            done: done_rx,
        })
    }

    /// Asks for attempt `id` to stop: true when it had not been handed out (nothing ran).
    pub(crate) fn cancel(&self, id: &str) -> bool {
        let cancelled = lock(&self.leases).cancel(id);
        match cancelled {
            Cancelled::Unstarted(_) => true,
            Cancelled::Asked => {
                self.wake.notify_waiters();
                false
            }
            Cancelled::Unknown => false,
        }
    }

    /// Forgets attempt `id` (its waiter gave up on it).
    pub(crate) fn forget(&self, id: &str) {
        lock(&self.leases).remove(id);
    }

    fn authed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| crate::os::same_secret(t, &self.token))
    }

    /// Submits a new runner job.
    async fn start_runner(&self) {
        let runner = crate::os::random_token()[..12].to_string();
        let job_id = format!("pipeline-runner-{runner}");
        let body = serde_json::json!({
            "entrypoint": Cluster::entrypoint(&format!("{} {SCRIPT_NAME}", self.python)),
            "submission_id": job_id,
            "runtime_env": self.cluster.runtime_env(serde_json::json!({
                "PIPELINE_RUNNER_URL": self.url,
                "PIPELINE_RUNNER_TOKEN": self.token,
                "PIPELINE_RUNNER_ID": runner,
                "PIPELINE_RUNNER_EXE": self.cluster.exe_name,
                "PIPELINE_RUNNER_WAIT": POLL_WAIT.as_secs().to_string(),
                "PIPELINE_RUNNER_IDLE": IDLE_EXIT.as_secs().to_string(),
            })),
            "metadata": {
                "pipeline_runner": runner,
                "controller": format!("{}:{}", crate::os::hostname(), std::process::id()),
            },
        });
        match self.cluster.client.submit(&body).await {
            Ok(()) => {
                crate::diag::note(format_args!(
                    "remote steps go through the warm runner `{job_id}` on the Ray cluster at {}, which reaches \
                     this controller at {}",
                    self.cluster.client.address(),
                    self.url
                ));
                *lock(&self.job) = Some(Job {
                    runner,
                    job_id,
                    submitted: Instant::now(),
                    served: false,
                });
            }
            Err(e) => self.never_served(format!("its job could not be submitted: {e}")),
        }
    }

    /// The runner of `job` is gone, for `reason`.
    fn gone(&self, job: &Job, reason: String) {
        let mut job = job.clone();
        {
            let mut current = lock(&self.job);
            if let Some(now) = current.take_if(|j| j.job_id == job.job_id) {
                // It may have polled since `job` was read.
                job.served = now.served;
            }
        }
        let job = &job;
        let lost = lock(&self.leases).runner_gone(&job.runner);
        for (_, pending) in lost {
            pending.end(Completion::Lost(format!("the warm runner `{}` {reason}", job.job_id)));
        }
        if !job.served {
            self.never_served(format!("its job `{}` {reason}", job.job_id));
        } else if lock(&self.leases).queued() > 0 {
            self.kick.notify_one();
        }
    }

    /// No runner could serve: what waits for one is handed back, and `auto` falls back.
    fn never_served(&self, reason: String) {
        let why = format!(
            "the warm runner could not serve this controller ({}): {reason}",
            self.url
        );
        if self.backend == RemoteBackend::Auto {
            crate::diag::warn(format_args!(
                "{why}; remote steps go as one Ray job each from now on{FALLBACK_HINT}"
            ));
            *lock(&self.unavailable) = Some(why.clone());
        }
        let waiting = lock(&self.leases).drain_queue();
        for (_, pending) in waiting {
            pending.end(Completion::Unavailable(why.clone()));
        }
    }

    /// Checks the runner once: its job's state, its silence.
    async fn check(&self) {
        let job = lock(&self.job).clone();
        let Some(job) = job else {
            if lock(&self.unavailable).is_none() && lock(&self.leases).queued() > 0 {
                self.start_runner().await;
            }
            return;
        };
        let client = &self.cluster.client;
        match client.status(&job.job_id).await {
            Ok(info) if info.is_terminal() => {
                let mut reason = format!("ended ({})", info.status);
                // Without the log Ray appends: its end is quoted below.
                if let Some(message) = info.message.as_deref().and_then(|m| m.lines().next()) {
                    let message = message.split(", last available logs").next().unwrap_or(message);
                    reason.push_str(&format!(": {}", message.trim()));
                }
                if !job.served
                    && let Ok(logs) = client.logs(&job.job_id).await
                {
                    // Ray's own lines (the environment's set-up, the entrypoint) say nothing here.
                    let tail: Vec<&str> = logs
                        .lines()
                        .rev()
                        .filter(|l| !l.contains("job_manager.py") && !l.starts_with("Running entrypoint"))
                        .take(5)
                        .collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    reason.push_str(&format!("; its log ends: {}", tail.join(" | ")));
                }
                self.gone(&job, reason);
            }
            // Running (or the cluster does not answer now): what the runner's polls say.
            _ => {
                let silent = job.served
                    && !lock(&self.leases).heard_from(&job.runner, Instant::now(), POLL_WAIT + SILENCE_GRACE);
                let late = !job.served && job.submitted.elapsed() > START_BOUND;
                if silent || late {
                    let _ = client.stop(&job.job_id).await;
                    self.gone(
                        &job,
                        if silent {
                            format!("has not polled for {} s", (POLL_WAIT + SILENCE_GRACE).as_secs())
                        } else {
                            format!("did not poll within {} s of its submission", START_BOUND.as_secs())
                        },
                    );
                }
            }
        }
    }

    /// The answer to a poll of the current runner: its work and cancels, or nothing after
    /// the wait.
    async fn answer(&self, request: PollRequest) -> serde_json::Value {
        let wait = Duration::from_millis(request.wait_ms).min(Duration::from_secs(30));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (work, cancel, lost, empty) = {
                let mut leases = lock(&self.leases);
                let answer = leases.poll(&request.runner, request.seq, &request.held, Instant::now());
                let empty = answer.is_empty();
                let work: Vec<serde_json::Value> = answer
                    .work
                    .iter()
                    .filter_map(|id| {
                        let pending = leases.get_mut(id)?;
                        if let Some(taken) = pending.taken.take() {
                            let _ = taken.send(());
                        }
                        Some(pending.item.clone())
                    })
                    .collect();
                (work, answer.cancel, answer.lost, empty)
            };
            for (_, pending) in lost {
                pending.end(Completion::Lost(
                    "was handed to the warm runner, which never received it".into(),
                ));
            }
            if !empty || tokio::time::Instant::now() >= deadline {
                return serde_json::json!({ "work": work, "cancel": cancel });
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

/// Watches the runner until the process ends.
async fn watch(service: Arc<Service>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(WATCH) => {}
            () = service.kick.notified() => {}
        }
        service.check().await;
    }
}

/// A JSON answer (by hand: axum's `json` feature turns on serde_json's `raw_value` for every
/// user of the crate, which changes the compiler's messages about their types).
fn json(value: &serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, why.to_string()).into_response()
}

async fn poll(State(service): State<Arc<Service>>, headers: HeaderMap, body: Bytes) -> Response {
    if !service.authed(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "a runner's token is needed");
    }
    let Ok(request) = serde_json::from_slice::<PollRequest>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "not a poll");
    };
    {
        let mut job = lock(&service.job);
        match job.as_mut() {
            Some(job) if job.runner == request.runner => job.served = true,
            // A runner this controller no longer counts on: it must not take work.
            _ => return json(&serde_json::json!({ "exit": true })),
        }
    }
    json(&service.answer(request).await)
}

/// Attempts of `runner` whose tasks run now.
#[derive(Deserialize)]
struct Started {
    runner: String,
    ids: Vec<String>,
}

async fn started(State(service): State<Arc<Service>>, headers: HeaderMap, body: Bytes) -> Response {
    if !service.authed(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "a runner's token is needed");
    }
    let Ok(Started { runner, ids }) = serde_json::from_slice::<Started>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "not a start");
    };
    let mut leases = lock(&service.leases);
    for id in ids {
        // As for an end: only the runner that holds the attempt reports its start.
        if let Some(started) = leases.held_mut(&runner, &id).and_then(|pending| pending.started.take()) {
            let _ = started.send(());
        }
    }
    StatusCode::OK.into_response()
}

async fn done(State(service): State<Arc<Service>>, headers: HeaderMap, body: Bytes) -> Response {
    if !service.authed(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "a runner's token is needed");
    }
    let Ok(Reports { runner, reports }) = serde_json::from_slice::<Reports>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "not a report");
    };
    for report in reports {
        let pending = lock(&service.leases).done(&runner, &report.id);
        if let Some(pending) = pending {
            pending.end(Completion::Done(report));
        }
    }
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_address_gives_host_and_port() {
        assert_eq!(host_port("http://127.0.0.1:8265"), "127.0.0.1:8265");
        assert_eq!(host_port("http://ray.example:8265/"), "ray.example:8265");
        assert_eq!(host_port("https://ray.example/dash"), "ray.example:443");
        assert_eq!(host_port("http://user:pw@ray.example"), "ray.example:80");
        assert!(resolves_to_loopback("127.0.0.1:8265"));
        assert!(!resolves_to_loopback("192.0.2.1:8265"));
    }

    /// The endpoint of a service whose cluster does not answer (no runner ever starts).
    fn offline() -> Arc<Service> {
        let config = RayConfig {
            address: Some("http://127.0.0.1:9".into()),
            backend: RemoteBackend::Runner,
            ..RayConfig::default()
        };
        let cluster = Cluster {
            client: super::super::ray::RayClient::new(&config).unwrap(),
            package: "gcs://_ray_pkg_test.zip".into(),
            exe_name: "test".into(),
        };
        service(&cluster, &config).unwrap()
    }

    #[test]
    fn the_endpoint_wants_the_token_and_sends_a_runner_it_does_not_count_on_away() {
        let service = offline();
        let client = reqwest::Client::new();
        let poll = serde_json::json!({ "runner": "r", "seq": 1, "held": [], "wait_ms": 10 });
        let post = |path: &'static str, token: Option<&str>, body: serde_json::Value| {
            let mut request = client.post(format!("{}{path}", service.url)).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert_eq!(post("/poll", None, poll.clone()).await.0, 401);
            assert_eq!(post("/poll", Some("not-the-token"), poll.clone()).await.0, 401);
            assert_eq!(post("/done", None, serde_json::json!({})).await.0, 401);
            assert_eq!(post("/started", None, serde_json::json!({})).await.0, 401);
            let token = service.token.clone();
            assert_eq!(post("/poll", Some(&token), serde_json::json!("junk")).await.0, 400);
            assert_eq!(post("/started", Some(&token), serde_json::json!("junk")).await.0, 400);
            // No runner was started: whoever polls is told to exit.
            let (status, body) = post("/poll", Some(&token), poll.clone()).await;
            assert_eq!((status, body.as_str()), (200, r#"{"exit":true}"#));
            // An attempt: no runner job can be submitted, so it comes back unavailable, with why.
            let handed = service.submit("a", serde_json::json!({ "id": "a" })).unwrap();
            let Ok(Completion::Unavailable(why)) = handed.done.await else {
                panic!("not handed back as unavailable")
            };
            assert!(why.contains("its job could not be submitted"), "{why}");
            // A report for an attempt nobody holds changes nothing.
            let report = serde_json::json!({ "runner": "r", "reports": [{ "id": "a", "code": 0 }] });
            assert_eq!(post("/done", Some(&token), report).await.0, 200);
            // Nor does a start.
            let start = serde_json::json!({ "runner": "r", "ids": ["a"] });
            assert_eq!(post("/started", Some(&token), start).await.0, 200);
        });
        assert_eq!(lock(&service.leases).queued(), 0);
        assert!(service.unavailable().is_none(), "`runner` does not fall back");
    }

    #[test]
    fn a_specific_listening_address_is_the_reachable_one() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(reachable_ip(ip, "127.0.0.1:1").unwrap(), ip);
        // "Any": the address on the route to the cluster; loopback routes through loopback.
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert!(reachable_ip(any, "127.0.0.1:8265").unwrap().is_loopback());
    }
}
