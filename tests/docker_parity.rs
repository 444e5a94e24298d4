//! The standing Docker parity suite (issue 10): one table of cases, each
//! run through `docker run --rm --network none …` and through
//! `skiff run --rm --network none …` on the same vendored images, comparing
//! the exit status, stdout and (exactly or by keywords) stderr. The Docker
//! engine on this machine is the oracle.
//!
//! Every mismatching case is reported at the end, both outputs side by
//! side. A case listed in [`INTENDED`] is expected to differ (and fails
//! when it no longer does); the keys of [`INTENDED`] must be the parity
//! keys of `docs/runtime.md`'s "Deliberate differences from Docker" list.
//!
//! Needs a Docker engine: without one the test is skipped, or fails under
//! `SKIFF_REQUIRE_PRIVILEGED=1`.
//!
//! `SKIFF_REQUIRE_PRIVILEGED=1 cargo test --release --test docker_parity -- --nocapture`

mod support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::env::{docker_load, have, repo};
use support::privilege::{prerequisite, skip_or_fail};
use support::run::{env, vendor_archive, Env, BUSYBOX, COMPAT};
use support::tar::{derive, layer, Entry};

/// The vendored busybox with no `Env` in its config.
const NOENV: &str = "skiff-parity/noenv:latest";
/// The vendored busybox with a relative `WorkingDir` (`rel/dir`).
const RELWD: &str = "skiff-parity/relwd:latest";
/// The vendored busybox plus `/noexec.sh` (a script, mode 0644) and
/// `/script.sh` (mode 0755, no interpreter line).
const FILES: &str = "skiff-parity/files:latest";

/// A variable set in the caller's environment (for `-e NAME`).
const CALLER_SET: &str = "PARITY_SET";
/// A variable never set in the caller's environment.
const CALLER_UNSET: &str = "PARITY_UNSET";

/// How long one side of one case may take.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// One intended difference: its key (also written in the docs as
/// ``Parity key `KEY`.``), the cases that show it, and why.
struct Intended {
    key: &'static str,
    cases: &'static [&'static str],
    reason: &'static str,
}

/// The deliberate differences from Docker. Each key must appear in the
/// docs' list and each docs entry here; each case listed must differ.
const INTENDED: &[Intended] = &[
    Intended {
        key: "no_new_privs",
        cases: &["no_new_privs_status"],
        reason: "no_new_privs is on by default (untrusted jobs: a setuid binary gains nothing); \
                 --security-opt no-new-privileges=false gives Docker's behaviour",
    },
    Intended {
        key: "network_none_default",
        cases: &["network_default"],
        reason: "without --network a job gets its own network namespace with only lo \
                 (Docker: the default bridge, eth0); there is no bridge",
    },
    Intended {
        key: "always_removed",
        cases: &[],
        reason: "jobs are always removed (--rm is accepted and implied)",
    },
    Intended {
        key: "bounded_writable_layer",
        cases: &["rootfs_size"],
        reason: "the writable layer is a tmpfs of --scratch-size, else the memory limit, \
                 else 1 GiB (Docker: the storage driver's disk)",
    },
    Intended {
        key: "hostname_from_name",
        cases: &["hostname_with_name"],
        reason: "the default hostname is the first 12 characters of the job name \
                 (--name, else a random 12-hex-digit name); Docker's is the container id's",
    },
    Intended {
        key: "masked_paths_current_docker",
        cases: &["proc_interrupts_masked"],
        reason: "the masked paths are current Docker's (28+: /proc/interrupts, moby#49560, \
                 a thermal side channel); the engine here (20.10) leaves /proc/interrupts readable",
    },
    Intended {
        key: "cgroup_view_no_systemd",
        cases: &["cgroup_hierarchies", "cgroup_mounts", "cgroup_self"],
        reason: "/sys/fs/cgroup shows the hierarchies the job has its own cgroup in, without \
                 name=systemd (libcontainer places jobs in the controllers' hierarchies only; \
                 joining name=systemd would cost one more cgroup.procs write, the 7-15 ms \
                 attach stall, per launch), and its directory is read-only too",
    },
    Intended {
        key: "no_swap_by_default",
        cases: &["memory_no_swap_by_default"],
        reason: "-m alone gives no swap, so an OOM is an OOM (Docker: as much swap again); \
                 --memory-swap sets it as in Docker",
    },
    Intended {
        key: "exec_format_error_126",
        cases: &["exit_script_no_shebang"],
        reason: "an executable the kernel cannot run (ENOEXEC: no #! line, another \
                 architecture) exits 126, 'cannot invoke'; Docker 20.10's runc fails the \
                 exec after start and reports 1",
    },
    Intended {
        key: "bind_and_tmpfs_only",
        cases: &["named_volume"],
        reason: "only bind mounts and tmpfs: named volumes are refused",
    },
];

/// How a case's stderr is compared.
#[derive(Clone, Copy, Debug)]
enum Stderr {
    /// The same text (after the normaliser).
    Exact,
    /// Each keyword (case-insensitive) in both: for errors whose wording is
    /// the engine's (`docker: Error response from daemon: …`).
    Keywords(&'static [&'static str]),
    /// Not compared.
    Ignore,
}

