//! `skiff submit` and `skiff jobs`: the worker's API from the command line,
//! over its unix socket.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use scheduler::client::{Client, Response};
use serde_json::Value;

/// Where the worker is.
#[derive(Debug, Args)]
pub struct Conn {
    /// The worker's socket (default ROOT/skiff.sock).
    #[arg(long, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    /// A worker's TCP API, http://ADDR:PORT (`skiff serve --listen`); the
    /// bearer token is read from $SKIFF_TOKEN.
    #[arg(long, value_name = "URL", global = true, env = "SKIFF_HOST", value_parser = parse_host)]
    pub host: Option<String>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `skiff submit` options.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    conn: Conn,
    /// Environment variable NAME=value (repeatable).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Bind mount HOST:CONTAINER[:ro|rw] (the worker must allow HOST with
    /// `skiff serve --allow-volume`; repeatable).
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    volume: Vec<String>,
    /// Memory limit (e.g. 64m).
    #[arg(short = 'm', long, value_name = "SIZE")]
    memory: Option<String>,
    /// CPU limit.
    #[arg(long, value_name = "N")]
    cpus: Option<f64>,
    /// Process limit.
    #[arg(long = "pids-limit", value_name = "N")]
    pids: Option<i64>,
    /// Priority 0–2 (higher first).
    #[arg(long, value_name = "P")]
    priority: Option<i64>,
    /// Timeout, seconds (default 3600).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Seconds before the job may start.
    #[arg(long, value_name = "SECS")]
    delay: Option<u64>,
    /// Retries after a failed attempt.
    #[arg(long = "retries", value_name = "N")]
    retries: Option<u32>,
    /// Seconds before the first retry (doubled each time, with jitter).
    #[arg(long = "retry-delay", value_name = "SECS")]
    retry_delay: Option<u64>,
    /// Label.
    #[arg(long)]
    label: Option<String>,
    /// Queue.
    #[arg(long)]
    queue: Option<String>,
    /// Payload: text, or @FILE.
    #[arg(long, value_name = "TEXT|@FILE")]
    payload: Option<String>,
    /// A second submit with this key returns the first job.
    #[arg(long = "idempotency-key", value_name = "KEY")]
    idempotency_key: Option<String>,
    /// A URL POSTed the job's result when it ends.
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// Wait for the job to end, print its output, and exit with its status.
    #[arg(long)]
    wait: bool,
    /// Stream the job's stdout while it runs (then its stderr), and exit with its status.
    #[arg(long)]
    follow: bool,
    /// Image reference, or `code:NAME` for a code package.
    image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `skiff jobs` subcommands.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs.
    Ls {
        #[command(flatten)]
        conn: Conn,
        /// Only this state.
        #[arg(long)]
        state: Option<String>,
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only this label.
        #[arg(long)]
        label: Option<String>,
        /// At most N.
        #[arg(long, value_name = "N")]
        limit: Option<i64>,
    },
    /// Show one job, with its attempts.
    Show {
        #[command(flatten)]
        conn: Conn,
        /// Job id.
        id: String,
    },
    /// Print a job's output (the last attempt's unless --attempt).
    Log {
        #[command(flatten)]
        conn: Conn,
        /// Job id.
        id: String,
        /// stdout or stderr.
        #[arg(long, default_value = "stdout")]
        stream: String,
        /// Attempt number.
        #[arg(long)]
        attempt: Option<i64>,
    },
    /// Cancel a job.
    Cancel {
        #[command(flatten)]
        conn: Conn,
        /// Job id.
        id: String,
    },
    /// Queue a finished job again.
    Retry {
        #[command(flatten)]
        conn: Conn,
        /// Job id.
        id: String,
    },
}

