//! Docker's reference grammar (`distribution/reference`), matched with ASCII
//! character classes as Go's `regexp` does, into oci-spec's
//! [`Reference`].
//!
//! oci-spec's own parser compiles the same grammar with Unicode classes:
//! 30–40 ms per process here, which would double a `skiff run`, and it then
//! accepts non-ASCII tags that Docker refuses (see
//! `docs/upstream-oci-spec.md`). This matches with an expression that
//! compiles in about 0.2 ms and builds the [`Reference`] with its
//! constructors, so normalisation (the `docker.io` registry, `library/`,
//! `latest`) stays the crate's. A test checks both parsers agree.

use std::sync::OnceLock;

use oci_spec::distribution::{ParseError, Reference};
use regex::Regex;

/// Docker Hub's names: the default registry, its legacy alias, and the
/// namespace of its official images.
const HUB: &str = "docker.io";
const HUB_LEGACY: &str = "index.docker.io";
const OFFICIAL: &str = "library";
/// The longest repository name Docker accepts.
const NAME_MAX: usize = 255;

/// The grammar, built from its named productions as in Docker's
/// documentation of `distribution/reference`.
fn grammar() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let alnum = "[a-z0-9]+";
        let separator = "(?:[._]|__|-+)";
        let path_component = format!("{alnum}(?:{separator}{alnum})*");
        let domain_component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain = format!("{domain_component}(?:\\.{domain_component})*(?::[0-9]+)?");
        let name = format!("(?:{domain}/)?{path_component}(?:/{path_component})*");
        let tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
        let algorithm = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*";
        let digest = format!("{algorithm}:[0-9a-fA-F]{{32,}}");
        let whole = format!("^({name})(?::({tag}))?(?:@({digest}))?$");
        // Built from constants: it always compiles.
        Regex::new(&whole).expect("the reference grammar compiles")
    })
}

/// Split `name` into (registry, repository) by Docker's rule: the first
/// component is a registry only if it has a `.` or a `:`, or is
/// `localhost`; Docker Hub names get `library/` when they have no `/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut registry, mut repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (HUB.to_string(), name.to_string()),
    };
    if registry == HUB_LEGACY {
        registry = HUB.to_string();
    }
    if registry == HUB && !repository.contains('/') {
        repository = format!("{OFFICIAL}/{repository}");
    }
    (registry, repository)
}

/// Parse `s` as Docker does, with oci-spec's errors.
pub(crate) fn parse(s: &str) -> Result<Reference, ParseError> {
    if s.is_empty() {
        return Err(ParseError::NameEmpty);
    }
    let caps = grammar()
        .captures(s)
        .ok_or(ParseError::ReferenceInvalidFormat)?;
    let (registry, repository) = split_domain(&caps[1]);
    if repository.len() > NAME_MAX {
        return Err(ParseError::NameTooLong);
    }
    let tag = caps.get(2).map(|m| m.as_str().to_string());
    let digest = caps.get(3).map(|m| m.as_str().to_string());
    if let Some(d) = &digest {
        let want = match d.split_once(':') {
            Some(("sha256", hex)) => (hex, 64),
            Some(("sha384", hex)) => (hex, 96),
            Some(("sha512", hex)) => (hex, 128),
            _ => return Err(ParseError::DigestUnsupported),
        };
        if want.0.len() != want.1 {
            return Err(ParseError::DigestInvalidLength);
        }
    }
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t, d),
        (None, Some(d)) => Reference::with_digest(registry, repository, d),
        (t, None) => Reference::with_tag(registry, repository, t.unwrap_or("latest".into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both parsers give the same reference, or the same error, on Docker's
    /// own test inputs and on hostile ones.
    #[test]
    fn test_agrees_with_oci_spec() {
        let d = "ab".repeat(32);
        let long = "a".repeat(256);
        let inputs = vec![
            "busybox".to_string(),
            "busybox:latest".into(),
            "library/busybox".into(),
            "docker.io/busybox".into(),
            "index.docker.io/library/busybox:1".into(),
            "test.com:tag".into(),
            "test.com:5000".into(),
            "test.com/repo:tag".into(),
            "test:5000/repo".into(),
            "test:5000/repo:tag".into(),
            "localhost/app".into(),
            "localhost:5000/a/b/c:v1.2_3-x".into(),
            "lowercase:Uppercase".into(),
            "foo_bar.com:8080".into(),
            "foo/foo_bar.com:8080".into(),
            "a__b/c--d/e.f/g_h".into(),
            "sub-dom1.foo.com/bar/baz/quux".into(),
            "xn--n3h.com/myimage:xn--n3h.com".into(),
            format!("busybox@sha256:{d}"),
            format!("org/app:v1@sha256:{d}"),
            format!("busybox@sha512:{}", "cd".repeat(64)),
            format!("busybox@sha256:{}", "ab".repeat(16)),
            format!("busybox@md5:{}", "ab".repeat(16)),
            "busybox@sha256:xyz".into(),
            long.clone(),
            format!("docker.io/{long}"),
            String::new(),
            "Uppercase:tag".into(),
            "aa/asdf$$^/aa".into(),
            "a//b".into(),
            "a/".into(),
            "/a".into(),
            ":tag".into(),
            "busybox:".into(),
            "busybox:-x".into(),
            "busybox:.x".into(),
            format!("busybox:{}", "t".repeat(129)),
            format!("busybox:{}", "t".repeat(128)),
            "-busybox".into(),
            "busybox-".into(),
            "a.b-/c".into(),
            "[::1]/a".into(),
            "a:b:c".into(),
            "a b".into(),
            "a\nb".into(),
        ];
        for s in &inputs {
            let ours = parse(s).map(|r| r.whole());
            let theirs = Reference::try_from(s.as_str()).map(|r| r.whole());
            assert_eq!(ours, theirs, "{s:?}");
        }
    }

    /// Go's `\w` is ASCII: a non-ASCII tag is refused, as Docker refuses it.
    #[test]
    fn test_non_ascii_tags_are_refused() {
        assert_eq!(
            parse("busybox:tæg").map(|r| r.whole()),
            Err(ParseError::ReferenceInvalidFormat)
        );
        assert_eq!(
            parse("busybox:tag").map(|r| r.whole()),
            Ok("docker.io/library/busybox:tag".into())
        );
    }
}
