//! Typed handles to step outputs, and what a component parameter accepts.

use super::slot::{Lent, Slot};
use crate::error::HandleError;
use crate::transport::artifacts::{ArgArtifacts, ArtifactRef, write_value};
use pipeline_core::{Codec, ComponentValue, ErrorKind, StepError};
use smol_str::SmolStr;
use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Which node of which run produced a value. Run 0 means "no run": a component called
/// outside any pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub struct NodeRef {
    pub(crate) run: u64,
    pub(crate) index: u32,
}

impl NodeRef {
    /// No node: a value made outside any run.
    pub(crate) const NONE: Self = Self { run: 0, index: 0 };
}

/// A typed handle to one output of a step, returned at once by a component call.
///
/// Pass it (or a reference to it) to another component to make a DAG edge: that step starts
/// once this one has finished, and passing never waits. Reading the value waits: `.get()` in
/// sync code, `.await` in async code. A handle is cheap to clone; all clones read the same
/// value (the last reader takes it without a copy).
pub struct Handle<T> {
    slot: Arc<Slot<T>>,
    node: NodeRef,
    name: SmolStr,
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
            node: self.node,
            name: self.name.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("step", &&*self.name)
            .field("ready", &self.slot.is_resolved())
            .finish()
    }
}

impl<T> Handle<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>, node: NodeRef, name: SmolStr) -> Self {
        Self { slot, node, name }
    }

    /// The name of the node that produces this value (`mean`, `mean_1`...).
    pub fn step(&self) -> &str {
        &self.name
    }

    /// The artifact file holding the value, when the step ran in another process.
    pub fn artifact(&self) -> Option<std::path::PathBuf> {
        self.slot.artifact().map(|a| a.path)
    }

    /// True once the step has finished, successfully or not: reading will not wait.
    pub fn is_ready(&self) -> bool {
        let ready = self.slot.is_resolved();
        if !ready {
            // A reader that polls never waits: in debug mode, steps must run without a wait.
            super::demand::eager(self.node.run);
        }
        ready
    }
}

impl<T: ComponentValue> Handle<T> {
    /// Waits for the step and returns its value, or why there is none.
    ///
    /// In `async` code use `.await` instead, which does not block the executor thread.
    pub fn get(self) -> Result<T, HandleError> {
        // In debug mode the steps run while a reader waits for them: this thread runs them.
        let _wanted =
            (!self.slot.is_resolved()).then(|| super::demand::wait_for(self.node.run, &|| self.slot.is_resolved()));
        Slot::take_blocking(&self.slot, true)
    }
}

/// The future of [`Handle::into_future`].
pub struct HandleFuture<T> {
    slot: Arc<Slot<T>>,
    node: NodeRef,
    /// Held from the first pending poll to the end (debug mode runs steps while it is held).
    wanted: Option<super::demand::Wanted>,
}

impl<T: ComponentValue> Future for HandleFuture<T> {
    type Output = Result<T, HandleError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.wanted.is_none() && !this.slot.is_resolved() {
            this.wanted = Some(super::demand::want(this.node.run));
        }
        let poll = Slot::poll_take(&this.slot, cx, true);
        if poll.is_ready() {
            this.wanted = None;
        }
        poll
    }
}

impl<T: ComponentValue> IntoFuture for Handle<T> {
    type Output = Result<T, HandleError>;
    type IntoFuture = HandleFuture<T>;

    fn into_future(self) -> HandleFuture<T> {
        HandleFuture {
            slot: self.slot,
            node: self.node,
            wanted: None,
        }
    }
}

/// One argument of a component call: a plain value (a parameter), a handle (an edge), or a
/// list of handles gathered into a `Vec` (a fan-in: one edge per handle).
#[doc(hidden)]
pub struct Input<T>(InputKind<T>);

enum InputKind<T> {
    Value(Option<T>),
    Handle(Handle<T>),
    Gather(Box<dyn Gather<T>>),
}

/// A `Vec<Handle<U>>` read as one `Vec<U>` argument.
trait Gather<T>: Send {
    fn dependencies(&self, deps: &mut Vec<NodeRef>);
    fn resolve(&mut self, last: bool) -> Result<T, StepError>;
    /// Writes the elements for a worker: each one's artifact as it is, or written from memory
    /// without a copy; with a user's codec (no known sequence framing), the whole `Vec` once.
    fn export(&mut self, sink: &mut ExportSink) -> Result<(), StepError>;
    /// Feeds the `Vec` into a cache key as its bincode encoding would, element by element.
    fn fingerprint(&mut self, key: &mut blake3::Hasher) -> Result<(), StepError>;
}

