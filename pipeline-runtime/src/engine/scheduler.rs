//! The scheduler: every rule of a run as a pure state machine.
//!
//! Events go in as method calls (a node was added, an attempt started or ended, a callback
//! answered, a stop was requested); effects come out, in order, from [`Scheduler::pop_effect`]
//! (start this attempt, cancel that one, fire this callback with this snapshot, release these
//! outputs), and the nodes' records beside them, in order, from [`Scheduler::take_records`].
//! Nothing here does I/O, spawns, sleeps or reads a clock: the caller passes the time with each
//! event. The run applies effects one at a time in the order they were produced, so a node's
//! callbacks never reorder; it sends the records to the store in their order, each before the
//! effects produced after it are applied.

use super::chunked::Chunked;
use crate::error::HandleError;
use crate::store::{NodeState, RareState};
use fnv::FnvHashMap;
use pipeline_core::options::{PostExecuteCallback, PreExecuteCallback, RetryCallback, StatusChangeCallback};
use pipeline_core::{
    Callbacks, ContinueBehaviour, DagNode, ErrorKind, NodeStatus, PipelineDag, RetryBackoff, RetryPolicy, RunStatus,
    StepError, StopMark,
};
use smol_str::SmolStr;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What the scheduler needs to know of a node's component.
#[derive(Clone, Copy)]
pub(crate) struct StepRules {
    /// The component's registered name: a node's name is this, then `name_1`, `name_2`...
    pub(crate) component: &'static str,
    /// Steps named in `parents = [...]`, by node name.
    pub(crate) parents: &'static [&'static str],
    /// The retry policy, the pipeline's default already applied.
    pub(crate) retry: RetryPolicy,
    /// The waits before retries.
    pub(crate) backoff: RetryBackoff,
    /// `continue_behaviour`.
    pub(crate) continue_behaviour: ContinueBehaviour,
    /// The three callbacks.
    pub(crate) callbacks: Callbacks,
}

pub(crate) use crate::store::{Record, Recorded};

/// Something the run must do, in the order the scheduler produced it.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Call `status_change_callback` with the node's new state and its previous status.
    StatusChanged {
        /// The node's index.
        index: u32,
        /// The callback.
        callback: StatusChangeCallback,
        /// The node's state now.
        node: Box<DagNode>,
        /// Its status before.
        previous: NodeStatus,
    },
    /// Ask `pre_execute_callback`; answer with [`Scheduler::pre_checked`].
    PreExecute {
        /// The node's index.
        index: u32,
        /// The callback.
        callback: PreExecuteCallback,
        /// The node's state now.
        node: Box<DagNode>,
    },
    /// Call `post_execute_callback`: the node ran and is final.
    PostExecute {
        /// The node's index.
        index: u32,
        /// The callback.
        callback: PostExecuteCallback,
        /// The node's final state.
        node: Box<DagNode>,
    },
    /// Hand attempt `attempt` of the node to the executor; it reports back with
    /// [`Scheduler::attempt_started`] (or [`Scheduler::cached`]) and [`Scheduler::attempt_ended`].
    Start {
        /// The node's index.
        index: u32,
        /// 1 for the first attempt, 2 for the first retry... (executors learn it again from
        /// [`Scheduler::attempt_started`]; kept here for tests and traces).
        #[allow(dead_code)]
        attempt: u32,
        /// How long to wait before handing it over (a retry's backoff); the node is `Queued`
        /// meanwhile, and a stop then aborts it without a start.
        delay: Duration,
    },
    /// Stop the node's running attempt; it ends as aborted with `reason`.
    Cancel {
        /// The node's index.
        index: u32,
        /// Why.
        reason: String,
    },
    /// The node completed: its outputs may now be read.
    Publish {
        /// The node's index.
        index: u32,
    },
    /// The node ended without outputs: readers get `error`.
    FailOutputs {
        /// The node's index.
        index: u32,
        /// What readers of its outputs get (boxed: rare, and larger than other effects).
        error: Box<HandleError>,
    },
    /// Ask a retry callback whether to try the node again; answer with
    /// [`Scheduler::retry_decided`].
    AskRetry {
        /// The node's index.
        index: u32,
        /// The callback.
        callback: RetryCallback,
        /// The node's state now (still running).
        node: Box<DagNode>,
        /// Retries so far.
        retries: u32,
    },
}

/// An attempt the executor may run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    /// 1 for the first attempt, 2 for the first retry...
    pub(crate) number: u32,
    /// No further attempt can follow: inputs may be moved into this one.
    pub(crate) last: bool,
}

/// A node's edges: `(other node, true for a data edge)`.
type Edges = smallvec::SmallVec<[(u32, bool); 2]>;

/// A time as nanoseconds since the Unix epoch, 0 for none: half the size of an
/// `Option<SystemTime>`, and a run holds two per node by the hundred thousand. Exact from
/// 1970 to 2554; an earlier clock reads as the epoch's first nanosecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp(u64);

impl Stamp {
    const NONE: Self = Self(0);

    fn of(time: SystemTime) -> Self {
        let nanos = time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self(u64::try_from(nanos).unwrap_or(u64::MAX).max(1))
    }

    fn get(self) -> Option<SystemTime> {
        (self.0 != 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_nanos(self.0))
    }

