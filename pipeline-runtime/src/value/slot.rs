//! The cell one step output lives in until every consumer has it: filled once by the step,
//! waited on by handles (blocking or `async`), moved out by the last reader, cloned otherwise.
//!
//! A step's value is first *staged*: readers do not see it until the run publishes it, which
//! it does only once the node is final. So a value read implies its node is final.
//!
//! No artifact is read or written while the lock is held. To hash a value in memory or write
//! it as an artifact without cloning it, the engine *lends* it out of the slot ([`Slot::lend`]);
//! readers wait the short while until it is back.

use crate::error::HandleError;
use crate::sync::lock;
use crate::transport::artifacts::{ArtifactRef, read_value};
use smol_str::SmolStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

enum State<T> {
    Empty,
    /// `None` once the last reader moved the value out.
    Ready(Option<T>),
    /// The value is in an artifact (the step ran in another process); each reader decodes it.
    // Boxed, as `Failed`: the state moves on every step, and a small value's state should be
    // a few words, not the size of these rarer variants.
    Stored(Box<(ArtifactRef, SmolStr)>),
    Failed(Box<HandleError>),
}

struct Inner<T> {
    state: State<T>,
    /// Written by the step, not yet visible to readers (see the module doc).
    staged: Option<State<T>>,
    /// The value is lent out (its `Ready` holds `None` until it is back).
    lent: bool,
    wakers: Vec<Waker>,
    /// Threads blocked on `ready`: with none, a change skips the wake-up (a system call).
    sleepers: u32,
}

impl<T> Inner<T> {
    /// Readers must wait: nothing yet, or the value is lent out.
    fn waiting(&self) -> bool {
        self.lent || matches!(self.state, State::Empty)
    }
}

/// A slot's value as the engine reads it without taking it: lent out of memory, or where its
/// artifact is.
pub(crate) enum Lent<'a, T> {
    /// In memory; back in the slot when dropped.
    Value(LentValue<'a, T>),
    /// In an artifact, written by step `.1`.
    Stored(ArtifactRef, SmolStr),
}

/// A value lent out of its slot (see [`Slot::lend`]).
pub(crate) struct LentValue<'a, T> {
    slot: &'a Slot<T>,
    value: Option<T>,
    /// It came from the staged value, not the published one.
    staged: bool,
}

impl<T> std::ops::Deref for LentValue<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value.as_ref().expect("held until dropped")
    }
}

impl<T> Drop for LentValue<'_, T> {
    fn drop(&mut self) {
        let wakers = {
            let mut inner = lock(&self.slot.inner);
            let back = State::Ready(self.value.take());
            if self.staged {
                inner.staged = Some(back);
            } else {
                inner.state = back;
            }
            inner.lent = false;
            (std::mem::take(&mut inner.wakers), inner.sleepers > 0)
        };
        self.slot.wake(wakers);
    }
}

/// One output of one node.
#[doc(hidden)]
pub struct Slot<T> {
    inner: Mutex<Inner<T>>,
    ready: Condvar,
    /// The state has left `Empty` (it never goes back): read without the lock by a debug
    /// run's reader after each step it runs.
    resolved: AtomicBool,
}

/// A node's output slots, type-erased: inline for one output (most components have one), so
/// a node costs no list of its own.
#[doc(hidden)]
pub type ErasedSlots = smallvec::SmallVec<[Arc<dyn ErasedSlot>; 1]>;

/// What the controller needs of a slot without knowing its type.
#[doc(hidden)]
pub trait ErasedSlot: Send + Sync {
    /// Resolves the slot with an error (the step failed, was skipped or aborted).
    fn fail(&self, error: HandleError);
    /// Stages an artifact written by step `step`; readers see it once published.
    fn store(&self, artifact: ArtifactRef, step: SmolStr);
    /// Makes the staged value visible to readers (the node is final); false when nothing was
    /// staged (the slot is then left for the caller to fail).
    fn publish(&self) -> bool;
    /// The artifact holding the value: the one it lives in, or one written now at `path`.
    fn persist(
        &self,
        path: &std::path::Path,
        codec: pipeline_core::Codec,
    ) -> Result<ArtifactRef, pipeline_core::StepError>;
}

