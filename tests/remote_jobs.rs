//! The remote-mode tests once more, on the job-per-step backend: `remote_pipeline.rs` (which
//! runs them through the warm runner) tells the two targets apart by the crate's name.

#[path = "remote_pipeline.rs"]
mod remote_pipeline;
