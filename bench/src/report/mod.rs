//! What a finished benchmark shows and writes: terminal tables and text
//! ([`import`], [`launch`], [`soak`]), and for the launch benchmark its
//! result files with the plots of [`crate::plot`]. Everything here reads
//! [`crate::results`]; nothing here measures.

pub mod import;
pub mod launch;
pub mod soak;

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
