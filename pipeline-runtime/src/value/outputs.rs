//! The outputs of a component call: one typed slot per output, and the handles to them.

use super::dynamic::{DynHandle, DynOutput};
use super::handle::{Handle, NodeRef};
use super::slot::{ErasedSlot, ErasedSlots, Slot};
use crate::error::HandleError;
use pipeline_core::descriptor::write_output;
use pipeline_core::{ComponentValue, StepError, StepIo};
use smol_str::SmolStr;
use std::sync::Arc;

/// The outputs of a component as a tuple of [`ComponentValue`]s: `(T,)` for a single output,
/// `(A, B, ...)` for `return_values = ["a", "b", ...]`. Implemented for tuples of up to 12
/// elements; its methods are the runtime's.
pub trait Outputs: Sized + Send + 'static {
    /// `Handle<T>` for one output, a tuple of handles for several.
    type Handles;
    /// The typed slots the values are written to.
    type Slots: Send + 'static;

    /// Empty slots, the handles to them, and the same slots type-erased (to fail them).
    #[doc(hidden)]
    fn create(node: NodeRef, name: &SmolStr) -> (Self::Handles, Self::Slots, ErasedSlots);
    /// Writes the values to their slots.
    #[doc(hidden)]
    fn fill(self, slots: &Self::Slots);
    /// Handles to values that already exist.
    #[doc(hidden)]
    fn ready(self, node: NodeRef, name: &SmolStr) -> Self::Handles;
    /// Handles that all give `error`.
    #[doc(hidden)]
    fn failed(error: HandleError, node: NodeRef, name: &SmolStr) -> Self::Handles;
    /// Encodes the values as outputs `0..`, in a worker.
    #[doc(hidden)]
    fn write(&self, io: &mut dyn StepIo) -> Result<(), StepError>;
    /// The handles with their types erased, in order (a dynamic call's outputs).
    #[doc(hidden)]
    fn into_dyn(handles: Self::Handles) -> Vec<DynHandle>;
    /// The outputs' types, for checks before a dynamic call.
    #[doc(hidden)]
    fn describe() -> Vec<DynOutput>;
}

fn describe_one<T: ComponentValue>() -> DynOutput {
    DynOutput {
        type_name: std::any::type_name::<T>(),
        list_type_name: std::any::type_name::<Vec<T>>(),
    }
}

impl<A: ComponentValue> Outputs for (A,) {
    type Handles = Handle<A>;
    type Slots = Arc<Slot<A>>;

    fn create(node: NodeRef, name: &SmolStr) -> (Self::Handles, Self::Slots, ErasedSlots) {
        let slot = Slot::empty();
        (
            Handle::new(slot.clone(), node, name.clone()),
            slot.clone(),
            smallvec::smallvec![slot as Arc<dyn ErasedSlot>],
        )
    }

    fn fill(self, slot: &Self::Slots) {
        slot.fill(self.0);
    }

    fn ready(self, node: NodeRef, name: &SmolStr) -> Self::Handles {
        Handle::new(Slot::filled(self.0), node, name.clone())
    }

    fn failed(error: HandleError, node: NodeRef, name: &SmolStr) -> Self::Handles {
        Handle::new(Slot::failed(error), node, name.clone())
    }

    fn write(&self, io: &mut dyn StepIo) -> Result<(), StepError> {
        write_output(io, 0, &self.0)
    }

    fn into_dyn(handle: Self::Handles) -> Vec<DynHandle> {
        vec![DynHandle::new(handle)]
    }

    fn describe() -> Vec<DynOutput> {
        vec![describe_one::<A>()]
    }
}

macro_rules! tuple_outputs {
    ($($t:ident $i:tt),+) => {
        impl<$($t: ComponentValue),+> Outputs for ($($t,)+) {
            type Handles = ($(Handle<$t>,)+);
            type Slots = ($(Arc<Slot<$t>>,)+);

            fn create(node: NodeRef, name: &SmolStr) -> (Self::Handles, Self::Slots, ErasedSlots) {
                let slots = ($(Slot::<$t>::empty(),)+);
                let handles = ($(Handle::new(slots.$i.clone(), node, name.clone()),)+);
                let erased: ErasedSlots = smallvec::smallvec![$(slots.$i.clone() as Arc<dyn ErasedSlot>),+];
                (handles, slots, erased)
            }

            fn fill(self, slots: &Self::Slots) {
                $(slots.$i.fill(self.$i);)+
            }

            fn ready(self, node: NodeRef, name: &SmolStr) -> Self::Handles {
                ($(Handle::new(Slot::filled(self.$i), node, name.clone()),)+)
            }

            fn failed(error: HandleError, node: NodeRef, name: &SmolStr) -> Self::Handles {
                ($(Handle::<$t>::new(Slot::failed(error.clone()), node, name.clone()),)+)
            }

            fn write(&self, io: &mut dyn StepIo) -> Result<(), StepError> {
                $(write_output(io, $i, &self.$i)?;)+
                Ok(())
            }

            fn into_dyn(handles: Self::Handles) -> Vec<DynHandle> {
                vec![$(DynHandle::new(handles.$i)),+]
            }

            fn describe() -> Vec<DynOutput> {
                vec![$(describe_one::<$t>()),+]
            }
        }
    };
}

tuple_outputs!(A 0, B 1);
tuple_outputs!(A 0, B 1, C 2);
tuple_outputs!(A 0, B 1, C 2, D 3);
tuple_outputs!(A 0, B 1, C 2, D 3, E 4);
tuple_outputs!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_outputs!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_outputs!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_outputs!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_outputs!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_outputs!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_outputs!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
