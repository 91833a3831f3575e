//! Test suites that cross crates: they live in this package's tests/ folder.
pub mod helm;
