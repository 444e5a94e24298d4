//! Numbers as the reports and the goals write them.

/// Milliseconds for a table cell.
pub(crate) fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `-m` as docker, podman and skiff all parse it.
pub(crate) fn size_arg(bytes: u64) -> String {
    if bytes & ((1 << 20) - 1) == 0 {
        format!("{}m", bytes >> 20)
    } else if bytes & 1023 == 0 {
        format!("{}k", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_size_arg_units() {
        assert_eq!(size_arg(64 << 20), "64m");
        assert_eq!(size_arg(1536), "1536");
        assert_eq!(size_arg(3 << 10), "3k");
        assert_eq!(size_arg(1000), "1000");
    }
}
