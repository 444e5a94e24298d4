//! The import benchmark's terminal table.

use super::{layout, secs};
use crate::results::import::ImportResults;

impl ImportResults {
    /// The terminal table.
    pub fn table(&self) -> String {
        table(self)
    }
}

/// The import benchmark's table.
pub fn table(r: &ImportResults) -> String {
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
