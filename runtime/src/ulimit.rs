//! `--ulimit NAME=SOFT[:HARD]`, Docker's syntax and names. A job inherits
//! its caller's rlimits; a `--ulimit` sets one of them, never above the
//! caller's hard limit (raising a hard limit needs `CAP_SYS_RESOURCE`, and a
//! job must not get more than whoever started it).

use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

/// `RLIM_INFINITY`: Docker writes it as `-1`; `unlimited` is accepted too.
pub const UNLIMITED: u64 = u64::MAX;

/// Docker's `--ulimit` names (`as` is refused by Docker too), with the
/// resource each sets.
const NAMES: &[(&str, PosixRlimitType, libc::__rlimit_resource_t)] = &[
    ("core", PosixRlimitType::RlimitCore, libc::RLIMIT_CORE),
    ("cpu", PosixRlimitType::RlimitCpu, libc::RLIMIT_CPU),
    ("data", PosixRlimitType::RlimitData, libc::RLIMIT_DATA),
    ("fsize", PosixRlimitType::RlimitFsize, libc::RLIMIT_FSIZE),
    ("locks", PosixRlimitType::RlimitLocks, libc::RLIMIT_LOCKS),
    (
        "memlock",
        PosixRlimitType::RlimitMemlock,
        libc::RLIMIT_MEMLOCK,
    ),
    (
        "msgqueue",
        PosixRlimitType::RlimitMsgqueue,
        libc::RLIMIT_MSGQUEUE,
    ),
    ("nice", PosixRlimitType::RlimitNice, libc::RLIMIT_NICE),
    ("nofile", PosixRlimitType::RlimitNofile, libc::RLIMIT_NOFILE),
    ("nproc", PosixRlimitType::RlimitNproc, libc::RLIMIT_NPROC),
    ("rss", PosixRlimitType::RlimitRss, libc::RLIMIT_RSS),
    ("rtprio", PosixRlimitType::RlimitRtprio, libc::RLIMIT_RTPRIO),
    ("rttime", PosixRlimitType::RlimitRttime, libc::RLIMIT_RTTIME),
    (
        "sigpending",
        PosixRlimitType::RlimitSigpending,
        libc::RLIMIT_SIGPENDING,
    ),
    ("stack", PosixRlimitType::RlimitStack, libc::RLIMIT_STACK),
];

/// One parsed `--ulimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    /// Index into [`NAMES`].
    which: usize,
    /// Soft limit ([`UNLIMITED`] for none).
    pub soft: u64,
    /// Hard limit ([`UNLIMITED`] for none).
    pub hard: u64,
}

fn parse_value(name: &str, v: &str) -> Result<u64, String> {
    match v {
        "-1" | "unlimited" => Ok(UNLIMITED),
        _ => v
            .parse::<u64>()
            .map_err(|_| format!("invalid {name} value {v:?}: expected a number, -1 or unlimited")),
    }
}

fn show(v: u64) -> String {
    if v == UNLIMITED {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

impl Ulimit {
    /// Parse `NAME=SOFT[:HARD]`; without `HARD`, the hard limit is `SOFT`.
    pub fn parse(s: &str) -> Result<Ulimit, String> {
        let (name, values) = s
            .split_once('=')
            .ok_or_else(|| "expected NAME=SOFT[:HARD], e.g. nofile=1024:2048".to_string())?;
        let which = NAMES.iter().position(|(n, ..)| *n == name).ok_or_else(|| {
            let names: Vec<&str> = NAMES.iter().map(|(n, ..)| *n).collect();
            format!(
                "invalid ulimit type {name:?} (accepted: {})",
                names.join(", ")
            )
        })?;
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (parse_value(name, s)?, parse_value(name, h)?),
            None => {
                let v = parse_value(name, values)?;
                (v, v)
            }
        };
        if soft > hard {
            return Err(format!(
                "the soft limit must not be above the hard limit: {} > {}",
                show(soft),
                show(hard)
            ));
        }
        Ok(Ulimit { which, soft, hard })
    }

    /// Docker's name (`nofile`).
    pub fn name(&self) -> &'static str {
        NAMES[self.which].0
    }

    /// The caller's own (soft, hard) limit of this resource.
    pub fn callers(&self) -> (u64, u64) {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own; a valid resource.
        if unsafe { libc::getrlimit(NAMES[self.which].2, &mut r) } != 0 {
            return (UNLIMITED, UNLIMITED);
        }
        (r.rlim_cur, r.rlim_max)
    }

    /// Refuse a hard limit above `caller_hard`, naming both.
    pub fn check_within(&self, caller_hard: u64) -> Result<(), String> {
        if self.hard > caller_hard {
            return Err(format!(
                "the hard limit {} is above skiff's own hard {} limit ({}): a job never \
                 gets more than its caller (raise skiff's limit, e.g. LimitNOFILE= in its \
                 systemd unit, or ask for less)",
                show(self.hard),
                self.name(),
                show(caller_hard)
            ));
        }
        Ok(())
    }

    /// The OCI `process.rlimits` entry.
    pub fn to_oci(&self) -> Result<PosixRlimit, oci_spec::OciSpecError> {
        PosixRlimitBuilder::default()
            .typ(NAMES[self.which].1)
            .soft(self.soft)
            .hard(self.hard)
            .build()
    }
}

