//! How values travel between processes: artifact files (a checked header, then the value in
//! the pipeline's codec) and object storage. Depends only on `sync`.

pub mod artifacts;
pub(crate) mod object_storage;
