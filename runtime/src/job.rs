//! What a caller asks for: [`JobSpec`], the `docker run`-style overrides
//! applied on top of an image's configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ulimit::Ulimit;

/// Network mode of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A new network namespace with only `lo`, brought up (the default).
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

impl std::str::FromStr for NetworkMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            _ => Err(Error::InvalidOption {
                what: "network",
                value: s.to_string(),
                detail: "expected none or host".into(),
            }),
        }
    }
}

/// Seccomp policy of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    /// skiff's default profile (blocks what Docker's default profile blocks).
    #[default]
    Default,
    /// No seccomp filter (`--security-opt seccomp=unconfined`).
    Unconfined,
}

/// Where a job's overlay upper and work directories live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScratchMode {
    /// A tmpfs private to the launcher (fast; charged to memory).
    #[default]
    Tmpfs,
    /// A directory under the job's state directory on the store's disk.
    Disk,
}

/// A host directory or file bind-mounted into the job (`-v HOST:CTR[:ro]`).
/// In JSON it is the same string as on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Volume {
    /// Absolute host path.
    pub host: PathBuf,
    /// Absolute path inside the job.
    pub target: String,
    /// Mount read-only.
    pub read_only: bool,
}

impl std::str::FromStr for Volume {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |detail: &str| Error::InvalidOption {
            what: "volume",
            value: s.to_string(),
            detail: detail.to_string(),
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (host, target, ro) = match parts.as_slice() {
            [h, t] => (*h, *t, false),
            [h, t, "ro"] => (*h, *t, true),
            [h, t, "rw"] => (*h, *t, false),
            _ => return Err(bad("expected HOST:CONTAINER[:ro|rw]")),
        };
        if !host.starts_with('/') {
            return Err(bad(
                "the host path must be absolute (named volumes are not supported)",
            ));
        }
        if !target.starts_with('/') || target == "/" {
            return Err(bad("the container path must be absolute and not /"));
        }
        Ok(Volume {
            host: PathBuf::from(host),
            target: target.to_string(),
            read_only: ro,
        })
    }
}

/// Resource limits. `None` means unlimited (inherit the caller's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Memory limit in bytes (`-m`).
    pub memory_bytes: Option<u64>,
    /// `--memory-swap`: memory plus swap, in bytes, or -1 for unlimited
    /// swap; needs `memory_bytes`. Unset: no swap (unlike Docker's 2×).
    pub memory_swap_bytes: Option<i64>,
    /// CPU quota in CPUs (`--cpus`), turned into quota/period.
    pub cpus: Option<f64>,
    /// Relative CPU weight as docker's `--cpu-shares` (2..262144).
    pub cpu_shares: Option<u64>,
    /// Maximum number of tasks (`--pids-limit`).
    #[serde(rename = "pids_limit")]
    pub pids: Option<i64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory_bytes.is_some()
            || self.memory_swap_bytes.is_some()
            || self.cpus.is_some()
            || self.cpu_shares.is_some()
            || self.pids.is_some()
    }

    /// `--cpus` as (quota µs, period µs), docker's way: period 100 ms.
    pub fn cpu_quota_period(&self) -> Option<(i64, u64)> {
        self.cpus.map(|c| ((c * 100_000.0).round() as i64, 100_000))
    }
}