/// Where a step's arguments are written when it runs in another process: one artifact per
/// argument, in order.
#[doc(hidden)]
pub struct ExportSink {
    pub(crate) dir: PathBuf,
    pub(crate) codec: Codec,
    /// Where the inputs are uploaded, when artifacts live in object storage.
    pub(crate) remote: Option<String>,
    pub(crate) inputs: Vec<ArgArtifacts>,
}

impl ExportSink {
    /// Writes `value` as artifact `name` (uploaded when artifacts live in object storage).
    fn write_named<T: ComponentValue>(&self, name: &str, value: &T) -> Result<ArtifactRef, StepError> {
        let mut artifact = write_value(&self.dir.join(name), self.codec, value)?;
        if let Some(prefix) = &self.remote {
            let uri = crate::transport::object_storage::join(prefix, &[name]);
            crate::transport::object_storage::upload(&artifact.path, &uri)?;
            artifact.uri = Some(uri);
        }
        Ok(artifact)
    }

    fn write<T: ComponentValue>(&mut self, value: &T) -> Result<(), StepError> {
        let artifact = self.write_named(&format!("input-{}.art", self.inputs.len()), value)?;
        self.inputs.push(ArgArtifacts::One(artifact));
        Ok(())
    }

    /// The artifact of a handle's value: its own when it can be handed on, else one written
    /// from the value in memory (not copied) as artifact `name`.
    fn artifact_of<T: ComponentValue>(&self, handle: &Handle<T>, name: &str) -> Result<ArtifactRef, StepError> {
        match lend(handle)? {
            Lent::Stored(artifact, _) if self.reusable(&artifact) => Ok(artifact),
            Lent::Stored(artifact, step) => self.write_named(name, &read_stored::<T>(&artifact, &step)?),
            Lent::Value(value) => self.write_named(name, &*value),
        }
    }

    /// Whether an existing artifact can be handed on as it is.
    fn reusable(&self, artifact: &ArtifactRef) -> bool {
        artifact.codec.name() == self.codec.name() && (self.remote.is_none() || artifact.uri.is_some())
    }
}

impl<U: ComponentValue> Gather<Vec<U>> for Vec<Handle<U>> {
    fn dependencies(&self, deps: &mut Vec<NodeRef>) {
        deps.extend(self.iter().map(|h| h.node));
    }

    fn export(&mut self, sink: &mut ExportSink) -> Result<(), StepError> {
        if pipeline_core::codec::sequence_frame(sink.codec, self.len()).is_none() {
            let values = self.resolve(false)?;
            return sink.write(&values);
        }
        let arg = sink.inputs.len();
        let elements = self
            .iter()
            .enumerate()
            .map(|(i, handle)| sink.artifact_of(handle, &format!("input-{arg}-{i}.art")))
            .collect::<Result<Vec<_>, _>>()?;
        sink.inputs.push(ArgArtifacts::Elements(elements));
        Ok(())
    }

    fn fingerprint(&mut self, key: &mut blake3::Hasher) -> Result<(), StepError> {
        let frame = pipeline_core::codec::sequence_frame(Codec::Bincode, self.len()).expect("bincode frames sequences");
        key.update(&frame.prefix);
        for handle in self.iter() {
            fingerprint_handle(handle, key)?;
        }
        Ok(())
    }

    fn resolve(&mut self, last: bool) -> Result<Vec<U>, StepError> {
        if last {
            return std::mem::take(self)
                .into_iter()
                .map(|h| h.get().map_err(input_error))
                .collect();
        }
        self.iter()
            .map(|h| Slot::take_blocking(&h.slot, false).map_err(input_error))
            .collect()
    }
}

impl<T: ComponentValue> Input<T> {
    /// Adds the nodes this argument waits for to `deps`.
    pub fn dependencies(&self, deps: &mut Vec<NodeRef>) {
        match &self.0 {
            InputKind::Value(_) => {}
            InputKind::Handle(h) => deps.push(h.node),
            InputKind::Gather(g) => g.dependencies(deps),
        }
    }

    /// Makes the argument an artifact for a step running in another process: a handle whose
    /// value is already stored is passed by reference, anything else is written once.
    pub fn export(&mut self, sink: &mut ExportSink) -> Result<(), StepError> {
        match &mut self.0 {
            InputKind::Value(v) => {
                let value = v
                    .take()
                    .ok_or_else(|| StepError::new(ErrorKind::Setup, "an input was exported twice"))?;
                sink.write(&value)
            }
            InputKind::Handle(h) => {
                let artifact = sink.artifact_of(h, &format!("input-{}.art", sink.inputs.len()))?;
                sink.inputs.push(ArgArtifacts::One(artifact));
                Ok(())
            }
            InputKind::Gather(g) => g.export(sink),
        }
    }