/// `http://ADDR:PORT[/]` to `ADDR:PORT`.
fn parse_host(s: &str) -> Result<String, String> {
    let addr = s
        .strip_prefix("http://")
        .ok_or_else(|| format!("{s}: expected http://ADDR:PORT"))?
        .trim_end_matches('/');
    if addr.is_empty() || addr.contains('/') || !addr.contains(':') {
        return Err(format!("{s}: expected http://ADDR:PORT"));
    }
    Ok(addr.to_string())
}

pub(crate) fn client(root: &Path, conn: &Conn) -> Client {
    if let Some(addr) = &conn.host {
        let token = std::env::var("SKIFF_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        return Client::tcp(addr.clone(), token);
    }
    Client::unix(
        &conn
            .socket
            .clone()
            .unwrap_or_else(|| root.join("skiff.sock")),
    )
}

pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f))
}

pub(crate) fn ok(resp: Response) -> anyhow::Result<Value> {
    if !(200..300).contains(&resp.status) {
        bail!("worker answered {}: {}", resp.status, resp.error_message());
    }
    Ok(resp.json())
}

fn print_job_line(j: &Value) {
    let s = |k: &str| j.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let n = |k: &str| j.get(k).and_then(Value::as_i64).unwrap_or(0);
    println!(
        "{}  {:<9}  {}  p{}  attempts {}  {}",
        s("id"),
        s("state"),
        j.pointer("/request/code")
            .and_then(Value::as_str)
            .map(|c| format!("code:{c}"))
            .or_else(|| j
                .pointer("/request/image")
                .and_then(Value::as_str)
                .map(str::to_string))
            .unwrap_or_else(|| "-".into()),
        n("priority"),
        n("attempts"),
        s("reason"),
    );
}

/// The process status a finished job maps to, as `skiff run` would exit.
fn exit_status(job: &Value) -> u8 {
    let last = job
        .get("attempt_list")
        .and_then(Value::as_array)
        .and_then(|a| a.last());
    match job.get("state").and_then(Value::as_str) {
        Some("complete") => 0,
        Some("cancelled") => 130,
        _ => last
            .and_then(|a| a.get("exit_code"))
            .and_then(Value::as_i64)
            .map(|c| runtime::exit_code::as_process_status(c as i32))
            .unwrap_or(125),
    }
}