/// Parse a job's `--ulimit` list: later entries for one name win, as in
/// Docker. Errors name the entry.
pub fn parse_all(list: &[String]) -> Result<Vec<Ulimit>, (String, String)> {
    let mut out: Vec<Ulimit> = Vec::new();
    for s in list {
        let u = Ulimit::parse(s).map_err(|e| (s.clone(), e))?;
        out.retain(|o| o.which != u.which);
        out.push(u);
    }
    Ok(out)
}

/// The rlimits a job's spec lists: its `--ulimit`s, plus the caller's own
/// `nofile` when none is given. Every other rlimit is simply inherited;
/// `nofile` is written out because a Go runtime binary (runc) raises its
/// own soft limit to the hard one at start and would pass that on.
pub fn for_job(list: &[String]) -> Result<Vec<Ulimit>, (String, String)> {
    let mut out = parse_all(list)?;
    let nofile = NAMES
        .iter()
        .position(|(n, ..)| *n == "nofile")
        .unwrap_or_default();
    if !out.iter().any(|u| u.which == nofile) {
        let mut u = Ulimit {
            which: nofile,
            soft: 0,
            hard: 0,
        };
        (u.soft, u.hard) = u.callers();
        out.push(u);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_docker_syntax() {
        let u = Ulimit::parse("nofile=512:1024").expect("ok");
        assert_eq!((u.name(), u.soft, u.hard), ("nofile", 512, 1024));
        let u = Ulimit::parse("nproc=100").expect("ok");
        assert_eq!((u.soft, u.hard), (100, 100));
        let u = Ulimit::parse("core=-1").expect("ok");
        assert_eq!((u.soft, u.hard), (UNLIMITED, UNLIMITED));
        let u = Ulimit::parse("stack=8192:unlimited").expect("ok");
        assert_eq!((u.soft, u.hard), (8192, UNLIMITED));
        for (bad, says) in [
            ("nofile", "expected NAME=SOFT[:HARD]"),
            ("as=1", "invalid ulimit type \"as\""),
            ("nofile=x", "invalid nofile value \"x\""),
            (
                "nofile=2048:1024",
                "soft limit must not be above the hard limit: 2048 > 1024",
            ),
            ("nofile=1:2:3", "invalid nofile value \"2:3\""),
        ] {
            let e = Ulimit::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn test_later_entries_win_and_the_callers_hard_limit_caps() {
        let list =
            parse_all(&["nofile=10".into(), "nproc=5".into(), "nofile=20:30".into()]).expect("ok");
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[1].name(), list[1].soft, list[1].hard),
            ("nofile", 20, 30)
        );
        let e = list[1].check_within(25).expect_err("above");
        assert!(
            e.contains("hard limit 30 is above skiff's own hard nofile limit (25)"),
            "{e}"
        );
        list[1].check_within(30).expect("equal is fine");
        list[1].check_within(UNLIMITED).expect("unlimited caller");
    }

    #[test]
    fn test_for_job_adds_the_callers_nofile() {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: writes into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
        let list = for_job(&["nproc=5".into()]).expect("ok");
        let got: Vec<_> = list.iter().map(|u| (u.name(), u.soft, u.hard)).collect();
        assert_eq!(got, [("nproc", 5, 5), ("nofile", r.rlim_cur, r.rlim_max)]);
        let list = for_job(&["nofile=3:4".into()]).expect("ok");
        let got: Vec<_> = list.iter().map(|u| (u.name(), u.soft, u.hard)).collect();
        assert_eq!(got, [("nofile", 3, 4)]);
    }

    #[test]
    fn test_to_oci() {
        let r = Ulimit::parse("nofile=1:2")
            .expect("ok")
            .to_oci()
            .expect("oci");
        assert_eq!(r.typ(), PosixRlimitType::RlimitNofile);
        assert_eq!((r.soft(), r.hard()), (1, 2));
    }
}
