//! Kernel and runtime compatibility, kept out of the launch path: the
//! [`conformance`] suite (Docker's behaviours as jobs with expected
//! results), the host [`probe`]s of `skiff check`, and [`matrix`], which runs
//! the suite on the host and on other kernels in QEMU.
//!
//! This crate depends on `skiff-runtime`, never the reverse. See
//! `docs/compat.md`.

pub mod conformance;
mod launcher;
pub mod matrix;
pub mod probe;

pub use conformance::{Case, Launch, LaunchError, SuiteReport};
