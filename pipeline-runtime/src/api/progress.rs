//! Live progress of a run in the terminal: a bar (`indicatif`) when stderr is a terminal, plain
//! lines when it is not (CI logs stay readable), nothing with `PIPELINE_PROGRESS=off`.
//!
//! One thread for the process reads each displayed run's tally a few times a second; the
//! engine does no I/O for it, and the run's end prints its last lines itself. Plain lines stay quiet for short runs: a failed step is one line when
//! it fails; a summary follows once the run has lasted [`QUIET`], then every [`EVERY`], and an
//! end line if anything was printed before.

use crate::config::Progress;
use crate::engine::Run;
use crate::engine::scheduler::Tally;
use crate::sync::lock;
use pipeline_core::format::human_duration;
use pipeline_core::{NodeStatus, RunStatus};
use std::io::IsTerminal;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Plain lines start once a run has lasted this long.
const QUIET: Duration = Duration::from_secs(2);
/// Then a summary line this often.
const EVERY: Duration = Duration::from_secs(10);
/// Running steps named in a line.
const SHOWN: usize = 3;

/// A run's progress display, shown until [`Display::finish`].
pub(crate) struct Display {
    shown: Arc<Shown>,
}

/// One displayed run, as the ticker and the run's end share it.
struct Shown {
    run: Arc<Run>,
    style: Style,
    started: Instant,
    state: Mutex<ShownSoFar>,
}

/// What a display has shown so far.
struct ShownSoFar {
    /// Failures printed so far (the tally lists those after them).
    failures: usize,
    /// Plain: a line was printed, so the end gets one too.
    printed: bool,
    /// Plain: when the next summary is due, as time since the start.
    next: Duration,
    /// Bar: made at the first tick.
    bar: Option<indicatif::ProgressBar>,
    /// The display has ended: no more ticks.
    ended: bool,
}

/// The displayed runs, ticked by one thread for the whole process: a thread per run cost a
/// short run a spawn and a join, about half of its time.
struct Ticker {
    shown: Mutex<Vec<Arc<Shown>>>,
    /// Signalled when the first display is added to an empty list.
    added: Condvar,
}

/// The ticker, started with the first display; `None` if its thread could not start.
fn ticker() -> Option<&'static Ticker> {
    static TICKER: OnceLock<Option<&'static Ticker>> = OnceLock::new();
    *TICKER.get_or_init(|| {
        let ticker: &'static Ticker = Box::leak(Box::new(Ticker {
            shown: Mutex::new(Vec::new()),
            added: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("pipeline-progress".into())
            .spawn(move || ticker.run())
            .ok()
            .map(|_| ticker)
    })
}

impl Ticker {
    fn run(&self) {
        loop {
            let due: Vec<Arc<Shown>> = {
                let mut shown = lock(&self.shown);
                while shown.is_empty() {
                    shown = self.added.wait(shown).unwrap_or_else(|p| p.into_inner());
                }
                let period = if shown.iter().any(|s| s.style == Style::Bar) {
                    Duration::from_millis(100)
                } else {
                    Duration::from_millis(250)
                };
                let (shown, _) = self
                    .added
                    .wait_timeout(shown, period)
                    .unwrap_or_else(|p| p.into_inner());
                shown.clone()
            };
            for shown in due {
                shown.tick();
            }
        }
    }

    fn remove(&self, display: &Arc<Shown>) {
        lock(&self.shown).retain(|s| !Arc::ptr_eq(s, display));
    }
}

impl Shown {
    fn tick(&self) {
        let mut state = lock(&self.state);
        if state.ended {
            return;
        }
        let tally = self.run.tally(SHOWN, state.failures);
        state.failures += tally.failed.len();
        let name = self.run.descriptor.name;
        if self.style == Style::Bar {
            state.bar.get_or_insert_with(|| new_bar(name));
        }
        state.print_failures(name, &tally);
        if let Some(bar) = &state.bar {
            bar.set_length(tally.total() as u64);
            bar.set_position(tally.done() as u64);
            bar.set_message(running(&tally, SystemTime::now()));
        } else if self.started.elapsed() >= state.next {
            eprintln!("{name}: {}", line(&tally, SystemTime::now()));
            state.printed = true;
            state.next = self.started.elapsed() + EVERY;
        }
    }
}

impl ShownSoFar {
    /// Prints the tally's failures (those not printed yet): above the bar if there is one,
    /// else as plain lines.
    fn print_failures(&mut self, name: &str, tally: &Tally) {
        for (step, error) in &tally.failed {
            let line = format!("{name}: step `{step}` failed: {error}");
            match &self.bar {
                Some(bar) => bar.println(line),
                None => {
                    eprintln!("{line}");
                    self.printed = true;
                }
            }
        }
    }
}

fn new_bar(name: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar
}

impl Display {
    /// Ends the display with the run's final status and tally (every failure, from the
    /// first): its last lines say them, printed on the caller's thread before it returns.
    pub(crate) fn finish(self, status: RunStatus, mut tally: Tally) {
        let mut state = self.stop();
        tally.failed.drain(..state.failures.min(tally.failed.len()));
        let name = self.shown.run.descriptor.name;
        let took = self.shown.started.elapsed();
        state.print_failures(name, &tally);
        if let Some(bar) = state.bar.take() {
            bar.finish_and_clear();
        }
        if self.shown.style == Style::Bar || state.printed || took >= QUIET {
            eprintln!("{name}: {}", end_line(status, &tally, took));
        }
    }
}

impl Display {
    /// Takes the display off the ticker and marks it ended, after any tick in progress.
    fn stop(&self) -> std::sync::MutexGuard<'_, ShownSoFar> {
        if let Some(ticker) = ticker() {
            ticker.remove(&self.shown);
        }
        let mut state = lock(&self.shown.state);
        state.ended = true;
        state
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        // Not finished (the body panicked): the display stops without an end line. After
        // `finish` this finds it stopped already, without a bar.
        let mut state = self.stop();
        if let Some(bar) = state.bar.take() {
            bar.finish_and_clear();
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
    let ticker = ticker()?;
    let shown = Arc::new(Shown {
        run: run.clone(),
        style,
        started: Instant::now(),
        state: Mutex::new(ShownSoFar {
            failures: 0,
            printed: false,
            next: QUIET,
            bar: None,
            ended: false,
        }),
    });
    let mut list = lock(&ticker.shown);
    list.push(shown.clone());
    if list.len() == 1 {
        // The ticker waits without a timeout only when it has nothing to show.
        ticker.added.notify_one();
    }
    Some(Display { shown })
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
