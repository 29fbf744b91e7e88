//! The scheduler's rules, driven by events alone: no process, thread, clock or database.

use super::*;
use std::collections::HashMap;
use std::time::Duration;

fn t(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

fn rules(component: &'static str) -> StepRules {
    StepRules {
        component,
        parents: &[],
        retry: RetryPolicy::Never,
        backoff: RetryBackoff::NONE,
        continue_behaviour: ContinueBehaviour::DEFAULT,
        callbacks: Callbacks::NONE,
    }
}

fn on_status(_: &DagNode, _: NodeStatus) {}
fn pre_yes(_: &DagNode) -> bool {
    true
}
fn post(_: &DagNode) {}
fn ask(_: &DagNode, _: u32) -> bool {
    true
}

const ALL_CALLBACKS: Callbacks = Callbacks {
    pre_execute: Some(pre_yes),
    post_execute: Some(post),
    status_change: Some(on_status),
};

/// Status and post callbacks, no pre callback: a node is queued as soon as it is ready.
const NO_PRE: Callbacks = Callbacks {
    pre_execute: None,
    ..ALL_CALLBACKS
};

/// An effect or a record, in the order the scheduler produced them.
#[derive(Debug)]
enum Out {
    Record { node: Recorded, changed: bool },
    Effect(Effect),
}

impl Scheduler {
    /// The next record or effect, in the order they were produced.
    fn pop(&mut self) -> Option<Out> {
        if self.records.first().is_some_and(|r| r.after <= self.popped) {
            let Record { node, changed, .. } = self.records.remove(0);
            return Some(Out::Record { node, changed });
        }
        self.pop_effect().map(Out::Effect)
    }
}

/// A scheduler and the effects it produced so far, as short lines.
struct Harness {
    s: Scheduler,
    clock: u64,
}

impl Harness {
    fn new() -> Self {
        Self::with(false, true)
    }

    fn with(abort_on_failure: bool, recording: bool) -> Self {
        Self {
            s: Scheduler::new(abort_on_failure, recording),
            clock: 0,
        }
    }

    fn now(&mut self) -> SystemTime {
        self.clock += 1;
        t(self.clock)
    }

    fn add(&mut self, rules: StepRules, inputs: &[u32]) -> u32 {
        let name = self.s.next_name(rules.component);
        let now = self.now();
        self.s.add_node(name, rules, inputs, 0, now)
    }

    fn start(&mut self, index: u32) -> Grant {
        let now = self.now();
        self.s.attempt_started(index, now).expect("the node can start")
    }

    fn end(&mut self, index: u32, outcome: Result<(), StepError>) {
        let now = self.now();
        self.s.attempt_ended(index, outcome, now);
    }

    /// Runs one attempt that succeeds.
    fn run_ok(&mut self, index: u32) {
        self.start(index);
        self.end(index, Ok(()));
    }

    fn fail(&mut self, index: u32, message: &str) {
        self.start(index);
        self.end(index, Err(StepError::new(ErrorKind::Error, message)));
    }

    /// The effects produced since the last call, one line each.
    fn effects(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(out) = self.s.pop() {
            let effect = match out {
                Out::Record { node, changed } => {
                    lines.push(format!(
                        "record {} {}{}",
                        node.state.name,
                        node.state.status,
                        if changed { "" } else { " (same)" }
                    ));
                    continue;
                }
                Out::Effect(effect) => effect,
            };
            lines.push(match effect {
                Effect::StatusChanged { node, previous, .. } => {
                    format!("status {} {previous}->{}", node.name, node.status)
                }
                Effect::PreExecute { node, .. } => format!("pre {}", node.name),
                Effect::PostExecute { node, .. } => format!("post {} {}", node.name, node.status),
                Effect::Start { index, attempt, delay } if delay.is_zero() => {
                    format!("start {} #{attempt}", self.s.name(index))
                }
                Effect::Start { index, attempt, delay } => {
                    format!("start {} #{attempt} after {delay:?}", self.s.name(index))
                }
                Effect::Cancel { index, reason } => format!("cancel {}: {reason}", self.s.name(index)),
                Effect::Publish { index } => format!("publish {}", self.s.name(index)),
                Effect::FailOutputs { index, error } => format!("fail-outputs {}: {error}", self.s.name(index)),
                Effect::AskRetry { node, retries, .. } => format!("ask-retry {} {retries}", node.name),
            });
        }
        lines
    }

    /// Only the effects whose line starts with one of `kinds`.
    fn effects_of(&mut self, kinds: &[&str]) -> Vec<String> {
        self.effects()
            .into_iter()
            .filter(|l| kinds.iter().any(|k| l.starts_with(k)))
            .collect()
    }

    fn error(&self, index: u32) -> String {
        self.s.dag_node(index).error.map(|e| e.message).unwrap_or_default()
    }
}

#[test]
fn a_node_without_parents_is_queued_and_started_at_once() {
    let mut h = Harness::new();
    let a = h.add(rules("a"), &[]);
    assert_eq!(h.effects(), ["record a pending", "record a queued", "start a #1"]);
    assert_eq!(h.s.status(a), NodeStatus::Queued);
    assert_eq!(h.s.active(), 1);
}

#[test]
fn without_recording_no_records_are_produced() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("a"), &[]);
    h.run_ok(a);
    assert_eq!(h.effects(), ["start a #1", "publish a"]);
}

#[test]
fn a_child_starts_only_after_its_parent_published() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("a"), &[]);
    let b = h.add(rules("b"), &[a]);
    assert_eq!(h.effects(), ["start a #1"]);
    assert_eq!(h.s.status(b), NodeStatus::Pending);
    h.run_ok(a);
    assert_eq!(h.effects(), ["publish a", "start b #1"]);
}

