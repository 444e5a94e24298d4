//! `skiff schedule`: the worker's schedules (a job fired on a cron
//! expression or every N seconds) from the command line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use scheduler::client::{Client, Response};
use scheduler::schedules::{format_rfc3339, parse_rfc3339};
use serde_json::{json, Map, Value};

/// Where the worker is.
#[derive(Debug, Args)]
pub struct Conn {
    /// The worker's socket (default ROOT/skiff.sock).
    #[arg(long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

/// `skiff schedule add` options.
#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    conn: Conn,
    /// Cron expression, 5 fields, UTC (e.g. "*/5 * * * *").
    #[arg(
        long,
        value_name = "EXPR",
        conflicts_with = "every",
        required_unless_present = "every"
    )]
    cron: Option<String>,
    /// Fire every SECS seconds (the first at --start-at, default now).
    #[arg(long, value_name = "SECS")]
    every: Option<u64>,
    /// No fire before this time (RFC 3339, e.g. 2026-12-01T04:00:00Z).
    #[arg(long = "start-at", value_name = "TIME")]
    start_at: Option<String>,
    /// No fire after this time (RFC 3339).
    #[arg(long = "end-at", value_name = "TIME")]
    end_at: Option<String>,
    /// Fire at most N times.
    #[arg(long = "run-times", value_name = "N")]
    run_times: Option<u64>,
    /// Environment variable NAME=value (repeatable).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Memory limit (e.g. 64m).
    #[arg(short = 'm', long, value_name = "SIZE")]
    memory: Option<String>,
    /// CPU limit.
    #[arg(long, value_name = "N")]
    cpus: Option<f64>,
    /// Priority 0–2 (higher first).
    #[arg(long, value_name = "P")]
    priority: Option<i64>,
    /// Timeout, seconds (default 3600).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Label of each job.
    #[arg(long)]
    label: Option<String>,
    /// Queue of each job.
    #[arg(long)]
    queue: Option<String>,
    /// Payload of each job: text, or @FILE.
    #[arg(long, value_name = "TEXT|@FILE")]
    payload: Option<String>,
    /// Image reference.
    image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `skiff schedule` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule.
    Add(Box<AddArgs>),
    /// List schedules.
    Ls {
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a schedule (jobs it made are left alone).
    Rm {
        #[command(flatten)]
        conn: Conn,
        /// Schedule id.
        id: String,
    },
}

fn client(root: &Path, conn: &Conn) -> Client {
    Client::unix(
        &conn
            .socket
            .clone()
            .unwrap_or_else(|| root.join("skiff.sock")),
    )
}

fn call(
    root: &Path,
    conn: &Conn,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<Value> {
    let c = client(root, conn);
    let resp: Response = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(c.call(method, path, body))
        .context("calling the worker (is `skiff serve` running?)")?;
    if !(200..300).contains(&resp.status) {
        bail!("worker answered {}: {}", resp.status, resp.error_message());
    }
    Ok(resp.json())
}

fn time_ms(flag: &str, s: &Option<String>) -> anyhow::Result<Option<i64>> {
    s.as_deref()
        .map(|s| parse_rfc3339(s).map_err(|e| anyhow::anyhow!("--{flag}: {e}")))
        .transpose()
}

fn print_line(s: &Value) {
    let t = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let rule = match (s.get("cron").and_then(Value::as_str), s.get("run_every")) {
        (Some(c), _) => format!("cron {c:?}"),
        (None, Some(n)) => format!("every {n}s"),
        _ => "-".into(),
    };
    let next = s
        .get("next_at")
        .and_then(Value::as_i64)
        .and_then(format_rfc3339)
        .unwrap_or_else(|| "-".into());
    println!(
        "{}  {:<6}  {}  {}  runs {}{}  next {}",
        t("id"),
        t("state"),
        s.pointer("/job/image")
            .and_then(Value::as_str)
            .unwrap_or("-"),
        rule,
        s.get("run_count").and_then(Value::as_i64).unwrap_or(0),
        s.get("run_times")
            .and_then(Value::as_i64)
            .map(|n| format!("/{n}"))
            .unwrap_or_default(),
        next,
    );
}

/// `skiff schedule`.
pub fn run(root: &Path, command: ScheduleCommand) -> anyhow::Result<u8> {
    match command {
        ScheduleCommand::Add(a) => {
            let payload = match a.payload.as_deref() {
                Some(p) if p.starts_with('@') => Some(
                    std::fs::read_to_string(&p[1..])
                        .with_context(|| format!("reading the payload file {}", &p[1..]))?,
                ),
                Some(p) => Some(p.to_string()),
                None => None,
            };
            let mut job = Map::new();
            job.insert("image".into(), json!(a.image));
            if !a.command.is_empty() {
                job.insert("command".into(), json!(a.command));
            }
            if !a.env.is_empty() {
                job.insert("env".into(), json!(a.env));
            }
            for (k, v) in [
                ("memory", a.memory.as_ref().map(|m| json!(m))),
                ("cpus", a.cpus.map(|c| json!(c))),
                ("priority", a.priority.map(|p| json!(p))),
                ("timeout", a.timeout.map(|t| json!(t))),
                ("label", a.label.as_ref().map(|l| json!(l))),
                ("queue", a.queue.as_ref().map(|q| json!(q))),
                ("payload", payload.map(|p| json!(p))),
            ] {
                if let Some(v) = v {
                    job.insert(k.into(), v);
                }
            }
            let mut body = Map::new();
            body.insert("job".into(), Value::Object(job));
            for (k, v) in [
                ("cron", a.cron.as_ref().map(|c| json!(c))),
                ("run_every", a.every.map(|n| json!(n))),
                (
                    "start_at",
                    time_ms("start-at", &a.start_at)?.map(|t| json!(t)),
                ),
                ("end_at", time_ms("end-at", &a.end_at)?.map(|t| json!(t))),
                ("run_times", a.run_times.map(|n| json!(n))),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), v);
                }
            }
            let body = serde_json::to_vec(&Value::Object(body))?;
            let s = call(root, &a.conn, "POST", "/v1/schedules", Some(body))?;
            if a.conn.json {
                println!("{s}");
            } else {
                print_line(&s);
            }
        }
        ScheduleCommand::Ls { conn } => {
            let v = call(root, &conn, "GET", "/v1/schedules", None)?;
            if conn.json {
                println!("{v}");
            } else if let Some(all) = v.get("schedules").and_then(Value::as_array) {
                for s in all {
                    print_line(s);
                }
            }
        }
        ScheduleCommand::Rm { conn, id } => {
            let v = call(root, &conn, "DELETE", &format!("/v1/schedules/{id}"), None)?;
            if conn.json {
                println!("{v}");
            } else {
                println!("{id}");
            }
        }
    }
    Ok(0)
}
