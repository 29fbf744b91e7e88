//! Compile-time checks of `#[component]` and `#[pipeline]`: each mistake in `compile_fail/` must
//! be rejected with a clear error spanned at the mistake (see the `.stderr` snapshots), and each
//! valid usage in `compile_pass/` must build and run.
//!
//! Refresh the snapshots with `TRYBUILD=overwrite cargo test --test compile_fail`, then read them.

#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
    t.pass("tests/compile_pass/*.rs");
}