#[test]
fn a_fan_in_waits_for_every_parent() {
    let mut h = Harness::with(false, false);
    let parents: Vec<u32> = (0..3).map(|_| h.add(rules("p"), &[])).collect();
    let sum = h.add(rules("sum"), &parents);
    h.effects();
    h.run_ok(parents[2]);
    h.run_ok(parents[0]);
    assert_eq!(h.effects(), ["publish p_2", "publish p"]);
    h.run_ok(parents[1]);
    assert_eq!(h.effects(), ["publish p_1", "start sum #1"]);
    assert_eq!(h.s.dag_node(sum).parents, ["p", "p_1", "p_2"]);
}

#[test]
fn the_same_parent_passed_twice_is_one_edge() {
    let mut h = Harness::new();
    let a = h.add(rules("a"), &[]);
    let b = h.add(rules("b"), &[a, a, a]);
    assert_eq!(h.s.dag_node(b).parents, ["a"]);
    h.effects();
    h.run_ok(a);
    assert!(h.effects().contains(&"start b #1".to_string()));
}

#[test]
fn repeated_calls_get_numbered_names() {
    let mut h = Harness::new();
    for _ in 0..3 {
        h.add(rules("mean"), &[]);
    }
    assert_eq!(h.s.names_where(|_| true), ["mean", "mean_1", "mean_2"]);
    assert_eq!(h.s.index_of("mean_2"), Some(2));
    // Naming a node allocates nothing for a name of up to 23 bytes; a longer one still works.
    let short = h.s.next_name("twenty_one_bytes_long");
    assert_eq!(
        (short.text.as_str(), short.text.is_heap_allocated()),
        ("twenty_one_bytes_long", false)
    );
    let long = "a_component_name_longer_than_23_bytes";
    h.add(rules(long), &[]);
    assert_eq!(h.s.index_of(long), Some(3));
}

#[test]
fn a_numbered_name_taken_by_another_component_is_skipped() {
    let mut h = Harness::new();
    h.add(rules("mean_1"), &[]);
    for _ in 0..3 {
        h.add(rules("mean"), &[]);
    }
    h.add(rules("mean_1"), &[]);
    assert_eq!(
        h.s.names_where(|_| true),
        ["mean_1", "mean", "mean_2", "mean_3", "mean_1_1"]
    );
    // Every name finds its node, however large the run.
    for _ in 0..5_000 {
        h.add(rules("step"), &[]);
    }
    assert_eq!(h.s.index_of("mean_3"), Some(3));
    assert_eq!(h.s.index_of("step"), Some(5));
    assert_eq!(h.s.index_of("step_4999"), Some(5_004));
    assert_eq!(h.s.index_of("step_5000"), None);
}

#[test]
fn explicit_parents_are_edges_by_name() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("setup"), &[]);
    let b = h.add(
        StepRules {
            parents: &["setup"],
            ..rules("train")
        },
        &[],
    );
    assert_eq!(h.s.dag_node(b).parents, ["setup"]);
    assert_eq!(h.effects(), ["start setup #1"]);
    h.run_ok(a);
    assert_eq!(h.effects(), ["publish setup", "start train #1"]);
}

#[test]
fn an_unknown_parent_fails_the_node_and_the_run() {
    let mut h = Harness::with(false, false);
    let b = h.add(
        StepRules {
            parents: &["nowhere", "either"],
            ..rules("b")
        },
        &[],
    );
    assert_eq!(h.s.status(b), NodeStatus::Failed);
    assert!(
        h.error(b).contains("unknown parent steps `nowhere`, `either`"),
        "{}",
        h.error(b)
    );
    assert_eq!(h.s.run_status(false), RunStatus::Failed);
}

#[test]
fn callbacks_of_a_node_come_in_order_pre_queued_running_final_post() {
    let mut h = Harness::new();
    let a = h.add(
        StepRules {
            callbacks: ALL_CALLBACKS,
            ..rules("a")
        },
        &[],
    );
    assert_eq!(h.effects(), ["record a pending", "pre a"]);
    let now = h.now();
    h.s.pre_checked(a, true, now);
    h.run_ok(a);
    assert_eq!(
        h.effects(),
        [
            "record a queued",
            "status a pending->queued",
            "start a #1",
            "record a running",
            "status a queued->running",
            "record a completed",
            "status a running->completed",
            "publish a",
            "post a completed",
        ]
    );
}

#[test]
fn a_node_the_pre_callback_skips_gets_no_post_callback_and_skips_its_children() {
    let mut h = Harness::new();
    let a = h.add(
        StepRules {
            callbacks: ALL_CALLBACKS,
            ..rules("a")
        },
        &[],
    );
    let b = h.add(rules("b"), &[a]);
    h.effects();
    let now = h.now();
    h.s.pre_checked(a, false, now);
    let effects = h.effects();
    assert!(!effects.iter().any(|e| e.starts_with("post")), "{effects:?}");
    assert!(effects.contains(&"status a pending->skipped".to_string()));
    assert_eq!(h.error(a), "pre_execute_callback returned false");
    assert_eq!(h.s.status(b), NodeStatus::Skipped);
    assert_eq!(
        h.error(b),
        "parent step `a` was skipped: pre_execute_callback returned false"
    );
    assert_eq!(h.s.run_status(false), RunStatus::Completed);
}

#[test]
fn a_node_skipped_because_of_its_parent_gets_no_post_callback() {
    let mut h = Harness::new();
    let a = h.add(rules("a"), &[]);
    let b = h.add(
        StepRules {
            callbacks: ALL_CALLBACKS,
            ..rules("b")
        },
        &[a],
    );
    h.effects();
    h.fail(a, "boom");
    let effects = h.effects_of(&["status b", "post b", "pre b"]);
    assert_eq!(effects, ["status b pending->skipped"]);
    assert_eq!(h.s.status(b), NodeStatus::Skipped);
}

