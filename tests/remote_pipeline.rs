//! Remote mode end to end on a real Ray cluster (single node on loopback; `scripts/with-ray.sh`
//! starts one and sets `PIPELINE_RAY_ADDRESS`; the default address is used otherwise). The
//! cluster serves the queues `default` (100 slots) and `gpu` (1 slot), and nothing else.

use pipeline_runtime::prelude::*;
use pipeline_runtime::store::RunFilter;
use pipeline_runtime::{Mode, RunStatus, with_mode};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime};

fn setup() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("remote-{}", std::process::id()));
        pipeline_runtime::set_state_dir(Some(dir));
    });
}

#[component]
fn square(x: u64) -> u64 {
    x * x
}

#[component(return_values = ["evens", "odds"])]
fn split(values: Vec<u64>) -> (Vec<u64>, Vec<u64>) {
    values.into_iter().partition(|v| v % 2 == 0)
}

#[component]
fn total(values: Vec<u64>) -> u64 {
    values.iter().sum()
}

#[pipeline(name = "remote_fan_out", project = "remote-tests")]
fn fan_out(n: u64) -> anyhow::Result<(u64, u64)> {
    let squares: Vec<Handle<u64>> = (1..=n).map(square).collect();
    let all = total(squares);
    let (evens, odds) = split((1..=n).collect::<Vec<_>>());
    Ok((all.get()?, total(evens).get()? * 1000 + total(odds).get()?))
}

#[test]
fn a_fan_out_on_ray_gives_the_same_results_as_the_other_modes() {
    setup();
    let remote = fan_out::run(6).unwrap();
    let local = with_mode(Mode::Local, || fan_out::run(6).unwrap());
    let debug = with_mode(Mode::Debug, || fan_out::run(6).unwrap());
    let remote_value = remote.output.unwrap();
    assert_eq!(remote_value, (91, 12 * 1000 + 9));
    assert_eq!(remote_value, local.output.unwrap());
    assert_eq!(remote_value, debug.output.unwrap());
    assert!(remote.run.is_successful());
    assert_eq!(remote.run.record().mode, "remote");
    let shape = |r: &PipelineRun| {
        r.dag()
            .nodes()
            .map(|n| (n.name.clone(), n.parents.clone(), n.status))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&remote.run), shape(&debug.run));
}

/// When it ran, as seen from inside the job.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[component(execution_queue = "gpu")]
fn on_gpu_queue(id: u32) -> (u32, f64, f64) {
    let start = now();
    std::thread::sleep(Duration::from_millis(1500));
    (id, start, now())
}

#[component(execution_queue = "nobody-serves-this", time_limit = "4s")]
fn unserved() -> u32 {
    1
}

/// Each gpu step's id, start and end; the unserved step's outcome.
type QueueOutcome = (Vec<(u32, f64, f64)>, Result<u32, HandleError>);

#[pipeline(name = "remote_queues", project = "remote-tests")]
fn queues() -> QueueOutcome {
    let gpu: Vec<_> = (0..2).map(on_gpu_queue).collect();
    let stuck = unserved();
    (gpu.into_iter().map(|h| h.get().unwrap()).collect(), stuck.get())
}

#[test]
fn queues_route_steps_to_the_nodes_that_serve_them() {
    setup();
    let f = queues::run().unwrap();
    let (gpu, stuck) = f.output;
    // One `queue_gpu` slot: the two steps ran one after the other.
    let (a, b) = (gpu[0], gpu[1]);
    assert!(
        a.2 <= b.1 || b.2 <= a.1,
        "the gpu queue ran two steps at once: {a:?} {b:?}"
    );
    // No node serves the queue: the step waits, and its time limit stops the job.
    let stuck = stuck.unwrap_err();
    assert!(
        matches!(&stuck, HandleError::Aborted { reason, .. } if reason.contains("time limit of 4.000s")),
        "{stuck}"
    );
    assert_eq!(f.run.dag().node("unserved").unwrap().status, NodeStatus::Aborted);
}

#[component]
fn long_nap() -> u32 {
    std::thread::sleep(Duration::from_secs(120));
    1
}

#[pipeline(name = "remote_stopped", project = "remote-tests")]
fn stopped() -> Result<u32, HandleError> {
    long_nap().get()
}

fn ray_address() -> String {
    std::env::var(pipeline_runtime::RAY_ADDRESS_ENV).unwrap_or_else(|_| "http://127.0.0.1:8265".into())
}

/// `METHOD path` to the Ray dashboard with a bare HTTP/1.1 request; the whole answer.
fn request(method: &str, path: &str) -> String {
    http(&ray_address(), method, path)
}

