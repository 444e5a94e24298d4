//! The soak's terminal text: one line per sample, and the closing summary.

use crate::results::soak::{LauncherSample, Sample, SoakResults};

impl Sample {
    /// The one-line form printed during the soak.
    pub fn line(&self) -> String {
        let per = |f: &dyn Fn(&LauncherSample) -> String| {
            self.launchers.iter().map(f).collect::<Vec<_>>().join("/")
        };
        let opt = |v: Option<usize>| v.map_or("?".to_string(), |v| v.to_string());
        format!(
            "jobs {:>6}  {:>6.1} jobs/s  rss {} KiB  fds {}  mounts {}  cgroups {}  run {}  \
             leases {}  host mounts {} (store {})  failed {}",
            self.jobs_done,
            self.jobs_per_s,
            per(&|l| l.rss_kib.map_or("?".into(), |v| v.to_string())),
            per(&|l| opt(l.fds)),
            per(&|l| opt(l.mounts)),
            self.job_cgroups,
            self.run_entries,
            self.leases,
            self.host_mounts,
            self.store_mounts,
            self.failures,
        )
    }
}

impl SoakResults {
    /// The closing summary, several lines.
    pub fn summary_text(&self) -> String {
        let s = &self.summary;
        let list = |v: &[Option<u64>]| {
            v.iter()
                .map(|x| x.map_or("?".into(), |x| x.to_string()))
                .collect::<Vec<_>>()
                .join("/")
        };
        let listu = |v: &[Option<usize>]| {
            v.iter()
                .map(|x| x.map_or("?".into(), |x| x.to_string()))
                .collect::<Vec<_>>()
                .join("/")
        };
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} ms"));
        let mut out = String::new();
        out.push_str(&format!(
            "soak: {} jobs through {} launchers in {:.1} s: {:.1} jobs/s; latency median {}, p99 {}\n",
            s.jobs,
            self.launchers,
            s.wall_s,
            s.jobs_per_s,
            ms(s.latency_median_ms),
            ms(s.latency_p99_ms)
        ));
        let first = self.samples.first().map_or(0, |x| x.jobs_done);
        let last = self.samples.last().map_or(0, |x| x.jobs_done);
        out.push_str(&format!(
            "launchers, first sample ({first} jobs) → last ({last} jobs): RSS {} → {} KiB, \
             fds {} → {}, mounts {} → {}\n",
            list(&s.rss_first_kib),
            list(&s.rss_last_kib),
            listu(&s.fds_first),
            listu(&s.fds_last),
            listu(&s.mounts_first),
            listu(&s.mounts_last),
        ));
        out.push_str(&format!(
            "host mounts {} → {}; left after the last job: {} job cgroups, {} run entries, \
             {} leases, {} store mounts; after the launchers exited: {}, {}, {}, {}\n",
            s.host_mounts_first,
            s.host_mounts_last,
            s.job_cgroups_left,
            s.run_entries_left,
            s.leases_left,
            s.store_mounts_left,
            s.after_exit.job_cgroups,
            s.after_exit.run_entries,
            s.after_exit.leases,
            s.after_exit.store_mounts,
        ));
        out.push_str(&format!("failed jobs: {}\n", s.failures));
        for e in &s.errors {
            out.push_str(&format!("  {e}\n"));
        }
        if s.leaks.is_empty() {
            out.push_str("leaks: none\n");
        } else {
            for l in &s.leaks {
                out.push_str(&format!("leak: {l}\n"));
            }
        }
        out.push_str(if self.ok() {
            "soak: OK\n"
        } else {
            "soak: FAILED\n"
        });
        out
    }
}