#[test]
fn a_failed_node_that_ran_gets_its_post_callback_after_its_status() {
    let mut h = Harness::new();
    let a = h.add(
        StepRules {
            callbacks: NO_PRE,
            ..rules("a")
        },
        &[],
    );
    h.effects();
    h.fail(a, "boom");
    assert_eq!(
        h.effects(),
        [
            "record a running",
            "status a queued->running",
            "record a failed",
            "status a running->failed",
            "fail-outputs a: step `a` failed: boom",
            "post a failed",
        ]
    );
}

#[test]
fn retries_by_count_start_new_attempts_without_new_states() {
    let mut h = Harness::new();
    let a = h.add(
        StepRules {
            retry: RetryPolicy::Count(2),
            callbacks: NO_PRE,
            ..rules("a")
        },
        &[],
    );
    h.effects();
    assert_eq!(h.start(a), Grant { number: 1, last: false });
    assert_eq!(h.effects(), ["record a running", "status a queued->running"]);
    h.end(a, Err(StepError::new(ErrorKind::Error, "once")));
    assert_eq!(h.effects(), ["start a #2"]);
    assert_eq!(h.start(a), Grant { number: 2, last: false });
    h.end(a, Err(StepError::new(ErrorKind::Crash, "twice")));
    assert_eq!(h.effects(), ["record a running (same)", "start a #3"]);
    assert_eq!(h.start(a), Grant { number: 3, last: true });
    h.end(a, Ok(()));
    let node = h.s.dag_node(a);
    assert_eq!((node.status, node.attempts), (NodeStatus::Completed, 3));
    assert_eq!(
        h.effects(),
        [
            "record a running (same)",
            "record a completed",
            "status a running->completed",
            "publish a",
            "post a completed"
        ]
    );
}

#[test]
fn a_resumed_node_shows_its_earlier_attempts_and_keeps_its_retries() {
    let mut h = Harness::new();
    let name = h.s.next_name("a");
    let now = h.now();
    // Three attempts before the resume; the policy still grants one retry now.
    let rules = StepRules {
        retry: RetryPolicy::Count(1),
        callbacks: NO_PRE,
        ..rules("a")
    };
    let a = h.s.add_node(name, rules, &[], 3, now);
    h.effects();
    assert_eq!(h.start(a), Grant { number: 1, last: false });
    h.end(a, Err(StepError::new(ErrorKind::Error, "once more")));
    assert_eq!(h.start(a), Grant { number: 2, last: true });
    h.end(a, Ok(()));
    assert_eq!(h.s.dag_node(a).attempts, 5, "three before, two now");
    let recorded: Vec<u32> = std::iter::from_fn(|| h.s.pop())
        .filter_map(|e| match e {
            Out::Record { node, .. } => Some(node.state.attempts),
            _ => None,
        })
        .collect();
    assert_eq!(recorded.last(), Some(&5), "{recorded:?}");
}

#[test]
fn a_retry_with_a_backoff_waits_queued_for_a_growing_delay() {
    let mut h = Harness::new();
    let backoff = RetryBackoff {
        delay: Duration::from_secs(1),
        factor: 2.0,
        jitter: 0.0,
    };
    let a = h.add(
        StepRules {
            retry: RetryPolicy::Count(2),
            backoff,
            callbacks: NO_PRE,
            ..rules("a")
        },
        &[],
    );
    h.effects();
    h.fail(a, "once");
    assert_eq!(
        h.effects_of(&["status", "start"]),
        [
            "status a queued->running",
            "status a running->queued",
            "start a #2 after 1s"
        ]
    );
    // The retry starts from `Queued`, as the first attempt did.
    assert_eq!(h.start(a), Grant { number: 2, last: false });
    assert_eq!(h.effects_of(&["status"]), ["status a queued->running"]);
    h.end(a, Err(StepError::new(ErrorKind::Error, "twice")));
    assert_eq!(h.effects_of(&["start"]), ["start a #3 after 2s"]);
    // A stop while it waits aborts it: nothing is left to start.
    let now = h.now();
    h.s.stop("enough".into(), StopMark::Aborted, now);
    assert_eq!(h.s.status(a), NodeStatus::Aborted);
    assert!(h.s.attempt_started(a, now).is_none());
}

#[test]
fn retry_jitter_differs_between_nodes_and_between_runs_but_not_on_replay() {
    let waits = |seed: u64| {
        let mut s = Scheduler::new(false, false).with_seed(seed);
        let backoff = RetryBackoff {
            delay: Duration::from_secs(10),
            factor: 1.0,
            jitter: 1.0,
        };
        let mut waits = Vec::new();
        for _ in 0..3 {
            let name = s.next_name("a");
            let rules = StepRules {
                retry: RetryPolicy::Count(1),
                backoff,
                ..rules("a")
            };
            let i = s.add_node(name, rules, &[], 0, t(0));
            s.attempt_started(i, t(1));
            s.attempt_ended(i, Err(StepError::new(ErrorKind::Error, "x")), t(2));
        }
        while let Some(e) = s.pop_effect() {
            if let Effect::Start { delay, .. } = e
                && !delay.is_zero()
            {
                assert!(delay >= Duration::from_secs(10) && delay <= Duration::from_secs(20));
                waits.push(delay);
            }
        }
        waits
    };
    let (one, again, other) = (waits(1), waits(1), waits(2));
    assert_eq!(one.len(), 3);
    assert_eq!(one, again);
    assert_ne!(one, other);
    assert!(one[0] != one[1] && one[1] != one[2]);
}

