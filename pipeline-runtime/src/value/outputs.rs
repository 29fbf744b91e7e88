//! The outputs of a component call: one typed slot per output, and the handles to them.

use super::handle::{Handle, NodeRef};
use super::slot::{ErasedSlot, Slot};
use crate::error::HandleError;
use pipeline_core::ComponentValue;
use std::sync::Arc;

/// The tuple of values a component's job returns: `(T,)` for a single output, `(A, B, ...)`
/// for `return_values = ["a", "b", ...]`. Implemented for tuples of up to 12 elements.
#[doc(hidden)]
pub trait Outputs: Sized + Send + 'static {
    /// `Handle<T>` for one output, a tuple of handles for several.
    type Handles;
    /// The typed slots the values are written to.
    type Slots: Send + 'static;

    /// Empty slots, the handles to them, and the same slots type-erased (to fail them).
    fn create(node: NodeRef, name: &Arc<str>) -> (Self::Handles, Self::Slots, Vec<Arc<dyn ErasedSlot>>);
    /// Writes the values to their slots.
    fn fill(self, slots: &Self::Slots);
    /// Handles to values that already exist.
    fn ready(self, node: NodeRef, name: &Arc<str>) -> Self::Handles;
    /// Handles that all give `error`.
    fn failed(error: HandleError, node: NodeRef, name: &Arc<str>) -> Self::Handles;
}

impl<A: ComponentValue> Outputs for (A,) {
    type Handles = Handle<A>;
    type Slots = Arc<Slot<A>>;

    fn create(node: NodeRef, name: &Arc<str>) -> (Self::Handles, Self::Slots, Vec<Arc<dyn ErasedSlot>>) {
        let slot = Slot::empty();
        (Handle::new(slot.clone(), node, name.clone()), slot.clone(), vec![slot])
    }

    fn fill(self, slot: &Self::Slots) {
        slot.fill(self.0);
    }

    fn ready(self, node: NodeRef, name: &Arc<str>) -> Self::Handles {
        Handle::new(Slot::filled(self.0), node, name.clone())
    }

    fn failed(error: HandleError, node: NodeRef, name: &Arc<str>) -> Self::Handles {
        Handle::new(Slot::failed(error), node, name.clone())
    }
}

macro_rules! tuple_outputs {
    ($($t:ident $i:tt),+) => {
        impl<$($t: ComponentValue),+> Outputs for ($($t,)+) {
            type Handles = ($(Handle<$t>,)+);
            type Slots = ($(Arc<Slot<$t>>,)+);

            fn create(node: NodeRef, name: &Arc<str>) -> (Self::Handles, Self::Slots, Vec<Arc<dyn ErasedSlot>>) {
                let slots = ($(Slot::<$t>::empty(),)+);
                let handles = ($(Handle::new(slots.$i.clone(), node, name.clone()),)+);
                let erased: Vec<Arc<dyn ErasedSlot>> = vec![$(slots.$i.clone()),+];
                (handles, slots, erased)
            }

            fn fill(self, slots: &Self::Slots) {
                $(slots.$i.fill(self.$i);)+
            }

            fn ready(self, node: NodeRef, name: &Arc<str>) -> Self::Handles {
                ($(Handle::new(Slot::filled(self.$i), node, name.clone()),)+)
            }

            fn failed(error: HandleError, node: NodeRef, name: &Arc<str>) -> Self::Handles {
                ($(Handle::<$t>::new(Slot::failed(error.clone()), node, name.clone()),)+)
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
