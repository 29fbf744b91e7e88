//! The cell one step output lives in until every consumer has it: filled once by the step,
//! waited on by handles (blocking or `async`), moved out by the last reader, cloned otherwise.
//!
//! A step's value is first *staged*: readers do not see it until the run publishes it, which
//! it does only once the node is final. So a value read implies its node is final.

use crate::error::HandleError;
use crate::sync::lock;
use crate::transport::artifacts::{ArtifactRef, read_value};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

enum State<T> {
    Empty,
    /// `None` once the last reader moved the value out.
    Ready(Option<T>),
    /// The value is in an artifact (the step ran in another process); each reader decodes it.
    Stored(ArtifactRef, Arc<str>),
    Failed(HandleError),
}

struct Inner<T> {
    state: State<T>,
    /// Written by the step, not yet visible to readers (see the module doc).
    staged: Option<State<T>>,
    wakers: Vec<Waker>,
}

/// One output of one node.
#[doc(hidden)]
pub struct Slot<T> {
    inner: Mutex<Inner<T>>,
    ready: Condvar,
}

/// What the controller needs of a slot without knowing its type.
#[doc(hidden)]
pub trait ErasedSlot: Send + Sync {
    /// Resolves the slot with an error (the step failed, was skipped or aborted).
    fn fail(&self, error: HandleError);
    /// Stages an artifact written by step `step`; readers see it once published.
    fn store(&self, artifact: ArtifactRef, step: Arc<str>);
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
        self.resolve(State::Failed(error));
    }

    fn store(&self, artifact: ArtifactRef, step: Arc<str>) {
        self.stage(State::Stored(artifact, step));
    }

    fn publish(&self) -> bool {
        let staged = lock(&self.inner).staged.take();
        staged.map(|state| self.resolve(state)).is_some()
    }

    fn persist(
        &self,
        path: &std::path::Path,
        codec: pipeline_core::Codec,
    ) -> Result<ArtifactRef, pipeline_core::StepError> {
        let inner = lock(&self.inner);
        match inner.staged.as_ref().unwrap_or(&inner.state) {
            State::Stored(artifact, _) => Ok(artifact.clone()),
            State::Ready(Some(value)) => crate::transport::artifacts::write_value(path, codec, value),
            _ => Err(pipeline_core::StepError::new(
                pipeline_core::ErrorKind::Setup,
                "the output has no value to store",
            )),
        }
    }
}

impl<T> Slot<T> {
    fn with_state(state: State<T>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                state,
                staged: None,
                wakers: Vec::new(),
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
        Self::with_state(State::Failed(error))
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
            std::mem::take(&mut inner.wakers)
        };
        self.ready.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    pub(crate) fn is_resolved(&self) -> bool {
        !matches!(lock(&self.inner).state, State::Empty)
    }

    /// The artifact holding the value, if the value lives in one.
    pub(crate) fn artifact(&self) -> Option<ArtifactRef> {
        match &lock(&self.inner).state {
            State::Stored(artifact, _) => Some(artifact.clone()),
            _ => None,
        }
    }
}

impl<T: pipeline_core::ComponentValue> Slot<T> {
    /// Blocks until resolved, then moves the value out if `this` is the last reference and
    /// `may_move` allows, else clones it.
    pub(crate) fn take_blocking(this: &Arc<Self>, may_move: bool) -> Result<T, HandleError> {
        let mut inner = lock(&this.inner);
        while matches!(inner.state, State::Empty) {
            inner = this.ready.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
        Self::take_resolved(this, &mut inner.state, may_move)
    }

    /// The `async` form of [`Slot::take_blocking`].
    pub(crate) fn poll_take(this: &Arc<Self>, cx: &mut Context<'_>, may_move: bool) -> Poll<Result<T, HandleError>> {
        let mut inner = lock(&this.inner);
        if matches!(inner.state, State::Empty) {
            if !inner.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                inner.wakers.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        Poll::Ready(Self::take_resolved(this, &mut inner.state, may_move))
    }

    fn take_resolved(this: &Arc<Self>, state: &mut State<T>, may_move: bool) -> Result<T, HandleError> {
        match state {
            State::Empty => unreachable!("checked by the callers"),
            State::Failed(e) => Err(e.clone()),
            State::Stored(artifact, step) => read_value(artifact).map_err(|error| HandleError::Unreadable {
                step: step.to_string(),
                error,
            }),
            // No other handle or consumer can reach the slot: moving cannot be observed.
            State::Ready(value) if may_move && Arc::strong_count(this) == 1 => Ok(value
                .take()
                .expect("a slot's value is moved out only by its last reference")),
            State::Ready(value) => Ok(value
                .as_ref()
                .expect("a slot's value is moved out only by its last reference")
                .clone()),
        }
    }
}