#[test]
fn retries_by_count_run_out_and_fail_the_run() {
    let mut h = Harness::with(false, false);
    let a = h.add(
        StepRules {
            retry: RetryPolicy::Count(1),
            ..rules("a")
        },
        &[],
    );
    h.fail(a, "one");
    h.fail(a, "two");
    assert_eq!(h.s.status(a), NodeStatus::Failed);
    assert_eq!(h.error(a), "two");
    assert_eq!(h.s.dag_node(a).attempts, 2);
    assert_eq!(h.s.run_status(false), RunStatus::Failed);
}

#[test]
fn without_retries_the_first_attempt_is_the_last() {
    let mut h = Harness::new();
    let a = h.add(rules("a"), &[]);
    assert_eq!(h.start(a), Grant { number: 1, last: true });
}

#[test]
fn a_retry_callback_is_asked_and_its_answer_decides() {
    let mut h = Harness::with(false, false);
    let retrying = StepRules {
        retry: RetryPolicy::Callback(ask),
        ..rules("a")
    };
    let a = h.add(retrying, &[]);
    let b = h.add(retrying, &[]);
    h.effects();
    assert!(!h.start(a).last, "a callback may always ask for more");
    h.end(a, Err(StepError::new(ErrorKind::Error, "first")));
    h.fail(b, "only");
    assert_eq!(h.effects(), ["ask-retry a 0", "ask-retry a_1 0"]);
    let now = h.now();
    h.s.retry_decided(a, true, now);
    h.s.retry_decided(b, false, now);
    assert_eq!(h.effects(), ["start a #2", "fail-outputs a_1: step `a_1` failed: only"]);
    assert_eq!(h.s.status(b), NodeStatus::Failed);
    assert_eq!(h.start(a).number, 2);
}

#[test]
fn a_failure_skips_data_children_naming_the_root_cause() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("load"), &[]);
    let b = h.add(rules("clean"), &[a]);
    let c = h.add(rules("train"), &[b]);
    h.fail(a, "file not found");
    assert_eq!(h.error(b), "parent step `load` failed: file not found");
    assert_eq!(
        h.error(c),
        "parent step `clean` was skipped; the cause: step `load` failed: file not found"
    );
    assert_eq!(h.s.status(c), NodeStatus::Skipped);
    let effects = h.effects_of(&["fail-outputs train"]);
    assert_eq!(
        effects,
        [
            "fail-outputs train: step `train` was skipped: parent step `clean` was skipped; the cause: step `load` failed: file not found"
        ]
    );
}

#[test]
fn continue_on_fail_keeps_the_run_going_and_order_only_children_may_run() {
    let mut h = Harness::with(false, false);
    let lenient = StepRules {
        continue_behaviour: ContinueBehaviour {
            continue_on_fail: true,
            skip_children_on_fail: false,
            ..ContinueBehaviour::DEFAULT
        },
        ..rules("flaky")
    };
    let a = h.add(lenient, &[]);
    let after = h.add(
        StepRules {
            parents: &["flaky"],
            ..rules("after")
        },
        &[],
    );
    let data = h.add(rules("uses"), &[a]);
    h.effects();
    h.fail(a, "meh");
    assert_eq!(h.s.status(after), NodeStatus::Queued, "an order-only child runs");
    assert_eq!(h.s.status(data), NodeStatus::Skipped, "a data child has no value");
    h.run_ok(after);
    assert_eq!(h.s.run_status(false), RunStatus::Completed);
}

#[test]
fn a_failure_without_continue_skips_order_only_children_too() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("a"), &[]);
    let b = h.add(
        StepRules {
            parents: &["a"],
            ..rules("b")
        },
        &[],
    );
    h.fail(a, "x");
    assert_eq!(h.s.status(b), NodeStatus::Skipped);
}

#[test]
fn abort_on_failure_aborts_waiting_nodes_and_cancels_running_ones() {
    let mut h = Harness::with(true, false);
    let a = h.add(rules("a"), &[]);
    let b = h.add(rules("b"), &[]);
    let c = h.add(rules("c"), &[]);
    let d = h.add(rules("d"), &[c]);
    h.effects();
    h.start(b);
    h.fail(a, "boom");
    assert_eq!(
        h.effects(),
        [
            "fail-outputs a: step `a` failed: boom",
            "cancel b: the pipeline stopped because step `a` failed",
            "fail-outputs c: step `c` was aborted: the pipeline stopped because step `a` failed",
            "fail-outputs d: step `d` was skipped: parent step `c` was aborted: the pipeline stopped because step `a` failed",
        ]
    );
    assert_eq!(h.s.status(c), NodeStatus::Aborted);
    assert_eq!(
        h.s.status(d),
        NodeStatus::Skipped,
        "skipped by its aborted parent first"
    );
    h.end(b, Err(StepError::new(ErrorKind::Aborted, "cancelled")));
    assert_eq!(h.s.status(b), NodeStatus::Aborted);
    assert_eq!(h.s.run_status(false), RunStatus::Failed, "a step failure fails the run");
    assert!(
        h.s.attempt_started(c, t(99)).is_none(),
        "an aborted node does not start"
    );
}

