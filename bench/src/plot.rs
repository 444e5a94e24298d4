//! Plots of benchmark results, each written as SVG and PNG with `plotters`:
//!
//! - `latency-cdf`: the latency distribution of every contender (log time axis);
//! - `throughput`: jobs per second against concurrency;
//! - `phases`: where a skiff launch spends its time, as stacked bars, with
//!   the floor and 1.5× the floor marked.
//!
//! Text needs a TrueType font (plotters' `ab_glyph` backend, no fontconfig):
//! `SKIFF_BENCH_FONT`, else DejaVu Sans or Liberation Sans from
//! `/usr/share/fonts`, else the first `.ttf` found there.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::results::launch::LaunchResults;

const W: u32 = 960;
const H: u32 = 600;

/// The colour of a contender, the same in every plot.
fn colour(name: &str) -> RGBColor {
    match name {
        "skiff" => RGBColor(31, 119, 180),
        "skiff-pool" => RGBColor(23, 190, 207),
        "skiff-warm" => RGBColor(188, 189, 34),
        "runc" => RGBColor(255, 127, 14),
        "crun" => RGBColor(214, 39, 40),
        "podman" => RGBColor(148, 103, 189),
        "docker" => RGBColor(140, 86, 75),
        "floor" => RGBColor(0, 0, 0),
        "true" => RGBColor(127, 127, 127),
        _ => RGBColor(44, 160, 44),
    }
}

/// The colours of the phases, in launch order.
const PHASE_COLOURS: [RGBColor; 9] = [
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(214, 39, 40),
    RGBColor(197, 176, 213),
    RGBColor(140, 86, 75),
    RGBColor(247, 182, 210),
    RGBColor(127, 127, 127),
    RGBColor(64, 64, 64),
];

const FONT_CANDIDATES: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];

fn find_ttf(dir: &Path, depth: usize) -> Option<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in &entries {
        let p = e.path();
        if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("ttf")) {
            return Some(p);
        }
    }
    if depth == 0 {
        return None;
    }
    entries
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| find_ttf(&e.path(), depth - 1))
}

/// Register a font for plotters once (for this crate's plots, and for
/// criterion's, which draw with the same plotters); the error says why
/// there is none.
pub fn ensure_font() -> Result<(), String> {
    static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = std::env::var_os("SKIFF_BENCH_FONT")
            .map(PathBuf::from)
            .or_else(|| {
                FONT_CANDIDATES
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
            })
            .or_else(|| find_ttf(Path::new("/usr/share/fonts"), 4))
            .ok_or_else(|| {
                "no TrueType font found for the plots' text (install fonts-dejavu-core, or set \
                 SKIFF_BENCH_FONT)"
                    .to_string()
            })?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a usable font", path.display()))?;
        Ok(path)
    })
    .as_ref()
    .map(|_| ())
    .map_err(Clone::clone)
}

type Drawn = Result<(), String>;

fn e2s<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Draw with `draw` into `dir/NAME.svg` and `dir/NAME.png`.
fn both(
    dir: &Path,
    name: &str,
    draw: impl Fn(&DrawingArea<SVGBackend, Shift>) -> Drawn,
    draw_png: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> Drawn,
) -> Result<Vec<PathBuf>, String> {
    let svg = dir.join(format!("{name}.svg"));
    {
        let root = SVGBackend::new(&svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(e2s)?;
        draw(&root)?;
        root.present().map_err(e2s)?;
    }
    let png = dir.join(format!("{name}.png"));
    {
        let root = BitMapBackend::new(&png, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(e2s)?;
        draw_png(&root)?;
        root.present().map_err(e2s)?;
    }
    Ok(vec![svg, png])
}

/// Draw every plot the results have data for into `dir`. Returns the files
/// written and a note for each plot that could not be drawn.
pub fn launch_plots(r: &LaunchResults, dir: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    if let Err(e) = ensure_font() {
        problems.push(format!("no plots: {e}"));
        return (files, problems);
    }
    let mut add = |what: &str, res: Result<Vec<PathBuf>, String>| match res {
        Ok(f) => files.extend(f),
        Err(e) => problems.push(format!("the {what} plot could not be drawn: {e}")),
    };
    if !r.contenders.is_empty() {
        add(
            "latency CDF",
            both(dir, "latency-cdf", |a| cdf(a, r), |a| cdf(a, r)),
        );
    }
    if !r.throughput.is_empty() {
        add(
            "throughput",
            both(
                dir,
                "throughput",
                |a| throughput(a, r),
                |a| throughput(a, r),
            ),
        );
    }
    if !r.phases.is_empty() {
        add(
            "phases",
            both(dir, "phases", |a| phases(a, r), |a| phases(a, r)),
        );
    }
    (files, problems)
}

fn subtitle(r: &LaunchResults) -> String {
    format!(
        "{} {}, {} rounds; {} cpus, kernel {}; {}",
        r.job.archive_name(),
        r.job.command.join(" "),
        r.rounds,
        r.host.cpus,
        r.host.kernel,
        r.date.get(..10).unwrap_or(&r.date)
    )
}

/// Latency CDF, log-scaled time axis.
fn cdf<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, r: &LaunchResults) -> Drawn
where
    DB::ErrorType: 'static,
{
    let lo = r
        .contenders
        .iter()
        .map(|c| c.min_ms)
        .fold(f64::INFINITY, f64::min)
        .max(0.01);
    let hi = r
        .contenders
        .iter()
        .map(|c| c.max_ms)
        .fold(0.0, f64::max)
        .max(lo * 2.0);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Launch latency CDF: {}", subtitle(r)),
            ("sans-serif", 17),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((lo * 0.8..hi * 1.25).log_scale(), 0.0..1.0)
        .map_err(e2s)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds per launch (log scale)")
        .x_labels(16)
        .y_desc("fraction of launches ≤ x")
        .x_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e2s)?;
    for c in &r.contenders {
        let mut s = c.samples_ms.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len() as f64;
        let col = colour(&c.name);
        let pts: Vec<(f64, f64)> = s
            .iter()
            .enumerate()
            .flat_map(|(i, v)| [(*v, i as f64 / n), (*v, (i + 1) as f64 / n)])
            .collect();
        chart
            .draw_series(LineSeries::new(pts, col.stroke_width(2)))
            .map_err(e2s)?
            .label(format!("{} (median {:.2} ms)", c.name, c.median_ms))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(e2s)?;
    Ok(())
}

/// Jobs per second against concurrency (log2-scaled concurrency axis).
fn throughput<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, r: &LaunchResults) -> Drawn
where
    DB::ErrorType: 'static,
{
    let max_c = r
        .throughput
        .iter()
        .flat_map(|t| t.levels.iter().map(|l| l.concurrency))
        .max()
        .unwrap_or(1) as f64;
    let max_y = r
        .throughput
        .iter()
        .flat_map(|t| t.levels.iter().map(|l| l.jobs_per_s))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("Throughput: {}", subtitle(r)), ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((0.8..max_c * 1.25).log_scale(), 0.0..max_y * 1.1)
        .map_err(e2s)?;
    chart
        .configure_mesh()
        .x_desc("jobs in flight (concurrency, log scale)")
        .y_desc("jobs per second")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e2s)?;
    for t in &r.throughput {
        let col = colour(&t.name);
        let pts: Vec<(f64, f64)> = t
            .levels
            .iter()
            .map(|l| (l.concurrency as f64, l.jobs_per_s))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
            .map_err(e2s)?
            .label(t.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(3)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, col.filled())))
            .map_err(e2s)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(e2s)?;
    Ok(())
}