    /// Feeds the parameter's name and value into a cache key. Values are hashed in their
    /// bincode form whatever the pipeline's codec, so keys agree across modes.
    pub fn fingerprint(&mut self, name: &str, key: &mut blake3::Hasher) -> Result<(), StepError> {
        key.update(&(name.len() as u64).to_le_bytes());
        key.update(name.as_bytes());
        match &mut self.0 {
            InputKind::Value(v) => {
                let value = v
                    .as_ref()
                    .ok_or_else(|| StepError::new(ErrorKind::Setup, "an input was used up"))?;
                hash_value(value, key)
            }
            InputKind::Handle(h) => fingerprint_handle(h, key),
            InputKind::Gather(g) => g.fingerprint(key),
        }
    }

    /// The value, once the scheduler has made sure it exists. `last` says no further attempt
    /// will need it, so it may be moved rather than cloned.
    pub fn resolve(&mut self, last: bool) -> Result<T, StepError> {
        let moved = || {
            StepError::new(
                ErrorKind::Setup,
                "an input was used after it was moved into an earlier attempt",
            )
        };
        if last {
            // Give up our own reference, so that the slot can see whether it is the last one.
            return match std::mem::replace(&mut self.0, InputKind::Value(None)) {
                InputKind::Value(v) => v.ok_or_else(moved),
                InputKind::Handle(h) => h.get().map_err(input_error),
                InputKind::Gather(mut g) => g.resolve(true),
            };
        }
        match &mut self.0 {
            InputKind::Value(v) => v.clone().ok_or_else(moved),
            InputKind::Handle(h) => Slot::take_blocking(&h.slot, false).map_err(input_error),
            InputKind::Gather(g) => g.resolve(false),
        }
    }
}

fn hash_value<T: ComponentValue>(value: &T, key: &mut blake3::Hasher) -> Result<(), StepError> {
    pipeline_core::codec::encode_into(Codec::Bincode, value, key)
}

/// Decodes a value step `step` stored in `artifact`, as an input error when it cannot.
fn read_stored<T: ComponentValue>(artifact: &ArtifactRef, step: &str) -> Result<T, StepError> {
    crate::transport::artifacts::read_value(artifact).map_err(|error| {
        input_error(HandleError::Unreadable {
            step: step.to_string(),
            error,
        })
    })
}

/// A handle's published value, lent out of its slot (see [`Slot::lend`]).
fn lend<T: ComponentValue>(handle: &Handle<T>) -> Result<Lent<'_, T>, StepError> {
    handle
        .slot
        .lend(false)
        .map_err(input_error)?
        .ok_or_else(|| StepError::new(ErrorKind::Setup, "an input was used up"))
}

/// Feeds a handle's value into a cache key in its bincode form: a bincode artifact's payload
/// streamed from the file, a value in memory encoded straight into the hasher (no copy).
fn fingerprint_handle<T: ComponentValue>(handle: &Handle<T>, key: &mut blake3::Hasher) -> Result<(), StepError> {
    match lend(handle)? {
        Lent::Value(value) => hash_value(&*value, key),
        Lent::Stored(artifact, _) if artifact.codec.name() == Codec::Bincode.name() => {
            crate::transport::artifacts::stream_payload(artifact.fetch()?, key)
        }
        Lent::Stored(artifact, step) => hash_value(&read_stored::<T>(&artifact, &step)?, key),
    }
}

fn input_error(e: HandleError) -> StepError {
    StepError::new(ErrorKind::Setup, format!("input unavailable: {e}"))
}

/// What a component parameter of type `T` accepts: a `T` (a plain parameter), a
/// `Handle<T>` / `&Handle<T>` from an earlier step (a DAG edge), or, for a `Vec<U>`
/// parameter, a `Vec<Handle<U>>` (one edge per handle: a fan-in).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be passed to a component parameter of type `{T}`",
    label = "expected `{T}`, `Handle<{T}>` or `&Handle<{T}>`",
    note = "a step's output handle fits only a parameter of the same type as the output"
)]
pub trait IntoInput<T> {
    /// Wraps the argument.
    fn into_input(self) -> Input<T>;
}

impl<T: ComponentValue> IntoInput<T> for T {
    fn into_input(self) -> Input<T> {
        Input(InputKind::Value(Some(self)))
    }
}

impl<T: ComponentValue> IntoInput<T> for Handle<T> {
    fn into_input(self) -> Input<T> {
        Input(InputKind::Handle(self))
    }
}

impl<T: ComponentValue> IntoInput<T> for &Handle<T> {
    fn into_input(self) -> Input<T> {
        Input(InputKind::Handle(self.clone()))
    }
}

impl<T: ComponentValue> IntoInput<Vec<T>> for Vec<Handle<T>> {
    fn into_input(self) -> Input<Vec<T>> {
        Input(InputKind::Gather(Box::new(self)))
    }
}

impl IntoInput<String> for &str {
    fn into_input(self) -> Input<String> {
        Input(InputKind::Value(Some(self.to_owned())))
    }
}