#[test]
fn a_stop_marks_the_run_as_asked_and_a_failed_step_still_fails_it() {
    let marked = |mark: StopMark, fail_first: bool| {
        let mut h = Harness::with(false, false);
        let a = h.add(
            StepRules {
                continue_behaviour: ContinueBehaviour {
                    continue_on_fail: false,
                    ..ContinueBehaviour::DEFAULT
                },
                ..rules("a")
            },
            &[],
        );
        let b = h.add(rules("b"), &[]);
        if fail_first {
            h.fail(a, "broken");
        } else {
            h.run_ok(a);
        }
        h.start(b);
        let now = h.now();
        h.s.stop("enough".into(), mark, now);
        h.end(b, Err(StepError::new(ErrorKind::Aborted, "enough")));
        h.s.run_status(false)
    };
    assert_eq!(marked(StopMark::Aborted, false), RunStatus::Aborted);
    assert_eq!(marked(StopMark::Failed, false), RunStatus::Failed);
    assert_eq!(marked(StopMark::Completed, false), RunStatus::Completed);
    // ClearML's default: completed, unless a step failed.
    assert_eq!(marked(StopMark::Completed, true), RunStatus::Failed);
}

#[test]
fn a_stop_aborts_the_run() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("a"), &[]);
    let b = h.add(rules("b"), &[a]);
    h.effects();
    h.start(a);
    let now = h.now();
    h.s.stop("stopped by the user".into(), StopMark::Aborted, now);
    assert_eq!(
        h.effects(),
        [
            "cancel a: stopped by the user",
            "fail-outputs b: step `b` was aborted: stopped by the user"
        ]
    );
    assert_eq!(h.s.run_status(false), RunStatus::Running);
    h.end(a, Err(StepError::new(ErrorKind::Aborted, "stopped by the user")));
    assert_eq!(h.s.status(b), NodeStatus::Aborted);
    assert_eq!(h.s.run_status(false), RunStatus::Aborted);
}

#[test]
fn a_stop_of_an_idle_or_stopping_run_changes_nothing() {
    let mut h = Harness::with(false, false);
    h.s.stop("early".into(), StopMark::Aborted, t(1));
    assert_eq!(h.s.run_status(false), RunStatus::Completed);
    let a = h.add(rules("a"), &[]);
    h.start(a);
    h.effects();
    h.s.stop("first".into(), StopMark::Aborted, t(2));
    h.s.stop("second".into(), StopMark::Aborted, t(3));
    assert_eq!(h.effects(), ["cancel a: first"]);
}

#[test]
fn a_node_added_while_stopping_is_aborted_at_once() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("a"), &[]);
    h.start(a);
    h.s.stop("time limit".into(), StopMark::Aborted, t(5));
    let b = h.add(rules("b"), &[]);
    assert_eq!(h.s.status(b), NodeStatus::Aborted);
    assert_eq!(h.error(b), "time limit");
}

#[test]
fn a_stop_between_attempts_aborts_the_node_and_ignores_a_late_answer() {
    let mut h = Harness::with(false, false);
    let a = h.add(
        StepRules {
            retry: RetryPolicy::Callback(ask),
            ..rules("a")
        },
        &[],
    );
    h.fail(a, "first");
    h.effects();
    h.s.stop("stop".into(), StopMark::Aborted, t(50));
    assert_eq!(h.s.status(a), NodeStatus::Aborted);
    h.s.retry_decided(a, true, t(51));
    assert!(!h.effects().iter().any(|e| e.starts_with("start")));
    assert_eq!(h.s.run_status(false), RunStatus::Aborted);
}

#[test]
fn an_aborted_step_fails_the_run_unless_continue_on_abort() {
    let aborted = || Err(StepError::new(ErrorKind::Aborted, "time limit of 1s exceeded"));
    let mut h = Harness::with(false, false);
    let a = h.add(rules("a"), &[]);
    h.start(a);
    h.end(a, aborted());
    assert_eq!(h.s.run_status(false), RunStatus::Failed);

    let mut h = Harness::with(false, false);
    let a = h.add(
        StepRules {
            continue_behaviour: ContinueBehaviour {
                continue_on_abort: true,
                skip_children_on_abort: false,
                ..ContinueBehaviour::DEFAULT
            },
            ..rules("a")
        },
        &[],
    );
    let after = h.add(
        StepRules {
            parents: &["a"],
            ..rules("after")
        },
        &[],
    );
    h.start(a);
    h.end(a, aborted());
    assert_eq!(h.s.status(after), NodeStatus::Queued);
    h.run_ok(after);
    assert_eq!(h.s.run_status(false), RunStatus::Completed);
}

#[test]
fn abort_on_failure_also_follows_an_aborted_step() {
    let mut h = Harness::with(true, false);
    let a = h.add(rules("a"), &[]);
    let b = h.add(rules("b"), &[]);
    h.start(a);
    h.end(a, Err(StepError::new(ErrorKind::Aborted, "time limit")));
    assert_eq!(h.s.status(b), NodeStatus::Aborted);
    assert_eq!(h.error(b), "the pipeline stopped because step `a` was aborted");
    assert_eq!(h.s.run_status(false), RunStatus::Failed);
}

#[test]
fn a_cache_hit_is_a_success_that_ran_without_an_attempt() {
    let mut h = Harness::new();
    let a = h.add(
        StepRules {
            callbacks: NO_PRE,
            ..rules("a")
        },
        &[],
    );
    let b = h.add(rules("b"), &[a]);
    h.effects();
    h.s.cached(a, t(10));
    assert_eq!(
        h.effects(),
        [
            "record a cached",
            "status a queued->cached",
            "publish a",
            "post a cached",
            "record b queued",
            "start b #1"
        ]
    );
    assert!(h.s.attempt_started(a, t(11)).is_none());
    h.run_ok(b);
    assert_eq!(h.s.run_status(false), RunStatus::Completed);
    assert_eq!(h.s.dag_node(a).attempts, 0);
}

