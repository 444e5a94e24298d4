//! `/proc/*/mountinfo` and `/proc/mounts` fields.

/// Undo the kernel's escaping of a mount path: `\NNN` with three octal
/// digits is one byte (`\040` a space, `\011` a tab, `\012` a newline,
/// `\134` a backslash). Anything else, `\9` or a short `\04` at the end,
/// stays as it is.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let d = |k: usize| u32::from(b[i + k] - b'0');
            out.push((d(1) * 64 + d(2) * 8 + d(3)) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_unescape_octal_only() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/tab\011x\012y\134z"), "/tab\tx\ny\\z");
        // Not octal: kept (one copy used to accept 8 and 9).
        assert_eq!(unescape(r"/a\089b"), r"/a\089b");
        assert_eq!(unescape(r"/a\999"), r"/a\999");
        // Too short at the end.
        assert_eq!(unescape(r"/a\04"), r"/a\04");
        assert_eq!(unescape("plain"), "plain");
    }
}
