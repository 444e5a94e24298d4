//! Security properties of `skiff run` (issue 3, "Security tests").

mod support;

use support::run;
use support::run::{env, job_stderr, stdout, BUSYBOX};

// Working directories through leaked descriptors (CVE-2024-21626), /dev
// symlinks and /proc/self/exe after the launcher dies: tests/run_escapes.rs.

#[test]
fn test_security_cannot_overwrite_launcher_via_proc_self_exe() {
    // CVE-2019-5736: a job that execs /proc/self/exe (or a #!/proc/self/exe
    // script) and writes through it must not change the skiff binary.
    let Some(e) = env() else { return };
    // The cold path, then a warm sandbox.
    for rt in [None, Some(run::WARM)] {
        let bin = run::skiff_bin();
        let before = std::fs::read(bin).expect("read skiff");
        for args in [
            vec![BUSYBOX, "sh", "-c", "echo pwned > /proc/self/exe; echo pwned > /proc/1/exe; true"],
            vec!["--entrypoint", "/proc/self/exe", BUSYBOX, "--version"],
            vec![BUSYBOX, "sh", "-c", "printf '#!/proc/self/exe\\n' > /x; chmod +x /x; /x; for p in /proc/[0-9]*/exe; do echo pwned > $p; done 2>/dev/null; true"],
        ] {
            let _ = e.run(rt, &args);
        }
        assert!(
            std::fs::read(bin).expect("read skiff") == before,
            "skiff binary changed"
        );
    }
}

#[test]
fn test_security_cannot_see_host_processes() {
    let Some(e) = env() else { return };
    // The cold path, then a warm sandbox.
    for rt in [None, Some(run::WARM)] {
        let out = e.run(rt, &[BUSYBOX, "sh", "-c", "ls -d /proc/[0-9]* | wc -l"]);
        // sh, ls and wc at most (ls's glob is expanded by sh).
        let n: i32 = stdout(&out).trim().parse().expect("count");
        assert!(n <= 3, "the job sees {n} processes: {}", job_stderr(&out));
    }
}

#[test]
fn test_security_cannot_mount_or_load_modules() {
    let Some(e) = env() else { return };
    // The cold path, then a warm sandbox.
    for rt in [None, Some(run::WARM)] {
        let out = e.run(rt, &[BUSYBOX, "mount", "-t", "tmpfs", "tmpfs", "/mnt"]);
        assert_ne!(out.status.code(), Some(0), "mount succeeded");
        let out = e.run(rt, &[BUSYBOX, "sh", "-c", "unshare -m true"]);
        assert_ne!(out.status.code(), Some(0), "unshare succeeded");
        let out = e.run(rt, &[BUSYBOX, "sh", "-c", "echo x > /m.ko; insmod /m.ko"]);
        assert_ne!(out.status.code(), Some(0), "insmod succeeded");
        // Even with CAP_SYS_ADMIN added, module loading stays blocked.
        let out = e.run(
            rt,
            &[
                "--cap-add",
                "SYS_ADMIN",
                BUSYBOX,
                "sh",
                "-c",
                "echo x > /m.ko; insmod /m.ko",
            ],
        );
        assert_ne!(
            out.status.code(),
            Some(0),
            "insmod with SYS_ADMIN succeeded"
        );
    }
}

#[test]
fn test_security_default_capabilities_only() {
    let Some(e) = env() else { return };
    // The cold path, then a warm sandbox.
    for rt in [None, Some(run::WARM)] {
        let out = e.run(
            rt,
            &[
                BUSYBOX,
                "sh",
                "-c",
                "grep -E '^Cap(Prm|Eff|Bnd|Inh|Amb)' /proc/self/status",
            ],
        );
        let so = stdout(&out);
        // Docker's 14 default capabilities.
        assert!(so.contains("CapBnd:\t00000000a80425fb"), "{so}");
        assert!(so.contains("CapEff:\t00000000a80425fb"), "{so}");
        assert!(so.contains("CapInh:\t0000000000000000"), "{so}");
        assert!(so.contains("CapAmb:\t0000000000000000"), "{so}");
        let out = e.run(
            rt,
            &[
                "--cap-drop",
                "ALL",
                "--cap-add",
                "CHOWN",
                BUSYBOX,
                "grep",
                "CapEff",
                "/proc/self/status",
            ],
        );
        assert_eq!(stdout(&out), "CapEff:\t0000000000000001\n");
        let out = e.run(rt, &[BUSYBOX, "grep", "NoNewPrivs", "/proc/self/status"]);
        assert_eq!(stdout(&out), "NoNewPrivs:\t1\n");
        let out = e.run(rt, &[BUSYBOX, "grep", "Seccomp:", "/proc/self/status"]);
        assert_eq!(stdout(&out), "Seccomp:\t2\n");
        let out = e.run(
            rt,
            &[
                "--security-opt",
                "seccomp=unconfined",
                BUSYBOX,
                "grep",
                "Seccomp:",
                "/proc/self/status",
            ],
        );
        assert_eq!(stdout(&out), "Seccomp:\t0\n");
    }
}