    /// Sets the time unless it is set.
    fn set_once(&mut self, time: SystemTime) {
        if self.0 == 0 {
            *self = Self::of(time);
        }
    }
}

struct Node {
    name: SmolStr,
    /// Its rules, by index in [`Scheduler::rules`] (the nodes of a component share them: a
    /// node is read on every event of its own, and a run holds them by the hundred thousand).
    rules: u32,
    /// Parents by index; `true` for a data edge (an input), `false` for `parents = [...]`.
    // Inline: most nodes have one or two of each, and a list on the heap per node costs an
    // allocation and a free on the hot path.
    parents: Edges,
    dependents: Edges,
    waiting_on: u32,
    status: NodeStatus,
    /// Attempts in this run (the retry policy counts these).
    attempts: u32,
    /// Attempts before the run was resumed.
    attempts_before: u32,
    /// An attempt is executing (between `attempt_started` and `attempt_ended`).
    in_attempt: bool,
    /// The node was handed to the executor (so its post callback fires when it ends).
    ran: bool,
    started: Stamp,
    ended: Stamp,
    /// What most nodes never have; none until one is set.
    cold: Option<Box<Cold>>,
}

/// What most nodes never have (a failure, keys, a log file): kept out of [`Node`], which a
/// run holds by the hundred thousand and grows and frees as one vector.
#[derive(Default)]
struct Cold {
    error: Option<StepError>,
    /// The failure a retry callback is being asked about.
    pending_error: Option<StepError>,
    /// For a final node that did not succeed: the failure its chain goes back to, and whether
    /// that failure is this node's own.
    root: Option<(SmolStr, bool)>,
    cache_key: Option<String>,
    resume_key: Option<String>,
    log_path: Option<PathBuf>,
}

/// The [`Cold`] part of a node that has none.
static NO_COLD: Cold = Cold {
    error: None,
    pending_error: None,
    root: None,
    cache_key: None,
    resume_key: None,
    log_path: None,
};

impl Node {
    fn cold(&self) -> &Cold {
        self.cold.as_deref().unwrap_or(&NO_COLD)
    }

    fn cold_mut(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Default::default)
    }
}

/// Whether two nodes' rules are the same (names, lists and callbacks by address).
fn same_rules(a: &StepRules, b: &StepRules) -> bool {
    let (x, y) = (&a.callbacks, &b.callbacks);
    let retry = match (a.retry, b.retry) {
        (RetryPolicy::Never, RetryPolicy::Never) => true,
        (RetryPolicy::Count(m), RetryPolicy::Count(n)) => m == n,
        (RetryPolicy::Callback(f), RetryPolicy::Callback(g)) => std::ptr::fn_addr_eq(f, g),
        _ => false,
    };
    retry
        && std::ptr::eq(a.component, b.component)
        && std::ptr::eq(a.parents, b.parents)
        && a.backoff == b.backoff
        && a.continue_behaviour == b.continue_behaviour
        && x.pre_execute.map(|f| f as usize) == y.pre_execute.map(|f| f as usize)
        && x.post_execute.map(|f| f as usize) == y.post_execute.map(|f| f as usize)
        && x.status_change.map(|f| f as usize) == y.status_change.map(|f| f as usize)
}

/// The state of one run's nodes and the rules that move them.
pub(crate) struct Scheduler {
    nodes: Chunked<Node>,
    /// The rules of the nodes, each distinct one once.
    rules: Vec<StepRules>,
    /// The rules most recently added per component (by the address of its name): where a
    /// node's rules are looked for before they are added.
    latest_rules: FnvHashMap<usize, u32>,
    names: NameIndex,
    /// Where [`Scheduler::next_name`] writes names.
    name_buf: String,
    /// The first step whose failure fails the run.
    fatal: Option<SmolStr>,
    /// Why the run is being stopped; nodes that have not started are aborted with it.
    aborting: Option<String>,
    /// How a run stopped from outside its steps ends.
    stop_mark: StopMark,
    abort_on_failure: bool,
    recording: bool,
    effects: VecDeque<Effect>,
    /// Records not yet taken, in order.
    records: Vec<Record>,
    /// The time of the event being handled (of the latest, between events): what its
    /// records carry.
    now: SystemTime,
    /// Effects taken by [`Scheduler::pop_effect`] so far.
    popped: u64,
    /// Draws retry jitter: differs between runs, fixed within one (so tests can replay it).
    seed: u64,
    /// Nodes per status (by `NodeStatus as usize`), kept as statuses change: a progress
    /// display reads them without walking the nodes.
    counts: [usize; STATUSES],
    /// The running nodes, by index, in order (the earliest added first). A sorted vector:
    /// nodes mostly start in the order they were added, so adding one is a push, and few run
    /// at once, so removing one moves little.
    running: Vec<u32>,
    /// The nodes that failed, in the order they did.
    failures: Vec<u32>,
}

/// How many node statuses there are.
const STATUSES: usize = NodeStatus::ALL.len();

/// How many nodes stand at each status, the running ones and the latest failures: what a
/// progress display shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tally {
    /// Nodes per status, by `NodeStatus as usize`.
    pub(crate) counts: [usize; STATUSES],
    /// Running nodes (up to the number asked, the earliest added first) and when they started.
    pub(crate) running: Vec<(SmolStr, Option<SystemTime>)>,
    /// Failed nodes after the first ones already seen, in order, with their error.
    pub(crate) failed: Vec<(SmolStr, String)>,
}