/// A job request: the image's configuration is merged with these overrides,
/// with `docker run` semantics.
///
/// It is also the JSON body of a pool launcher request ([`crate::pool`]):
/// every field is optional there, limits are flat (`memory_bytes`, `cpus`,
/// `cpu_shares`, `pids_limit`), durations are `timeout_ms` and
/// `stop_timeout_ms`, volumes are `"HOST:CTR[:ro]"` strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSpec {
    /// Job name: unique among running jobs of one store; used for the state
    /// directory, the cgroup and the default hostname.
    pub name: String,
    /// Arguments after the image (replace the image's Cmd when non-empty).
    pub command: Vec<String>,
    /// `--entrypoint`: `Some(vec![])` clears the image's Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` overrides, in order.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`: `user`, `uid`, `user:group` or `uid:gid`.
    pub user: Option<String>,
    /// `--group-add`: more supplementary groups (gids, or names in the
    /// image's `/etc/group`).
    pub group_add: Vec<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// Resource limits.
    #[serde(flatten)]
    pub limits: Limits,
    /// `--network`.
    pub network: NetworkMode,
    /// `--read-only`.
    pub read_only: bool,
    /// `-v`.
    pub volumes: Vec<Volume>,
    /// `--tmpfs PATH[:OPTIONS]`, Docker's syntax (see [`TmpfsMount`]).
    pub tmpfs: Vec<String>,
    /// `--ulimit NAME=SOFT[:HARD]`, Docker's syntax (see
    /// [`Ulimit`]). Other rlimits are inherited from the caller.
    pub ulimits: Vec<String>,
    /// `--cap-add` (names with or without `CAP_`, or `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--security-opt seccomp=…`.
    pub seccomp: SeccompMode,
    /// `--security-opt no-new-privileges[=true|false]`: set the job's
    /// `no_new_privs` bit, so `execve` of a setuid or file-capability
    /// binary gains nothing. On by default, unlike Docker; a request
    /// without the field keeps it on.
    #[serde(default = "default_true")]
    pub no_new_privileges: bool,
    /// `-i`: connect stdin.
    pub stdin: bool,
    /// `--timeout`.
    #[serde(rename = "timeout_ms", with = "opt_millis")]
    pub timeout: Option<Duration>,
    /// `--stop-timeout`: grace between SIGTERM and SIGKILL (default 10 s, as Docker).
    #[serde(rename = "stop_timeout_ms", with = "millis")]
    pub stop_timeout: Duration,
    /// Where the overlay scratch lives.
    pub scratch: ScratchMode,
    /// `--scratch-size`: the size of the scratch tmpfs, which caps the
    /// job's writable layer (default: the memory limit, else
    /// [`DEFAULT_SCRATCH_BYTES`]).
    #[serde(rename = "scratch_size_bytes", skip_serializing_if = "Option::is_none")]
    pub scratch_size: Option<u64>,
}

/// The scratch tmpfs size when neither `--scratch-size` nor a memory limit
/// is given: a job's writable layer never grows past it (ENOSPC), so one
/// job cannot take the host's memory by writing files.
pub const DEFAULT_SCRATCH_BYTES: u64 = 1 << 30;

/// The smallest scratch tmpfs (the bundle and state live there too).
pub const MIN_SCRATCH_BYTES: u64 = 1 << 20;

impl JobSpec {
    /// The size of this job's scratch tmpfs, in bytes.
    pub fn scratch_bytes(&self) -> u64 {
        self.scratch_size
            .or(self.limits.memory_bytes)
            .unwrap_or(DEFAULT_SCRATCH_BYTES)
            .max(MIN_SCRATCH_BYTES)
    }
}

/// Docker's default grace between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn default_true() -> bool {
    true
}

impl Default for JobSpec {
    fn default() -> Self {
        JobSpec {
            name: String::new(),
            command: Vec::new(),
            entrypoint: None,
            env: Vec::new(),
            workdir: None,
            user: None,
            group_add: Vec::new(),
            hostname: None,
            limits: Limits::default(),
            network: NetworkMode::default(),
            read_only: false,
            volumes: Vec::new(),
            tmpfs: Vec::new(),
            ulimits: Vec::new(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            seccomp: SeccompMode::default(),
            no_new_privileges: true,
            stdin: false,
            timeout: None,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            scratch: ScratchMode::default(),
            scratch_size: None,
        }
    }
}

impl std::fmt::Display for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host.display(), self.target)?;
        if self.read_only {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}

impl From<Volume> for String {
    fn from(v: Volume) -> String {
        v.to_string()
    }
}