impl<T: pipeline_core::ComponentValue> ErasedSlot for Slot<T> {
    fn fail(&self, error: HandleError) {
        self.resolve(State::Failed(Box::new(error)));
    }

    fn store(&self, artifact: ArtifactRef, step: SmolStr) {
        self.stage(State::Stored(Box::new((artifact, step))));
    }

    fn publish(&self) -> bool {
        // One lock: the staged state moves straight in.
        let (wakers, late) = {
            let mut inner = lock(&self.inner);
            while inner.lent {
                inner = self.wait(inner);
            }
            let Some(staged) = inner.staged.take() else {
                return false;
            };
            // Resolved once, as in `resolve`: a late value (an abort raced the finish) loses,
            // and is dropped after the lock.
            if !matches!(inner.state, State::Empty) {
                (None, Some(staged))
            } else {
                inner.state = staged;
                self.resolved.store(true, Ordering::Release);
                (Some((std::mem::take(&mut inner.wakers), inner.sleepers > 0)), None)
            }
        };
        drop(late);
        if let Some(wakers) = wakers {
            self.wake(wakers);
        }
        true
    }

    fn persist(
        &self,
        path: &std::path::Path,
        codec: pipeline_core::Codec,
    ) -> Result<ArtifactRef, pipeline_core::StepError> {
        let no_value =
            || pipeline_core::StepError::new(pipeline_core::ErrorKind::Setup, "the output has no value to store");
        // Written without the lock: readers are not held up by the file.
        match self.lend(true).map_err(|_| no_value())? {
            Some(Lent::Stored(artifact, _)) => Ok(artifact),
            Some(Lent::Value(value)) => crate::transport::artifacts::write_value(path, codec, &*value),
            None => Err(no_value()),
        }
    }
}

impl<T> Slot<T> {
    fn with_state(state: State<T>) -> Arc<Self> {
        Arc::new(Self {
            resolved: AtomicBool::new(!matches!(state, State::Empty)),
            inner: Mutex::new(Inner {
                state,
                staged: None,
                lent: false,
                wakers: Vec::new(),
                sleepers: 0,
            }),
            ready: Condvar::new(),
        })
    }

    pub(crate) fn empty() -> Arc<Self> {
        Self::with_state(State::Empty)
    }

    pub(crate) fn filled(value: T) -> Arc<Self> {
        Self::with_state(State::Ready(Some(value)))
    }

    pub(crate) fn failed(error: HandleError) -> Arc<Self> {
        Self::with_state(State::Failed(Box::new(error)))
    }

    /// Stages the step's value; readers see it once published.
    pub(crate) fn fill(&self, value: T) {
        self.stage(State::Ready(Some(value)));
    }

    fn stage(&self, state: State<T>) {
        let mut inner = lock(&self.inner);
        if matches!(inner.state, State::Empty) {
            // A later attempt's value replaces an earlier one's (only the last is published).
            inner.staged = Some(state);
        }
    }

    fn resolve(&self, state: State<T>) {
        let wakers = {
            let mut inner = lock(&self.inner);
            // A slot is resolved once; a late failure (an abort racing a finish) loses.
            if !matches!(inner.state, State::Empty) {
                return;
            }
            inner.state = state;
            self.resolved.store(true, Ordering::Release);
            (std::mem::take(&mut inner.wakers), inner.sleepers > 0)
        };
        self.wake(wakers);
    }

