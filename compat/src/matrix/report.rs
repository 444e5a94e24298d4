//! The matrix as a terminal table, Markdown, HTML (one coloured cell per
//! combination) and JSON.

use std::fmt::Write as _;
use std::path::Path;

use super::{Cell, CellStatus, MatrixError, MatrixReport};

/// One word for a status.
pub fn status_word(s: CellStatus) -> &'static str {
    match s {
        CellStatus::Pass => "pass",
        CellStatus::Fail => "FAIL",
        CellStatus::Absent => "absent",
        CellStatus::Error => "ERROR",
    }
}

/// A cell's short text: `pass 33/33, 12.3 ms`.
pub fn cell_text(c: Option<&Cell>) -> String {
    let Some(c) = c else {
        return "-".into();
    };
    match c.status {
        CellStatus::Absent => "not installed".into(),
        CellStatus::Error => "ERROR".into(),
        s => {
            let mut t = format!("{} {}/{}", status_word(s), c.passed, c.total);
            if let Some(l) = c.launch_ms {
                let _ = write!(t, ", {l:.1} ms");
            }
            t
        }
    }
}

fn row_label(r: &super::KernelRow) -> String {
    let mut s = r.id.clone();
    if let Some(rel) = &r.release {
        let _ = write!(s, " ({rel})");
    }
    s
}

fn cgroup_label(r: &super::KernelRow) -> String {
    match &r.check {
        Some(c) => format!("{} [{}]", c.cgroup_mode, c.controllers.join(" ")),
        None => "?".into(),
    }
}