/// `skiff submit`.
pub fn submit(root: &Path, a: SubmitArgs) -> anyhow::Result<u8> {
    let payload = match a.payload.as_deref() {
        Some(p) if p.starts_with('@') => Some(
            std::fs::read_to_string(&p[1..])
                .with_context(|| format!("reading the payload file {}", &p[1..]))?,
        ),
        Some(p) => Some(p.to_string()),
        None => None,
    };
    let (image, code) = match a.image.strip_prefix("code:") {
        Some(name) => (String::new(), Some(name.to_string())),
        None => (a.image, None),
    };
    let req = scheduler::JobRequest {
        image,
        code,
        command: a.command,
        env: a.env,
        volumes: a.volume,
        memory: a.memory.map(scheduler::request::Size::Text),
        cpus: a.cpus,
        pids: a.pids,
        payload,
        timeout: a.timeout,
        priority: a.priority,
        delay: a.delay,
        max_retries: a.retries,
        retry_delay: a.retry_delay,
        label: a.label,
        queue: a.queue,
        idempotency_key: a.idempotency_key,
        webhook: a.webhook,
    };
    let c = client(root, &a.conn);
    let body = serde_json::to_vec(&req)?;
    block_on(async {
        let job = ok(c.call("POST", "/v1/jobs", Some(body)).await?)?;
        let id = job["id"].as_str().unwrap_or_default().to_string();
        let mut streamed = false;
        if a.follow {
            // Wait for the first attempt to start, then follow its stdout.
            loop {
                let j = ok(c.call("GET", &format!("/v1/jobs/{id}"), None).await?)?;
                if j["attempts"].as_i64().unwrap_or(0) > 0
                    || j["state"] != "queued" && j["state"] != "delayed"
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let mut out = std::io::stdout();
            let r = c
                .stream(&format!("/v1/jobs/{id}/log?follow=true"), &mut out)
                .await?;
            streamed = (200..300).contains(&r.status);
        }
        if !a.wait && !a.follow {
            if a.conn.json {
                println!("{job}");
            } else {
                println!("{id}");
            }
            return Ok(0);
        }
        let job = loop {
            let j = ok(c
                .call("GET", &format!("/v1/jobs/{id}/wait?timeout=60"), None)
                .await?)?;
            let state = j["state"].as_str().unwrap_or_default();
            if scheduler::JobState::parse(state).is_some_and(|s| s.is_terminal()) {
                break j;
            }
        };
        if job["attempts"].as_i64().unwrap_or(0) > 0 {
            for (stream, out) in [("stdout", 1), ("stderr", 2)] {
                if streamed && out == 1 {
                    continue;
                }
                let r = c
                    .call("GET", &format!("/v1/jobs/{id}/log?stream={stream}"), None)
                    .await?;
                if (200..300).contains(&r.status) {
                    let _ = if out == 1 {
                        std::io::stdout().write_all(&r.body)
                    } else {
                        std::io::stderr().write_all(&r.body)
                    };
                }
            }
        }
        if a.conn.json {
            println!("{job}");
        } else if job["state"] != "complete" {
            eprintln!(
                "skiff: job {id} {}: {}",
                job["state"].as_str().unwrap_or("?"),
                job["reason"].as_str().unwrap_or("")
            );
        }
        Ok(exit_status(&job))
    })?
}

/// `skiff jobs …`.
pub fn jobs(root: &Path, cmd: JobsCommand) -> anyhow::Result<u8> {
    block_on(async {
        match cmd {
            JobsCommand::Ls {
                conn,
                state,
                queue,
                label,
                limit,
            } => {
                let mut q = Vec::new();
                for (k, v) in [("state", state), ("queue", queue), ("label", label)] {
                    if let Some(v) = v {
                        q.push(format!("{k}={}", urlencode(&v)));
                    }
                }
                if let Some(l) = limit {
                    q.push(format!("limit={l}"));
                }
                let path = format!("/v1/jobs?{}", q.join("&"));
                let v = ok(client(root, &conn).call("GET", &path, None).await?)?;
                if conn.json {
                    println!("{v}");
                } else {
                    for j in v["jobs"].as_array().into_iter().flatten() {
                        print_job_line(j);
                    }
                }
                Ok(0)
            }
            JobsCommand::Show { conn, id } => {
                let v = ok(client(root, &conn)
                    .call("GET", &format!("/v1/jobs/{}", urlencode(&id)), None)
                    .await?)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(0)
            }
            JobsCommand::Log {
                conn,
                id,
                stream,
                attempt,
            } => {
                let mut path = format!(
                    "/v1/jobs/{}/log?stream={}",
                    urlencode(&id),
                    urlencode(&stream)
                );
                if let Some(n) = attempt {
                    path.push_str(&format!("&attempt={n}"));
                }
                let r = client(root, &conn).call("GET", &path, None).await?;
                if !(200..300).contains(&r.status) {
                    bail!("worker answered {}: {}", r.status, r.error_message());
                }
                std::io::stdout().write_all(&r.body)?;
                Ok(0)
            }
            JobsCommand::Cancel { conn, id } => post_action(root, &conn, &id, "cancel").await,
            JobsCommand::Retry { conn, id } => post_action(root, &conn, &id, "retry").await,
        }
    })?
}

async fn post_action(root: &Path, conn: &Conn, id: &str, what: &str) -> anyhow::Result<u8> {
    let v = ok(client(root, conn)
        .call(
            "POST",
            &format!("/v1/jobs/{}/{what}", urlencode(id)),
            Some(b"{}".to_vec()),
        )
        .await?)?;
    if conn.json {
        println!("{v}");
    } else {
        print_job_line(&v);
    }
    Ok(0)
}

/// Percent-encode a query or path value.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