impl TryFrom<String> for Volume {
    type Error = Error;
    fn try_from(s: String) -> Result<Volume> {
        s.parse()
    }
}

/// Durations as whole milliseconds in JSON.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Optional durations as whole milliseconds in JSON.
mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// Which interface a job came through, so that a validation error names the
/// command-line flag or the launcher request's JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `skiff run` flags.
    Cli,
    /// A launcher request's JSON fields ([`crate::pool`]).
    Request,
}

impl Via {
    /// The name of a field: `(flag, json key)` picked by interface.
    fn name(self, (flag, key): (&'static str, &'static str)) -> &'static str {
        match self {
            Via::Cli => flag,
            Via::Request => key,
        }
    }
}

const F_MEMORY: (&str, &str) = ("--memory", "memory_bytes");
const F_SWAP: (&str, &str) = ("--memory-swap", "memory_swap_bytes");
const F_CPUS: (&str, &str) = ("--cpus", "cpus");
const F_SHARES: (&str, &str) = ("--cpu-shares", "cpu_shares");
const F_PIDS: (&str, &str) = ("--pids-limit", "pids_limit");
const F_ENV: (&str, &str) = ("--env", "env");
const F_HOSTNAME: (&str, &str) = ("--hostname", "hostname");
const F_VOLUME: (&str, &str) = ("--volume", "volumes");
const F_TMPFS: (&str, &str) = ("--tmpfs", "tmpfs");
const F_ULIMIT: (&str, &str) = ("--ulimit", "ulimits");
const F_SCRATCH_SIZE: (&str, &str) = ("--scratch-size", "scratch_size_bytes");
const F_TIMEOUT: (&str, &str) = ("--timeout", "timeout_ms");
const F_STOP: (&str, &str) = ("--stop-timeout", "stop_timeout_ms");
const F_COMMAND: (&str, &str) = ("COMMAND", "command");
const F_ENTRYPOINT: (&str, &str) = ("--entrypoint", "entrypoint");

impl JobSpec {
    /// Check every value against the ranges docker accepts, before anything
    /// is launched; errors name the flag or field (`via`) and the range.
    /// Host facts are read here: the CPU count and whether volume sources exist.
    pub fn validate(&self, via: Via) -> Result<()> {
        self.validate_on(via, host_cpus())
    }