    /// Blocks until the slot changes. Counted, so that a change nobody waits for costs no
    /// wake-up.
    fn wait<'a>(&self, mut inner: MutexGuard<'a, Inner<T>>) -> MutexGuard<'a, Inner<T>> {
        inner.sleepers += 1;
        let mut inner = self.ready.wait(inner).unwrap_or_else(|p| p.into_inner());
        inner.sleepers -= 1;
        inner
    }

    /// Wakes what waits for a change: async readers, and blocked threads if there are any.
    fn wake(&self, (wakers, sleepers): (Vec<Waker>, bool)) {
        if sleepers {
            self.ready.notify_all();
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Lends the value out of the slot until the returned guard is dropped: the staged value
    /// when `staged` (`None` if nothing is staged), else the published one, waited for.
    /// `Err` when the slot failed.
    pub(crate) fn lend(&self, staged: bool) -> Result<Option<Lent<'_, T>>, HandleError> {
        let mut inner = lock(&self.inner);
        while inner.lent || (!staged && matches!(inner.state, State::Empty)) {
            inner = self.wait(inner);
        }
        let inner = &mut *inner;
        let state = if staged {
            match inner.staged.as_mut() {
                Some(state) => state,
                None => return Ok(None),
            }
        } else {
            &mut inner.state
        };
        match state {
            State::Empty => Ok(None),
            State::Failed(e) => Err((**e).clone()),
            State::Stored(stored) => Ok(Some(Lent::Stored(stored.0.clone(), stored.1.clone()))),
            State::Ready(value) => {
                let Some(value) = value.take() else { return Ok(None) };
                inner.lent = true;
                Ok(Some(Lent::Value(LentValue {
                    slot: self,
                    value: Some(value),
                    staged,
                })))
            }
        }
    }

    pub(crate) fn is_resolved(&self) -> bool {
        self.resolved.load(Ordering::Acquire)
    }

    /// The artifact holding the value, if the value lives in one.
    pub(crate) fn artifact(&self) -> Option<ArtifactRef> {
        match &lock(&self.inner).state {
            State::Stored(stored) => Some(stored.0.clone()),
            _ => None,
        }
    }
}

impl<T: pipeline_core::ComponentValue> Slot<T> {
    /// Blocks until resolved, then moves the value out if `this` is the last reference and
    /// `may_move` allows, else clones it.
    pub(crate) fn take_blocking(this: &Arc<Self>, may_move: bool) -> Result<T, HandleError> {
        let taken = {
            let mut inner = lock(&this.inner);
            while inner.waiting() {
                inner = this.wait(inner);
            }
            Self::take_resolved(this, &mut inner.state, may_move)
        };
        taken.read()
    }

