//! skiff's runtime: turn a stored image plus a job request into a finished
//! container job, fast, and leave nothing behind.
//!
//! The life of a job ([`Runner::run`], phases timed in [`JobResult`]):
//!
//! 1. **lookup**: resolve the image in the store, read its config, take a lease;
//! 2. **rootfs**: create `ROOT/run/<job>/` (locked), mount a scratch tmpfs
//!    and the overlay rootfs ([`mounts`]), all inside the launcher's private
//!    mount namespace;
//! 3. **spec**: apply Docker's rules ([`image_process`], [`user`], read
//!    safely through [`safe_root`]) and build the OCI spec ([`oci`],
//!    [`seccomp`], [`cgroups::resources`]);
//! 4. **create** and **start** through a [`backend::Backend`]: libcontainer
//!    in-process, or an OCI runtime binary;
//! 5. **wait**: the single-threaded [`supervise`] loop streams output,
//!    forwards signals, enforces the timeout;
//! 6. **cleanup**: read accounting, kill and remove the cgroup, unmount, remove
//!    the state. [`gc`] does the same for jobs whose launcher died.
//!
//! Callers with threads launch through [`pool`] launcher processes. Only
//! the launch path lives here; see `docs/architecture.md` for the crates
//! that build on it.
//!
//! See `docs/runtime.md` and `docs/cgroups.md`.

pub mod backend;
pub mod capture;
pub mod cgroups;
pub mod confine;
pub mod error;
pub mod exec;
pub mod exit_code;
pub mod fd_passing;
pub mod fd_volume;
pub mod gc;
pub mod image_process;
pub mod job;
pub mod mountinfo;
pub mod mounts;
pub mod oci;
pub mod output_dir;
pub mod path_lookup;
pub mod pool;
pub mod readonly_exe;
pub mod run;
pub mod safe_root;
pub mod sandbox;
pub mod seccomp;
pub mod state;
pub mod supervise;
pub mod timing;
pub mod ulimit;
pub mod user;
pub mod warm;

pub use backend::Backend;
pub use error::{Error, Result};
pub use job::{JobSpec, Limits, NetworkMode, ScratchMode, SeccompMode, Volume};
pub use run::{JobIo, JobResult, Phases, Runner};