/// skiff's phases as stacked horizontal bars, one per skiff contender.
fn phases<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, r: &LaunchResults) -> Drawn
where
    DB::ErrorType: 'static,
{
    let floor = r.get("floor").map(|f| f.median_ms);
    let max_x = r
        .phases
        .iter()
        .map(|b| {
            b.phases
                .iter()
                .map(|p| p.median_ms)
                .sum::<f64>()
                .max(b.wall_median_ms)
        })
        .chain(floor.map(|f| f * 1.5))
        .fold(0.1, f64::max)
        * 1.3;
    let n = r.phases.len();
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Where a skiff launch spends its time (medians): {}",
                subtitle(r)
            ),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(110)
        .build_cartesian_2d(0.0..max_x, 0.0..n as f64)
        .map_err(e2s)?;
    let labels: Vec<String> = r
        .phases
        .iter()
        .map(|b| match b.contender.as_str() {
            "skiff" => "skiff run".to_string(),
            "skiff-pool" => "skiff pool".to_string(),
            "skiff-warm" => "skiff warm".to_string(),
            other => other.to_string(),
        })
        .collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("milliseconds")
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|v| {
            let i = (*v - 0.5).round();
            if (*v - 0.5 - i).abs() < 0.01 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e2s)?;
    let mut legend_done = vec![false; PHASE_COLOURS.len()];
    for (row, b) in r.phases.iter().enumerate() {
        let y0 = row as f64 + 0.2;
        let y1 = row as f64 + 0.8;
        let mut x = 0.0;
        for (i, p) in b.phases.iter().enumerate() {
            // The part outside the runner differs: its own colour for the pool.
            let i = if p.name == "request+reply" { 8 } else { i };
            let col = PHASE_COLOURS[i % PHASE_COLOURS.len()];
            let rect = Rectangle::new([(x, y0), (x + p.median_ms, y1)], col.filled());
            let series = chart.draw_series(std::iter::once(rect)).map_err(e2s)?;
            // One legend entry per phase.
            let slot = i % PHASE_COLOURS.len();
            if !legend_done[slot] {
                legend_done[slot] = true;
                series.label(p.name.clone()).legend(move |(lx, ly)| {
                    Rectangle::new([(lx, ly - 5), (lx + 14, ly + 5)], col.filled())
                });
            }
            x += p.median_ms;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                format!(
                    "phases sum to {:.2} ms; median wall-clock {:.2} ms",
                    x, b.wall_median_ms
                ),
                (0.0, row as f64 + 0.9),
                ("sans-serif", 13),
            )))
            .map_err(e2s)?;
    }
    if let Some(f) = floor {
        for (k, (v, what)) in [(f, "floor"), (1.5 * f, "1.5× floor")]
            .into_iter()
            .enumerate()
        {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(v, 0.0), (v, n as f64)],
                    BLACK.stroke_width(1),
                )))
                .map_err(e2s)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" {what} {v:.2} ms"),
                    (v, 0.17 - 0.07 * k as f64),
                    ("sans-serif", 12),
                )))
                .map_err(e2s)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(e2s)?;
    Ok(())
}
