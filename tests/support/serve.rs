//! A real `skiff serve` on a fresh store (the vendored images imported),
//! driven through its HTTP API on the unix socket. Dropping a [`Worker`]
//! stops it (SIGTERM, then SIGKILL) and cleans up like `skiff gc`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scheduler::client::Client;
use serde_json::Value;

use super::env::skiff_bin;
use super::run::{env, Env};

/// The vendored busybox's tag.
pub const IMAGE: &str = "skiff-vendor/busybox";

/// A running worker.
pub struct Worker {
    /// The store (and its cleanup).
    pub env: Env,
    /// The `skiff serve` process, while it runs.
    pub child: Option<Child>,
    /// Extra `serve` arguments, kept for restarts.
    pub args: Vec<String>,
    /// Extra environment of the `skiff serve` process, kept for restarts.
    pub envs: Vec<(String, String)>,
    /// The host it runs on, when not this one: a network namespace and a
    /// host name (a UTS namespace of its own).
    pub host: Option<(PathBuf, String)>,
    rt: tokio::runtime::Runtime,
}

impl Worker {
    /// Start a worker with `args` after `serve`, or skip (None) when the
    /// host cannot run jobs.
    pub fn start(args: &[&str]) -> Option<Worker> {
        Worker::start_with_env(args, &[])
    }

    /// [`Worker::start`] with extra environment variables for `skiff serve`.
    pub fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Option<Worker> {
        Worker::start_on(None, args, envs)
    }

    /// [`Worker::start_with_env`] on another host: in the network
    /// namespace `netns`, named `hostname`.
    pub fn start_on(
        host: Option<(PathBuf, String)>,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Option<Worker> {
        let env = env()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut w = Worker {
            env,
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            host,
            rt,
        };
        w.restart();
        Some(w)
    }

    /// The store root.
    pub fn root(&self) -> PathBuf {
        self.env.root.path().to_path_buf()
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.root().join("skiff.sock")
    }

    /// Start `skiff serve` (again) and wait until its API answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "worker already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root().join("serve.log"))
            .expect("serve log");
        let mut cmd = Command::new(skiff_bin());
        cmd.arg("--root")
            .arg(self.root())
            .arg("serve")
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some((netns, name)) = &self.host {
            enter_host(&mut cmd, netns, name);
        }
        let child = cmd.spawn().expect("start skiff serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = self.try_call("GET", "/healthz", None) {
                return;
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("skiff serve exited with {st}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "skiff serve did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The worker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("serve.log")).unwrap_or_default()
    }

    fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let client = Client::unix(&self.socket());
        let body = body.map(|b| serde_json::to_vec(b).expect("json"));
        let r = self
            .rt
            .block_on(client.call(method, path, body))
            .map_err(|e| e.to_string())?;
        let v = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
        Ok((r.status, v))
    }

    /// One API call: status and JSON body (a string for non-JSON bodies).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// Raw bytes as the body (for malformed-JSON tests).
    pub fn call_raw(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let client = Client::unix(&self.socket());
        let r = self
            .rt
            .block_on(client.call(method, path, Some(body.to_vec())))
            .expect("call");
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        )
    }

    /// Submit one job; assert 201; the job.
    pub fn submit(&self, job: Value) -> Value {
        let (st, v) = self.call("POST", "/v1/jobs", Some(&job));
        assert_eq!(st, 201, "submit {job}: {v}");
        v
    }

    /// The job `id`.
    pub fn job(&self, id: &str) -> Value {
        let (st, v) = self.call("GET", &format!("/v1/jobs/{id}"), None);
        assert_eq!(st, 200, "get {id}: {v}");
        v
    }

    /// Wait (long poll) until `id` is terminal; at most `secs` seconds.
    pub fn wait(&self, id: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (st, v) = self.call("GET", &format!("/v1/jobs/{id}/wait?timeout=5"), None);
            assert_eq!(st, 200, "wait {id}: {v}");
            let s = v["state"].as_str().unwrap_or_default();
            if scheduler::JobState::parse(s).is_some_and(|s| s.is_terminal()) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} still {s}: {v}\n{}",
                self.log()
            );
        }
    }

    /// Wait until `id` is in `state`; at most `secs` seconds.
    pub fn wait_state(&self, id: &str, state: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.job(id);
            if v["state"] == state {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never {state}: {v}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL the worker (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the worker and wait for it to exit; its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A tiny HTTP server on 127.0.0.1 answering every request with `status`;
/// each request's body arrives on the channel.
pub fn receiver(status: u16) -> (String, std::sync::mpsc::Receiver<(String, Value)>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/done", l.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    use std::io::{BufRead, Read, Write};
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
            let mut line = String::new();
            let mut headers = Vec::new();
            let mut len = 0usize;
            if r.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push(h);
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let _ = tx.send((headers.concat(), v));
        }
    });
    (url, rx)
}

/// Run `cmd` on another host: in the network namespace `netns`, with a
/// UTS namespace of its own named `name`. The mount namespace stays the
/// test's, so its mounts and cgroups are seen (and checked) from here.
fn enter_host(cmd: &mut Command, netns: &std::path::Path, name: &str) {
    use std::os::unix::process::CommandExt;
    let ns = std::fs::File::open(netns).unwrap_or_else(|e| panic!("open {}: {e}", netns.display()));
    let name = name.to_string();
    // SAFETY: between fork and exec the closure makes three system calls
    // on memory prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            use nix::sched::{setns, unshare, CloneFlags};
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            unshare(CloneFlags::CLONE_NEWUTS).map_err(std::io::Error::from)?;
            nix::unistd::sethostname(&name).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
        // Launchers die with the worker (parent-death signal); give them a
        // moment, then `Env`'s drop runs `skiff gc`.
        std::thread::sleep(Duration::from_millis(200));
    }
}
