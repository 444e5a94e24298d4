//! Image references, normalised as Docker normalises them.
//!
//! The grammar and the normalisation are `oci-spec`'s
//! ([`oci_spec::distribution::Reference`]), which follows Docker's
//! `distribution/reference`: the registry defaults to `docker.io`
//! (`index.docker.io` is the same registry), a Docker Hub name without a `/`
//! gets the `library/` namespace, and a reference without a tag or digest
//! gets the tag `latest`. So `hello-world`, `hello-world:latest`,
//! `library/hello-world` and `docker.io/library/hello-world:latest` are one
//! name, whose canonical form is the last.

use std::fmt;

use oci_spec::distribution::{ParseError, Reference};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference_grammar;

/// Docker Hub, the default registry.
const DOCKER_HUB: &str = "docker.io";
/// The namespace of Docker Hub's official images.
const OFFICIAL: &str = "library/";

/// A parsed, normalised image reference: `REGISTRY/REPOSITORY[:TAG][@DIGEST]`.
///
/// Two spellings of one name compare equal.
#[derive(Debug, Clone)]
pub struct ImageRef {
    inner: Reference,
    /// The reference as given, for errors.
    given: String,
}

impl ImageRef {
    /// Parse a reference as Docker does. The error names the reference and
    /// what is wrong with it.
    pub fn parse(reference: &str) -> Result<ImageRef> {
        let bad = |detail: String| Error::InvalidReference {
            reference: reference.to_string(),
            detail,
        };
        if reference.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if let Some(c) = reference
            .chars()
            .find(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad(format!("it contains the character {c:?}")));
        }
        if is_full_hex_id(reference) {
            // Docker's rule: 64 hex digits are an image id, never a name.
            return Err(bad(
                "64 hexadecimal digits are an image id, not a repository name".into(),
            ));
        }
        let inner = reference_grammar::parse(reference).map_err(|e| bad(describe(reference, e)))?;
        // The grammar lets a first component without a dot or port
        // (`Org/app`) through as a registry, which then is not one: Docker's
        // ParseNormalizedNamed refuses the uppercase remainder, so do we.
        if inner.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad(
                "invalid reference format: repository name must be lowercase".into(),
            ));
        }
        Ok(ImageRef {
            inner,
            given: reference.to_string(),
        })
    }

    /// The registry: `docker.io` unless the reference names another.
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The repository with its registry: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.inner.registry(), self.inner.repository())
    }

    /// The repository path at its registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// The repository as `docker images` shows it: `busybox` for
    /// `docker.io/library/busybox`, `org/app` for `docker.io/org/app`,
    /// other registries in full.
    pub fn familiar_name(&self) -> String {
        let repo = self.inner.repository();
        if self.inner.registry() != DOCKER_HUB {
            return self.name();
        }
        match repo.strip_prefix(OFFICIAL) {
            // `library/a/b` keeps its namespace, as Docker's FamiliarName does.
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => repo.to_string(),
        }
    }

    /// The tag, if any (`latest` when neither a tag nor a digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    /// The digest after `@`, if any.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// The digest after `@`, typed; `None` when there is none, an error when
    /// it uses an algorithm skiff does not store (only sha256).
    pub fn typed_digest(&self) -> Result<Option<Digest>> {
        self.inner.digest().map(Digest::parse).transpose()
    }

    /// The canonical tag form, `docker.io/library/busybox:latest`: what a
    /// tag record holds. Refused for a reference that carries a digest.
    pub fn canonical_tag(&self) -> Result<String> {
        match (self.inner.tag(), self.inner.digest()) {
            (Some(tag), None) => Ok(format!("{}:{tag}", self.name())),
            _ => Err(Error::InvalidReference {
                reference: self.given.clone(),
                detail: "a tag cannot carry a digest (@…)".into(),
            }),
        }
    }

    /// The familiar form, `busybox:latest`, as `docker` prints it.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = self.inner.tag() {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = self.inner.digest() {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

impl PartialEq for ImageRef {
    fn eq(&self, other: &ImageRef) -> bool {
        self.inner == other.inner
    }
}

impl Eq for ImageRef {}

