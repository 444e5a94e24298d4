//! The launch benchmark's terminal report, and its result files:
//! `launch.json` and the plots beside it.

use std::fs;
use std::path::{Path, PathBuf};

use super::layout;
use crate::error::{IoContext, Result};
use crate::results::launch::{CpuBreakdown, LaunchResults, WarmCounts};
use crate::units::{fmt_ms as ms, size_arg};

/// What [`LaunchResults::write`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// `launch.json`.
    pub json: PathBuf,
    /// The plots (SVG and PNG).
    pub plots: Vec<PathBuf>,
}

impl LaunchResults {
    /// Draw the plots into `dir` and write `launch.json` there (naming them).
    /// A plot that cannot be drawn is noted, not fatal.
    pub fn write(&mut self, dir: &Path) -> Result<Written> {
        fs::create_dir_all(dir).ctx("create", dir)?;
        let (plots, problems) = crate::plot::launch_plots(self, dir);
        self.plots = plots
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        self.notes.extend(problems);
        let json = self.write_json(dir)?;
        Ok(Written { json, plots })
    }

    /// The terminal report.
    pub fn table(&self) -> String {
        table(self)
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map(|v| format!("{v:.2}x")).unwrap_or_else(|| "-".into())
}

/// `hits/jobs` when the jobs reported how they used warm sandboxes.
fn hits(w: Option<&WarmCounts>) -> String {
    match w {
        Some(w) if w.unknown < w.jobs() => {
            let made = if w.made > 0 {
                format!(", {} made", w.made)
            } else {
                String::new()
            };
            format!("{}/{}{made}", w.hit, w.jobs())
        }
        _ => "-".into(),
    }
}

/// `launcher 4.1 + job-cgroup 0.6 + other 1.2 = 5.9`.
fn parts(b: &CpuBreakdown) -> String {
    let p: Vec<String> = b
        .parts
        .iter()
        .map(|p| format!("{} {}", p.name, ms(p.ms)))
        .collect();
    format!("{} = {}", p.join(" + "), ms(b.total_ms))
}

/// The terminal report: latency table, phases, throughput, goals.
pub fn table(r: &LaunchResults) -> String {
    let mut out = format!(
        "launch latency: {} {} (-m {}, pids {}, network none); {} timed rounds after {} \
         warm-up, contenders interleaved; {} cpus, {}, {}\n",
        r.job.archive_name(),
        r.job.command.join(" "),
        size_arg(r.job.memory_bytes),
        r.job.pids_limit,
        r.rounds,
        r.warmup,
        r.host.cpus,
        r.host.kernel,
        r.date
    );
    let h = &r.host_facts;
    out.push_str(&format!(
        "cgroups: favordynmods in /proc/mounts: {}; a task's first attach after 250 ms idle: {}\n",
        if h.favordynmods_in_mounts {
            "yes"
        } else {
            "no"
        },
        match (&h.idle_attach_median_ms, &h.idle_attach_error) {
            (Some(m), _) => format!(
                "{} ms median of {} (max {})",
                ms(*m),
                h.idle_attach_ms.len(),
                ms(h.idle_attach_ms.iter().copied().fold(0.0, f64::max))
            ),
            (None, Some(e)) => format!("not measured ({e})"),
            (None, None) => "not measured".into(),
        }
    ));
    for n in &h.notes {
        out.push_str(&format!("host: {n}\n"));
    }
    out.push('\n');

    let mut rows = vec![vec![
        "contender".to_string(),
        "median".into(),
        "p95".into(),
        "p99".into(),
        "min".into(),
        "max".into(),
        "vs skiff".into(),
        "vs floor".into(),
        "cpu".into(),
        "warm hits".into(),
        "version".into(),
    ]];
    for c in &r.contenders {
        rows.push(vec![
            c.name.clone(),
            ms(c.median_ms),
            ms(c.p95_ms),
            ms(c.p99_ms),
            ms(c.min_ms),
            ms(c.max_ms),
            ratio(c.ratio_vs_skiff),
            ratio(c.ratio_vs_floor),
            c.cpu_median_ms.map(ms).unwrap_or_else(|| "-".into()),
            hits(c.warm.as_ref()),
            c.version.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&layout(&rows));
    out.push_str(
        "milliseconds per launch; vs skiff = median / `skiff run` median (above 1: skiff is \
         faster); vs floor = median / unshare's median; cpu = median CPU ms per launch; \
         warm hits = jobs a waiting sandbox ran / timed jobs\n",
    );
    let mut first = true;
    for c in &r.contenders {
        if let Some(b) = &c.cpu_breakdown {
            if first {
                out.push_str("\ncpu per job by process (mean ms over the timed rounds)\n");
                first = false;
            }
            out.push_str(&format!(
                "  {}: {} ({})\n",
                c.name,
                parts(b),
                b.total_source
            ));
        }
    }
    for s in &r.skipped {
        out.push_str(&format!("skipped {}: {}\n", s.name, s.reason));
    }

    for b in &r.phases {
        let parts: Vec<String> = b
            .phases
            .iter()
            .map(|p| format!("{} {}", p.name, ms(p.median_ms)))
            .collect();
        let sum: f64 = b.phases.iter().map(|p| p.median_ms).sum();
        out.push_str(&format!(
            "\n{} phases (median ms): {} (sum {}; median wall {})",
            b.contender,
            parts.join(", "),
            ms(sum),
            ms(b.wall_median_ms)
        ));
    }
    if !r.phases.is_empty() {
        out.push('\n');
    }

    if !r.throughput.is_empty() {
        let mut levels: Vec<usize> = r
            .throughput
            .iter()
            .flat_map(|t| t.levels.iter().map(|l| l.concurrency))
            .collect();
        levels.sort_unstable();
        levels.dedup();
        let mut head = vec!["jobs/s".to_string()];
        head.extend(levels.iter().map(|c| format!("c={c}")));
        head.push("cpu ms/job at max c".into());
        let mut rows = vec![head];
        for t in &r.throughput {
            let mut row = vec![t.name.clone()];
            for c in &levels {
                row.push(
                    t.levels
                        .iter()
                        .find(|l| l.concurrency == *c)
                        .map(|l| {
                            let f = if l.failures > 0 {
                                format!(" ({} failed)", l.failures)
                            } else {
                                String::new()
                            };
                            format!("{:.0}{f}", l.jobs_per_s)
                        })
                        .unwrap_or_else(|| "-".into()),
                );
            }
            row.push(
                t.levels
                    .last()
                    .and_then(|l| l.cpu_ms_per_job)
                    .map(ms)
                    .unwrap_or_else(|| "-".into()),
            );
            rows.push(row);
        }
        out.push_str("\nthroughput\n");
        out.push_str(&layout(&rows));
        for t in &r.throughput {
            for l in &t.levels {
                let w = l.warm.as_ref().filter(|w| w.unknown < w.jobs());
                if w.is_none() && l.cpu_breakdown.is_none() {
                    continue;
                }
                let mut line = format!("  {} c={} ({} jobs):", t.name, l.concurrency, l.jobs);
                if let Some(w) = w {
                    line.push_str(&format!(
                        " warm hits {} ({:.0}%);",
                        hits(Some(w)),
                        100.0 * w.hit_rate().unwrap_or(0.0)
                    ));
                }
                if let Some(b) = &l.cpu_breakdown {
                    line.push_str(&format!(" cpu ms/job {}", parts(b)));
                }
                out.push_str(&line);
                out.push('\n');
            }
        }
        for t in &r.throughput {
            for l in &t.levels {
                if let Some(e) = &l.first_error {
                    out.push_str(&format!(
                        "{} at c={}: {} of {} jobs failed, first: {e}\n",
                        t.name,
                        l.concurrency,
                        l.failures,
                        l.jobs + l.failures
                    ));
                }
            }
        }
    }

    out.push_str("\ngoals (issue 3)\n");
    for g in &r.goals {
        let mark = match g.met {
            Some(true) => "met   ",
            Some(false) => "MISSED",
            None => "n/a   ",
        };
        out.push_str(&format!(
            "  {mark} {}: {}\n         measured: {}; {}\n",
            g.name, g.target, g.measured, g.gap
        ));
    }
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}
