//! Compiling a profile to BPF with libseccomp, once, and the cache of
//! compiled filters (in memory and in `ROOT/cache/seccomp/`).
//!
//! libseccomp takes about 10 ms of CPU to turn the default profile into
//! BPF, and libcontainer would do it in every job's init. skiff compiles it
//! once per capability set and keeps the result ([`Cache`]). The filter is
//! built with libseccomp's binary-tree optimisation, so a syscall costs a
//! few comparisons, not a walk down 400 names.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use oci_spec::runtime::{Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use sha2::{Digest, Sha256};

use super::profile::{default_profile, MaskedEqOrder};
use crate::error::{Error, Result};

/// A compiled filter: classic BPF instructions (8 bytes each), as
/// `seccomp(SECCOMP_SET_MODE_FILTER)` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bpf(Arc<[u8]>);

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
const BPF_MAX_INSNS: usize = 4096;

impl Bpf {
    /// Wrap raw instructions, checking their shape.
    pub fn from_bytes(b: &[u8]) -> Option<Bpf> {
        let ok = !b.is_empty() && b.len() & 7 == 0 && b.len() / 8 <= BPF_MAX_INSNS;
        ok.then(|| Bpf(Arc::from(b)))
    }

    /// The instructions.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.0.len() / 8
    }

    /// Whether it has no instructions (never true for a compiled filter).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn scmp_action(a: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    match a {
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        // Not used by skiff's profiles; refuse rather than guess.
        LinuxSeccompAction::ScmpActTrace | LinuxSeccompAction::ScmpActNotify => {
            ScmpAction::KillProcess
        }
    }
}

fn scmp_arch(a: Arch) -> Option<ScmpArch> {
    Some(match a {
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchNative => ScmpArch::Native,
        _ => return None,
    })
}

fn scmp_op(op: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // OCI order: value is the mask (filled in by the caller), valueTwo the datum.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

/// Compile a profile written in the OCI order ([`MaskedEqOrder::ValueIsMask`])
/// to BPF with libseccomp, as runc would. Names this libseccomp does not
/// know are skipped (so those syscalls get the default action).
pub fn compile(profile: &LinuxSeccomp) -> Result<Bpf> {
    let err = Error::SeccompCompile;
    let mut ctx = ScmpFilterContext::new(scmp_action(
        profile.default_action(),
        profile.default_errno_ret(),
    ))
    .map_err(err)?;
    // Only export: no_new_privs is the runtime's business.
    ctx.set_ctl_nnp(false).map_err(err)?;
    // A binary tree over syscall numbers (libseccomp 2.5+); older ones keep
    // the linear filter.
    let _ = ctx.set_ctl_optimize(2);
    for a in profile.architectures().iter().flatten() {
        if let Some(arch) = scmp_arch(*a) {
            if !ctx.is_arch_present(arch).map_err(err)? {
                ctx.add_arch(arch).map_err(err)?;
            }
        }
    }
    for rule in profile.syscalls().iter().flatten() {
        let action = scmp_action(rule.action(), rule.errno_ret());
        for name in rule.names() {
            let Ok(sc) = libseccomp::ScmpSyscall::from_name(name) else {
                continue;
            };
            match rule.args() {
                Some(args) if !args.is_empty() => {
                    let cmps: Vec<ScmpArgCompare> = args
                        .iter()
                        .map(|a| {
                            let (datum, two) = match a.op() {
                                // (arg & value) == valueTwo: the datum is valueTwo.
                                LinuxSeccompOperator::ScmpCmpMaskedEq => {
                                    (a.value_two().unwrap_or(0), Some(a.value()))
                                }
                                _ => (a.value(), a.value_two()),
                            };
                            ScmpArgCompare::new(a.index() as u32, scmp_op(a.op(), two), datum)
                        })
                        .collect();
                    ctx.add_rule_conditional(action, sc, &cmps).map_err(err)?;
                }
                _ => {
                    ctx.add_rule(action, sc).map_err(err)?;
                }
            }
        }
    }
    let mut out = crate::capture::capture_file("skiff-seccomp-bpf")?;
    ctx.export_bpf(&out).map_err(err)?;
    let mut buf = Vec::new();
    out.rewind()
        .and_then(|()| out.read_to_end(&mut buf))
        .map_err(|e| Error::io("read", "exported seccomp filter", e))?;
    Bpf::from_bytes(&buf).ok_or_else(|| {
        Error::io(
            "export",
            "seccomp filter",
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} bytes is not a filter", buf.len()),
            ),
        )
    })
}