impl fmt::Display for ImageRef {
    /// The full normalised form, `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

/// The canonical tag form of `reference` (see [`ImageRef::canonical_tag`]).
pub fn canonical_tag(reference: &str) -> Result<String> {
    ImageRef::parse(reference)?.canonical_tag()
}

/// Whether `s` is 64 lowercase hex digits: a full image id without `sha256:`.
pub(crate) fn is_full_hex_id(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

/// Whether `s` is non-empty lowercase hex.
pub(crate) fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Say what is wrong, more precisely than the parser's "invalid reference
/// format" where a common mistake can be told apart.
fn describe(reference: &str, e: ParseError) -> String {
    let (name_part, digest_part) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let last = name_part.rsplit('/').next().unwrap_or(name_part);
    match e {
        ParseError::ReferenceInvalidFormat
            if reference_grammar::parse(&reference.to_ascii_lowercase()).is_ok() =>
        {
            "invalid reference format: repository name must be lowercase".into()
        }
        ParseError::ReferenceInvalidFormat if reference.ends_with(':') => "invalid reference format: the tag is empty".into(),
        ParseError::ReferenceInvalidFormat
            if digest_part.is_some() && reference_grammar::parse(name_part).is_ok() =>
        {
            "invalid reference format: the digest after '@' must be ALGORITHM:HEX, such as sha256: and 64 hex digits".into()
        }
        ParseError::ReferenceInvalidFormat
            if reference.contains("//") || reference.ends_with('/') =>
        {
            "invalid reference format: a name component is empty".into()
        }
        ParseError::ReferenceInvalidFormat if last.contains(':') => {
            "invalid reference format: expected [REGISTRY/]REPOSITORY[:TAG][@DIGEST], where a tag \
             is up to 128 of [A-Za-z0-9_.-] not starting with '.' or '-'"
                .into()
        }
        ParseError::ReferenceInvalidFormat => {
            "invalid reference format: expected [REGISTRY/]REPOSITORY[:TAG][@DIGEST], where \
             repository components are lowercase letters, digits and separators"
                .into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker's normalisation, checked against `docker run`/`docker images`
    /// (engine 20.10): input → (canonical tag form, familiar name).
    #[test]
    fn test_canonical_tag_table() {
        let table = [
            (
                "hello-world",
                "docker.io/library/hello-world:latest",
                "hello-world",
            ),
            (
                "hello-world:latest",
                "docker.io/library/hello-world:latest",
                "hello-world",
            ),
            (
                "library/hello-world",
                "docker.io/library/hello-world:latest",
                "hello-world",
            ),
            (
                "docker.io/library/hello-world:latest",
                "docker.io/library/hello-world:latest",
                "hello-world",
            ),
            (
                "docker.io/hello-world",
                "docker.io/library/hello-world:latest",
                "hello-world",
            ),
            (
                "index.docker.io/library/hello-world",
                "docker.io/library/hello-world:latest",
                "hello-world",
            ),
            ("org/app:v1", "docker.io/org/app:v1", "org/app"),
            ("docker.io/org/app:v1", "docker.io/org/app:v1", "org/app"),
            (
                "skiff-vendor/busybox",
                "docker.io/skiff-vendor/busybox:latest",
                "skiff-vendor/busybox",
            ),
            ("a/b/c:1.0", "docker.io/a/b/c:1.0", "a/b/c"),
            ("localhost/app", "localhost/app:latest", "localhost/app"),
            (
                "localhost:5000/a/b",
                "localhost:5000/a/b:latest",
                "localhost:5000/a/b",
            ),
            ("ghcr.io/org/app:1", "ghcr.io/org/app:1", "ghcr.io/org/app"),
            ("quay.io/app", "quay.io/app:latest", "quay.io/app"),
            (
                "test.com:5000",
                "docker.io/library/test.com:5000",
                "test.com",
            ),
        ];
        for (input, canonical, familiar) in table {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.canonical_tag().expect("tag"), canonical, "{input}");
            assert_eq!(r.familiar_name(), familiar, "{input}");
            // Canonical is a fixed point.
            assert_eq!(canonical_tag(canonical).expect("again"), canonical);
        }
    }

    #[test]
    fn test_digest_references() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = ImageRef::parse(&format!("busybox@{d}")).expect("parses");
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(
            r.typed_digest().expect("sha256").expect("some").to_string(),
            d
        );
        assert_eq!(r.familiar(), format!("busybox@{d}"));
        let e = r
            .canonical_tag()
            .expect_err("no tag with a digest")
            .to_string();
        assert!(e.contains(&format!("\"busybox@{d}\"")), "{e}");
        let both = ImageRef::parse(&format!("org/app:v1@{d}")).expect("parses");
        assert_eq!(both.tag(), Some("v1"));
        assert_eq!(
            ImageRef::parse("busybox").expect("short"),
            ImageRef::parse("docker.io/library/busybox:latest").expect("full")
        );
        assert_eq!(both.to_string(), format!("docker.io/org/app:v1@{d}"));
    }

    #[test]
    fn test_bad_references_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("Busybox", "must be lowercase"),
            ("org/App:v1", "must be lowercase"),
            ("Skiff-Vendor/busybox", "must be lowercase"),
            ("Org/app", "must be lowercase"),
            ("a b", "character"),
            ("busybox:", "tag is empty"),
            ("a//b", "name component is empty"),
            ("busybox:-x", "tag is up to 128"),
            ("busybox@sha256:abc", "digest"),
            ("-busybox", "invalid reference format"),
        ];
        for (input, want) in cases {
            let e = ImageRef::parse(input).expect_err(input).to_string();
            assert!(e.contains(want), "{input:?}: {e}");
            assert!(e.contains(&format!("{input:?}")), "{input:?}: {e}");
        }
        let id = "ab".repeat(32);
        let e = ImageRef::parse(&id).expect_err("an id").to_string();
        assert!(e.contains("image id"), "{e}");
    }
}
