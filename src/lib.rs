//! Examples, end-to-end tests and benchmarks live beside this crate; it has no code of its own.