/// Bumped when the compiler above changes what it emits.
const CACHE_FORMAT: &str = "skiff-seccomp-bpf-1";

/// Compiled filters, in memory and on disk (`DIR/<sha256>.bpf`), keyed by
/// the profile, the libseccomp version and [`CACHE_FORMAT`]. Files are
/// written atomically; one that does not look like a filter is rebuilt.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    by_caps: HashMap<Vec<Capability>, Bpf>,
}

impl Cache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache {
            dir: dir.into(),
            by_caps: HashMap::new(),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The compiled default profile for a job holding `caps`.
    pub fn default_filter(&mut self, caps: &[Capability]) -> Result<Bpf> {
        let mut key_caps = caps.to_vec();
        key_caps.sort_by_key(|c| c.to_string());
        key_caps.dedup();
        if let Some(b) = self.by_caps.get(&key_caps) {
            return Ok(b.clone());
        }
        let profile = default_profile(&key_caps, MaskedEqOrder::ValueIsMask)?;
        let bpf = self.filter(&profile)?;
        self.by_caps.insert(key_caps, bpf.clone());
        Ok(bpf)
    }

    /// The compiled form of any profile (OCI order).
    pub fn filter(&self, profile: &LinuxSeccomp) -> Result<Bpf> {
        let json = serde_json::to_vec(profile).map_err(Error::EncodeSeccompProfile)?;
        let version = libseccomp::ScmpVersion::current()
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
            .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(CACHE_FORMAT.as_bytes());
        h.update([0]);
        h.update(version.as_bytes());
        h.update([0]);
        h.update(&json);
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let path = self.dir.join(format!("{hex}.bpf"));
        if let Some(b) = std::fs::read(&path).ok().and_then(|d| Bpf::from_bytes(&d)) {
            return Ok(b);
        }
        let bpf = compile(profile)?;
        // A failed write only costs the next launcher a compile.
        let tmp = self.dir.join(format!(".{hex}.{}.tmp", std::process::id()));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&tmp, bpf.bytes()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), error = %e, "cannot cache the seccomp filter");
        }
        Ok(bpf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_compile_default_profile_to_bpf() {
        let p = default_profile(crate::oci::DEFAULT_CAPS, MaskedEqOrder::ValueIsMask).expect("ok");
        let bpf = compile(&p).expect("compile");
        assert!(
            bpf.len() > 100 && bpf.len() <= BPF_MAX_INSNS,
            "{}",
            bpf.len()
        );
        // Deterministic: the cache key stands for the bytes.
        assert_eq!(compile(&p).expect("again"), bpf);
    }

    #[test]
    fn test_cache_writes_then_reads_the_same_filter() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cache = Cache::new(dir.path().join("seccomp"));
        let a = cache.default_filter(crate::oci::DEFAULT_CAPS).expect("a");
        let files: Vec<_> = std::fs::read_dir(dir.path().join("seccomp"))
            .expect("dir")
            .flatten()
            .collect();
        assert_eq!(files.len(), 1);
        let mut fresh = Cache::new(dir.path().join("seccomp"));
        assert_eq!(
            fresh.default_filter(crate::oci::DEFAULT_CAPS).expect("b"),
            a
        );
        // A different capability set is a different filter.
        let c = fresh.default_filter(&[Capability::SysAdmin]).expect("c");
        assert_ne!(c, a);
        // A corrupt file is rebuilt.
        std::fs::write(files[0].path(), b"junk").expect("write");
        let mut again = Cache::new(dir.path().join("seccomp"));
        assert_eq!(
            again.default_filter(crate::oci::DEFAULT_CAPS).expect("d"),
            a
        );
    }
}