impl Tally {
    /// Nodes at `status`.
    pub(crate) fn count(&self, status: NodeStatus) -> usize {
        self.counts[status as usize]
    }

    /// Every node.
    pub(crate) fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Nodes in a final state.
    pub(crate) fn done(&self) -> usize {
        self.total()
            - self.count(NodeStatus::Pending)
            - self.count(NodeStatus::Queued)
            - self.count(NodeStatus::Running)
    }
}

/// The nodes by name, by how each name was made. Every name is a base (a component's name, or
/// the one its call chose) with a number: `base` for 0, `base_7` for 7. Read back, a name
/// splits one of two ways only: as a whole (number 0), or at its last `_` when what follows
/// is a number as [`unused_name`] writes one (no leading zero). So a base's nodes are a list
/// by number, and a run of many nodes holds no table by name: adding the hundred-thousandth
/// node reads and writes memory as near as adding the first (a table of all names missed the
/// cache twice per node and was copied as it grew).
#[derive(Default)]
struct NameIndex {
    /// Each base's place in `bases`.
    ids: FnvHashMap<Box<str>, u32>,
    bases: Vec<BaseNames>,
}

/// The names made from one base.
#[derive(Default)]
struct BaseNames {
    /// The number [`Scheduler::next_name`] tries next.
    next: u32,
    /// By number: the node so named, or [`NO_NODE`] (a number skipped, or not yet added).
    nodes: Vec<u32>,
}

/// See [`BaseNames::nodes`].
const NO_NODE: u32 = u32::MAX;

/// The number at the end of a name as [`unused_name`] writes it (1 or more, no leading zero).
fn name_number(digits: &str) -> Option<u32> {
    let bytes = digits.as_bytes();
    if bytes.is_empty() || bytes.len() > 10 || bytes[0] == b'0' || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.parse().ok()
}

impl NameIndex {
    /// The node made from `base` with `number`.
    fn node(&self, base: &str, number: u32) -> Option<u32> {
        let id = *self.ids.get(base)?;
        self.bases[id as usize]
            .nodes
            .get(number as usize)
            .copied()
            .filter(|&i| i != NO_NODE)
    }

    /// The node called `name`.
    fn get(&self, name: &str) -> Option<u32> {
        if let Some((base, digits)) = name.rsplit_once('_')
            && let Some(number) = name_number(digits)
            && let Some(i) = self.node(base, number)
        {
            return Some(i);
        }
        self.node(name, 0)
    }

    /// Names node `index` as `name` says (made by [`Scheduler::next_name`], which checked that
    /// no node has it; one [`NodeName`] names one node).
    fn insert(&mut self, name: &NodeName, index: u32) {
        let nodes = &mut self.bases[name.base as usize].nodes;
        let at = name.number as usize;
        if nodes.len() <= at {
            nodes.resize(at + 1, NO_NODE);
        }
        debug_assert_eq!(nodes[at], NO_NODE, "{} is taken", name.text);
        nodes[at] = index;
    }
}

/// A name no node has yet, from [`Scheduler::next_name`], with how it was made (so that naming
/// the node looks nothing up).
pub(crate) struct NodeName {
    /// The name. Inline up to 23 bytes (`component_12345` and most others), so naming a node
    /// allocates nothing and its many copies (handles, records, attempts) are plain copies;
    /// a longer name is shared.
    pub(crate) text: SmolStr,
    /// Its base, by place in [`NameIndex::bases`].
    base: u32,
    number: u32,
}

