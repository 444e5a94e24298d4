//! A job's seccomp filter, decided in one place: [`plan`] takes the job's
//! [`SeccompMode`], the [`Backend`] and the job's capabilities and returns
//! a [`SeccompPlan`]. The rest of the launch only follows it:
//! [`crate::oci::build_spec`] puts an [`SeccompPlan::InSpec`] profile in
//! `config.json`, and the libcontainer launch gives an
//! [`SeccompPlan::Executor`] filter to skiff's executor
//! ([`crate::exec::SkiffExecutor`]).
//!
//! | mode | backend | plan |
//! | --- | --- | --- |
//! | `unconfined` | any | [`SeccompPlan::None`] |
//! | `default` | libcontainer | [`SeccompPlan::Executor`]: BPF compiled once, cached |
//! | `default`, `no-new-privileges=false` | libcontainer | [`SeccompPlan::InSpec`], youki's way (see [`plan`]) |
//! | `default` | youki binary | [`SeccompPlan::InSpec`], masked comparisons youki's way |
//! | `default` | other binary (runc, crun) | [`SeccompPlan::InSpec`], the OCI way |
//!
//! The files:
//!
//! - `profile.rs`: the default profile, Docker's allowlist, as an OCI
//!   `LinuxSeccomp` ([`default_profile`]);
//! - `compile.rs`: the profile compiled to BPF ([`compile`]) and the cache
//!   of compiled filters in `ROOT/cache/seccomp/` ([`Cache`]);
//! - `install.rs`: loading the BPF in the job's init ([`install`]).

mod compile;
mod install;
mod profile;

use std::path::Path;

use oci_spec::runtime::{Capability, LinuxSeccomp};

use crate::backend::Backend;
use crate::error::Result;
use crate::job::SeccompMode;

pub use compile::{compile, Bpf, Cache};
pub use install::install;
pub use profile::{
    allowed_names, default_profile, MaskedEqOrder, ALLOWED, BY_CAPABILITY, CLONE_NAMESPACE_FLAGS,
};

/// What happens to a job's seccomp filter (see [`plan`]).
#[derive(Debug, Clone, PartialEq)]
pub enum SeccompPlan {
    /// No filter (`--security-opt seccomp=unconfined`).
    None,
    /// This profile goes into `linux.seccomp` of `config.json`; the runtime
    /// compiles and loads it.
    InSpec(LinuxSeccomp),
    /// Nothing in the spec: skiff's executor installs this precompiled
    /// filter just before `execve`.
    Executor(Bpf),
}

impl SeccompPlan {
    /// The profile for `config.json`, if the plan puts one there.
    pub fn spec_profile(&self) -> Option<&LinuxSeccomp> {
        match self {
            SeccompPlan::InSpec(profile) => Some(profile),
            SeccompPlan::None | SeccompPlan::Executor(_) => None,
        }
    }

    /// The filter for skiff's executor, if the plan gives it one.
    pub fn executor_filter(&self) -> Option<&Bpf> {
        match self {
            SeccompPlan::Executor(bpf) => Some(bpf),
            SeccompPlan::None | SeccompPlan::InSpec(_) => None,
        }
    }
}

/// The seccomp plan of a job in `mode`, launched by `backend`, holding
/// `caps`, with `no_new_privs` set or not (`no_new_privileges`). A compiled
/// filter comes from `cache` (compiled and stored there on a miss); only
/// [`Backend::Libcontainer`] needs one.
///
/// Without `no_new_privs`, loading a filter needs `CAP_SYS_ADMIN`, which a
/// job has lost by the time skiff's executor runs: libcontainer then gets
/// the profile in the spec and loads it before dropping capabilities.
pub fn plan(
    mode: SeccompMode,
    backend: &Backend,
    caps: &[Capability],
    no_new_privileges: bool,
    cache: &mut Cache,
) -> Result<SeccompPlan> {
    Ok(match (mode, backend) {
        (SeccompMode::Unconfined, _) => SeccompPlan::None,
        // libcontainer would compile the profile in every init (~10 ms of
        // CPU); skiff compiles it once and its executor installs it.
        (SeccompMode::Default, Backend::Libcontainer) if no_new_privileges => {
            SeccompPlan::Executor(cache.default_filter(caps)?)
        }
        (SeccompMode::Default, Backend::Libcontainer) => {
            SeccompPlan::InSpec(default_profile(caps, MaskedEqOrder::ValueTwoIsMask)?)
        }
        (SeccompMode::Default, Backend::Binary(runtime)) => {
            SeccompPlan::InSpec(default_profile(caps, masked_eq_order(runtime))?)
        }
    })
}

