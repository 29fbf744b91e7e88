//! The controller's lease table for warm runners: which step attempts wait to be handed out,
//! which runner holds which, and what a runner's poll, report, silence or death does to them.
//! Pure: no I/O and no clock of its own (callers pass `now`), so every rule has a unit test.
//!
//! An attempt is handed out at most once: a runner that dies, or that does not list an attempt
//! it was given in its next poll (the answer was lost), loses it, and the attempt ends as lost.
//! Whether a new attempt follows is the retry policy's business, not this table's.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The lease table; `T` is what the caller keeps with each attempt (its work item and where
/// its outcome goes).
pub(crate) struct Leases<T> {
    /// Attempts not yet handed out, oldest first.
    queue: VecDeque<String>,
    tasks: HashMap<String, Task<T>>,
    runners: HashMap<String, Runner>,
}

struct Task<T> {
    payload: T,
    hold: Option<Hold>,
}

/// Which runner holds an attempt, since which of its polls, and whether it was asked to stop.
struct Hold {
    runner: String,
    seq: u64,
    cancel: CancelState,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CancelState {
    None,
    /// Asked for; goes out with the runner's next poll answer.
    Asked,
    Sent,
}

struct Runner {
    last_poll: Instant,
}

/// What a poll answers, and what it found lost.
pub(crate) struct Answer<T> {
    /// Attempts handed to the runner now.
    pub(crate) work: Vec<String>,
    /// Attempts the runner holds that it must stop.
    pub(crate) cancel: Vec<String>,
    /// Attempts handed out in an earlier answer that the runner does not hold: that answer
    /// never reached it. They are removed.
    pub(crate) lost: Vec<(String, T)>,
}

impl<T> Answer<T> {
    /// Nothing for the runner: the poll may wait.
    pub(crate) fn is_empty(&self) -> bool {
        self.work.is_empty() && self.cancel.is_empty()
    }
}

/// What a cancel found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cancelled<T> {
    /// Not handed out yet: removed; nothing ran.
    Unstarted(T),
    /// Held by a runner: it is told with its next poll answer.
    Asked,
    /// Not in the table (already ended).
    Unknown,
}

impl<T> Default for Leases<T> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            tasks: HashMap::new(),
            runners: HashMap::new(),
        }
    }
}

impl<T> Leases<T> {
    /// Queues attempt `id`; false (and nothing changes) if the table has it already.
    pub(crate) fn add(&mut self, id: &str, payload: T) -> bool {
        if self.tasks.contains_key(id) {
            return false;
        }
        self.tasks.insert(id.to_string(), Task { payload, hold: None });
        self.queue.push_back(id.to_string());
        true
    }

    /// The payload of attempt `id`.
    #[cfg(test)]
    pub(crate) fn get(&self, id: &str) -> Option<&T> {
        self.tasks.get(id).map(|t| &t.payload)
    }