/// One case: `docker run --rm --network none OPTS IMAGE CMD…` against
/// `skiff run --rm --network none OPTS IMAGE CMD…`. `{HOSTDIR}` in an
/// option is a fresh host directory (holding `f`), one per side; `{NAME}` a
/// job name unique to this run, `{VOLUME}` a volume name.
struct Case {
    name: &'static str,
    opts: Vec<String>,
    image: String,
    cmd: Vec<String>,
    stderr: Stderr,
    norm: Option<fn(&str) -> String>,
    stdin: Option<&'static str>,
    network_none: bool,
}

fn case(name: &'static str, opts: &[&str], image: &str, cmd: &[&str]) -> Case {
    Case {
        name,
        opts: opts.iter().map(|s| s.to_string()).collect(),
        image: image.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stderr: Stderr::Exact,
        norm: None,
        stdin: None,
        network_none: true,
    }
}

/// `sh -c SCRIPT` on busybox with `opts`.
fn sh(name: &'static str, opts: &[&str], script: &str) -> Case {
    case(name, opts, BUSYBOX, &["sh", "-c", script])
}

impl Case {
    fn keywords(mut self, words: &'static [&'static str]) -> Case {
        self.stderr = Stderr::Keywords(words);
        self
    }

    fn ignore_stderr(mut self) -> Case {
        self.stderr = Stderr::Ignore;
        self
    }

    fn norm(mut self, f: fn(&str) -> String) -> Case {
        self.norm = Some(f);
        self
    }

    fn stdin(mut self, text: &'static str) -> Case {
        self.stdin = Some(text);
        self
    }

    /// Neither side gets `--network none`.
    fn default_network(mut self) -> Case {
        self.network_none = false;
        self
    }

    fn command_line(&self) -> String {
        let mut words = vec!["run".to_string(), "--rm".to_string()];
        if self.network_none {
            words.extend(["--network".to_string(), "none".to_string()]);
        }
        words.extend(self.opts.iter().cloned());
        words.push(self.image.clone());
        words.extend(self.cmd.iter().cloned());
        words
            .iter()
            .map(|w| {
                if w.is_empty() || w.contains([' ', '\'', '"', '$', ';', '|', '&', '>', '<']) {
                    format!("'{}'", w.replace('\'', "'\\''"))
                } else {
                    w.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Every 12-hex-digit word (a container id prefix or skiff's random job
/// name) becomes `<HOSTNAME>`: both are random per job.
fn hostname_norm(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.len() == 12 && word.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push_str("<HOSTNAME>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// [`hostname_norm`], then the lines sorted.
fn sorted_hostname_norm(s: &str) -> String {
    let mut lines: Vec<String> = hostname_norm(s).lines().map(str::to_string).collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The lines sorted (mount tables list the same mounts in another order).
fn sorted(s: &str) -> String {
    let mut lines: Vec<&str> = s.lines().collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// `/proc/self/cgroup` lines `CONTROLLERS:PATH`, sorted, with each path
/// other than `/` shown as `<job>`: the job's own cgroup is named
/// differently (`/docker/<id>`, `…/skiff/<key>/<job>`), but which
/// hierarchies place the job in a cgroup of its own must match.
fn cgroup_paths_norm(s: &str) -> String {
    let lines: String = s
        .lines()
        .map(|l| match l.split_once(':') {
            Some((c, "/")) => format!("{c}:/\n"),
            Some((c, _)) => format!("{c}:<job>\n"),
            None => format!("{l}\n"),
        })
        .collect();
    sorted(&lines)
}

/// The table. `ids`: the busybox image id (`sha256:…`).
fn cases(id: &str) -> Vec<Case> {
    let hex = id.strip_prefix("sha256:").expect("image id");
    let name_at_id = format!("skiff-vendor/busybox@{id}");
    let name_tag_at_id = format!("skiff-vendor/busybox:latest@{id}");
    let ok = &["echo", "ok"][..];
    let hog = "x=a; while true; do x=$x$x; done";
    vec![
        // Entrypoint and cmd.
        case("cmd_default_compat", &[], COMPAT, &[]),
        case("cmd_args_replace_cmd", &[], COMPAT, &["a", "b c"]),
        case("cmd_default_busybox_sh", &[], BUSYBOX, &[]),
        case(
            "entrypoint_override",
            &["--entrypoint", "/bin/echo"],
            COMPAT,
            &["x", "y"],
        ),
        case(
            "entrypoint_override_drops_cmd",
            &["--entrypoint", "/bin/echo"],
            COMPAT,
            &[],
        ),
        case(
            "entrypoint_empty_no_cmd",
            &["--entrypoint", ""],
            COMPAT,
            &[],
        )
        .keywords(&["no command specified"]),
        case(
            "entrypoint_empty_with_cmd",
            &["--entrypoint", ""],
            COMPAT,
            &["id"],
        ),
        // Environment.
        sh(
            "env_set",
            &["-e", "FOO=bar"],
            "echo \"[$FOO]\"; env | grep -c FOO",
        ),
        sh(
            "env_empty_value",
            &["-e", "FOO="],
            "echo \"[${FOO-unset}]\"; env | grep FOO",
        ),
        sh(
            "env_from_caller_set",
            &["-e", CALLER_SET],
            "echo \"[${PARITY_SET-unset}]\"; env | grep -c PARITY_SET",
        ),
        sh(
            "env_from_caller_unset",
            &["-e", CALLER_UNSET],
            "echo \"[${PARITY_UNSET-unset}]\"; env | grep -c PARITY_UNSET",
        ),
        case("env_busybox_order", &[], BUSYBOX, &["env"]).norm(hostname_norm),
        case("env_busybox_sorted", &[], BUSYBOX, &["env"]).norm(sorted_hostname_norm),
        case("env_compat_sorted", &["--entrypoint", "env"], COMPAT, &[]).norm(sorted_hostname_norm),
        case("env_no_image_env", &[], NOENV, &["env"]).norm(hostname_norm),
        sh("env_path_override", &["-e", "PATH=/bin"], "echo $PATH"),
        sh("env_home_root", &[], "echo $HOME"),
        sh("env_home_override", &["-e", "HOME=/x"], "echo $HOME"),
        sh("env_home_passwd_user", &["-u", "nobody"], "echo $HOME"),
        sh("env_home_unknown_uid", &["-u", "1000"], "echo $HOME"),
        // Users and groups.
        case("user_uid", &["-u", "1000"], BUSYBOX, &["id"]),
        case("user_uid_gid", &["-u", "1000:1000"], BUSYBOX, &["id"]),
        case("user_name", &["-u", "nobody"], BUSYBOX, &["id"]),
        case("user_uid_group_name", &["-u", "0:nobody"], BUSYBOX, &["id"]),
        case(
            "user_root_nogroup",
            &["-u", "root:nogroup"],
            BUSYBOX,
            &["id"],
        )
        .keywords(&["unable to find group nogroup"]),
        case("user_unknown_name", &["-u", "nosuchuser"], BUSYBOX, &["id"])
            .keywords(&["unable to find user nosuchuser"]),
        case("user_image_default", &["--entrypoint", "id"], COMPAT, &[]),
        case(
            "user_override_image",
            &["--entrypoint", "id", "-u", "0"],
            COMPAT,
            &[],
        ),
        case("group_add", &["--group-add", "1234"], BUSYBOX, &["id"]),
        case(
            "group_add_name",
            &["-u", "1000", "--group-add", "nobody"],
            BUSYBOX,
            &["id"],
        ),
        // Working directory.
        case("workdir_tmp", &["-w", "/tmp"], BUSYBOX, &["pwd"]),
        sh(
            "workdir_created",
            &["-w", "/does/not/exist"],
            "pwd; stat -c '%U %a' .",
        ),
        case("workdir_relative_flag", &["-w", "rel"], BUSYBOX, &["pwd"])
            .keywords(&["absolute path"]),
        case("workdir_image", &["--entrypoint", "pwd"], COMPAT, &[]),
        case("workdir_image_relative", &[], RELWD, &["pwd"])
            .keywords(&["must be an absolute path"]),
        // Exit codes and signals.
        case("exit_0", &[], BUSYBOX, &["true"]),
        case("exit_1", &[], BUSYBOX, &["false"]),
        sh("exit_3", &[], "exit 3"),
        case("exit_126_not_executable", &[], BUSYBOX, &["/etc/passwd"])
            .keywords(&["permission denied"]),
        case("exit_126_directory", &[], BUSYBOX, &["/tmp"]).keywords(&["permission denied"]),
        case("exit_127_missing_command", &[], BUSYBOX, &["nosuchcmd"])
            .keywords(&["executable file not found in $PATH"]),
        case("exit_127_missing_path", &[], BUSYBOX, &["/no/such/path"])
            .keywords(&["no such file or directory"]),
        case("exit_script_no_exec_bit", &[], FILES, &["/noexec.sh"])
            .keywords(&["permission denied"]),
        case("exit_script_no_shebang", &[], FILES, &["/script.sh"])
            .keywords(&["exec format error"]),
        sh("signal_kill_pid1_ignored", &[], "kill -9 $$; echo survived"),
        sh(
            "signal_kill_child_137",
            &[],
            "sleep 5 & kill -9 $!; wait $!",
        )
        .ignore_stderr(),
        sh(
            "signal_term_child_143",
            &[],
            "sleep 5 & kill -TERM $!; wait $!",
        )
        .ignore_stderr(),
        sh(
            "signal_nested_shell",
            &[],
            "sh -c 'kill -9 $$'; echo status=$?",
        )
        .ignore_stderr(),
        // Root filesystem, tmpfs, volumes.
        case(
            "read_only_root",
            &["--read-only"],
            BUSYBOX,
            &["touch", "/x"],
        ),
        case(
            "read_only_tmp",
            &["--read-only"],
            BUSYBOX,
            &["touch", "/tmp/x"],
        ),
        sh(
            "read_only_with_tmpfs",
            &["--read-only", "--tmpfs", "/tmp"],
            "touch /tmp/x && echo ok",
        ),
        sh(
            "tmpfs_default",
            &["--tmpfs", "/x"],
            "touch /x/a && stat -c %a /x && grep ' /x ' /proc/mounts",
        ),
        sh(
            "tmpfs_size_mode",
            &["--tmpfs", "/x:size=1m,mode=700"],
            "stat -c %a /x && grep ' /x ' /proc/mounts",
        ),
        sh(
            "volume_rw",
            &["-v", "{HOSTDIR}:/data"],
            "cat /data/f && touch /data/g && ls /data && grep -c ' /data ' /proc/mounts",
        ),
        sh(
            "volume_ro",
            &["-v", "{HOSTDIR}:/data:ro"],
            "cat /data/f; touch /data/h; ls /data",
        ),
        // Limits.
        sh(
            "pids_limit_forks",
            &["--pids-limit", "24"],
            "for i in $(seq 40); do sleep 5 & done; echo all-forked",
        ),
        sh("memory_oom_137", &["-m", "16m"], hog),
        sh(
            "memory_oom_child",
            &["-m", "16m"],
            &format!("sh -c '{hog}'; echo status=$?"),
        )
        .ignore_stderr(),
        case(
            "memory_swap",
            &["-m", "16m", "--memory-swap", "32m"],
            BUSYBOX,
            &["cat", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"],
        ),
        case(
            "memory_no_swap_by_default",
            &["-m", "16m"],
            BUSYBOX,
            &["cat", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"],
        ),
        case(
            "cpu_shares",
            &["-c", "512"],
            BUSYBOX,
            &["cat", "/sys/fs/cgroup/cpu/cpu.shares"],
        ),
        sh("pid_namespace", &[], "ps -o pid,comm"),
        sh(
            "non_root_write_denied",
            &["-u", "1000"],
            "touch /x; echo $?; touch /tmp/y && echo tmp-ok",
        ),
        // The job's cgroup files (v1 on this host).
        case(
            "cgroup_cpu_quota",
            &["--cpus", "0.5"],
            BUSYBOX,
            &[
                "cat",
                "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
            ],
        ),
        case(
            "cgroup_memory_limit",
            &["-m", "64m"],
            BUSYBOX,
            &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        ),
        case(
            "cgroup_pids_max",
            &["--pids-limit", "50"],
            BUSYBOX,
            &["cat", "/sys/fs/cgroup/pids/pids.max"],
        ),
        // A runtime running as a non-root user reads its limits too.
        case(
            "cgroup_memory_limit_non_root",
            &["-u", "1000", "-m", "64m"],
            BUSYBOX,
            &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        ),
        sh(
            "cgroup_read_only",
            &[],
            "echo 1 > /sys/fs/cgroup/pids/pids.max",
        ),
        case(
            "cgroup_hierarchies",
            &[],
            BUSYBOX,
            &["ls", "/sys/fs/cgroup"],
        ),
        sh(
            "cgroup_mounts",
            &[],
            "grep ' /sys/fs/cgroup' /proc/mounts | cut -d' ' -f2,3,4",
        )
        .norm(sorted),
        sh(
            "cgroup_self",
            &[],
            "cut -d: -f2,3 /proc/self/cgroup | grep -v '^:'",
        )
        .norm(cgroup_paths_norm),
        // rlimits.
        sh("ulimit_all", &[], "ulimit -a"),
        sh("ulimit_nofile", &[], "ulimit -n; ulimit -Hn"),
        sh(
            "ulimit_nofile_flag",
            &["--ulimit", "nofile=512:1024"],
            "ulimit -n; ulimit -Hn",
        ),
        sh(
            "ulimit_nproc_flag",
            &["--ulimit", "nproc=100"],
            "ulimit -u; ulimit -Hu",
        ),
        sh(
            "ulimit_soft_only_flag",
            &["--ulimit", "nofile=100"],
            "ulimit -n; ulimit -Hn",
        ),
        sh(
            "ulimit_unlimited_flag",
            &["--ulimit", "core=-1"],
            "ulimit -c; ulimit -Hc",
        ),
        // Above the caller's (and here the daemon's) hard limit.
        sh(
            "ulimit_above_hard_limit",
            &["--ulimit", "nofile=1048576:1048576"],
            "ulimit -n",
        )
        .ignore_stderr(),
        case(
            "ulimit_bad_name",
            &["--ulimit", "bogus=1"],
            BUSYBOX,
            &["true"],
        )
        .keywords(&["invalid ulimit type"]),
        // Capabilities.
        case(
            "caps_default",
            &[],
            BUSYBOX,
            &["grep", "Cap", "/proc/self/status"],
        ),
        case(
            "caps_add_net_admin",
            &["--cap-add", "NET_ADMIN"],
            BUSYBOX,
            &["grep", "Cap", "/proc/self/status"],
        ),
        sh(
            "caps_drop_chown",
            &["--cap-drop", "CHOWN"],
            "grep CapEff /proc/self/status; chown 1000 /tmp",
        ),
        case(
            "caps_drop_all",
            &["--cap-drop", "ALL"],
            BUSYBOX,
            &["grep", "Cap", "/proc/self/status"],
        ),
        case(
            "caps_non_root",
            &["-u", "1000"],
            BUSYBOX,
            &["grep", "Cap", "/proc/self/status"],
        ),
        // /proc masking and /dev.
        case("proc_kcore", &[], BUSYBOX, &["cat", "/proc/kcore"]),
        case("proc_acpi", &[], BUSYBOX, &["ls", "-A", "/proc/acpi"]),
        sh(
            "proc_sys_read_only",
            &[],
            "echo x > /proc/sys/kernel/domainname",
        ),
        sh("proc_sysrq_trigger", &[], "echo h > /proc/sysrq-trigger"),
        sh(
            "proc_masked_paths",
            &[],
            "grep -E ' /(proc|sys)/' /proc/mounts \
             | grep -v -e ' /sys/fs/cgroup' -e ' /proc/interrupts ' | cut -d' ' -f2,3,4",
        )
        .norm(sorted),
        sh(
            "proc_interrupts_masked",
            &[],
            "wc -c < /proc/interrupts | tr -d ' ' | grep -qx 0 && echo masked || echo visible",
        ),
        sh(
            "dev_contents",
            &[],
            "cd /dev && for f in $(ls -A); do stat -c '%n %F %a %u:%g %t,%T' $f; done",
        ),
        case(
            "dev_subdirs",
            &[],
            BUSYBOX,
            &["ls", "-A", "/dev/pts", "/dev/shm", "/dev/mqueue"],
        ),
        sh(
            "dev_mounts",
            &[],
            "grep -E ' /dev(/| )' /proc/mounts | cut -d' ' -f1-4",
        )
        .norm(sorted),
        sh("sys_read_only", &[], "touch /sys/x"),
        // Hostname and /etc/hosts.
        sh(
            "hostname_default",
            &[],
            "hostname; cat /etc/hostname; echo $HOSTNAME",
        )
        .norm(hostname_norm),
        case("etc_hosts_default", &[], BUSYBOX, &["cat", "/etc/hosts"]).norm(hostname_norm),
        sh(
            "hostname_flag",
            &["--hostname", "myhost"],
            "hostname; cat /etc/hostname; echo $HOSTNAME",
        ),
        case(
            "etc_hosts_hostname_flag",
            &["--hostname", "myhost"],
            BUSYBOX,
            &["cat", "/etc/hosts"],
        ),
        case(
            "hostname_short_flag",
            &["-h", "myhost"],
            BUSYBOX,
            &["hostname"],
        ),
        case(
            "hostname_with_name",
            &["--name", "{NAME}"],
            BUSYBOX,
            &["hostname"],
        )
        .norm(hostname_norm),
        case(
            "etc_resolv_conf",
            &[],
            BUSYBOX,
            &["cat", "/etc/resolv.conf"],
        ),
        // stdin.
        case(
            "stdin_with_i",
            &["-i"],
            BUSYBOX,
            &["sh", "-c", "cat; echo end"],
        )
        .stdin("hi\n"),
        case(
            "stdin_without_i",
            &[],
            BUSYBOX,
            &["sh", "-c", "cat; echo end"],
        )
        .stdin("hi\n"),
        // Image references.
        case("ref_name", &[], "skiff-vendor/busybox", ok),
        case("ref_name_tag", &[], "skiff-vendor/busybox:latest", ok),
        case(
            "ref_docker_io",
            &[],
            "docker.io/skiff-vendor/busybox:latest",
            ok,
        ),
        case(
            "ref_docker_io_no_tag",
            &[],
            "docker.io/skiff-vendor/busybox",
            ok,
        ),
        case("ref_full_id", &[], id, ok),
        case("ref_bare_id", &[], hex, ok),
        case("ref_short_id", &[], &hex[..12], ok),
        case("ref_name_at_id", &[], &name_at_id, ok).ignore_stderr(),
        case("ref_name_tag_at_id", &[], &name_tag_at_id, ok).ignore_stderr(),
        case("ref_unknown_tag", &[], "skiff-vendor/busybox:nosuchtag", ok).ignore_stderr(),
        case("ref_uppercase", &[], "Skiff-Vendor/busybox", ok)
            .keywords(&["invalid reference format"]),
        // The intended differences (see INTENDED).
        case(
            "no_new_privs_status",
            &[],
            BUSYBOX,
            &["grep", "NoNewPrivs", "/proc/self/status"],
        ),
        case("network_default", &[], BUSYBOX, &["ls", "/sys/class/net"]).default_network(),
        sh(
            "rootfs_size",
            &[],
            "df -k / | tail -n 1 | tr -s ' ' | cut -d' ' -f2",
        ),
        case(
            "named_volume",
            &["-v", "{VOLUME}:/data"],
            BUSYBOX,
            &["ls", "-A", "/data"],
        )
        .ignore_stderr(),
    ]
}

/// One side's result.
#[derive(Debug, Default)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn status(&self) -> String {
        self.code
            .map_or_else(|| "killed (timeout)".into(), |c| c.to_string())
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Side {
    Docker,
    Skiff,
}

/// Run one side of `c`: stdout and stderr go to files (no pipe to drain),
/// the process is polled and killed after [`CASE_TIMEOUT`].
fn run_side(e: &Env, c: &Case, side: Side, scratch: &Path) -> Out {
    let tag = match side {
        Side::Docker => "docker",
        Side::Skiff => "skiff",
    };
    let dir = scratch.join(format!("{}-{tag}", c.name));
    std::fs::create_dir_all(&dir).expect("case dir");
    let hostdir = dir.join("host");
    std::fs::create_dir_all(&hostdir).expect("host dir");
    std::fs::write(hostdir.join("f"), "hostfile\n").expect("host file");
    let name = format!("parity-name-{}-{tag}", std::process::id());
    let mut cmd = match side {
        Side::Docker => {
            let mut d = Command::new("docker");
            d.arg("run");
            d
        }
        Side::Skiff => {
            let mut s = e.cmd();
            s.arg("run");
            s
        }
    };
    cmd.arg("--rm");
    if c.network_none {
        cmd.args(["--network", "none"]);
    }
    for o in &c.opts {
        cmd.arg(
            o.replace("{HOSTDIR}", hostdir.to_str().expect("utf8"))
                .replace("{NAME}", &name)
                .replace("{VOLUME}", &volume_name(side)),
        );
    }
    cmd.arg(&c.image).args(&c.cmd);
    cmd.env(CALLER_SET, "from-caller").env_remove(CALLER_UNSET);
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    cmd.stdout(std::fs::File::create(&out_path).expect("stdout file"));
    cmd.stderr(std::fs::File::create(&err_path).expect("stderr file"));
    cmd.stdin(if c.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {tag}: {err}"));
    if let (Some(text), Some(mut stdin)) = (c.stdin, child.stdin.take()) {
        // The job may never read it (no -i), or be gone already.
        let _ = stdin.write_all(text.as_bytes());
    }
    let deadline = Instant::now() + CASE_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(s) => break Some(s),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let stdout = read(&out_path);
    let mut stderr = read(&err_path);
    if side == Side::Skiff {
        // libcontainer's log lines are not the job's output.
        stderr = stderr
            .lines()
            .filter(|l| !l.contains(" WARN ") && !l.contains("WARN\u{1b}"))
            .map(|l| format!("{l}\n"))
            .collect();
    }
    let _ = std::fs::remove_dir_all(&dir);
    Out {
        code: status.and_then(|s| s.code()),
        stdout,
        stderr,
    }
}

/// The named volume of `{VOLUME}` for `side` (Docker's is removed at the
/// end).
fn volume_name(side: Side) -> String {
    format!("parity-vol-{}-{side:?}", std::process::id()).to_lowercase()
}

/// What differs between the two sides of `c` (empty: nothing).
fn differences(c: &Case, docker: &Out, skiff: &Out) -> Vec<String> {
    let norm = |s: &str| c.norm.map_or_else(|| s.to_string(), |f| f(s));
    let mut d = Vec::new();
    if docker.code != skiff.code {
        d.push("exit status".to_string());
    }
    if norm(&docker.stdout) != norm(&skiff.stdout) {
        d.push("stdout".to_string());
    }
    match c.stderr {
        Stderr::Exact => {
            if norm(&docker.stderr) != norm(&skiff.stderr) {
                d.push("stderr".to_string());
            }
        }
        Stderr::Keywords(words) => {
            for w in words {
                let w_low = w.to_lowercase();
                for (side, out) in [("docker", docker), ("skiff", skiff)] {
                    if !out.stderr.to_lowercase().contains(&w_low) {
                        d.push(format!("stderr: {side}'s lacks {w:?}"));
                    }
                }
            }
        }
        Stderr::Ignore => {}
    }
    d
}

/// Two texts in two columns; `*` marks lines that differ.
fn side_by_side(left: &str, right: &str) -> String {
    let l: Vec<&str> = left.lines().collect();
    let r: Vec<&str> = right.lines().collect();
    // The left column as wide as its longest line, between 20 and 200.
    let w = l
        .iter()
        .map(|x| x.replace('\t', "\\t").chars().count())
        .max()
        .unwrap_or(0)
        .clamp(20, 200);
    let mut out = format!("      {:<w$} | skiff\n", "docker");
    for i in 0..l.len().max(r.len()) {
        let a = l.get(i).copied().unwrap_or("");
        let b = r.get(i).copied().unwrap_or("");
        let mark = if l.get(i) == r.get(i) { ' ' } else { '*' };
        let a: String = a.replace('\t', "\\t");
        let b: String = b.replace('\t', "\\t");
        let a = if a.chars().count() > w {
            format!("{}…", a.chars().take(w - 1).collect::<String>())
        } else {
            a
        };
        let _ = writeln!(out, "    {mark} {a:<w$} | {b}");
    }
    out
}

/// The rlimits of this process (whose limits a skiff job inherits) and of
/// the Docker daemons (whose a Docker job inherits): an rlimit case can
/// only match when they are the same.
fn limits_hint() -> String {
    let pick = |pid: &str| -> String {
        std::fs::read_to_string(format!("/proc/{pid}/limits"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("Max open files") || l.starts_with("Max processes"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut hint = format!("  rlimits: this test: {}\n", pick("self"));
    for d in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = d.file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(d.path().join("comm")).unwrap_or_default();
        if matches!(comm.trim(), "dockerd" | "containerd") {
            let _ = writeln!(hint, "  rlimits: {} ({pid}): {}", comm.trim(), pick(&pid));
        }
    }
    hint
}

fn report(c: &Case, docker: &Out, skiff: &Out, what: &[String]) -> String {
    let norm = |s: &str| c.norm.map_or_else(|| s.to_string(), |f| f(s));
    let mut r = format!(
        "=== {} (differs: {})\n  {{docker|skiff}} {}\n  exit status: docker {} | skiff {}\n",
        c.name,
        what.join(", "),
        c.command_line(),
        docker.status(),
        skiff.status()
    );
    let _ = write!(
        r,
        "  stdout{}:\n{}",
        if c.norm.is_some() {
            " (normalised)"
        } else {
            ""
        },
        side_by_side(&norm(&docker.stdout), &norm(&skiff.stdout))
    );
    if !matches!(c.stderr, Stderr::Ignore) || what.iter().any(|w| w.starts_with("stderr")) {
        let _ = write!(
            r,
            "  stderr:\n{}",
            side_by_side(&docker.stderr, &skiff.stderr)
        );
    }
    if c.name.starts_with("ulimit") && !what.is_empty() {
        r.push_str(&limits_hint());
    }
    r
}

/// The parity keys of `docs/runtime.md`'s "Deliberate differences from
/// Docker" list: one ``Parity key `KEY`.`` in each bullet, or an error
/// naming a bullet without one.
fn documented_keys() -> Result<Vec<String>, String> {
    let path = repo().join("docs/runtime.md");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    const HEADING: &str = "## Deliberate differences from Docker";
    let start = text
        .find(HEADING)
        .ok_or_else(|| format!("docs/runtime.md has no {HEADING:?} section"))?;
    let body = &text[start + HEADING.len()..];
    let body = body.find("\n## ").map_or(body, |end| &body[..end]);
    let mut bullets: Vec<String> = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("- ") {
            bullets.push(rest.to_string());
        } else if line.starts_with("  ") && !bullets.is_empty() {
            let last = bullets.last_mut().expect("a bullet");
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    if bullets.is_empty() {
        return Err(format!("the {HEADING:?} section has no list"));
    }
    let mut keys = Vec::new();
    for b in &bullets {
        let key = b
            .split_once("Parity key `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(k, _)| k.to_string())
            .ok_or_else(|| {
                format!(
                    "a bullet of {HEADING:?} has no \"Parity key `KEY`\" \
                     (every deliberate difference needs one, matching INTENDED in \
                     tests/docker_parity.rs): {b}"
                )
            })?;
        keys.push(key);
    }
    Ok(keys)
}

#[test]
fn test_intended_differences_match_the_docs() {
    let documented = documented_keys().unwrap_or_else(|e| panic!("{e}"));
    let doc_set: BTreeSet<&str> = documented.iter().map(String::as_str).collect();
    let test_set: BTreeSet<&str> = INTENDED.iter().map(|i| i.key).collect();
    assert_eq!(
        doc_set.len(),
        documented.len(),
        "a parity key is listed twice in docs/runtime.md: {documented:?}"
    );
    assert_eq!(
        test_set.len(),
        INTENDED.len(),
        "a key is listed twice in INTENDED"
    );
    assert_eq!(
        doc_set, test_set,
        "docs/runtime.md's deliberate differences (left) and INTENDED (right) differ"
    );
    // Each intended case is a case of the table, and in one entry only.
    let names: BTreeSet<&str> = cases("sha256:0000000000000000")
        .iter()
        .map(|c| c.name)
        .collect();
    let mut seen = BTreeSet::new();
    for i in INTENDED {
        assert!(!i.reason.is_empty(), "{}: no reason", i.key);
        for c in i.cases {
            assert!(names.contains(c), "INTENDED {}: no case {c}", i.key);
            assert!(seen.insert(*c), "case {c} is in two INTENDED entries");
        }
    }
}

#[test]
fn test_case_table_is_well_formed() {
    let all = cases("sha256:0000000000000000");
    assert!(all.len() >= 40, "only {} cases", all.len());
    let mut names = BTreeSet::new();
    for c in &all {
        assert!(names.insert(c.name), "case {} is listed twice", c.name);
    }
    assert_eq!(
        hostname_norm("HOSTNAME=0b0ee0aac9b7\n127.0.1.1\tab84641e3af4 x\n"),
        "HOSTNAME=<HOSTNAME>\n127.0.1.1\t<HOSTNAME> x\n"
    );
    assert_eq!(hostname_norm("parity-name-1"), "parity-name-1");
}

/// Docker loads and skiff imports the derived images; `docker rmi`s them
/// on drop (the vendored ones stay loaded: other tests use them).
struct DerivedImages {
    loaded: Vec<&'static str>,
    /// Every image a case names, with its archive (to load it again).
    archives: Vec<(&'static str, PathBuf)>,
}

impl DerivedImages {
    /// The archive of `image` when it is one of the suite's own.
    fn archive(&self, image: &str) -> Option<&Path> {
        self.archives
            .iter()
            .find(|(tag, _)| *tag == image)
            .map(|(_, p)| p.as_path())
    }
}

impl Drop for DerivedImages {
    fn drop(&mut self) {
        for tag in &self.loaded {
            let _ = Command::new("docker").args(["rmi", tag]).output();
        }
        let _ = Command::new("docker")
            .args(["volume", "rm", &volume_name(Side::Docker)])
            .output();
    }
}

/// A derived image: its tag, an extra layer, the config edit.
type DerivedSpec = (&'static str, Option<Vec<u8>>, fn(&mut serde_json::Value));

fn derived_images(e: &Env, dir: &Path) -> Result<DerivedImages, String> {
    let mut images = DerivedImages {
        loaded: Vec::new(),
        archives: vec![
            (BUSYBOX, vendor_archive("busybox")),
            (COMPAT, vendor_archive("compat")),
        ],
    };
    let busybox = vendor_archive("busybox");
    let files = layer(&[
        Entry::File("noexec.sh".into(), b"#!/bin/sh\necho ran\n".to_vec(), 0o644),
        Entry::File("script.sh".into(), b"echo ran\n".to_vec(), 0o755),
    ]);
    let specs: [DerivedSpec; 3] = [
        (NOENV, None, |c| {
            c.as_object_mut().expect("config").remove("Env");
        }),
        (RELWD, None, |c| {
            c["WorkingDir"] = serde_json::Value::String("rel/dir".into());
        }),
        (FILES, Some(files), |_| {}),
    ];
    for (tag, extra, edit) in specs {
        let path: PathBuf = dir.join(format!("{}.tar", tag.replace(['/', ':'], "_")));
        derive(&busybox, tag, extra, edit, &path);
        docker_load(&path)?;
        images.loaded.push(tag);
        images.archives.push((tag, path.clone()));
        let out = e.skiff(&["image", "import", path.to_str().expect("utf8")]);
        if !out.status.success() {
            return Err(format!(
                "skiff image import {tag}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(images)
}

#[test]
fn test_docker_parity() {
    let Some(e) = env() else { return };
    if !prerequisite(have("docker"), "the docker CLI (the parity suite's oracle)") {
        return;
    }
    for name in ["busybox", "compat"] {
        if let Err(why) = docker_load(&vendor_archive(name)) {
            skip_or_fail(&format!(
                "the Docker parity suite needs a Docker engine: {why}"
            ));
            return;
        }
    }
    let scratch = e.root.path().join("parity");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let images = derived_images(&e, &scratch).unwrap_or_else(|why| panic!("{why}"));
    let inspect = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", BUSYBOX])
        .output()
        .expect("docker image inspect");
    let id = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
    assert!(id.starts_with("sha256:"), "docker image inspect: {id:?}");

    let all = cases(&id);
    let intended = |name: &str| INTENDED.iter().find(|i| i.cases.contains(&name));
    let mut failures: Vec<String> = Vec::new();
    let mut expected: Vec<String> = Vec::new();
    let mut passed = 0;
    let started = Instant::now();
    // PARITY_ONLY=NAME[,NAME…] runs only those cases; PARITY_VERBOSE=1
    // prints every case's outputs.
    let only: Option<Vec<String>> = std::env::var("PARITY_ONLY")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    let verbose = std::env::var("PARITY_VERBOSE").is_ok_and(|v| v == "1");
    for c in &all {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == c.name))
        {
            continue;
        }
        let t = Instant::now();
        let mut docker = run_side(&e, c, Side::Docker, &scratch);
        // Something else on this host may untag an image during the run
        // (another suite's `docker rmi`, a prune): load it again, once.
        if let (true, Some(archive)) = (
            docker.stderr.contains("Unable to find image"),
            images.archive(&c.image),
        ) {
            eprintln!(
                "{}: {} was gone from Docker; loading it again",
                c.name, c.image
            );
            docker_load(archive).unwrap_or_else(|why| panic!("{why}"));
            docker = run_side(&e, c, Side::Docker, &scratch);
        }
        let skiff = run_side(&e, c, Side::Skiff, &scratch);
        let what = differences(c, &docker, &skiff);
        if verbose {
            eprintln!("{}", report(c, &docker, &skiff, &what));
        }
        let verdict = match (what.is_empty(), intended(c.name)) {
            (true, None) => {
                passed += 1;
                "ok"
            }
            (false, None) => {
                failures.push(report(c, &docker, &skiff, &what));
                "DIFFERS"
            }
            (false, Some(i)) => {
                expected.push(format!("{} ({}): {}", c.name, i.key, i.reason));
                "differs as intended"
            }
            (true, Some(i)) => {
                failures.push(format!(
                    "=== {}: listed as an intended difference ({}) but skiff now matches \
                     Docker: remove it from INTENDED and the docs\n",
                    c.name, i.key
                ));
                "STALE"
            }
        };
        eprintln!("{:<32} {verdict} ({} ms)", c.name, t.elapsed().as_millis());
    }
    eprintln!(
        "\n{} cases in {} s: {passed} match, {} differ as intended, {} fail",
        all.len(),
        started.elapsed().as_secs(),
        expected.len(),
        failures.len()
    );
    for x in &expected {
        eprintln!("  intended: {x}");
    }
    // skiff leaves nothing behind (checked after the report, so a leak
    // does not hide the mismatches).
    if !e.state_dirs().is_empty() || !e.job_cgroups().is_empty() {
        failures.push(format!(
            "=== skiff left state {:?} and job cgroups {:?} after the cases\n",
            e.state_dirs(),
            e.job_cgroups()
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {} Docker parity case(s) fail:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
