//! Lookup of the components and pipelines registered in this binary.
//!
//! Registration is by `inventory`, so it does not depend on module or call order; a process
//! built from the same binary sees the same registry, which is what lets a worker process run a
//! component by name.

use crate::descriptor::{ComponentDescriptor, ComponentRegistration, PipelineDescriptor, PipelineRegistration};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Two components were registered under one name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "two components are registered under the name `{name}`: `{first}` and `{second}`; \
     give one of them another `name = \"...\"`"
)]
pub struct DuplicateComponent {
    /// The shared name.
    pub name: String,
    /// The first function's path.
    pub first: String,
    /// The second function's path.
    pub second: String,
}

/// Every registered component, in no particular order.
pub fn components() -> impl Iterator<Item = &'static ComponentDescriptor> {
    inventory::iter::<ComponentRegistration>().map(|r| r.0)
}

/// Every registered pipeline, in no particular order.
pub fn pipelines() -> impl Iterator<Item = &'static PipelineDescriptor> {
    inventory::iter::<PipelineRegistration>().map(|r| r.0)
}

type Index = Result<HashMap<&'static str, &'static ComponentDescriptor>, DuplicateComponent>;

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut map = HashMap::new();
        for c in components() {
            if let Some(prev) = map.insert(c.name, c) {
                let (mut first, mut second) = (prev.qualified_function(), c.qualified_function());
                if first > second {
                    std::mem::swap(&mut first, &mut second);
                }
                return Err(DuplicateComponent {
                    name: c.name.to_string(),
                    first,
                    second,
                });
            }
        }
        Ok(map)
    })
}

/// Checks that component names are unique across the binary. Names clashing within one
/// module are already a compile error; across modules this is the check.
pub fn validate() -> Result<(), DuplicateComponent> {
    index().as_ref().map(|_| ()).map_err(Clone::clone)
}

/// The component registered under `name`.
pub fn find_component(name: &str) -> Result<Option<&'static ComponentDescriptor>, DuplicateComponent> {
    match index() {
        Ok(map) => Ok(map.get(name).copied()),
        Err(e) => Err(e.clone()),
    }
}