    /// The payload of attempt `id`, to change.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.tasks.get_mut(id).map(|t| &mut t.payload)
    }

    /// Attempts waiting to be handed out.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Attempts `runner` holds.
    #[cfg(test)]
    pub(crate) fn held_by(&self, runner: &str) -> usize {
        self.tasks
            .values()
            .filter(|t| t.hold.as_ref().is_some_and(|h| h.runner == runner))
            .count()
    }

    /// Poll number `seq` of `runner`, which holds `held`: finds what it lost, tells it what to
    /// cancel, and hands it every queued attempt.
    pub(crate) fn poll(&mut self, runner: &str, seq: u64, held: &[String], now: Instant) -> Answer<T> {
        self.runners.insert(runner.to_string(), Runner { last_poll: now });
        let held: HashSet<&str> = held.iter().map(String::as_str).collect();
        let lost_ids: Vec<String> = self
            .tasks
            .iter()
            .filter(|(id, t)| {
                t.hold
                    .as_ref()
                    .is_some_and(|h| h.runner == runner && h.seq < seq && !held.contains(id.as_str()))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let lost = lost_ids
            .into_iter()
            .filter_map(|id| self.tasks.remove(&id).map(|t| (id, t.payload)))
            .collect();
        let mut cancel = Vec::new();
        for (id, task) in &mut self.tasks {
            if let Some(hold) = &mut task.hold
                && hold.runner == runner
                && hold.cancel == CancelState::Asked
            {
                hold.cancel = CancelState::Sent;
                cancel.push(id.clone());
            }
        }
        let work: Vec<String> = self.queue.drain(..).collect();
        for id in &work {
            if let Some(task) = self.tasks.get_mut(id) {
                task.hold = Some(Hold {
                    runner: runner.to_string(),
                    seq,
                    cancel: CancelState::None,
                });
            }
        }
        Answer { work, cancel, lost }
    }

    /// Whether `runner` holds attempt `id`.
    fn holds(&self, runner: &str, id: &str) -> bool {
        self.tasks
            .get(id)
            .and_then(|t| t.hold.as_ref())
            .is_some_and(|h| h.runner == runner)
    }

    /// The payload of attempt `id`, to change, if `runner` holds it (what a runner reports of
    /// an attempt it does not hold changes nothing).
    pub(crate) fn held_mut(&mut self, runner: &str, id: &str) -> Option<&mut T> {
        if !self.holds(runner, id) {
            return None;
        }
        self.get_mut(id)
    }

    /// `runner` reports attempt `id` ended: its payload, if that runner held it (a report
    /// from anyone else, or twice, changes nothing).
    pub(crate) fn done(&mut self, runner: &str, id: &str) -> Option<T> {
        self.holds(runner, id)
            .then(|| self.tasks.remove(id).map(|t| t.payload))
            .flatten()
    }

    /// Asks for attempt `id` to stop.
    pub(crate) fn cancel(&mut self, id: &str) -> Cancelled<T> {
        match self.tasks.get_mut(id) {
            None => Cancelled::Unknown,
            Some(Task { hold: Some(hold), .. }) => {
                if hold.cancel == CancelState::None {
                    hold.cancel = CancelState::Asked;
                }
                Cancelled::Asked
            }
            Some(Task { hold: None, .. }) => {
                self.queue.retain(|q| q != id);
                self.tasks
                    .remove(id)
                    .map_or(Cancelled::Unknown, |t| Cancelled::Unstarted(t.payload))
            }
        }
    }

    /// Forgets attempt `id` whatever its state (its waiter gave up).
    pub(crate) fn remove(&mut self, id: &str) -> Option<T> {
        self.queue.retain(|q| q != id);
        self.tasks.remove(id).map(|t| t.payload)
    }

    /// `runner` is gone: every attempt it held, removed.
    pub(crate) fn runner_gone(&mut self, runner: &str) -> Vec<(String, T)> {
        self.runners.remove(runner);
        let ids: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.hold.as_ref().is_some_and(|h| h.runner == runner))
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.tasks.remove(&id).map(|t| (id, t.payload)))
            .collect()
    }

    /// Every attempt not yet handed out, removed (no runner will take them).
    pub(crate) fn drain_queue(&mut self) -> Vec<(String, T)> {
        let ids: Vec<String> = self.queue.drain(..).collect();
        ids.into_iter()
            .filter_map(|id| self.tasks.remove(&id).map(|t| (id, t.payload)))
            .collect()
    }

    /// Whether `runner` has polled within `bound` of `now` (false for one never seen).
    pub(crate) fn heard_from(&self, runner: &str, now: Instant, bound: Duration) -> bool {
        self.runners
            .get(runner)
            .is_some_and(|r| now.saturating_duration_since(r.last_poll) <= bound)
    }

    /// Whether `runner` has polled at all.
    #[cfg(test)]
    pub(crate) fn known(&self, runner: &str) -> bool {
        self.runners.contains_key(runner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[(String, u32)]) -> Vec<&str> {
        let mut ids: Vec<&str> = list.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_poll_hands_out_each_queued_attempt_once_in_order() {
        let mut leases = Leases::default();
        let now = Instant::now();
        assert!(leases.add("a", 1));
        assert!(leases.add("b", 2));
        assert!(!leases.add("a", 3), "an attempt is queued once");
        let answer = leases.poll("r", 1, &[], now);
        assert_eq!(answer.work, ["a", "b"]);
        assert!(answer.cancel.is_empty() && answer.lost.is_empty());
        assert_eq!(leases.get("a"), Some(&1));
        let again = leases.poll("r", 2, &["a".into(), "b".into()], now);
        assert!(again.is_empty() && again.lost.is_empty(), "nothing is handed out twice");
        assert_eq!((leases.queued(), leases.held_by("r")), (0, 2));
    }

    #[test]
    fn an_attempt_missing_from_the_next_poll_is_lost_not_handed_out_again() {
        let mut leases = Leases::default();
        let now = Instant::now();
        leases.add("a", 1);
        leases.add("b", 2);
        leases.poll("r", 1, &[], now);
        // A poll that overlaps the one that handed them out (same number) loses nothing.
        assert!(leases.poll("r", 1, &[], now).lost.is_empty());
        let answer = leases.poll("r", 2, &["b".into()], now);
        assert_eq!(ids(&answer.lost), ["a"]);
        assert!(answer.work.is_empty());
        assert_eq!(leases.get("a"), None);
        assert_eq!(leases.done("r", "b"), Some(2));
    }

    #[test]
    fn only_the_holder_reports_an_end_and_only_once() {
        let mut leases = Leases::default();
        let now = Instant::now();
        leases.add("a", 1);
        assert_eq!(leases.done("r", "a"), None, "not handed out yet");
        leases.poll("r", 1, &[], now);
        assert_eq!(leases.done("other", "a"), None);
        assert_eq!(leases.done("r", "a"), Some(1));
        assert_eq!(leases.done("r", "a"), None);
    }

    #[test]
    fn only_the_holder_reaches_an_attempt_it_reports_on() {
        let mut leases = Leases::default();
        leases.add("a", 1);
        assert_eq!(leases.held_mut("r", "a"), None, "not handed out yet");
        leases.poll("r", 1, &[], Instant::now());
        assert_eq!(leases.held_mut("other", "a"), None);
        assert_eq!(leases.held_mut("r", "a"), Some(&mut 1));
        assert_eq!(leases.held_mut("r", "b"), None);
    }

    #[test]
    fn a_cancel_removes_a_queued_attempt_and_goes_out_once_for_a_held_one() {
        let mut leases = Leases::default();
        let now = Instant::now();
        leases.add("a", 1);
        leases.add("b", 2);
        assert_eq!(leases.cancel("b"), Cancelled::Unstarted(2));
        assert_eq!(leases.poll("r", 1, &[], now).work, ["a"]);
        assert_eq!(leases.cancel("a"), Cancelled::Asked);
        assert_eq!(leases.cancel("a"), Cancelled::Asked);
        assert_eq!(leases.poll("r", 2, &["a".into()], now).cancel, ["a"]);
        assert!(leases.poll("r", 3, &["a".into()], now).cancel.is_empty(), "sent once");
        assert_eq!(leases.cancel("zzz"), Cancelled::Unknown);
        assert_eq!(leases.done("r", "a"), Some(1));
        assert_eq!(leases.cancel("a"), Cancelled::Unknown);
    }

    #[test]
    fn a_gone_runner_loses_what_it_held_and_the_queue_waits_for_another() {
        let mut leases = Leases::default();
        let now = Instant::now();
        leases.add("a", 1);
        leases.poll("r1", 1, &[], now);
        leases.add("b", 2);
        assert_eq!(ids(&leases.runner_gone("r1")), ["a"]);
        assert!(!leases.known("r1"));
        assert_eq!(leases.queued(), 1);
        assert_eq!(leases.poll("r2", 1, &[], now).work, ["b"]);
        assert_eq!(leases.done("r1", "b"), None, "a gone runner reports nothing");
    }

    #[test]
    fn silence_is_measured_from_the_last_poll() {
        let mut leases: Leases<u32> = Leases::default();
        let start = Instant::now();
        assert!(!leases.heard_from("r", start, Duration::from_secs(5)));
        leases.poll("r", 1, &[], start);
        assert!(leases.heard_from("r", start + Duration::from_secs(5), Duration::from_secs(5)));
        assert!(!leases.heard_from("r", start + Duration::from_secs(6), Duration::from_secs(5)));
        leases.poll("r", 2, &[], start + Duration::from_secs(6));
        assert!(leases.heard_from("r", start + Duration::from_secs(6), Duration::from_secs(5)));
    }

    #[test]
    fn draining_and_removing_leave_nothing_behind() {
        let mut leases = Leases::default();
        let now = Instant::now();
        leases.add("a", 1);
        leases.poll("r", 1, &[], now);
        leases.add("b", 2);
        leases.add("c", 3);
        assert_eq!(leases.remove("c"), Some(3));
        assert_eq!(ids(&leases.drain_queue()), ["b"]);
        assert_eq!(leases.remove("a"), Some(1));
        assert_eq!((leases.queued(), leases.held_by("r")), (0, 0));
        assert!(leases.poll("r", 2, &[], now).lost.is_empty());
    }
}