#[test]
fn test_security_masked_and_readonly_paths() {
    let Some(e) = env() else { return };
    // The cold path, then a warm sandbox.
    for rt in [None, Some(run::WARM)] {
        let out = e.run(rt, &[BUSYBOX, "sh", "-c", "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do cat $f 2>/dev/null | wc -c; done; ls /sys/firmware | wc -l"]);
        // Masked: absent on this kernel, or empty.
        assert_eq!(stdout(&out), "0\n0\n0\n0\n0\n", "{}", job_stderr(&out));
        let out = e.run(
            rt,
            &[BUSYBOX, "sh", "-c", "echo 1 > /proc/sys/kernel/panic"],
        );
        assert_ne!(out.status.code(), Some(0), "/proc/sys is writable");
        let out = e.run(
            rt,
            &[BUSYBOX, "sh", "-c", "echo x > /sys/kernel/uevent_helper"],
        );
        assert_ne!(out.status.code(), Some(0), "/sys is writable");
    }
}

#[test]
fn test_security_device_nodes_give_no_host_access() {
    let Some(e) = env() else { return };
    // The cold path, then a warm sandbox.
    for rt in [None, Some(run::WARM)] {
        // A node for the host's first disk (and /dev/mem), made in the writable layer and in /dev.
        let out = e.run(
            rt,
            &[BUSYBOX, "sh", "-c", "mknod /sda b 8 0; mknod /dev/sda b 8 0; mknod /dev/kmem c 1 2; for d in /sda /dev/sda /dev/kmem; do head -c 1 $d >/dev/null 2>&1 && echo OPENED $d; done; echo end"],
        );
        let so = stdout(&out);
        assert!(!so.contains("OPENED"), "{so}");
        assert!(so.ends_with("end\n"), "{so} {}", job_stderr(&out));
        // The standard devices work.
        let out = e.run(
            rt,
            &[
                BUSYBOX,
                "sh",
                "-c",
                "head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok",
            ],
        );
        assert_eq!(stdout(&out), "4\nnull-ok\n");
    }
}

#[test]
fn test_security_fork_bomb_stops_at_pids_limit() {
    let Some(e) = env() else { return };
    // The cold path, then a warm sandbox.
    for rt in [None, Some(run::WARM)] {
        let out = e.run(
            rt,
            &[
                "--json",
                "--pids-limit",
                "32",
                "--timeout",
                "3s",
                "--stop-timeout",
                "100ms",
                BUSYBOX,
                "sh",
                "-c",
                "b() { b | b & }; b; sleep 1; ls -d /proc/[0-9]* | wc -l",
            ],
        );
        // The job finishes (or is stopped) and nothing survives it.
        let _ = out.status.code();
        assert!(e.state_dirs().is_empty());
        assert!(e.job_cgroups().is_empty(), "{:?}", e.job_cgroups());
    }
}

#[test]
fn test_security_memory_hog_is_oom_killed() {
    let Some(e) = env() else { return };
    // The cold path, then a warm sandbox.
    for rt in [None, Some(run::WARM)] {
        let out = e.run(
            rt,
            &[
                "--json",
                "-m",
                "24m",
                BUSYBOX,
                "sh",
                "-c",
                "x=$(head -c 100000000 /dev/zero | tr '\\0' a)",
            ],
        );
        assert_eq!(out.status.code(), Some(137), "{}", job_stderr(&out));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
        assert_eq!(v["oom_killed"], true);
    }
}

/// Syscalls Docker's default profile blocks for a job with the default
/// capabilities, and what the probe gets for each.
const BLOCKED: &[(&str, &str)] = &[
    ("keyctl", "EPERM"),
    ("add_key", "EPERM"),
    ("request_key", "EPERM"),
    ("bpf", "EPERM"),
    ("userfaultfd", "EPERM"),
    ("perf_event_open", "EPERM"),
    ("kexec_load", "EPERM"),
    ("open_by_handle_at", "EPERM"),
    ("init_module", "EPERM"),
    ("io_uring_setup", "EPERM"),
    ("unshare", "EPERM"),
    ("mount", "EPERM"),
    ("reboot", "EPERM"),
    ("clock_settime", "EPERM"),
    ("clone_newuser", "EPERM"),
    ("clone_newns", "EPERM"),
    ("socket_vsock", "EPERM"),
    ("personality_exec", "EPERM"),
    ("clone3", "ENOSYS"),
];

/// Syscalls a job needs, which the profile allows.
const ALLOWED: &[&str] = &["getpid", "fork", "socket_unix", "personality_query"];

