//! A PostgreSQL cluster of a test's own: `initdb` in a temporary
//! directory, started with `pg_ctl` on a free loopback port, stopped and
//! removed when dropped (also when the test fails). PostgreSQL refuses to
//! run as root, so as root it runs as the `postgres` user that Debian's
//! package creates. Without the binaries the tests are skipped, unless
//! `SKIFF_REQUIRE_PRIVILEGED=1` (CI), where that is a failure.

use std::path::PathBuf;
use std::process::Command;

/// A running cluster; stopped on drop.
pub struct TestCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn pg_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SKIFF_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl TestCluster {
    /// Start one, or `None` (skip) when PostgreSQL is not installed.
    pub fn start() -> Option<TestCluster> {
        let Some(bin) = pg_bin() else {
            assert!(
                std::env::var("SKIFF_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "PostgreSQL's initdb not found (install postgresql, or set SKIFF_PG_BIN)"
            );
            eprintln!("skipped: PostgreSQL not installed");
            return None;
        };
        let as_postgres = nix::unistd::geteuid().is_root();
        let dir = tempfile::Builder::new()
            .prefix("skiff-pg-")
            .tempdir()
            .expect("tempdir");
        if as_postgres {
            let user = nix::unistd::User::from_name("postgres")
                .expect("look up user postgres")
                .expect("user postgres (Debian's postgresql package creates it)");
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown");
        }
        let c = TestCluster {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        let data = c.data();
        c.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            c.port,
            c.dir.path().display()
        );
        let log = c.dir.path().join("log").display().to_string();
        c.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &opts, "-w", "start"],
        );
        Some(c)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of database `db` (created if it is not `postgres`).
    pub fn url(&self, db: &str) -> String {
        if db != "postgres" {
            self.run(
                "createdb",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    db,
                ],
            );
        }
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let data = self.data();
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .current_dir(self.dir.path())
            .output();
    }
}