#[test]
fn a_panicking_callback_fails_a_live_node_and_leaves_a_final_one_as_it_was() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("a"), &[]);
    let b = h.add(rules("b"), &[]);
    h.start(a);
    assert_eq!(h.s.callback_panicked(a, "status_change_callback", "oops", t(3)), None);
    assert_eq!(h.s.status(a), NodeStatus::Failed);
    assert_eq!(h.error(a), "status_change_callback panicked: oops");
    h.end(a, Ok(())); // the attempt's own end comes later and changes nothing
    assert_eq!(h.s.status(a), NodeStatus::Failed);

    h.run_ok(b);
    let message = h.s.callback_panicked(b, "post_execute_callback", "late", t(9));
    assert_eq!(
        message.as_deref(),
        Some("step `b`: post_execute_callback panicked: late")
    );
    assert_eq!(h.s.status(b), NodeStatus::Completed);
}

/// The store inserts a node's row from its first record, which alone names its parents (they
/// do not change); later records carry only what changes.
#[test]
fn only_a_nodes_first_record_names_its_parents() {
    let mut h = Harness::new();
    let a = h.add(rules("a"), &[]);
    let b = h.add(rules("b"), &[a]);
    h.start(a);
    h.end(a, Ok(()));
    h.start(b);
    h.end(b, Ok(()));
    let records: Vec<(String, NodeStatus, Option<Vec<String>>)> = std::iter::from_fn(|| h.s.pop())
        .filter_map(|e| match e {
            Out::Record { node, .. } => Some((
                node.state.name.to_string(),
                node.state.status,
                node.parents.map(|p| p.iter().map(|p| p.to_string()).collect()),
            )),
            _ => None,
        })
        .collect();
    let of = |name: &str| records.iter().filter(|r| r.0 == name).collect::<Vec<_>>();
    let (a_records, b_records) = (of("a"), of("b"));
    assert_eq!(a_records[0].1, NodeStatus::Pending);
    assert_eq!(a_records[0].2, Some(vec![]));
    assert_eq!(b_records[0].1, NodeStatus::Pending);
    assert_eq!(b_records[0].2, Some(vec!["a".to_string()]));
    assert_eq!(b_records.last().unwrap().1, NodeStatus::Completed);
    assert!(
        a_records[1..].iter().chain(&b_records[1..]).all(|r| r.2.is_none()),
        "{records:?}"
    );
}

#[test]
fn a_log_path_is_recorded_at_once_without_a_state_change() {
    let mut h = Harness::new();
    let a = h.add(rules("a"), &[]);
    let plain = std::iter::from_fn(|| h.s.pop())
        .find_map(|e| match e {
            Out::Record { node, .. } => Some(node),
            _ => None,
        })
        .expect("a record");
    assert!(plain.state.rare.is_none(), "no failure, keys or log: no box");
    h.start(a);
    h.effects();
    h.s.set_cache_key(a, "k".into());
    h.s.set_log_path(a, PathBuf::from("attempt-1.log"));
    match h.s.pop() {
        Some(Out::Record { changed, node }) => {
            assert!(!changed);
            assert_eq!(node.state.status, NodeStatus::Running);
            assert_eq!(node.state.rare().cache_key.as_deref(), Some("k"));
            assert_eq!(node.state.rare().log_path, Some(PathBuf::from("attempt-1.log")));
        }
        other => panic!("expected a record, got {other:?}"),
    }
    assert_eq!(h.s.cache_key(a), Some("k"));
}

#[test]
fn a_child_of_a_final_parent_is_decided_when_added() {
    let mut h = Harness::with(false, false);
    let ok = h.add(rules("ok"), &[]);
    let bad = h.add(
        StepRules {
            continue_behaviour: ContinueBehaviour {
                continue_on_fail: true,
                ..ContinueBehaviour::DEFAULT
            },
            ..rules("bad")
        },
        &[],
    );
    h.run_ok(ok);
    h.fail(bad, "no");
    h.effects();
    let x = h.add(rules("x"), &[ok]);
    let y = h.add(rules("y"), &[bad, ok]);
    assert_eq!(h.s.status(x), NodeStatus::Queued);
    assert_eq!(h.s.status(y), NodeStatus::Skipped);
    assert_eq!(h.error(y), "parent step `bad` failed: no");
}

#[test]
fn the_run_is_running_while_any_node_is_active_and_failed_when_the_body_panicked() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("a"), &[]);
    assert_eq!(h.s.run_status(false), RunStatus::Running);
    h.run_ok(a);
    assert_eq!(h.s.run_status(false), RunStatus::Completed);
    assert_eq!(h.s.run_status(true), RunStatus::Failed);
    assert_eq!(h.s.active(), 0);
}

#[test]
fn timings_come_from_the_events() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("a"), &[]);
    h.s.attempt_started(a, t(100));
    h.s.attempt_ended(a, Err(StepError::new(ErrorKind::Error, "x")), t(250));
    let node = h.s.dag_node(a);
    assert_eq!((node.started, node.ended), (Some(t(100)), Some(t(250))));
}

#[test]
fn a_second_start_of_a_running_attempt_is_refused() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("a"), &[]);
    h.start(a);
    assert!(h.s.attempt_started(a, t(9)).is_none());
    h.end(a, Ok(()));
    h.end(a, Err(StepError::new(ErrorKind::Error, "late duplicate")));
    assert_eq!(h.s.status(a), NodeStatus::Completed);
}