    /// The `async` form of [`Slot::take_blocking`].
    pub(crate) fn poll_take(this: &Arc<Self>, cx: &mut Context<'_>, may_move: bool) -> Poll<Result<T, HandleError>> {
        let taken = {
            let mut inner = lock(&this.inner);
            if inner.waiting() {
                if !inner.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    inner.wakers.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Self::take_resolved(this, &mut inner.state, may_move)
        };
        Poll::Ready(taken.read())
    }

    /// Under the lock: what the reader gets, short of reading an artifact.
    fn take_resolved(this: &Arc<Self>, state: &mut State<T>, may_move: bool) -> Taken<T> {
        match state {
            State::Empty => unreachable!("checked by the callers"),
            State::Failed(e) => Taken::Done(Err((**e).clone())),
            State::Stored(stored) => Taken::Read(stored.0.clone(), stored.1.clone()),
            // No other handle or consumer can reach the slot: moving cannot be observed.
            State::Ready(value) if may_move && Arc::strong_count(this) == 1 => Taken::Done(Ok(value
                .take()
                .expect("a slot's value is moved out only by its last reference"))),
            State::Ready(value) => Taken::Done(Ok(value
                .as_ref()
                .expect("a slot's value is moved out only by its last reference")
                .clone())),
        }
    }
}

/// A value taken from a slot, or the artifact to read it from once the lock is released.
enum Taken<T> {
    Done(Result<T, HandleError>),
    Read(ArtifactRef, SmolStr),
}

impl<T: pipeline_core::ComponentValue> Taken<T> {
    fn read(self) -> Result<T, HandleError> {
        match self {
            Self::Done(result) => result,
            Self::Read(artifact, step) => read_value(&artifact).map_err(|error| HandleError::Unreadable {
                step: step.to_string(),
                error,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static PERSIST_CLONES: AtomicUsize = AtomicUsize::new(0);
    static LEND_CLONES: AtomicUsize = AtomicUsize::new(0);

    /// A value that counts its clones in the counter it names.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Counted(u8, Vec<u8>);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            [&PERSIST_CLONES, &LEND_CLONES][self.0 as usize].fetch_add(1, Ordering::SeqCst);
            Counted(self.0, self.1.clone())
        }
    }

    #[test]
    fn persisting_a_staged_value_writes_it_without_a_copy() {
        let dir = std::env::temp_dir().join(format!("pipeline-slot-{}", std::process::id()));
        let slot: Arc<Slot<Counted>> = Slot::empty();
        slot.fill(Counted(0, vec![7; 1000]));
        let artifact = slot.persist(&dir.join("v.art"), pipeline_core::Codec::Bincode).unwrap();
        assert_eq!(PERSIST_CLONES.load(Ordering::SeqCst), 0);
        // The tag byte, the length (3 bytes as a varint), the bytes.
        assert_eq!(artifact.header.as_ref().unwrap().length, 1 + 3 + 1000);
        assert!(slot.publish());
        assert_eq!(Slot::take_blocking(&slot, true).unwrap(), Counted(0, vec![7; 1000]));
        assert_eq!(PERSIST_CLONES.load(Ordering::SeqCst), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_staged_value_published_after_a_failure_loses_and_readers_get_the_failure() {
        let slot: Arc<Slot<u32>> = Slot::empty();
        slot.fill(5);
        let aborted = HandleError::Aborted {
            step: "s".into(),
            reason: "stopped".into(),
        };
        ErasedSlot::fail(&*slot, aborted.clone());
        // Something was staged, so the publish is not reported as missing; the failure stands.
        assert!(slot.publish());
        assert_eq!(Slot::take_blocking(&slot, true), Err(aborted));
        // Nothing staged: the caller must fail the slot.
        let empty: Arc<Slot<u32>> = Slot::empty();
        assert!(!empty.publish());
    }

    #[test]
    fn a_small_values_state_is_a_few_words() {
        // The state moves on every step: the rare stored and failed states are boxed, so that
        // they do not make every state as large as they are.
        assert!(std::mem::size_of::<State<u64>>() <= 3 * std::mem::size_of::<usize>());
    }

    #[test]
    fn a_lent_value_is_read_in_place_and_readers_get_it_back() {
        let slot: Arc<Slot<Counted>> = Slot::filled(Counted(1, vec![1, 2, 3]));
        let reader = slot.clone();
        {
            let Some(Lent::Value(value)) = slot.lend(false).unwrap() else {
                panic!("a value in memory")
            };
            assert_eq!(value.1, [1, 2, 3]);
            // A reader now waits: the slot holds no value while it is lent.
            assert!(lock(&slot.inner).waiting());
        }
        assert_eq!(LEND_CLONES.load(Ordering::SeqCst), 0);
        assert_eq!(Slot::take_blocking(&reader, false).unwrap().1, [1, 2, 3]);
        assert_eq!(LEND_CLONES.load(Ordering::SeqCst), 1, "only the reader's own copy");
    }

    #[test]
    fn a_reader_blocked_on_a_lent_value_wakes_when_it_is_back() {
        let slot: Arc<Slot<u32>> = Slot::filled(5);
        let lent = slot.lend(false).unwrap();
        let reader = {
            let slot = slot.clone();
            std::thread::spawn(move || Slot::take_blocking(&slot, false))
        };
        drop(lent);
        assert_eq!(reader.join().unwrap().unwrap(), 5);
    }
}