    /// [`JobSpec::validate`] for a host with `cpus` CPUs.
    pub fn validate_on(&self, via: Via, cpus: usize) -> Result<()> {
        let bad = |field, value: String, detail: String| Error::InvalidOption {
            what: via.name(field),
            value,
            detail,
        };
        let l = &self.limits;
        if let Some(m) = l.memory_bytes {
            if !(MIN_MEMORY_BYTES..=MAX_BYTES).contains(&m) {
                return Err(bad(
                    F_MEMORY,
                    m.to_string(),
                    format!(
                        "minimum memory limit allowed is 6MB \
                         (accepted: {MIN_MEMORY_BYTES} to {MAX_BYTES} bytes)"
                    ),
                ));
            }
        }
        if let Some(swap) = l.memory_swap_bytes {
            // Docker's rules and words.
            match l.memory_bytes {
                None => {
                    return Err(bad(
                        F_SWAP,
                        swap.to_string(),
                        "you should always set the memory limit when using the memoryswap                          limit (-m)"
                            .into(),
                    ))
                }
                Some(m) if swap != -1 && (swap < 0 || (swap as u64) < m) => {
                    return Err(bad(
                        F_SWAP,
                        swap.to_string(),
                        format!(
                            "minimum memoryswap limit should be larger than the memory limit                              ({m} bytes), or -1 for unlimited swap"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(c) = l.cpus {
            // Docker: 0 means no limit; otherwise 0.01 to the host's CPUs.
            if c.is_nan() || (c != 0.0 && !(MIN_CPUS..=cpus as f64).contains(&c)) {
                return Err(bad(
                    F_CPUS,
                    c.to_string(),
                    format!(
                        "range of CPUs is from {MIN_CPUS:.2} to {cpus}.00, as there are only \
                         {cpus} CPUs available (0: no limit)"
                    ),
                ));
            }
        }
        if let Some(s) = l.cpu_shares {
            if !CPU_SHARES_RANGE.contains(&s) {
                return Err(bad(
                    F_SHARES,
                    s.to_string(),
                    format!(
                        "must be from {} to {}",
                        CPU_SHARES_RANGE.start(),
                        CPU_SHARES_RANGE.end()
                    ),
                ));
            }
        }
        if let Some(p) = l.pids {
            // Docker: 0 and -1 mean no limit.
            if p < -1 || (1..MIN_PIDS_LIMIT).contains(&p) {
                return Err(bad(
                    F_PIDS,
                    p.to_string(),
                    format!(
                        "must be at least {MIN_PIDS_LIMIT} (the container's setup needs \
                         {MIN_PIDS_LIMIT} tasks), or 0 or -1 for no limit"
                    ),
                ));
            }
        }
        for e in &self.env {
            let name = e.split('=').next().unwrap_or_default();
            if name.is_empty() || !e.contains('=') || e.contains('\0') {
                return Err(bad(
                    F_ENV,
                    e.clone(),
                    format!("invalid environment variable: {e} (expected NAME=VALUE)"),
                ));
            }
        }
        for (field, args) in [
            (F_COMMAND, Some(&self.command)),
            (F_ENTRYPOINT, self.entrypoint.as_ref()),
        ] {
            if let Some(a) = args.into_iter().flatten().find(|a| a.contains('\0')) {
                return Err(bad(field, a.clone(), "contains a NUL byte".into()));
            }
        }
        if let Some(h) = &self.hostname {
            if h.is_empty() || h.len() > MAX_HOSTNAME_LEN || h.contains('\0') {
                return Err(bad(
                    F_HOSTNAME,
                    h.clone(),
                    format!(
                        "must be 1 to {MAX_HOSTNAME_LEN} bytes long (this one is {})",
                        h.len()
                    ),
                ));
            }
        }
        for v in &self.volumes {
            match std::fs::metadata(&v.host) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(bad(
                        F_VOLUME,
                        v.to_string(),
                        format!("the source path {} does not exist", v.host.display()),
                    ))
                }
                Err(e) => {
                    return Err(bad(
                        F_VOLUME,
                        v.to_string(),
                        format!("cannot reach the source path {}: {e}", v.host.display()),
                    ))
                }
            }
        }
        if let Some(n) = self.scratch_size {
            if !(MIN_SCRATCH_BYTES..=MAX_BYTES).contains(&n) {
                return Err(bad(
                    F_SCRATCH_SIZE,
                    n.to_string(),
                    format!("accepted: {MIN_SCRATCH_BYTES} to {MAX_BYTES} bytes"),
                ));
            }
        }
        for t in &self.tmpfs {
            TmpfsMount::parse(t).map_err(|detail| bad(F_TMPFS, t.clone(), detail))?;
        }
        for text in &self.ulimits {
            let u = Ulimit::parse(text).map_err(|detail| bad(F_ULIMIT, text.clone(), detail))?;
            u.check_within(u.callers().1)
                .map_err(|detail| bad(F_ULIMIT, text.clone(), detail))?;
        }
        for (field, d) in [(F_TIMEOUT, self.timeout), (F_STOP, Some(self.stop_timeout))] {
            if let Some(d) = d.filter(|d| *d > MAX_DURATION) {
                return Err(bad(
                    field,
                    format!("{}ms", d.as_millis()),
                    format!("must be from 0 to {}h", MAX_DURATION.as_secs() / 3600),
                ));
            }
        }
        Ok(())
    }

    /// The JSON field names of a job (limits flattened), for checking a
    /// request's keys: taken from the serialised default, so it cannot drift.
    pub fn json_fields() -> Vec<String> {
        // Fields skipped when unset must be set here to be listed.
        let all = JobSpec {
            scratch_size: Some(0),
            ..JobSpec::default()
        };
        match serde_json::to_value(all) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// A `--tmpfs PATH[:OPTIONS]` mount, parsed and checked (Docker's syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    /// Absolute path inside the job.
    pub target: String,
    /// Mount options for the OCI spec: Docker's defaults (`noexec`,
    /// `nosuid`, `nodev`, `mode=1777`) overridden by the given ones.
    pub options: Vec<String>,
}

/// Flag options `--tmpfs` accepts, each with the default it overrides.
const TMPFS_FLAGS: &[(&str, &str)] = &[
    ("exec", "noexec"),
    ("noexec", "noexec"),
    ("suid", "nosuid"),
    ("nosuid", "nosuid"),
    ("dev", "nodev"),
    ("nodev", "nodev"),
    ("ro", "rw"),
    ("rw", "rw"),
    ("atime", "atime"),
    ("noatime", "atime"),
    ("relatime", "atime"),
    ("strictatime", "atime"),
];

/// `KEY=VALUE` options `--tmpfs` accepts.
const TMPFS_DATA: &[&str] = &["size", "mode", "uid", "gid", "nr_inodes"];

impl TmpfsMount {
    /// Parse `PATH[:OPT,OPT...]`; the error is the detail of the problem.
    pub fn parse(s: &str) -> std::result::Result<TmpfsMount, String> {
        let (path, opts) = match s.split_once(':') {
            Some((p, o)) => (p, Some(o)),
            None => (s, None),
        };
        if !path.starts_with('/') {
            return Err(format!("mount path {path:?} must be absolute"));
        }
        if path.trim_end_matches('/').is_empty() {
            return Err("cannot mount a tmpfs over /".into());
        }
        if path.contains('\0') {
            return Err("the path contains a NUL byte".into());
        }
        // (default group, option): a later option of a group replaces an earlier one.
        let mut chosen: Vec<(&str, String)> = vec![
            ("noexec", "noexec".into()),
            ("nosuid", "nosuid".into()),
            ("nodev", "nodev".into()),
            ("mode", "mode=1777".into()),
        ];
        let mut set = |group: &'static str, opt: String| {
            chosen.retain(|(g, _)| *g != group);
            chosen.push((group, opt));
        };
        for opt in opts.into_iter().flat_map(|o| o.split(',')) {
            if let Some((_, group)) = TMPFS_FLAGS.iter().find(|(f, _)| *f == opt) {
                set(group, opt.to_string());
                continue;
            }
            let Some((key, value)) = opt.split_once('=') else {
                return Err(unknown_tmpfs_option(opt));
            };
            let Some(key) = TMPFS_DATA.iter().find(|k| **k == key) else {
                return Err(unknown_tmpfs_option(opt));
            };
            let value = match *key {
                "size" => parse_size("tmpfs size", value)
                    .map_err(|e| e.to_string())?
                    .to_string(),
                "mode" => match u32::from_str_radix(value, 8) {
                    Ok(m) if m <= 0o7777 => format!("{m:o}"),
                    _ => return Err(format!("mode {value:?} must be octal, 0 to 7777")),
                },
                "uid" | "gid" => value
                    .parse::<u32>()
                    .map_err(|_| format!("{key} {value:?} must be a number"))?
                    .to_string(),
                _ => parse_size("tmpfs nr_inodes", value)
                    .map_err(|e| e.to_string())?
                    .to_string(),
            };
            set(key, format!("{key}={value}"));
        }
        Ok(TmpfsMount {
            target: path.to_string(),
            options: chosen.into_iter().map(|(_, o)| o).collect(),
        })
    }
}

fn unknown_tmpfs_option(opt: &str) -> String {
    let flags: Vec<&str> = TMPFS_FLAGS.iter().map(|(f, _)| *f).collect();
    format!(
        "invalid tmpfs option {opt:?} (accepted: {}, {}=…)",
        flags.join(", "),
        TMPFS_DATA.join("=…, ")
    )
}

/// The largest byte size a limit may hold: the kernel's limits are `i64`.
pub const MAX_BYTES: u64 = i64::MAX as u64;

/// Docker's minimum memory limit (`-m`): 6 MiB.
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;

/// The longest `--timeout` or `--stop-timeout`: 365 days.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The smallest `--pids-limit` a job can start with: libcontainer's
/// intermediate process and the job's init run at the same time.
pub const MIN_PIDS_LIMIT: i64 = 2;

/// The smallest `--cpus` (docker's: one hundredth of a CPU, a 1 ms quota).
pub const MIN_CPUS: f64 = 0.01;

/// `--cpu-shares` range (the kernel's, as docker documents it).
pub const CPU_SHARES_RANGE: std::ops::RangeInclusive<u64> = 2..=262_144;

/// The longest hostname the kernel accepts (`HOST_NAME_MAX`).
pub const MAX_HOSTNAME_LEN: usize = 64;

/// Parse a docker-style byte size: `512`, `64k`, `256m`, `1g` (binary units).
pub fn parse_bytes(s: &str) -> Result<u64> {
    parse_size("size", s)
}

/// [`parse_bytes`], with errors naming `what` (e.g. `--memory`). Sizes above
/// [`MAX_BYTES`], negative, NaN or infinite ones are refused.
pub fn parse_size(what: &'static str, s: &str) -> Result<u64> {
    let bad = |detail: &str| Error::InvalidOption {
        what,
        value: s.to_string(),
        detail: detail.to_string(),
    };
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| bad("expected a number with an optional k, m, g or t suffix"))?;
    if n.is_nan() || n < 0.0 {
        return Err(bad("must be a number from 0 up"));
    }
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes > MAX_BYTES as f64 {
        return Err(bad(&format!("too large: at most {MAX_BYTES} bytes")));
    }
    Ok(bytes as u64)
}

/// Parse a duration: `500ms`, `10s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    parse_duration_for("duration", s)
}

/// [`parse_duration`], with errors naming `what` (e.g. `--timeout`).
/// Durations above [`MAX_DURATION`] are refused.
pub fn parse_duration_for(what: &'static str, s: &str) -> Result<Duration> {
    let bad = |detail: String| Error::InvalidOption {
        what,
        value: s.to_string(),
        detail,
    };
    let t = s.trim();
    let (num, unit) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let n: f64 = num
        .parse()
        .map_err(|_| bad("expected e.g. 500ms, 10s, 1.5m or 1h".into()))?;
    let range = || format!("must be from 0 to {}h", MAX_DURATION.as_secs() / 3600);
    if n.is_nan() || n < 0.0 {
        return Err(bad(range()));
    }
    match Duration::try_from_secs_f64(n * unit) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(bad(range())),
    }
}

/// Parse `--cpus`: a number of CPUs (range checked by [`JobSpec::validate`]).
pub fn parse_cpus(s: &str) -> Result<f64> {
    s.trim().parse().map_err(|_| Error::InvalidOption {
        what: "--cpus",
        value: s.to_string(),
        detail: "expected a number of CPUs, e.g. 0.5".into(),
    })
}

/// The CPUs this process may run on (`sched_getaffinity`), as docker counts
/// them for `--cpus`.
pub fn host_cpus() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|i| set.is_set(*i).unwrap_or(false))
                .count()
        })
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_bytes_units() {
        assert_eq!(parse_bytes("512").expect("ok"), 512);
        assert_eq!(parse_bytes("64k").expect("ok"), 65536);
        assert_eq!(parse_bytes("32m").expect("ok"), 32 << 20);
        assert_eq!(parse_bytes("1G").expect("ok"), 1 << 30);
        assert_eq!(parse_bytes("1gb").expect("ok"), 1 << 30);
        assert!(parse_bytes("x").is_err());
    }

    #[test]
    fn test_parse_duration_units() {
        assert_eq!(
            parse_duration("500ms").expect("ok"),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("2").expect("ok"), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5m").expect("ok"), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn test_volume_parse() {
        let v: Volume = "/tmp/x:/data:ro".parse().expect("ok");
        assert!(v.read_only);
        assert_eq!(v.target, "/data");
        assert!("rel:/data".parse::<Volume>().is_err());
        assert!("/a:/".parse::<Volume>().is_err());
    }

    #[test]
    fn test_jobspec_json_round_trip_and_defaults() {
        let job: JobSpec = serde_json::from_str(
            r#"{"command":["true"],"pids_limit":16,"memory_bytes":1024,"timeout_ms":1500,
                "volumes":["/tmp/x:/data:ro"],"network":"host","seccomp":"unconfined"}"#,
        )
        .expect("parse");
        assert_eq!(job.limits.pids, Some(16));
        assert_eq!(job.limits.memory_bytes, Some(1024));
        assert_eq!(job.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(job.stop_timeout, DEFAULT_STOP_TIMEOUT);
        assert!(job.volumes[0].read_only);
        assert_eq!(job.network, NetworkMode::Host);
        assert_eq!(job.seccomp, SeccompMode::Unconfined);
        let back: JobSpec =
            serde_json::from_str(&serde_json::to_string(&job).expect("ser")).expect("de");
        assert_eq!(back, job);
        assert!(serde_json::from_str::<JobSpec>(r#"{"volumes":["rel:/x"]}"#).is_err());
    }

    #[test]
    fn test_jobspec_no_new_privileges_defaults_on() {
        // Older requests have no field: no_new_privs stays on.
        let job: JobSpec = serde_json::from_str(r#"{"command":["true"]}"#).expect("parse");
        assert!(job.no_new_privileges);
        assert!(JobSpec::default().no_new_privileges);
        let job: JobSpec = serde_json::from_str(r#"{"no_new_privileges":false}"#).expect("parse");
        assert!(!job.no_new_privileges);
        let json = serde_json::to_value(&job).expect("ser");
        assert_eq!(json["no_new_privileges"], serde_json::json!(false));
    }

    #[test]
    fn test_limits_cpus_to_quota() {
        let l = Limits {
            cpus: Some(0.5),
            ..Default::default()
        };
        assert_eq!(l.cpu_quota_period(), Some((50_000, 100_000)));
    }

    #[test]
    fn test_parse_duration_out_of_range_is_an_error_not_a_panic() {
        for s in ["1e20", "1e20s", "1e300ms", "9999999h", "inf", "NaN", "-1"] {
            let e = parse_duration_for("--timeout", s).expect_err(s).to_string();
            assert!(e.contains("--timeout") && e.contains("8760h"), "{s}: {e}");
        }
        assert_eq!(
            parse_duration_for("--timeout", "8760h").expect("max"),
            MAX_DURATION
        );
    }

    #[test]
    fn test_parse_size_overflow_refused() {
        for s in ["99999999t", "1e30", "inf", "NaN", "-1m"] {
            let e = parse_size("--memory", s).expect_err(s).to_string();
            assert!(e.contains("--memory"), "{s}: {e}");
        }
    }

    fn job_with(f: impl FnOnce(&mut JobSpec)) -> JobSpec {
        let mut j = JobSpec::default();
        f(&mut j);
        j
    }

    fn refused(j: &JobSpec, via: Via, needle: &str) {
        let e = j.validate_on(via, 2).expect_err(needle).to_string();
        assert!(e.contains(needle), "expected {needle:?} in {e}");
    }

    #[test]
    fn test_jobspec_validate_limits_like_docker() {
        assert!(JobSpec::default().validate_on(Via::Cli, 2).is_ok());
        for c in [-1.0, f64::NAN, 1000.0, 0.001, 2.01] {
            refused(&job_with(|j| j.limits.cpus = Some(c)), Via::Cli, "--cpus");
        }
        refused(
            &job_with(|j| j.limits.cpus = Some(1000.0)),
            Via::Request,
            "from 0.01 to 2.00, as there are only 2 CPUs available",
        );
        for ok in [0.0, 0.01, 2.0] {
            assert!(job_with(|j| j.limits.cpus = Some(ok))
                .validate_on(Via::Cli, 2)
                .is_ok());
        }
        refused(
            &job_with(|j| j.limits.memory_bytes = Some(1024)),
            Via::Cli,
            "minimum memory limit allowed is 6MB",
        );
        refused(
            &job_with(|j| j.limits.memory_bytes = Some(u64::MAX)),
            Via::Request,
            "memory_bytes",
        );
        for p in [1, -2] {
            refused(
                &job_with(|j| j.limits.pids = Some(p)),
                Via::Cli,
                "--pids-limit",
            );
        }
        for ok in [-1, 0, 2, 64] {
            assert!(job_with(|j| j.limits.pids = Some(ok))
                .validate_on(Via::Cli, 2)
                .is_ok());
        }
        refused(
            &job_with(|j| j.limits.cpu_shares = Some(1)),
            Via::Request,
            "cpu_shares",
        );
        refused(
            &job_with(|j| j.timeout = Some(Duration::from_millis(u64::MAX))),
            Via::Request,
            "timeout_ms",
        );
        refused(
            &job_with(|j| j.stop_timeout = Duration::from_millis(u64::MAX)),
            Via::Cli,
            "--stop-timeout",
        );
    }

    #[test]
    fn test_jobspec_validate_env_hostname_volume_tmpfs() {
        refused(
            &job_with(|j| j.env = vec!["=x".into()]),
            Via::Cli,
            "invalid environment variable: =x",
        );
        refused(
            &job_with(|j| j.hostname = Some("a".repeat(65))),
            Via::Cli,
            "--hostname",
        );
        assert!(job_with(|j| j.hostname = Some("a".repeat(64)))
            .validate_on(Via::Cli, 2)
            .is_ok());
        refused(
            &job_with(|j| j.volumes = vec!["/nonexistent-skiff-src:/x".parse().expect("v")]),
            Via::Cli,
            "the source path /nonexistent-skiff-src does not exist",
        );
        refused(
            &job_with(|j| j.tmpfs = vec!["relative".into()]),
            Via::Cli,
            "must be absolute",
        );
        refused(
            &job_with(|j| j.tmpfs = vec!["/x:bogus".into()]),
            Via::Request,
            "invalid tmpfs option \"bogus\"",
        );
        refused(
            &job_with(|j| j.command = vec!["a\0b".into()]),
            Via::Request,
            "command",
        );
    }

    #[test]
    fn test_tmpfs_mount_options() {
        let t = TmpfsMount::parse("/x").expect("plain");
        assert_eq!(t.target, "/x");
        assert_eq!(t.options, ["noexec", "nosuid", "nodev", "mode=1777"]);
        let t = TmpfsMount::parse("/x:size=1m,mode=700,exec,uid=5,gid=6,ro").expect("opts");
        assert_eq!(
            t.options,
            [
                "nosuid",
                "nodev",
                "size=1048576",
                "mode=700",
                "exec",
                "uid=5",
                "gid=6",
                "ro"
            ]
        );
        for bad in [
            "x",
            "/",
            "/x:size=big",
            "/x:mode=9",
            "/x:uid=-1",
            "/x:bogus",
            "/x:foo=1",
        ] {
            assert!(TmpfsMount::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_jobspec_json_fields_lists_flattened_limits() {
        let f = JobSpec::json_fields();
        for k in [
            "pids_limit",
            "memory_bytes",
            "cpus",
            "timeout_ms",
            "tmpfs",
            "name",
        ] {
            assert!(f.iter().any(|x| x == k), "{k} missing from {f:?}");
        }
        assert!(!f.iter().any(|x| x == "limits"));
    }
}