/// `METHOD path` to `http://host:port` with a bare HTTP/1.1 request; the whole answer.
fn http(address: &str, method: &str, path: &str) -> String {
    let host = address.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn a_job_stopped_on_the_cluster_is_an_aborted_step() {
    setup();
    let started = Instant::now();
    let worker = std::thread::spawn(|| stopped::run().unwrap());
    let filter = RunFilter {
        name: Some("remote_stopped".into()),
        status: Some(RunStatus::Running),
        ..Default::default()
    };
    let run = loop {
        if let Some(run) = PipelineRun::find(&filter).unwrap() {
            if run.running_nodes() == ["long_nap"] {
                break run;
            }
        }
        // A bound for a wedged cluster only: under load, Ray takes long to start a job.
        assert!(started.elapsed() < Duration::from_secs(180), "the step never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The submission id is derived from the run, the step and the attempt.
    let job = format!("/api/jobs/{}-long_nap-1", run.id());
    while !request("GET", &job).contains("\"RUNNING\"") {
        assert!(started.elapsed() < Duration::from_secs(180), "the job never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopping = Instant::now();
    let answer = request("POST", &format!("{job}/stop"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let finished = worker.join().unwrap();
    let err = finished.output.unwrap_err();
    assert!(
        matches!(&err, HandleError::Aborted { reason, .. } if reason.contains("was stopped on the cluster")),
        "{err}"
    );
    // The stop, not the whole test, is what must be quick.
    assert!(stopping.elapsed() < Duration::from_secs(30), "{:?}", stopping.elapsed());
}

#[pipeline(
    name = "remote_s3",
    project = "remote-tests",
    output_uri = "s3://pipeline-tests/artifacts"
)]
fn through_s3(n: u64) -> (Handle<u64>, u64) {
    let squares: Vec<Handle<u64>> = (1..=n).map(square).collect();
    let sum = total(squares);
    let (evens, _) = split((1..=n).collect::<Vec<_>>());
    let even_sum = total(evens); // reads `split`'s output straight from the bucket
    (sum, even_sum.get().unwrap())
}

/// The bucket's listing under `prefix`, from the endpoint `scripts/with-ray.sh` exports.
fn s3_listing(prefix: &str) -> String {
    let endpoint = std::env::var("AWS_ENDPOINT").expect("AWS_ENDPOINT: run under scripts/with-ray.sh");
    http(
        &endpoint,
        "GET",
        &format!("/pipeline-tests?list-type=2&prefix={prefix}"),
    )
}

#[test]
fn artifacts_travel_through_s3_when_output_uri_names_a_bucket() {
    setup();
    let f = through_s3::run(4).unwrap();
    let (sum, even_sum) = f.output;
    assert_eq!(even_sum, 6);
    // The output stayed in the bucket until read here.
    let local = sum.artifact().unwrap();
    assert!(
        !local.exists(),
        "the worker wrote to object storage, not to the state folder"
    );
    assert_eq!(sum.get().unwrap(), 30);
    assert!(local.exists(), "read through a download");

    let listing = s3_listing(&format!("artifacts/{}/", f.run.id()));
    for key in ["square_3/outputs/return_object.art", "total/result-1.json"] {
        assert!(
            listing.contains(&format!("artifacts/{}/{key}", f.run.id())),
            "{key} missing from {listing}"
        );
    }
    // The fan-in read the squares' own artifacts from the bucket: none was written again.
    assert!(
        !listing.contains(&format!("artifacts/{}/total/inputs/", f.run.id())),
        "{listing}"
    );
    let recorded = f.run.artifacts().unwrap();
    let output = recorded
        .iter()
        .find(|a| a.node == "total" && a.name == "return_object")
        .unwrap();
    assert_eq!(
        output.uri,
        format!(
            "s3://pipeline-tests/artifacts/{}/total/outputs/return_object.art",
            f.run.id()
        )
    );
    // Recorded with its type, size and checksum (the worker reported them), and readable where
    // it is, as `pipeline get` and `artifacts` read it.
    assert_eq!(output.type_name.as_deref(), Some("u64"), "{output:?}");
    let (header, payload) = pipeline_runtime::artifacts::read_payload_at(&output.uri).unwrap();
    assert_eq!(Some(header.length), output.size);
    assert_eq!(Some(format!("{:08x}", header.checksum)), output.checksum);
    assert_eq!(
        bincode::serde::decode_from_slice::<u64, _>(&payload, bincode::config::standard())
            .unwrap()
            .0,
        30
    );
    let missing = pipeline_runtime::artifacts::read_payload_at("s3://pipeline-tests/artifacts/no-such/object.art");
    assert!(
        missing
            .unwrap_err()
            .message
            .contains("s3://pipeline-tests/artifacts/no-such/object.art")
    );
}

#[component(time_limit = "3s")]
fn on_the_default_queue() -> u32 {
    1
}

#[pipeline(
    name = "remote_default_queue",
    project = "remote-tests",
    default_queue = "nobody-serves-this"
)]
fn default_queue() -> Result<u32, HandleError> {
    on_the_default_queue().get()
}

#[test]
fn a_pipelines_default_queue_routes_steps_that_name_none() {
    setup();
    // No node serves the pipeline's default queue: the step waits until its time limit.
    let err = default_queue::run().unwrap().output.unwrap_err();
    assert!(
        matches!(&err, HandleError::Aborted { reason, .. } if reason.contains("time limit of 3.000s")),
        "{err}"
    );
}

#[pipeline(
    name = "remote_controller",
    project = "remote-tests",
    pipeline_execution_queue = "default"
)]
fn controlled(n: u64, label: String) -> u64 {
    let _ = label;
    let squares: Vec<Handle<u64>> = (1..=n).map(square).collect();
    total(squares).get().unwrap()
}

#[test]
fn the_controller_itself_can_run_on_the_cluster() {
    setup();
    let remote = controlled::enqueue(3, "from the cluster".into()).unwrap();
    assert!(remote.job().starts_with("controller-remote_controller-"));
    let run = remote
        .wait(Duration::from_secs(180))
        .unwrap()
        .expect("the controller ended");
    assert_eq!(run.id(), remote.id());
    assert!(
        run.is_successful(),
        "{}\n{}",
        run.dag().to_text(),
        remote.logs().unwrap_or_default()
    );
    assert_eq!(run.record().mode, "remote");
    assert_eq!(
        run.parameters(),
        [
            ("n".to_string(), "3".to_string()),
            ("label".to_string(), "\"from the cluster\"".to_string())
        ]
    );
    let names: Vec<_> = run.dag().nodes().map(|n| (n.name.clone(), n.status)).collect();
    assert_eq!(names.len(), 4);
    assert!(names.iter().all(|(_, s)| *s == NodeStatus::Completed), "{names:?}");
}
