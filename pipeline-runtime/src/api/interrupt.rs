//! SIGTERM and Ctrl-C (SIGINT) to a controller: its live runs are stopped (workers and what
//! they started end with them) and recorded as `aborted`, then the process ends as the signal
//! would have ended it. Without this, the runs stayed `running` in the store and their workers
//! ran on.

use crate::engine::run::Run;
use crate::store::Event;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once, Weak};
use std::time::{Duration, Instant, SystemTime};

/// How long the runs' own ends may take (their bodies see their steps aborted and return).
const GRACE: Duration = Duration::from_millis(1500);

/// The bound on writing the end of a run whose body did not return in time.
const LAST_WRITE: Duration = Duration::from_millis(300);

static LIVE: Mutex<Vec<Weak<Run>>> = Mutex::new(Vec::new());
static CHANGED: Condvar = Condvar::new();
/// The signal received, once one is (0 before).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// A run started in this process: a signal stops it.
pub(crate) fn started(run: &Arc<Run>) {
    install();
    crate::sync::lock(&LIVE).push(Arc::downgrade(run));
}

/// The run's end is recorded: a signal now has nothing to do for it.
pub(crate) fn ended(run: &Run) {
    let mut live = crate::sync::lock(&LIVE);
    live.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), run));
    CHANGED.notify_all();
    // After a signal, the program does not go on past its runs' ends, as it would not have
    // without this module.
    let signal = RECEIVED.load(Ordering::SeqCst);
    if signal != 0 && live.is_empty() {
        drop(live);
        exit_by(signal);
    }
}

fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGINT, SIGTERM};
            let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
                Ok(signals) => signals,
                Err(e) => {
                    crate::diag::warn(format_args!("cannot watch for SIGTERM and Ctrl-C: {e}"));
                    return;
                }
            };
            let watching = std::thread::Builder::new()
                .name("pipeline-signals".into())
                .spawn(move || {
                    if let Some(signal) = signals.forever().next() {
                        stop_all(signal);
                    }
                });
            if let Err(e) = watching {
                crate::diag::warn(format_args!("cannot watch for SIGTERM and Ctrl-C: {e}"));
            }
        }
    });
}

#[cfg(unix)]
fn stop_all(signal: i32) {
    let name = if signal == signal_hook::consts::SIGINT {
        "SIGINT (Ctrl-C)"
    } else {
        "SIGTERM"
    };
    RECEIVED.store(signal, Ordering::SeqCst);
    let runs: Vec<Arc<Run>> = crate::sync::lock(&LIVE).iter().filter_map(Weak::upgrade).collect();
    for run in &runs {
        run.abort_run(
            format!("the controller received {name}"),
            pipeline_core::StopMark::Aborted,
        );
    }
    drop(runs);
    // The bodies see their steps aborted and return; their runs end and are recorded as usual.
    let deadline = Instant::now() + GRACE;
    let mut live = crate::sync::lock(&LIVE);
    while live.iter().any(|w| w.strong_count() > 0) && Instant::now() < deadline {
        live = CHANGED
            .wait_timeout(live, deadline - Instant::now())
            .map_or_else(|p| p.into_inner().0, |(guard, _)| guard);
    }
    // A body still busy (an in-process step cannot be interrupted): record the end for it.
    let late: Vec<Arc<Run>> = live.iter().filter_map(Weak::upgrade).collect();
    drop(live);
    for run in late {
        if let Some(recorder) = &run.recorder {
            recorder.send(Event::RunEnd {
                run: run.key.to_string(),
                status: pipeline_core::RunStatus::Aborted,
                ended: SystemTime::now(),
            });
            let _ = recorder.finish(LAST_WRITE);
        }
    }
    exit_by(signal);
}

/// Ends the process as `signal` would have without this module.
fn exit_by(signal: i32) -> ! {
    // Ending by the signal skips `atexit`: wait here for the runs' last checkpoints.
    crate::store::recorder::wait_for_checkpoints();
    #[cfg(unix)]
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    std::process::exit(128 + signal);
}