/// `base`, then `base_1`, `base_2`... from the base's next number on: the first no node has.
/// Written in `buf` (kept between calls): a long name's text is then the only allocation.
fn unused_name(names: &mut NameIndex, buf: &mut String, base: &str, id: u32) -> NodeName {
    loop {
        let number = names.bases[id as usize].next;
        buf.clear();
        buf.push_str(base);
        if number > 0 {
            buf.push('_');
            let mut digits = [0u8; 10];
            let mut at = digits.len();
            let mut n = number;
            loop {
                at -= 1;
                digits[at] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            buf.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
        }
        names.bases[id as usize].next += 1;
        // Made another way: a base that is this name (`mean_1` of its own), or this base
        // followed by a number (`mean` with 1, as `mean_1` of another base is taken).
        let other = if number > 0 {
            names.node(buf, 0)
        } else {
            buf.rsplit_once('_')
                .and_then(|(b, digits)| Some((b, name_number(digits)?)))
                .and_then(|(b, n)| names.node(b, n))
        };
        if other.is_none() {
            return NodeName {
                text: SmolStr::new(buf.as_str()),
                base: id,
                number,
            };
        }
    }
}

impl Scheduler {
    /// A run with no nodes. `abort_on_failure` is the pipeline's option; `recording` says
    /// whether [`Record`]s are wanted.
    pub(crate) fn new(abort_on_failure: bool, recording: bool) -> Self {
        Self {
            nodes: Chunked::new(),
            rules: Vec::new(),
            latest_rules: FnvHashMap::default(),
            names: NameIndex::default(),
            name_buf: String::new(),
            fatal: None,
            aborting: None,
            stop_mark: StopMark::Aborted,
            abort_on_failure,
            recording,
            effects: VecDeque::new(),
            records: Vec::new(),
            now: SystemTime::UNIX_EPOCH,
            popped: 0,
            seed: 0,
            counts: [0; STATUSES],
            running: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// The tally of the nodes: up to `running` running ones, and the failures after the
    /// first `failed_since`.
    pub(crate) fn tally(&self, running: usize, failed_since: usize) -> Tally {
        Tally {
            counts: self.counts,
            running: self
                .running
                .iter()
                .take(running)
                .map(|&i| (self.node(i).name.clone(), self.node(i).started.get()))
                .collect(),
            failed: self
                .failures
                .iter()
                .skip(failed_since)
                .map(|&i| {
                    let node = self.node(i);
                    (
                        node.name.clone(),
                        node.cold()
                            .error
                            .as_ref()
                            .map_or_else(String::new, |e| e.message.clone()),
                    )
                })
                .collect(),
        }
    }

    /// With `seed` for retry jitter (a run gives its id's hash).
    pub(crate) fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The next effect to apply, oldest first.
    pub(crate) fn pop_effect(&mut self) -> Option<Effect> {
        let effect = self.effects.pop_front();
        self.popped += effect.is_some() as u64;
        effect
    }

    /// Moves the records not yet taken to the end of `into`, in order. Into an empty vector,
    /// a swap: the two vectors keep their capacities, and records are not copied.
    pub(crate) fn take_records(&mut self, into: &mut Vec<Record>) {
        if into.is_empty() {
            std::mem::swap(into, &mut self.records);
        } else {
            into.append(&mut self.records);
        }
    }

    /// True when effects or records wait to be taken.
    pub(crate) fn has_waiting(&self) -> bool {
        !self.effects.is_empty() || !self.records.is_empty()
    }

    /// True when effects wait to be taken.
    pub(crate) fn has_effects(&self) -> bool {
        !self.effects.is_empty()
    }

    /// How many records wait to be taken, and how long the oldest has waited as of the
    /// latest event.
    pub(crate) fn records_waiting(&self) -> (usize, Duration) {
        let waited = self
            .records
            .first()
            .map_or(Duration::ZERO, |r| self.now.duration_since(r.at).unwrap_or_default());
        (self.records.len(), waited)
    }

    /// Number of effects produced so far, taken or not: once that many have been applied,
    /// every effect of the events so far has been.
    pub(crate) fn produced(&self) -> u64 {
        self.popped + self.effects.len() as u64
    }

    /// Number of nodes not yet final.
    pub(crate) fn active(&self) -> usize {
        self.counts[NodeStatus::Pending as usize]
            + self.counts[NodeStatus::Queued as usize]
            + self.counts[NodeStatus::Running as usize]
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The name the next node called `component` (its component's name, or the name its
    /// caller chose) will get: that name, or with a suffix if taken.
    pub(crate) fn next_name(&mut self, component: &str) -> NodeName {
        // One lookup for a base seen before (every call of a component but its first).
        let id = match self.names.ids.get(component) {
            Some(&id) => id,
            None => {
                let id = self.names.bases.len() as u32;
                self.names.bases.push(BaseNames::default());
                self.names.ids.insert(component.into(), id);
                id
            }
        };
        unused_name(&mut self.names, &mut self.name_buf, component, id)
    }

    /// [`Scheduler::add_node_read`] at a time known beforehand.
    #[cfg(test)]
    pub(crate) fn add_node(
        &mut self,
        name: NodeName,
        rules: StepRules,
        inputs: &[u32],
        attempts_before: u32,
        now: SystemTime,
    ) -> u32 {
        self.add_node_read(name, rules, inputs, attempts_before, || now)
    }

    /// Event: a component was called. `name` comes from [`Scheduler::next_name`]; `inputs`
    /// are the nodes its arguments come from; `attempts_before` are the node's attempts before
    /// its run was resumed (shown in its attempt count; its retry policy counts only the new
    /// ones). Returns the node's index.
    ///
    /// `clock` is read only if the time is kept: by the node's records, or by a node final at
    /// once (skipped, failed or aborted). Unrecorded, a node added to wait or to queue keeps
    /// no time, and reading a clock would be a good share of adding it.
    pub(crate) fn add_node_read(
        &mut self,
        name: NodeName,
        rules: StepRules,
        inputs: &[u32],
        attempts_before: u32,
        clock: impl FnOnce() -> SystemTime,
    ) -> u32 {
        let mut clock = Some(clock);
        if self.recording
            && let Some(read) = clock.take()
        {
            self.now = read();
        }
        // The time of a node final at once: read now if it was not above.
        let mut now = move |sched: &mut Self| {
            if let Some(read) = clock.take() {
                sched.now = read();
            }
            sched.now
        };
        let index = self.nodes.len() as u32;
        let mut parents: Edges = inputs.iter().filter(|&&i| i < index).map(|&i| (i, true)).collect();
        let mut unknown = Vec::new();
        for &parent in rules.parents {
            match self.names.get(parent) {
                Some(i) => parents.push((i, false)),
                None => unknown.push(parent),
            }
        }
        let rules = self.intern(rules);
        self.names.insert(&name, index);
        self.nodes.push(Node {
            name: name.text,
            rules,
            parents: dedup_parents(parents),
            dependents: Edges::new(),
            waiting_on: 0,
            status: NodeStatus::Pending,
            attempts: 0,
            attempts_before,
            in_attempt: false,
            ran: false,
            started: Stamp::NONE,
            ended: Stamp::NONE,
            cold: None,
        });
        self.counts[NodeStatus::Pending as usize] += 1;
        self.record(index, true, true);

        if !unknown.is_empty() {
            let error = StepError::new(
                ErrorKind::Setup,
                format!(
                    "unknown parent step{} {}: `parents` names steps called earlier in this run",
                    if unknown.len() > 1 { "s" } else { "" },
                    unknown.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                ),
            );
            let now = now(self);
            self.fail(index, error, now);
        } else if let Some(reason) = self.aborting.clone() {
            let now = now(self);
            self.finish(
                index,
                NodeStatus::Aborted,
                StepError::new(ErrorKind::Aborted, reason),
                now,
            );
        } else {
            self.wire(index, now);
        }
        index
    }

    /// Event: `pre_execute_callback` answered for the node (`go = false` skips it).
    pub(crate) fn pre_checked(&mut self, index: u32, go: bool, now: SystemTime) {
        self.now = now;
        if self.node(index).status != NodeStatus::Pending {
            return; // aborted meanwhile
        }
        if go {
            self.queue(index);
        } else {
            let error = StepError::new(ErrorKind::Skipped, "pre_execute_callback returned false");
            self.finish(index, NodeStatus::Skipped, error, now);
        }
    }

    /// Event: the executor starts an attempt of the node. `None` when the node is already final
    /// (aborted while it waited): the executor then drops it.
    pub(crate) fn attempt_started(&mut self, index: u32, now: SystemTime) -> Option<Grant> {
        self.now = now;
        let node = &mut self.nodes[index as usize];
        if node.status.is_terminal() || node.in_attempt {
            return None;
        }
        node.attempts += 1;
        node.in_attempt = true;
        node.ran = true;
        node.started.set_once(now);
        let retries = node.attempts - 1;
        let grant = Grant {
            number: node.attempts,
            last: self.rules[node.rules as usize].retry.is_last_attempt(retries),
        };
        if node.status == NodeStatus::Running {
            self.record(index, false, false); // a retry: the attempt count changed
        } else {
            self.set_status(index, NodeStatus::Running);
        }
        Some(grant)
    }

    /// Event: the node's earlier result was found in the cache; it ends `Cached` without
    /// running. Ignored unless the node is queued.
    pub(crate) fn cached(&mut self, index: u32, now: SystemTime) {
        self.now = now;
        let node = &mut self.nodes[index as usize];
        if node.status != NodeStatus::Queued || node.in_attempt {
            return;
        }
        node.ran = true;
        node.started.set_once(now);
        self.finish_ok(index, NodeStatus::Cached, now);
    }

    /// Event: an attempt ended. An error of kind `Aborted` (a cancel, a time limit) aborts the
    /// node; any other error retries it as its policy allows, else fails it.
    pub(crate) fn attempt_ended(&mut self, index: u32, outcome: Result<(), StepError>, now: SystemTime) {
        self.now = now;
        let node = &mut self.nodes[index as usize];
        if !node.in_attempt {
            return;
        }
        node.in_attempt = false;
        if node.status.is_terminal() {
            return;
        }
        match outcome {
            Ok(()) => self.finish_ok(index, NodeStatus::Completed, now),
            Err(error) if error.kind == ErrorKind::Aborted => {
                self.finish(index, NodeStatus::Aborted, error, now);
                self.note_abort(index, now);
            }
            Err(error) => {
                let retries = self.node(index).attempts - 1;
                if self.aborting.is_some() {
                    return self.fail(index, error, now);
                }
                match self.rules_of(index).retry {
                    RetryPolicy::Callback(callback) => {
                        self.nodes[index as usize].cold_mut().pending_error = Some(error);
                        let node = Box::new(self.dag_node(index));
                        self.effects.push_back(Effect::AskRetry {
                            index,
                            callback,
                            node,
                            retries,
                        });
                    }
                    RetryPolicy::Count(n) if retries < n => self.retry(index),
                    _ => self.fail(index, error, now),
                }
            }
        }
    }

    /// Event: a retry callback answered.
    pub(crate) fn retry_decided(&mut self, index: u32, retry: bool, now: SystemTime) {
        self.now = now;
        let Some(error) = self.nodes[index as usize]
            .cold
            .as_mut()
            .and_then(|c| c.pending_error.take())
        else {
            return;
        };
        if self.node(index).status.is_terminal() {
            return;
        }
        if retry && self.aborting.is_none() {
            self.retry(index);
        } else {
            self.fail(index, error, now);
        }
    }

    /// Event: a callback of the node panicked. A node not yet final fails with it; a final one
    /// keeps its state (its record never goes back) and the message is returned for the user.
    pub(crate) fn callback_panicked(
        &mut self,
        index: u32,
        which: &str,
        message: &str,
        now: SystemTime,
    ) -> Option<String> {
        self.now = now;
        let text = format!("{which} panicked: {message}");
        let node = &mut self.nodes[index as usize];
        if node.status.is_terminal() {
            return Some(format!("step `{}`: {text}", node.name));
        }
        if let Some(cold) = &mut node.cold {
            cold.pending_error = None;
        }
        // The attempt's own end, if one is running, is ignored from now on.
        node.in_attempt = false;
        self.fail(index, StepError::new(ErrorKind::Error, text), now);
        None
    }

    /// Event: the node's cache key is known (recorded with its next state).
    pub(crate) fn set_cache_key(&mut self, index: u32, key: String) {
        self.nodes[index as usize].cold_mut().cache_key = Some(key);
    }

    /// Event: the key of what the node is given (its code and inputs) is known: recorded now,
    /// so that a run resumed after a crash finds it even if the node never ended.
    pub(crate) fn set_resume_key(&mut self, index: u32, key: String) {
        self.nodes[index as usize].cold_mut().resume_key = Some(key);
        self.record(index, false, false);
    }

    /// Event: the node's current attempt logs to `path` (recorded now, so that a running
    /// attempt's log can be followed).
    pub(crate) fn set_log_path(&mut self, index: u32, path: PathBuf) {
        self.nodes[index as usize].cold_mut().log_path = Some(path);
        self.record(index, false, false);
    }

    /// Event: stop the run (a user stop, the pipeline's time limit). Nodes not started are
    /// aborted, running ones cancelled. Ignored when already stopping or idle.
    pub(crate) fn stop(&mut self, reason: String, mark: StopMark, now: SystemTime) {
        self.now = now;
        if self.aborting.is_some() || self.active() == 0 {
            return;
        }
        self.stop_mark = mark;
        self.abort(reason, now);
    }

    /// The run's status; `body_panicked` fails it. `Aborted` only for a stop from outside the
    /// steps ([`Scheduler::stop`]); a step failure fails the run, even with `abort_on_failure`.
    pub(crate) fn run_status(&self, body_panicked: bool) -> RunStatus {
        if self.active() > 0 {
            RunStatus::Running
        } else if body_panicked || self.fatal.is_some() {
            RunStatus::Failed
        } else if self.aborting.is_some() {
            match self.stop_mark {
                StopMark::Aborted => RunStatus::Aborted,
                StopMark::Failed => RunStatus::Failed,
                StopMark::Completed => RunStatus::Completed,
            }
        } else {
            RunStatus::Completed
        }
    }

    /// The node's status.
    pub(crate) fn status(&self, index: u32) -> NodeStatus {
        self.node(index).status
    }

    /// The node's name.
    pub(crate) fn name(&self, index: u32) -> &SmolStr {
        &self.node(index).name
    }

    /// The index of the node called `name`.
    #[cfg(test)]
    pub(crate) fn index_of(&self, name: &str) -> Option<u32> {
        self.names.get(name)
    }

    /// The node's cache key, once known.
    pub(crate) fn resume_key(&self, index: u32) -> Option<&str> {
        self.node(index).cold().resume_key.as_deref()
    }

    pub(crate) fn cache_key(&self, index: u32) -> Option<&str> {
        self.node(index).cold().cache_key.as_deref()
    }

    /// Names of the nodes whose status `keep` accepts, in creation order.
    pub(crate) fn names_where(&self, keep: impl Fn(NodeStatus) -> bool) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| keep(n.status))
            .map(|n| n.name.to_string())
            .collect()
    }

    /// A snapshot of the node as users see it.
    /// A snapshot of the DAG as it stands.
    pub(crate) fn dag(&self) -> PipelineDag {
        PipelineDag::from_nodes((0..self.len() as u32).map(|i| self.dag_node(i)).collect())
    }

    pub(crate) fn dag_node(&self, index: u32) -> DagNode {
        let n = self.node(index);
        DagNode {
            name: n.name.to_string(),
            component: self.rules[n.rules as usize].component.to_string(),
            parents: n.parents.iter().map(|&(p, _)| self.node(p).name.to_string()).collect(),
            status: n.status,
            attempts: n.attempts_before + n.attempts,
            started: n.started.get(),
            ended: n.ended.get(),
            error: n.cold().error.clone(),
        }
    }

    fn node(&self, index: u32) -> &Node {
        &self.nodes[index as usize]
    }

    fn rules_of(&self, index: u32) -> &StepRules {
        &self.rules[self.node(index).rules as usize]
    }

    /// The index of `rules` in [`Scheduler::rules`], added if they are not the ones last
    /// added for their component.
    fn intern(&mut self, rules: StepRules) -> u32 {
        let key = rules.component.as_ptr() as usize;
        if let Some(&i) = self.latest_rules.get(&key)
            && same_rules(&self.rules[i as usize], &rules)
        {
            return i;
        }
        let i = self.rules.len() as u32;
        self.rules.push(rules);
        self.latest_rules.insert(key, i);
        i
    }

    /// Records the node's state; `first` for its first record, which names its parents.
    fn record(&mut self, index: u32, changed: bool, first: bool) {
        if self.recording {
            let n = self.node(index);
            let node = Recorded {
                state: NodeState {
                    name: n.name.clone(),
                    status: n.status,
                    attempts: n.attempts_before + n.attempts,
                    started: n.started.get(),
                    ended: n.ended.get(),
                    rare: n.cold.as_deref().and_then(|c| {
                        let any = c.error.is_some()
                            || c.cache_key.is_some()
                            || c.resume_key.is_some()
                            || c.log_path.is_some();
                        any.then(|| {
                            Box::new(RareState {
                                error: c.error.clone(),
                                cache_key: c.cache_key.clone(),
                                resume_key: c.resume_key.clone(),
                                log_path: c.log_path.clone(),
                            })
                        })
                    }),
                },
                parents: first.then(|| n.parents.iter().map(|&(p, _)| self.node(p).name.clone()).collect()),
            };
            self.records.push(Record {
                index,
                node,
                changed,
                at: self.now,
                #[cfg(test)]
                after: self.popped + self.effects.len() as u64,
            });
        }
    }

    fn set_status(&mut self, index: u32, status: NodeStatus) {
        let node = &mut self.nodes[index as usize];
        let previous = std::mem::replace(&mut node.status, status);
        if previous == status {
            return;
        }
        self.counts[previous as usize] -= 1;
        self.counts[status as usize] += 1;
        if previous == NodeStatus::Running
            && let Ok(at) = self.running.binary_search(&index)
        {
            self.running.remove(at);
        }
        match status {
            NodeStatus::Running => match self.running.last() {
                Some(&last) if last > index => {
                    let at = self.running.binary_search(&index).unwrap_or_else(|at| at);
                    self.running.insert(at, index);
                }
                _ => self.running.push(index),
            },
            NodeStatus::Failed => self.failures.push(index),
            _ => {}
        }
        self.record(index, true, false);
        if let Some(callback) = self.rules_of(index).callbacks.status_change {
            let node = Box::new(self.dag_node(index));
            self.effects.push_back(Effect::StatusChanged {
                index,
                callback,
                node,
                previous,
            });
        }
    }

    /// Connects a new node to its unfinished parents, or decides its fate now.
    /// `now` reads the time, wanted only by a node final at once.
    fn wire(&mut self, index: u32, mut now: impl FnMut(&mut Self) -> SystemTime) {
        let mut waiting = 0;
        for i in 0..self.node(index).parents.len() {
            let (parent, data) = self.node(index).parents[i];
            if !self.node(parent).status.is_terminal() {
                waiting += 1;
                self.nodes[parent as usize].dependents.push((index, data));
            } else if let Some(skip) = self.blocked_by(parent, data) {
                let now = now(self);
                self.finish_skipped(index, skip, now);
                return;
            }
        }
        self.nodes[index as usize].waiting_on = waiting;
        if waiting == 0 {
            self.ready(index);
        }
    }

    fn ready(&mut self, index: u32) {
        match self.rules_of(index).callbacks.pre_execute {
            Some(callback) => {
                let node = Box::new(self.dag_node(index));
                self.effects.push_back(Effect::PreExecute { index, callback, node });
            }
            None => self.queue(index),
        }
    }

    fn queue(&mut self, index: u32) {
        self.set_status(index, NodeStatus::Queued);
        self.effects.push_back(Effect::Start {
            index,
            attempt: 1,
            delay: Duration::ZERO,
        });
    }

    /// Another attempt. With a backoff the node waits `Queued` (its history then shows each
    /// wait); without one it stays `Running` between attempts.
    fn retry(&mut self, index: u32) {
        let node = self.node(index);
        let attempt = node.attempts + 1;
        let delay = self.rules[node.rules as usize]
            .backoff
            .wait(node.attempts, self.draw(index, attempt));
        if !delay.is_zero() {
            self.set_status(index, NodeStatus::Queued);
        }
        self.effects.push_back(Effect::Start { index, attempt, delay });
    }

    /// A number in `[0, 1)` for attempt `attempt` of node `index` (splitmix64 of the seed,
    /// the node and the attempt): spreads the retries of nodes that failed together.
    fn draw(&self, index: u32, attempt: u32) -> f64 {
        let mut z = self.seed ^ (u64::from(index) << 32 | u64::from(attempt)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fail(&mut self, index: u32, error: StepError, now: SystemTime) {
        self.finish(index, NodeStatus::Failed, error, now);
        if !self.rules_of(index).continue_behaviour.continue_on_fail {
            self.fail_run(index, now);
        }
    }

    /// An aborted step without `continue_on_abort` fails the run. Steps aborted by the run's
    /// own stop change nothing.
    fn note_abort(&mut self, index: u32, now: SystemTime) {
        if !self.rules_of(index).continue_behaviour.continue_on_abort && self.aborting.is_none() {
            self.fail_run(index, now);
        }
    }

    /// The final node fails the run; with `abort_on_failure` the rest is stopped.
    fn fail_run(&mut self, index: u32, now: SystemTime) {
        let name = self.node(index).name.clone();
        if self.abort_on_failure && self.aborting.is_none() {
            let verb = verb(self.node(index).status);
            self.abort(format!("the pipeline stopped because step `{name}` {verb}"), now);
        }
        self.fatal.get_or_insert(name);
    }

    /// Aborts every node that has not started, and cancels running ones.
    fn abort(&mut self, reason: String, now: SystemTime) {
        self.aborting = Some(reason.clone());
        for index in 0..self.nodes.len() as u32 {
            let node = self.node(index);
            match node.status {
                NodeStatus::Pending | NodeStatus::Queued => {
                    self.finish(
                        index,
                        NodeStatus::Aborted,
                        StepError::new(ErrorKind::Aborted, reason.clone()),
                        now,
                    );
                }
                // Between attempts (a retry not started, a retry callback not answered).
                NodeStatus::Running if !node.in_attempt => {
                    if let Some(cold) = &mut self.nodes[index as usize].cold {
                        cold.pending_error = None;
                    }
                    self.finish(
                        index,
                        NodeStatus::Aborted,
                        StepError::new(ErrorKind::Aborted, reason.clone()),
                        now,
                    );
                }
                NodeStatus::Running => self.effects.push_back(Effect::Cancel {
                    index,
                    reason: reason.clone(),
                }),
                _ => {}
            }
        }
    }

    fn finish_ok(&mut self, index: u32, status: NodeStatus, now: SystemTime) {
        self.conclude(index, status, None, now);
        self.effects.push_back(Effect::Publish { index });
        self.after_final(index, now);
    }

    fn finish_skipped(&mut self, index: u32, skip: Skip, now: SystemTime) {
        let error = StepError::new(ErrorKind::Skipped, skip.message);
        self.nodes[index as usize].cold_mut().root = Some((skip.root, false));
        self.finish(index, NodeStatus::Skipped, error, now);
    }

    /// Puts a node in an unsuccessful final state and carries the consequences to its
    /// descendants.
    fn finish(&mut self, index: u32, status: NodeStatus, error: StepError, now: SystemTime) {
        if self.node(index).status.is_terminal() {
            return;
        }
        if self.node(index).cold().root.is_none() {
            let root = format!("step `{}` {}: {}", self.node(index).name, verb(status), error.message);
            self.nodes[index as usize].cold_mut().root = Some((root.into(), true));
        }
        let step = self.node(index).name.to_string();
        let handle_error = match status {
            NodeStatus::Failed => HandleError::Failed {
                step,
                error: error.clone(),
            },
            NodeStatus::Skipped => HandleError::Skipped {
                step,
                reason: error.message.clone(),
            },
            _ => HandleError::Aborted {
                step,
                reason: error.message.clone(),
            },
        };
        self.conclude(index, status, Some(error), now);
        self.effects.push_back(Effect::FailOutputs {
            index,
            error: Box::new(handle_error),
        });
        self.after_final(index, now);
    }

    /// Sets the final state: `ended` and `error` first, so that callbacks and the record see them.
    fn conclude(&mut self, index: u32, status: NodeStatus, error: Option<StepError>, now: SystemTime) {
        let node = &mut self.nodes[index as usize];
        node.ended = Stamp::of(now);
        // A success leaves a node without a cold part as it is.
        if error.is_some() || node.cold.is_some() {
            node.cold_mut().error = error;
        }
        self.set_status(index, status);
    }

    /// The post callback, then the node's children.
    fn after_final(&mut self, index: u32, now: SystemTime) {
        if self.node(index).ran {
            if let Some(callback) = self.rules_of(index).callbacks.post_execute {
                let node = Box::new(self.dag_node(index));
                self.effects.push_back(Effect::PostExecute { index, callback, node });
            }
        }
        let dependents = std::mem::take(&mut self.nodes[index as usize].dependents);
        for (child, data) in dependents {
            if self.node(child).status.is_terminal() {
                continue;
            }
            if let Some(skip) = self.blocked_by(index, data) {
                self.finish_skipped(child, skip, now);
            } else {
                let c = &mut self.nodes[child as usize];
                c.waiting_on -= 1;
                if c.waiting_on == 0 {
                    self.ready(child);
                }
            }
        }
    }

    /// Why a final parent keeps its child from running, if it does.
    fn blocked_by(&self, parent: u32, data: bool) -> Option<Skip> {
        let p = self.node(parent);
        let behaviour = self.rules[p.rules as usize].continue_behaviour;
        let skips = match p.status {
            NodeStatus::Completed | NodeStatus::Cached => return None,
            NodeStatus::Failed => behaviour.skip_children_on_fail,
            NodeStatus::Aborted => behaviour.skip_children_on_abort,
            NodeStatus::Skipped => true,
            NodeStatus::Pending | NodeStatus::Queued | NodeStatus::Running => return None,
        };
        let verb = verb(p.status);
        // A data child has no value to run with, whatever the behaviour says.
        if !(data || skips) {
            return None;
        }
        let (root, own) = p
            .cold()
            .root
            .clone()
            .expect("a final unsuccessful node has a root cause");
        let reason = p.cold().error.as_ref().map_or("", |e| e.message.as_str());
        let message = if own {
            format!("parent step `{}` {verb}: {reason}", p.name)
        } else {
            format!("parent step `{}` {verb}; the cause: {root}", p.name)
        };
        Some(Skip { message, root })
    }
}

/// Why a child is skipped: the message, and the failure the chain goes back to.
struct Skip {
    message: String,
    root: SmolStr,
}

/// How a message says a node ended without success: "step `x` failed", "... was aborted".
fn verb(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Failed => "failed",
        NodeStatus::Aborted => "was aborted",
        _ => "was skipped",
    }
}

/// Parents in creation order, each once; an edge is a data edge if any argument came from it.
/// Sorting keeps a fan-in of n handles O(n log n).
fn dedup_parents(mut parents: Edges) -> Edges {
    parents.sort_unstable_by_key(|&(index, _)| index);
    parents.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 |= later.1;
        }
        same
    });
    parents
}

#[cfg(test)]
mod tests;
