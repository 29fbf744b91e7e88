//! Live progress of a run in the terminal: a bar (`indicatif`) when stderr is a terminal, plain
//! lines when it is not (CI logs stay readable), nothing with `PIPELINE_PROGRESS=off`.
//!
//! A thread per displayed run reads the scheduler's tally a few times a second; the engine
//! does no I/O for it. Plain lines stay quiet for short runs: a failed step is one line when
//! it fails; a summary follows once the run has lasted [`QUIET`], then every [`EVERY`], and an
//! end line if anything was printed before.

use crate::config::Progress;
use crate::engine::Run;
use crate::engine::scheduler::Tally;
use pipeline_core::format::human_duration;
use pipeline_core::{NodeStatus, RunStatus};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant, SystemTime};

/// Plain lines start once a run has lasted this long.
const QUIET: Duration = Duration::from_secs(2);
/// Then a summary line this often.
const EVERY: Duration = Duration::from_secs(10);
/// Running steps named in a line.
const SHOWN: usize = 3;

/// A run's progress display, shown until [`Display::finish`].
pub(crate) struct Display {
    tx: Sender<(RunStatus, Tally)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Display {
    /// Ends the display with the run's final status and tally (every failure, from the
    /// first): its last lines say them.
    pub(crate) fn finish(mut self, status: RunStatus, tally: Tally) {
        let _ = self.tx.send((status, tally));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        // Not finished (the body panicked): the thread sees the channel close and stops.
        if let Some(thread) = self.thread.take() {
            let (tx, _) = channel();
            self.tx = tx;
            let _ = thread.join();
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Bar,
    Plain,
}

/// Starts the display of `run`, unless progress is off or the run is nested (it is one node
/// of its parent's display).
pub(crate) fn show(run: &Arc<Run>) -> Option<Display> {
    if run.parent.is_some() {
        return None;
    }
    let style = match run.config.progress {
        Progress::Off => return None,
        Progress::Bar => Style::Bar,
        Progress::Plain => Style::Plain,
        Progress::Auto if std::io::stderr().is_terminal() => Style::Bar,
        Progress::Auto => Style::Plain,
    };
    let (tx, rx) = channel();
    let run = run.clone();
    let thread = std::thread::Builder::new()
        .name("pipeline-progress".into())
        .spawn(move || match style {
            Style::Bar => bar(&run, &rx),
            Style::Plain => plain(&run, &rx),
        })
        .ok()?;
    Some(Display {
        tx,
        thread: Some(thread),
    })
}

/// What one tick of a display shows.
enum Tick {
    /// The run goes on: its tally, with the failures not shown yet.
    Running(Tally),
    /// The run ended: its final tally, with the failures not shown yet.
    Ended(RunStatus, Tally),
    /// The display was dropped without an end.
    Dropped,
}

/// Waits `period` for the run's end, then gives the tick; `failures` (those shown so far) grows
/// by the new ones.
fn tick(run: &Run, rx: &Receiver<(RunStatus, Tally)>, period: Duration, failures: &mut usize) -> Tick {
    let tick = match rx.recv_timeout(period) {
        Err(RecvTimeoutError::Timeout) => Tick::Running(run.tally(SHOWN, *failures)),
        Err(RecvTimeoutError::Disconnected) => return Tick::Dropped,
        // The final tally lists every failure: those not shown yet follow.
        Ok((status, mut tally)) => {
            tally.failed.drain(..(*failures).min(tally.failed.len()));
            Tick::Ended(status, tally)
        }
    };
    if let Tick::Running(t) | Tick::Ended(_, t) = &tick {
        *failures += t.failed.len();
    }
    tick
}

fn failure_line(name: &str, (step, error): &(smol_str::SmolStr, String)) -> String {
    format!("{name}: step `{step}` failed: {error}")
}

fn plain(run: &Run, rx: &Receiver<(RunStatus, Tally)>) {
    let name = run.descriptor.name;
    let started = Instant::now();
    let (mut failures, mut printed, mut next) = (0, false, QUIET);
    loop {
        let (tally, end) = match tick(run, rx, Duration::from_millis(250), &mut failures) {
            Tick::Running(tally) => (tally, None),
            Tick::Ended(status, tally) => (tally, Some(status)),
            Tick::Dropped => return,
        };
        for failure in &tally.failed {
            eprintln!("{}", failure_line(name, failure));
            printed = true;
        }
        if let Some(status) = end {
            if printed || started.elapsed() >= QUIET {
                eprintln!("{name}: {}", end_line(status, &tally, started.elapsed()));
            }
            return;
        }
        if started.elapsed() >= next {
            eprintln!("{name}: {}", line(&tally, SystemTime::now()));
            printed = true;
            next = started.elapsed() + EVERY;
        }
    }
}

fn bar(run: &Run, rx: &Receiver<(RunStatus, Tally)>) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let name = run.descriptor.name;
    let started = Instant::now();
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    let mut failures = 0;
    loop {
        let (tally, end) = match tick(run, rx, Duration::from_millis(100), &mut failures) {
            Tick::Running(tally) => (tally, None),
            Tick::Ended(status, tally) => (tally, Some(status)),
            Tick::Dropped => break bar.finish_and_clear(),
        };
        for failure in &tally.failed {
            bar.println(failure_line(name, failure));
        }
        if let Some(status) = end {
            bar.finish_and_clear();
            eprintln!("{name}: {}", end_line(status, &tally, started.elapsed()));
            return;
        }
        bar.set_length(tally.total() as u64);
        bar.set_position(tally.done() as u64);
        bar.set_message(running(&tally, SystemTime::now()));
    }
}

/// `12/40 steps done, 2 running: fit 3.2s, eval 1.1s (1 failed)`.
fn line(tally: &Tally, now: SystemTime) -> String {
    let mut out = format!("{}/{} steps done", tally.done(), tally.total());
    let running = running(tally, now);
    if !running.is_empty() {
        out.push_str(", ");
        out.push_str(&running);
    }
    let failed = tally.count(NodeStatus::Failed);
    if failed > 0 {
        out.push_str(&format!(" ({failed} failed)"));
    }
    out
}

/// `2 running: fit 3.2s, eval 1.1s, +1 more`, or nothing.
fn running(tally: &Tally, now: SystemTime) -> String {
    let count = tally.count(NodeStatus::Running);
    if count == 0 {
        return String::new();
    }
    let names: Vec<String> = tally
        .running
        .iter()
        .map(|(step, since)| match since.and_then(|s| now.duration_since(s).ok()) {
            Some(d) => format!("{step} {}", human_duration(d)),
            None => step.to_string(),
        })
        .collect();
    let more = count.saturating_sub(names.len());
    let mut out = format!("{count} running: {}", names.join(", "));
    if more > 0 {
        out.push_str(&format!(", +{more} more"));
    }
    out
}

/// `completed in 12.3s: 40 steps (38 completed, 1 cached, 1 failed)`.
fn end_line(status: RunStatus, tally: &Tally, took: Duration) -> String {
    let parts: Vec<String> = [
        NodeStatus::Completed,
        NodeStatus::Cached,
        NodeStatus::Failed,
        NodeStatus::Aborted,
        NodeStatus::Skipped,
    ]
    .into_iter()
    .filter(|&s| tally.count(s) > 0)
    .map(|s| format!("{} {s}", tally.count(s)))
    .collect();
    format!(
        "{status} in {}: {} step{} ({})",
        human_duration(took),
        tally.total(),
        if tally.total() == 1 { "" } else { "s" },
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(counts: &[(NodeStatus, usize)], running: &[(&str, u64)], now: SystemTime) -> Tally {
        let mut t = Tally::default();
        for &(s, n) in counts {
            t.counts[s as usize] = n;
        }
        t.running = running
            .iter()
            .map(|&(name, secs)| (smol_str::SmolStr::new(name), Some(now - Duration::from_secs(secs))))
            .collect();
        t
    }

    #[test]
    fn a_line_counts_steps_and_names_the_running_ones() {
        let now = SystemTime::now();
        let t = tally(
            &[
                (NodeStatus::Completed, 10),
                (NodeStatus::Cached, 2),
                (NodeStatus::Running, 4),
                (NodeStatus::Pending, 20),
                (NodeStatus::Failed, 1),
            ],
            &[("fit", 3), ("eval", 1), ("load data", 70)],
            now,
        );
        assert_eq!(
            line(&t, now),
            "13/37 steps done, 4 running: fit 3.0s, eval 1.0s, load data 1m10s, +1 more (1 failed)"
        );
        let idle = tally(&[(NodeStatus::Pending, 3)], &[], now);
        assert_eq!(line(&idle, now), "0/3 steps done");
    }

    #[test]
    fn the_end_line_says_how_the_run_ended() {
        let t = tally(
            &[
                (NodeStatus::Completed, 38),
                (NodeStatus::Cached, 1),
                (NodeStatus::Failed, 1),
            ],
            &[],
            SystemTime::now(),
        );
        assert_eq!(
            end_line(RunStatus::Failed, &t, Duration::from_millis(12_340)),
            "failed in 12.3s: 40 steps (38 completed, 1 cached, 1 failed)"
        );
        let one = tally(&[(NodeStatus::Completed, 1)], &[], SystemTime::now());
        assert_eq!(
            end_line(RunStatus::Completed, &one, Duration::from_millis(5)),
            "completed in 5ms: 1 step (1 completed)"
        );
    }
}