fn failures(rep: &MatrixReport) -> Vec<String> {
    let mut out = Vec::new();
    for c in &rep.cells {
        match c.status {
            CellStatus::Fail => {
                for f in &c.failures {
                    out.push(format!(
                        "{} × {}: {}: {}",
                        c.kernel,
                        c.runtime,
                        f.case,
                        one_line(&f.reason)
                    ));
                }
            }
            CellStatus::Error => out.push(format!(
                "{} × {}: {}",
                c.kernel,
                c.runtime,
                one_line(c.detail.as_deref().unwrap_or("error"))
            )),
            _ => {}
        }
    }
    out
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

/// The terminal table.
pub fn text(rep: &MatrixReport) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head = vec!["kernel".to_string(), "cgroups".to_string()];
    head.extend(rep.runtimes.iter().cloned());
    rows.push(head);
    for k in &rep.kernels {
        let mut r = vec![row_label(k), cgroup_label(k)];
        for rt in &rep.runtimes {
            r.push(cell_text(rep.cell(&k.id, rt)));
        }
        rows.push(r);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    let f = failures(rep);
    if !f.is_empty() {
        out.push_str("\nfailures:\n");
        for l in f {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

/// Markdown: the table, then the failures.
pub fn markdown(rep: &MatrixReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "skiff {} conformance matrix, {} (host kernel {}). Cells: passed/total cases, median launch latency.\n",
        rep.skiff_version, rep.generated, rep.host_kernel
    );
    let _ = write!(out, "| kernel | cgroups |");
    for rt in &rep.runtimes {
        let _ = write!(out, " {rt} |");
    }
    out.push_str("\n| --- | --- |");
    for _ in &rep.runtimes {
        out.push_str(" --- |");
    }
    out.push('\n');
    for k in &rep.kernels {
        let _ = write!(out, "| {} | {} |", row_label(k), cgroup_label(k));
        for rt in &rep.runtimes {
            let c = rep.cell(&k.id, rt);
            let mark = match c.map(|c| c.status) {
                Some(CellStatus::Pass) => "✅ ",
                Some(CellStatus::Fail) | Some(CellStatus::Error) => "❌ ",
                _ => "",
            };
            let _ = write!(out, " {mark}{} |", cell_text(c));
        }
        out.push('\n');
    }
    let f = failures(rep);
    if !f.is_empty() {
        out.push_str("\nFailures:\n\n");
        for l in f {
            let _ = writeln!(out, "- {}", l.replace('|', "\\|"));
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page: one coloured cell per combination, its
/// failures in the cell's tooltip and below the table.
pub fn html(rep: &MatrixReport) -> String {
    let mut out = String::new();
    out.push_str(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>skiff compatibility matrix</title>\n<style>\n\
         body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         th,td{border:1px solid #999;padding:.5em .8em;text-align:left}\
         td.pass{background:#b7e4b0}td.fail{background:#f4a6a6}td.error{background:#f7c77e}\
         td.absent{background:#ddd;color:#666}small{color:#444}\n</style></head><body>\n",
    );
    let _ = writeln!(
        out,
        "<h1>skiff compatibility matrix</h1>\n<p>skiff {}, {}, host kernel {}. Cells: passed/total conformance cases, median launch latency.</p>",
        esc(&rep.skiff_version),
        esc(&rep.generated),
        esc(&rep.host_kernel)
    );
    out.push_str("<table>\n<tr><th>kernel</th><th>cgroups</th>");
    for rt in &rep.runtimes {
        let _ = write!(out, "<th>{}</th>", esc(rt));
    }
    out.push_str("</tr>\n");
    for k in &rep.kernels {
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td>",
            esc(&row_label(k)),
            esc(&cgroup_label(k))
        );
        for rt in &rep.runtimes {
            let c = rep.cell(&k.id, rt);
            let class = c
                .map(|c| format!("{:?}", c.status).to_lowercase())
                .unwrap_or_else(|| "absent".into());
            let tip = c
                .map(|c| {
                    let mut t: Vec<String> = c
                        .failures
                        .iter()
                        .map(|f| format!("{}: {}", f.case, one_line(&f.reason)))
                        .collect();
                    t.extend(c.detail.clone());
                    t.join("\n")
                })
                .unwrap_or_default();
            let _ = write!(
                out,
                "<td class=\"{class}\" title=\"{}\">{}</td>",
                esc(&tip),
                esc(&cell_text(c))
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    let f = failures(rep);
    if !f.is_empty() {
        out.push_str("<h2>Failures</h2>\n<ul>\n");
        for l in f {
            let _ = writeln!(out, "<li>{}</li>", esc(&l));
        }
        out.push_str("</ul>\n");
    }
    for k in &rep.kernels {
        if let Some(c) = &k.check {
            let _ = writeln!(
                out,
                "<p><small><b>{}</b>: skiff check {}; not ok: {}</small></p>",
                esc(&k.id),
                esc(&c.verdict),
                esc(&c.not_ok.join(", "))
            );
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// Write `matrix.json`, `matrix.md`, `matrix.html` and `matrix.txt` in `dir`.
pub fn write_all(rep: &MatrixReport, dir: &Path) -> Result<(), MatrixError> {
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| MatrixError::Io {
            op: "write",
            path: p,
            source: e,
        })
    };
    w(
        "matrix.json",
        serde_json::to_string_pretty(rep).unwrap_or_default(),
    )?;
    w("matrix.md", markdown(rep))?;
    w("matrix.html", html(rep))?;
    w("matrix.txt", text(rep))
}

#[cfg(test)]
mod tests {
    use super::super::{KernelRow, MatrixReport};
    use super::*;

    fn sample() -> MatrixReport {
        let cell = |k: &str, rt: &str, status| Cell {
            kernel: k.into(),
            runtime: rt.into(),
            status,
            passed: 3,
            total: if status == CellStatus::Fail { 4 } else { 3 },
            failures: if status == CellStatus::Fail {
                vec![super::super::Failure {
                    case: "oom kill".into(),
                    reason: "oom_killed false, want <true>".into(),
                }]
            } else {
                Vec::new()
            },
            launch_ms: Some(12.34),
            detail: None,
            seconds: 1.0,
            cases: Vec::new(),
        };
        MatrixReport {
            generated: "2026-01-01T00:00:00Z".into(),
            skiff_version: "0.1.0".into(),
            host_kernel: "6.18".into(),
            runtimes: vec!["libcontainer".into(), "youki".into()],
            kernels: vec![KernelRow {
                id: "host".into(),
                release: Some("6.18".into()),
                package: None,
                check: None,
                seconds: 1.0,
                console_log: None,
                error: None,
            }],
            cells: vec![
                cell("host", "libcontainer", CellStatus::Fail),
                cell("host", "youki", CellStatus::Absent),
            ],
        }
    }

    #[test]
    fn test_renderers_show_every_cell() {
        let r = sample();
        let t = text(&r);
        assert!(t.contains("FAIL 3/4, 12.3 ms"), "{t}");
        assert!(t.contains("not installed"));
        assert!(t.contains("host × libcontainer: oom kill"));
        let m = markdown(&r);
        assert!(
            m.contains("| kernel | cgroups | libcontainer | youki |"),
            "{m}"
        );
        assert!(m.contains("❌ FAIL 3/4"));
        let h = html(&r);
        assert!(h.contains("<td class=\"fail\""), "{h}");
        assert!(h.contains("<td class=\"absent\""));
        assert!(h.contains("want &lt;true&gt;"));
        let back: MatrixReport =
            serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("parse");
        assert_eq!(back.cells.len(), 2);
    }
}
