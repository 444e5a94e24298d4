//! Terminal tables.

use crate::import::ImportResults;

/// Format seconds for a table cell.
pub(crate) fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// Lay out rows with columns padded to their widest cell (first column
/// left-aligned, the others right-aligned, the last left-aligned).
pub(crate) fn layout(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width[i] - cell.chars().count();
            if i == 0 || i + 1 == cols {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The import benchmark's table.
pub fn import_table(r: &ImportResults) -> String {
    let mut rows = vec![vec![
        "contender".to_string(),
        "median".into(),
        "min".into(),
        "max".into(),
        "MB/s".into(),
        "vs skiff".into(),
        "cpu".into(),
        "cpu vs skiff".into(),
        "what was timed".into(),
    ]];
    for c in &r.contenders {
        let mut what = c.command.clone();
        if !c.phases_median_s.is_empty() {
            let parts: Vec<String> = c
                .phases_median_s
                .iter()
                .map(|(k, v)| format!("{k} {}", secs(*v)))
                .collect();
            what = format!("{what} [{}]", parts.join(", "));
        }
        rows.push(vec![
            c.name.clone(),
            secs(c.median_s),
            secs(c.min_s),
            secs(c.max_s),
            c.mb_per_s
                .map(|v| {
                    if v < 10.0 {
                        format!("{v:.1}")
                    } else {
                        format!("{v:.0}")
                    }
                })
                .unwrap_or("-".into()),
            c.ratio_vs_skiff
                .map(|v| format!("{v:.2}x"))
                .unwrap_or("-".into()),
            secs(c.cpu_median_s),
            c.cpu_ratio_vs_skiff
                .map(|v| format!("{v:.2}x"))
                .unwrap_or("-".into()),
            what,
        ]);
    }
    let img = &r.image;
    let mut out = format!(
        "import throughput: {} layers ({}), {:.0} MB uncompressed, {} files; \
         {} timed rounds after {} warm-up, alternated; {} cpus, {}\n\n",
        img.layers.len(),
        if img.compression == "none" {
            "uncompressed".to_string()
        } else {
            img.compression.clone()
        },
        img.uncompressed_bytes as f64 / 1e6,
        img.files,
        r.rounds,
        r.warmup,
        r.host.cpus,
        r.host.kernel
    );
    out.push_str(&layout(&rows));
    for s in &r.skipped {
        out.push_str(&format!("skipped {}: {}\n", s.name, s.reason));
    }
    out.push_str(
        "median/min/max: wall-clock; vs skiff = contender median / skiff median (above 1: \
         skiff is faster); cpu = median user+system CPU time, child processes included \
         (steadier than wall-clock when other work shares the cores)\n",
    );
    out
}