/// How the runtime binary at `runtime` reads masked comparisons: youki's
/// CLI is libcontainer, which reads them reversed.
fn masked_eq_order(runtime: &Path) -> MaskedEqOrder {
    let is_youki = runtime
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("youki"));
    if is_youki {
        MaskedEqOrder::ValueTwoIsMask
    } else {
        MaskedEqOrder::ValueIsMask
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn clone_arg(plan: &SeccompPlan) -> (u64, Option<u64>) {
        let profile = plan.spec_profile().expect("profile in the spec");
        let rules = profile.syscalls().as_ref().expect("syscalls");
        let clone = rules
            .iter()
            .find(|r| r.names().iter().any(|n| n == "clone"))
            .expect("clone rule");
        let arg = &clone.args().as_ref().expect("args")[0];
        (arg.value(), arg.value_two())
    }

    #[test]
    fn test_plan_unconfined_is_none_on_every_backend() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cache = Cache::new(dir.path().join("seccomp"));
        for backend in [
            Backend::Libcontainer,
            Backend::Binary(PathBuf::from("/usr/bin/runc")),
            Backend::Binary(PathBuf::from("/usr/local/bin/youki")),
        ] {
            let p = plan(
                SeccompMode::Unconfined,
                &backend,
                crate::oci::DEFAULT_CAPS,
                true,
                &mut cache,
            )
            .expect("plan");
            assert_eq!(p, SeccompPlan::None, "{backend:?}");
        }
        assert!(!dir.path().join("seccomp").exists());
    }

    /// The default mode's plan on libcontainer, with `no_new_privs` or not.
    fn libcontainer_plan(no_new_privs: bool, cache: &mut Cache) -> SeccompPlan {
        let caps = crate::oci::DEFAULT_CAPS;
        plan(
            SeccompMode::Default,
            &Backend::Libcontainer,
            caps,
            no_new_privs,
            cache,
        )
        .expect("plan")
    }

    #[test]
    fn test_plan_libcontainer_is_the_cached_filter() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cache = Cache::new(dir.path().join("seccomp"));
        let caps = crate::oci::DEFAULT_CAPS;
        let p = libcontainer_plan(true, &mut cache);
        assert!(p.spec_profile().is_none());
        let bpf = p.executor_filter().expect("executor filter");
        assert_eq!(*bpf, cache.default_filter(caps).expect("cached"));
    }

    #[test]
    fn test_plan_runtime_binaries_get_the_profile_their_way() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cache = Cache::new(dir.path().join("seccomp"));
        let caps = crate::oci::DEFAULT_CAPS;
        for runtime in ["/usr/bin/runc", "/usr/bin/crun", "/opt/my-runtime"] {
            let backend = Backend::Binary(PathBuf::from(runtime));
            let p = plan(SeccompMode::Default, &backend, caps, true, &mut cache).expect("plan");
            assert!(p.executor_filter().is_none());
            assert_eq!(clone_arg(&p), (CLONE_NAMESPACE_FLAGS, Some(0)), "{runtime}");
            let expected = default_profile(caps, MaskedEqOrder::ValueIsMask).expect("profile");
            assert_eq!(p, SeccompPlan::InSpec(expected), "{runtime}");
        }
        let youki = Backend::Binary(PathBuf::from("/root/.cargo/bin/youki"));
        let p = plan(SeccompMode::Default, &youki, caps, true, &mut cache).expect("plan");
        assert_eq!(clone_arg(&p), (0, Some(CLONE_NAMESPACE_FLAGS)));
        // Nothing was compiled for a runtime binary.
        assert!(!dir.path().join("seccomp").exists());
    }

    #[test]
    fn test_plan_without_no_new_privs_leaves_seccomp_to_libcontainer() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cache = Cache::new(dir.path().join("seccomp"));
        let caps = crate::oci::DEFAULT_CAPS;
        let p = libcontainer_plan(false, &mut cache);
        assert!(p.executor_filter().is_none());
        assert_eq!(clone_arg(&p), (0, Some(CLONE_NAMESPACE_FLAGS)));
        let runc = Backend::Binary(PathBuf::from("/usr/bin/runc"));
        let p = plan(SeccompMode::Default, &runc, caps, false, &mut cache).expect("plan");
        assert_eq!(clone_arg(&p), (CLONE_NAMESPACE_FLAGS, Some(0)));
        assert!(!dir.path().join("seccomp").exists());
    }
}