/// A deterministic pseudo-random DAG, run to the end in a shuffled order: every node's recorded
/// states only move forward, and its callbacks keep the documented order.
#[test]
fn records_and_callbacks_never_go_backwards_in_a_random_run() {
    fn rank(status: NodeStatus) -> u8 {
        match status {
            NodeStatus::Pending => 0,
            NodeStatus::Queued => 1,
            NodeStatus::Running => 2,
            _ => 3,
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let mut h = Harness::new();
    let callbacks = NO_PRE;
    let mut started = Vec::new();
    let mut last_rank: HashMap<String, u8> = HashMap::new();
    let mut finals: HashMap<String, usize> = HashMap::new();
    let mut posts: HashMap<String, usize> = HashMap::new();
    for step in 0..400u32 {
        if step < 200 {
            let inputs: Vec<u32> = (0..next(3)).map(|_| next(step as u64) as u32).collect();
            h.add(
                StepRules {
                    retry: RetryPolicy::Count(1),
                    callbacks,
                    ..rules("n")
                },
                &inputs,
            );
        }
        while let Some(out) = h.s.pop() {
            let effect = match out {
                Out::Record { node, .. } => {
                    let node = &node.state;
                    let r = rank(node.status);
                    let before = last_rank.insert(node.name.to_string(), r).unwrap_or(0);
                    assert!(r >= before, "{} went back to {}", node.name, node.status);
                    continue;
                }
                Out::Effect(effect) => effect,
            };
            match effect {
                Effect::Start { index, .. } => started.push(index),
                Effect::StatusChanged { node, .. } if node.status.is_terminal() => {
                    *finals.entry(node.name).or_default() += 1;
                }
                Effect::PostExecute { node, .. } => {
                    assert_eq!(finals.get(&node.name), Some(&1), "post after the final state");
                    *posts.entry(node.name).or_default() += 1;
                }
                _ => {}
            }
        }
        if !started.is_empty() {
            let index = started.swap_remove(next(started.len() as u64) as usize);
            let now = h.now();
            if h.s.attempt_started(index, now).is_some() {
                let outcome = match next(10) {
                    0 => Err(StepError::new(ErrorKind::Error, "random failure")),
                    _ => Ok(()),
                };
                let now = h.now();
                h.s.attempt_ended(index, outcome, now);
            }
        }
    }
    while h.s.active() > 0 {
        while let Some(effect) = h.s.pop_effect() {
            if let Effect::Start { index, .. } = effect {
                started.push(index);
            }
        }
        let index = started.pop().expect("an active run has work to start");
        if h.s.attempt_started(index, t(1)).is_some() {
            h.s.attempt_ended(index, Ok(()), t(2));
        }
    }
    assert!(posts.values().all(|&n| n == 1), "one post callback per node that ran");
    assert_eq!(h.s.len(), 200);
}

/// Records come out all at once, in order: into an empty vector by a swap, else appended.
#[test]
fn records_are_taken_in_order_without_a_copy_into_an_empty_vector() {
    let mut h = Harness::new();
    let a = h.add(rules("a"), &[]);
    let mut taken = Vec::with_capacity(64);
    h.s.take_records(&mut Vec::new()); // the scheduler's vector is now one without capacity
    h.start(a);
    h.s.take_records(&mut taken);
    assert_eq!(taken.len(), 1, "running");
    assert_eq!(
        h.s.records.capacity(),
        64,
        "swapped: the scheduler has the empty vector"
    );
    h.end(a, Ok(()));
    h.s.take_records(&mut taken);
    let statuses: Vec<_> = taken.iter().map(|r| r.node.state.status).collect();
    assert_eq!(statuses, [NodeStatus::Running, NodeStatus::Completed]);
    assert!(h.s.records.is_empty(), "all taken");
}

#[test]
fn produced_counts_effects_whether_taken_or_waiting() {
    let mut h = Harness::with(false, false);
    let a = h.add(rules("a"), &[]);
    assert_eq!(h.s.produced(), 1, "start a");
    assert!(h.s.pop_effect().is_some());
    assert_eq!(h.s.produced(), 1, "a taken effect still counts");
    h.run_ok(a);
    assert_eq!(h.s.produced(), 2, "publish a");
}

/// The tally a progress display reads follows every status change: counts per status, the
/// running nodes (earliest added first) and the failures after those already seen.
#[test]
fn the_tally_follows_every_status_change() {
    let mut h = Harness::new();
    let a = h.add(rules("a"), &[]);
    let b = h.add(rules("b"), &[]);
    let c = h.add(rules("c"), &[a]);
    let tally = h.s.tally(5, 0);
    assert_eq!(tally.total(), 3);
    assert_eq!(
        (tally.count(NodeStatus::Queued), tally.count(NodeStatus::Pending)),
        (2, 1)
    );
    h.start(b);
    h.start(a);
    let tally = h.s.tally(5, 0);
    let running: Vec<&str> = tally.running.iter().map(|(n, _)| &**n).collect();
    assert_eq!(running, ["a", "b"], "earliest added first");
    assert!(tally.running.iter().all(|(_, started)| started.is_some()));
    assert_eq!(h.s.tally(1, 0).running.len(), 1, "as many as asked");
    // Started out of order, ended from the middle: still the earliest added first.
    let more: Vec<u32> = ["d", "e", "f", "g"].iter().map(|n| h.add(rules(n), &[])).collect();
    for &i in [more[2], more[0], more[3], more[1]].iter() {
        h.start(i);
    }
    h.end(more[1], Ok(()));
    let running: Vec<String> = h.s.tally(9, 0).running.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(running, ["a", "b", "d", "f", "g"]);
    for &i in [more[0], more[2], more[3]].iter() {
        h.end(i, Ok(()));
    }
    h.end(a, Err(StepError::new(ErrorKind::Error, "boom")));
    h.end(b, Ok(()));
    let tally = h.s.tally(5, 0);
    assert_eq!(tally.count(NodeStatus::Running), 0);
    assert!(tally.running.is_empty());
    assert_eq!(
        (
            tally.count(NodeStatus::Failed),
            tally.count(NodeStatus::Completed),
            tally.count(NodeStatus::Skipped)
        ),
        (1, 5, 1),
        "c is skipped because a failed"
    );
    assert_eq!(tally.done(), 7);
    assert_eq!(tally.failed, [(SmolStr::new("a"), "boom".to_string())]);
    assert!(
        h.s.tally(5, 1).failed.is_empty(),
        "failures already seen are not repeated"
    );
    let _ = c;
}

#[test]
fn records_carry_the_time_of_their_event_and_tell_how_long_they_waited() {
    let mut h = Harness::new();
    let a = h.add(rules("a"), &[]); // t(1): pending, queued
    assert!(h.s.has_effects(), "start a");
    while h.s.pop_effect().is_some() {}
    let b = h.add(rules("b"), &[a]); // t(2): pending
    assert!(!h.s.has_effects(), "b waits for a: records alone");
    h.start(a); // t(3): running
    h.s.set_log_path(a, "/logs/a-1.log".into()); // no time of its own: the latest event's
    assert_eq!(h.s.records_waiting(), (5, Duration::from_millis(2)));
    h.end(a, Ok(())); // t(4): a completed, b queued
    let mut taken = Vec::new();
    h.s.take_records(&mut taken);
    let times: Vec<_> = taken.iter().map(|r| (r.index, r.node.state.status, r.at)).collect();
    use NodeStatus::*;
    assert_eq!(
        times,
        [
            (a, Pending, t(1)),
            (a, Queued, t(1)),
            (b, Pending, t(2)),
            (a, Running, t(3)),
            (a, Running, t(3)),
            (a, Completed, t(4)),
            (b, Queued, t(4)),
        ]
    );
    assert_eq!(h.s.records_waiting(), (0, Duration::ZERO));
}

/// A run holds its nodes by the hundred thousand and touches one on each of its events: the
/// rules a component gives its nodes are kept once, not in each node.
#[test]
fn nodes_of_a_component_share_its_rules_and_a_node_stays_small() {
    let mut s = Scheduler::new(false, false);
    let add = |s: &mut Scheduler, rules: StepRules| {
        let name = s.next_name(rules.component);
        s.add_node(name, rules, &[], 0, t(0))
    };
    for _ in 0..3 {
        add(&mut s, rules("a"));
        add(&mut s, rules("b"));
    }
    assert_eq!(s.rules.len(), 2);
    // Other options for one call: rules of their own, which the next such call shares.
    let retried = StepRules {
        retry: RetryPolicy::Count(1),
        ..rules("a")
    };
    let c = add(&mut s, retried);
    let d = add(&mut s, retried);
    assert_eq!(s.rules.len(), 3);
    assert!(matches!(s.rules_of(c).retry, RetryPolicy::Count(1)));
    assert!(matches!(s.rules_of(d).retry, RetryPolicy::Count(1)));
    assert!(matches!(s.rules_of(0).retry, RetryPolicy::Never));
    assert!(
        std::mem::size_of::<Node>() <= 120,
        "a node is {} bytes",
        std::mem::size_of::<Node>()
    );
}

/// Unrecorded, adding a node that waits or is queued reads no clock (a good share of adding
/// it); one final at once (skipped, failed, aborted) reads it for its end.
#[test]
fn an_unrecorded_add_reads_the_clock_only_for_a_node_final_at_once() {
    let mut h = Harness::with(false, false);
    let unread = || -> SystemTime { panic!("the clock was read") };
    let name = h.s.next_name("load");
    let a = h.s.add_node_read(name, rules("load"), &[], 0, unread);
    let name = h.s.next_name("clean");
    let b = h.s.add_node_read(name, rules("clean"), &[a], 0, unread);
    assert_eq!(
        (h.s.status(a), h.s.status(b)),
        (NodeStatus::Queued, NodeStatus::Pending)
    );
    h.fail(a, "file not found");
    let name = h.s.next_name("train");
    let c = h.s.add_node_read(name, rules("train"), &[a], 0, || t(500));
    assert_eq!(h.s.status(c), NodeStatus::Skipped);
    assert_eq!(h.s.dag_node(c).ended, Some(t(500)));
    // Recorded, every add reads it: its records carry the time.
    let mut h = Harness::with(false, true);
    let name = h.s.next_name("load");
    h.s.add_node_read(name, rules("load"), &[], 0, || t(7));
    assert!(h.s.records.iter().all(|r| r.at == t(7)) && !h.s.records.is_empty());
}

/// Bases that look like numbered names, in every order: the names made are distinct and
/// find their nodes.
#[test]
fn generated_names_are_distinct_in_every_order_of_numbered_looking_bases() {
    const BASES: [&str; 6] = ["a", "a_1", "a_2", "a_1_1", "b_", "a_01"];
    for mut code in 0..BASES.len().pow(6) {
        let mut s = Scheduler::new(false, false);
        let mut names = Vec::new();
        for _ in 0..6 {
            let base = BASES[code % BASES.len()];
            code /= BASES.len();
            let name = s.next_name(base);
            names.push(name.text.clone());
            s.add_node(name, rules(base), &[], 0, t(0));
        }
        for (i, name) in names.iter().enumerate() {
            assert_eq!(s.index_of(name), Some(i as u32), "{names:?}");
        }
    }
}

#[test]
fn a_stamp_keeps_a_time_to_the_nanosecond() {
    let now = SystemTime::now();
    assert_eq!(Stamp::of(now).get(), Some(now));
    assert_eq!(Stamp::NONE.get(), None);
    let early = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(
        Stamp::of(early).get(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(1))
    );
    let mut set = Stamp::NONE;
    set.set_once(now);
    set.set_once(now + Duration::from_secs(5));
    assert_eq!(set.get(), Some(now), "the first time stays");
}
