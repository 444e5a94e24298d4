//! What a caller asks for: [`JobSpec`], the `docker run`-style overrides
//! applied on top of an image's configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
    /// `--tmpfs PATH`.
    pub tmpfs: Vec<String>,
    /// `--cap-add` (names with or without `CAP_`, or `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--security-opt seccomp=…`.
    pub seccomp: SeccompMode,
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
}

/// Docker's default grace between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for JobSpec {
    fn default() -> Self {
        JobSpec {
            name: String::new(),
            command: Vec::new(),
            entrypoint: None,
            env: Vec::new(),
            workdir: None,
            user: None,
            hostname: None,
            limits: Limits::default(),
            network: NetworkMode::default(),
            read_only: false,
            volumes: Vec::new(),
            tmpfs: Vec::new(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            seccomp: SeccompMode::default(),
            stdin: false,
            timeout: None,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            scratch: ScratchMode::default(),
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

/// Parse a docker-style byte size: `512`, `64k`, `256m`, `1g` (binary units).
pub fn parse_bytes(s: &str) -> Result<u64> {
    let bad = |detail: &str| Error::InvalidOption {
        what: "size",
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
    if !(n.is_finite() && n >= 0.0) {
        return Err(bad("must not be negative"));
    }
    Ok((n * mult as f64) as u64)
}

/// Parse a duration: `500ms`, `10s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || Error::InvalidOption {
        what: "duration",
        value: s.to_string(),
        detail: "expected e.g. 500ms, 10s, 1.5m or 1h".into(),
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
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(n * unit))
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
    fn test_limits_cpus_to_quota() {
        let l = Limits {
            cpus: Some(0.5),
            ..Default::default()
        };
        assert_eq!(l.cpu_quota_period(), Some((50_000, 100_000)));
    }
}
