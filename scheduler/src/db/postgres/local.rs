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
    /// The address clients use: loopback, or the one given to
    /// [`LocalCluster::start_for_network`].
    host: std::net::Ipv4Addr,
}

/// Where a cluster listens beyond loopback: its address there, and the
/// network (`10.1.2.0/24`) whose clients it trusts.
#[derive(Debug, Clone, Copy)]
struct Network {
    address: std::net::Ipv4Addr,
    prefix: u8,
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
        LocalCluster::start_with(false, None)
    }

    /// Start one with PostgreSQL's stock settings (`fsync=on`).
    pub fn start_durable() -> Result<Option<LocalCluster>, ClusterError> {
        LocalCluster::start_with(true, None)
    }

    /// Start one with `fsync=off` that also listens on `address` (a
    /// bridge's) and trusts clients from `address/prefix`: the test's
    /// worker hosts, each in a network namespace of its own.
    pub fn start_for_network(
        address: std::net::Ipv4Addr,
        prefix: u8,
    ) -> Result<Option<LocalCluster>, ClusterError> {
        LocalCluster::start_with(false, Some(Network { address, prefix }))
    }

    fn start_with(
        durable: bool,
        network: Option<Network>,
    ) -> Result<Option<LocalCluster>, ClusterError> {
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
            host: network.map_or(std::net::Ipv4Addr::LOCALHOST, |n| n.address),
        };
        let data = c.data();
        c.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        )?;
        let mut listen = "127.0.0.1".to_string();
        if let Some(n) = network {
            let net = u32::from(n.address) & (u32::MAX << (32 - u32::from(n.prefix.clamp(1, 32))));
            let hba = std::path::Path::new(&data).join("pg_hba.conf");
            let line = format!(
                "host all all {}/{} trust\n",
                std::net::Ipv4Addr::from(net),
                n.prefix
            );
            std::fs::OpenOptions::new()
                .append(true)
                .open(&hba)
                .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()))
                .map_err(|e| err(format!("{}: {e}", hba.display())))?;
            listen.push_str(&format!(",{}", n.address));
        }
        let mut opts = format!(
            "-c listen_addresses={listen} -p {} -k {}",
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
        Ok(format!(
            "postgres://postgres@{}:{}/{db}",
            self.host, self.port
        ))
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