/// libcontainer, its warm-sandbox path, then runc and crun where
/// installed (none is required).
fn runtimes() -> Vec<Option<&'static str>> {
    let mut v = vec![None, Some(run::WARM)];
    v.extend(
        ["runc", "crun"]
            .into_iter()
            .filter(|r| run::have(r))
            .map(Some),
    );
    v
}

#[test]
fn test_security_seccomp_blocks_what_docker_blocks() {
    let Some(e) = env() else { return };
    if run::syscall_probe_dir().is_none() {
        return;
    }
    let names: Vec<&str> = BLOCKED
        .iter()
        .map(|(n, _)| *n)
        .chain(ALLOWED.iter().copied())
        .collect();
    for rt in runtimes() {
        let got = run::probe_syscalls(&e, rt, &[], &names);
        for (n, want) in BLOCKED {
            assert_eq!(
                got.get(*n).map(String::as_str),
                Some(*want),
                "{rt:?}: {n}: {got:?}"
            );
        }
        for n in ALLOWED {
            assert_eq!(
                got.get(*n).map(String::as_str),
                Some("ok"),
                "{rt:?}: {n}: {got:?}"
            );
        }
    }
    // Unconfined, the kernel decides: the keyring calls work, so it was the
    // profile that refused them.
    let got = run::probe_syscalls(
        &e,
        None,
        &["--security-opt", "seccomp=unconfined"],
        &["keyctl", "add_key", "personality_exec", "clone3"],
    );
    assert_eq!(got["keyctl"], "ok", "{got:?}");
    assert_eq!(got["add_key"], "ok", "{got:?}");
    assert_eq!(got["personality_exec"], "ok", "{got:?}");
    assert_ne!(got["clone3"], "ENOSYS", "{got:?}");
}

#[test]
fn test_security_seccomp_cap_add_allows_its_syscalls() {
    let Some(e) = env() else { return };
    if run::syscall_probe_dir().is_none() {
        return;
    }
    for rt in runtimes() {
        let got = run::probe_syscalls(
            &e,
            rt,
            &["--cap-add", "SYS_ADMIN"],
            &[
                "unshare",
                "mount",
                "clone_newns",
                "keyctl",
                "init_module",
                "kexec_load",
            ],
        );
        // SYS_ADMIN: mount and namespaces; never keyrings, modules or kexec.
        assert_eq!(got["unshare"], "ok", "{rt:?}: {got:?}");
        assert_eq!(got["mount"], "ok", "{rt:?}: {got:?}");
        assert_eq!(got["clone_newns"], "ok", "{rt:?}: {got:?}");
        assert_eq!(got["keyctl"], "EPERM", "{rt:?}: {got:?}");
        assert_eq!(got["init_module"], "EPERM", "{rt:?}: {got:?}");
        assert_eq!(got["kexec_load"], "EPERM", "{rt:?}: {got:?}");
    }
}

#[test]
fn test_security_seccomp_ordinary_commands_work() {
    // A shell session touching files, processes, pipes, signals, time,
    // sockets and IPC gives the same output with and without the profile.
    let Some(e) = env() else { return };
    // The cold path, then a warm sandbox.
    for rt in [None, Some(run::WARM)] {
        let script = "set -e; mkdir -p /w/a; cd /w; echo hi > a/f; cp a/f b; mv b c; ln -s c d; \
            ln c e; chmod 600 c; chown 1:1 c; touch -d 2020-01-01 c; stat -c '%a %u %s' c; \
            readlink d; cat d e | sort | uniq -c | tr -s ' '; find /w -type f | sort | xargs wc -l | tail -1; \
            dd if=/dev/zero of=z bs=1k count=8 2>/dev/null; du -k z | cut -f1; \
            seq 1 5 | sed 's/3/x/' | grep -c x; sleep 0.01 & wait; \
            trap 'echo usr1' USR1; kill -USR1 $$; timeout 1 sleep 0.01; \
            test -n \"$(date +%s)\"; id -u; hostname >/dev/null; uname -s; nproc >/dev/null; \
            ps >/dev/null; free >/dev/null; df / >/dev/null; top -bn1 >/dev/null; \
            ping -c1 -W1 127.0.0.1 >/dev/null && echo ping; rm -r /w; echo done";
        let run = |opts: &[&str]| {
            let mut args: Vec<&str> = opts.to_vec();
            args.extend([BUSYBOX, "sh", "-c", script]);
            let out = e.run(rt, &args);
            assert_eq!(out.status.code(), Some(0), "{opts:?}: {}", job_stderr(&out));
            stdout(&out)
        };
        let confined = run(&[]);
        assert!(confined.ends_with("done\n"), "{confined}");
        assert_eq!(confined, run(&["--security-opt", "seccomp=unconfined"]));
    }
}
