//! Real registries for the pull tests: Debian's `docker-registry`
//! (distribution 2.8) on loopback, plain or with TLS (a CA made for the
//! test by `openssl`) and htpasswd auth (`htpasswd -B`), filled with
//! `skopeo copy`. Each instance is killed on drop; its data directory can
//! outlive it, so a killed registry can be started again on the same port
//! with the same content.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::env::have;

/// The user and password of every authenticated test registry.
pub const USER: &str = "skiff";
pub const PASSWORD: &str = "pull-test-pw";

/// The programs a registry test needs, or what is missing.
pub fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = ["docker-registry", "skopeo", "openssl", "htpasswd"]
        .into_iter()
        .filter(|p| !have(p))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} (Debian packages docker-registry, skopeo, openssl, apache2-utils)",
            missing.join(", ")
        )
    })
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// TLS material for `127.0.0.1`: a CA and a server certificate it signed.
#[derive(Debug, Clone)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    /// Make a CA and a server certificate for 127.0.0.1 and localhost in `dir`.
    pub fn generate(dir: &Path) -> Tls {
        let p = |n: &str| dir.join(n);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=skiff test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            p("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write san.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        Tls {
            ca: p("ca.crt"),
            cert: p("server.crt"),
            key: p("server.key"),
        }
    }
}

/// One `docker-registry` process.
#[derive(Debug)]
pub struct Registry {
    pub port: u16,
    pub data: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    pub tls: Option<Tls>,
}

impl Registry {
    /// A plain-HTTP registry, no auth, storing under `dir`.
    pub fn plain(dir: &Path) -> Registry {
        Registry::start(dir, None)
    }

    /// A registry with TLS (its own CA) and htpasswd auth ([`USER`], [`PASSWORD`]).
    pub fn tls_auth(dir: &Path) -> Registry {
        std::fs::create_dir_all(dir).expect("registry dir");
        let tls = Tls::generate(dir);
        Registry::start(dir, Some(tls))
    }

    fn start(dir: &Path, tls: Option<Tls>) -> Registry {
        let port = free_port();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("registry data dir");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            data.display()
        );
        if let Some(t) = &tls {
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert.display(),
                t.key.display()
            ));
            let out = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("run htpasswd");
            assert!(out.status.success(), "htpasswd failed");
            let htpasswd = dir.join("htpasswd");
            std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config = dir.join("config.yml");
        std::fs::write(&config, cfg).expect("write registry config");
        let mut r = Registry {
            port,
            data,
            config,
            child: None,
            log: dir.join("registry.log"),
            tls,
        };
        r.restart();
        r
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/", self.host())
    }

    /// Start it (again), on the same port and data, and wait until it listens.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("registry log");
        let child = Command::new("docker-registry")
            .args(["serve"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "docker-registry exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL it, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Push `source` (a skopeo transport reference: `docker-archive:PATH`,
    /// `oci:DIR:TAG`) as `REPO:TAG` here; `all` copies every image of an index.
    pub fn push(&self, source: &str, repo_tag: &str, all: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ]);
        if self.tls.is_some() {
            cmd.arg(format!("--dest-creds={USER}:{PASSWORD}"));
        }
        if all {
            cmd.arg("--all");
        }
        let out = cmd
            .arg(source)
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {source} to {repo_tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A certs directory holding `ca` for `host` (`DIR/HOST/ca.crt`).
pub fn certs_dir(dir: &Path, host: &str, ca: &Path) -> PathBuf {
    let certs = dir.join("certs.d");
    std::fs::create_dir_all(certs.join(host)).expect("certs dir");
    std::fs::copy(ca, certs.join(host).join("ca.crt")).expect("copy CA");
    certs
}

/// A Docker-style auth file with `user:password` for `host`.
pub fn auth_file(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join(format!("auth-{user}.json"));
    let doc = serde_json::json!({"auths": {host: {"auth": b64}}});
    std::fs::write(&path, doc.to_string()).expect("write auth file");
    path
}
