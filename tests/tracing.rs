//! With a `tracing` subscriber installed, a run is a `run` span, each attempt a `step` span
//! inside it, and warnings are events (instead of lines printed to stderr).

use pipeline_runtime::prelude::*;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[component]
fn double(x: u32) -> u32 {
    x * 2
}

#[pipeline(name = "traced", project = "tests")]
fn traced(x: u32) -> u32 {
    // Keys that are not strings have no JSON form: a warning, not an error.
    let odd: HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
    pipeline_runtime::step::connect_configuration("odd", odd);
    double(x).get().unwrap()
}

#[test]
fn runs_and_steps_are_spans_and_warnings_are_events() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let dir = std::env::temp_dir().join(format!("pipeline-tracing-{}", std::process::id()));
    pipeline_runtime::set_state_dir(Some(dir.clone()));
    let finished = pipeline_runtime::with_mode(pipeline_runtime::Mode::Debug, || traced::run(21)).unwrap();
    assert_eq!(finished.output, 42);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let id = finished.run.id();
    assert!(text.contains(&format!("run{{pipeline=\"traced\" run={id}}}")), "{text}");
    assert!(text.contains("run started"), "{text}");
    assert!(
        text.contains("step{step=double attempt=1}: pipeline: attempt started"),
        "{text}"
    );
    assert!(
        text.contains("run ended") && text.contains("status=completed"),
        "{text}"
    );
    assert!(
        text.contains("WARN") && text.contains("configuration `odd` is not representable as JSON"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
