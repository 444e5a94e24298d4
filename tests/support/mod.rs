//! The one support module of skiff's end-to-end tests (`mod support;` in
//! each test file):
//!
//! - [`privilege`]: the privilege gate. A missing prerequisite (root,
//!   overlayfs, cgroups, a tool) skips the test with a message, or fails it
//!   when `SKIFF_REQUIRE_PRIVILEGED=1`.
//! - [`env`]: the repository, the vendored images, the `skiff` binary, a
//!   fresh store per test ([`env::Env`]), programs on `PATH`, and static C
//!   probes built once per run.
//! - [`run`]: the `skiff run` environment ([`run::Env`]: the vendored images
//!   imported, cleanup and a leak check even when the test fails), the
//!   conformance suite driven through `skiff run`, the syscall probe.
//! - [`tar`]: the one tar/archive builder: layers, generated images,
//!   `docker save` archives derived from a vendored one (hostile images).
//! - [`mounts`]: a small tmpfs, an overlay, unmounted on drop.
//! - [`netns`]: worker hosts with their own addresses (network
//!   namespaces on a bridge), cut off and brought back.
//! - [`serve`]: a real `skiff serve`, driven through its API.
//!
//! Cargo builds each test file as its own crate and each uses a part of
//! this module, hence the `dead_code` allowance here and nowhere else.

#![allow(dead_code)]

pub mod env;
pub mod mounts;
pub mod netns;
pub mod privilege;
pub mod proxy;
pub mod registry;
pub mod run;
pub mod serve;
pub mod tar;
