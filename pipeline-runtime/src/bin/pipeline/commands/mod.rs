//! One module per command.

pub mod artifacts;
pub mod cache;
pub mod compare;
pub mod dag;
pub mod get;
pub mod logs;
pub mod rerun;
pub mod resume;
pub mod runs;
pub mod show;
pub mod spin;
pub mod stop;
