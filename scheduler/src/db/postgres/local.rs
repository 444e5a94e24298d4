//! A private PostgreSQL cluster, for tests and `skiff bench queue
//! --noop`: `initdb` in a temporary directory, started with `pg_ctl` on a
//! free loopback port, stopped and removed when dropped (also when a test
//! fails). PostgreSQL refuses to run as root, so as root it runs as the
//! `postgres` user that Debian's package creates. Tests run it with
//! `fsync=off` (it is thrown away); the benchmark with PostgreSQL's stock
//! settings ([`LocalCluster::start_durable`]).

use std::path::PathBuf;
use std::process::Command;

/// Why a local cluster could not be made, started or given a database.
#[derive(Debug, thiserror::Error)]
#[error("local PostgreSQL cluster: {0}")]
pub struct ClusterError(String);

/// A running cluster; stopped on drop.
#[derive(Debug)]
pub struct LocalCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The newest installed server's `bin` (`SKIFF_PG_BIN` overrides).
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

fn err(what: impl std::fmt::Display) -> ClusterError {
    ClusterError(what.to_string())
}

impl LocalCluster {
    /// Start one with `fsync=off`; `Ok(None)` when PostgreSQL is not
    /// installed.
    pub fn start() -> Result<Option<LocalCluster>, ClusterError> {
        LocalCluster::start_with(false)
    }

    /// Start one with PostgreSQL's stock settings (`fsync=on`).
    pub fn start_durable() -> Result<Option<LocalCluster>, ClusterError> {
        LocalCluster::start_with(true)
    }

    fn start_with(durable: bool) -> Result<Option<LocalCluster>, ClusterError> {
        let Some(bin) = pg_bin() else {
            return Ok(None);
        };
        let as_postgres = nix::unistd::geteuid().is_root();
        let dir = tempfile::Builder::new()
            .prefix("skiff-pg-")
            .tempdir()
            .map_err(|e| err(format!("temporary directory: {e}")))?;
        if as_postgres {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or_else(|| err("no user postgres (Debian's postgresql package makes it)"))?;
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid))
                .map_err(|e| err(format!("chown {}: {e}", dir.path().display())))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| err(format!("a free loopback port: {e}")))?
            .port();
        let c = LocalCluster {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = c.data();
        c.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        )?;
        let mut opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {}",
            c.port,
            c.dir.path().display()
        );
        if !durable {
            opts.push_str(" -c fsync=off");
        }
        let log = c.dir.path().join("log").display().to_string();
        c.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &opts, "-w", "start"],
        )?;
        Ok(Some(c))
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of a new database `db` (or of `postgres`, which exists).
    pub fn url(&self, db: &str) -> Result<String, ClusterError> {
        if db != "postgres" {
            let port = self.port.to_string();
            self.run(
                "createdb",
                &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", db],
            )?;
        }
        Ok(format!("postgres://postgres@127.0.0.1:{}/{db}", self.port))
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), ClusterError> {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .map_err(|e| err(format!("run {tool}: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        Err(err(format!(
            "{tool} {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}
