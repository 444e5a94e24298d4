//! Platforms (`os/arch[/variant]`) and matching, as `docker load` does it.

use std::fmt;

use crate::error::{Error, Result};

/// A platform such as `linux/amd64` or `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system.
    pub os: String,
    /// CPU architecture (Go/OCI naming).
    pub arch: String,
    /// Optional variant (`v7`, `v8`).
    pub variant: Option<String>,
}

impl Platform {
    /// Parse `OS/ARCH[/VARIANT]`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform::new(os, arch, Some(v))),
            _ => Err(Error::InvalidPlatform(s.to_string())),
        }
    }

    /// Build a platform, normalising architecture aliases.
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        let arch = match arch {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            "i386" | "i686" => "386",
            a => a,
        };
        let variant = variant.filter(|v| !v.is_empty()).map(str::to_string);
        Platform {
            os: os.to_string(),
            arch: arch.to_string(),
            variant,
        }
    }

    /// The platform this binary runs on.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            a => a,
        };
        Platform::new(std::env::consts::OS, arch, None)
    }

    /// Whether an image for `other` satisfies a request for `self`. A
    /// request without a variant accepts any variant.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.arch == other.arch
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

/// The host's platform when `image` (an image's `os/arch[/variant]`) does
/// not run on it natively; `None` when it does, or when the image names no
/// platform (`unknown`, empty).
pub fn host_mismatch(image: &Platform) -> Option<Platform> {
    let unnamed = |s: &str| s.is_empty() || s == "unknown";
    if unnamed(&image.os) || unnamed(&image.arch) {
        return None;
    }
    let host = Platform::host();
    (!host.matches(image)).then_some(host)
}

/// Docker's warning for running an image of another platform, or `None`
/// when `image` (as an image record holds it) runs on this host.
pub fn run_mismatch_warning(image: &str) -> Option<String> {
    let platform = Platform::parse(image).ok()?;
    let host = host_mismatch(&platform)?;
    Some(format!(
        "The requested image's platform ({platform}) does not match the detected host \
         platform ({host}) and no specific platform was requested"
    ))
}

/// The import warning for image `name` of platform `image` when it does not
/// run on this host, unless that platform was asked for (`requested`).
pub fn import_mismatch_warning(
    name: &str,
    image: &Platform,
    requested: Option<&Platform>,
) -> Option<String> {
    if requested.is_some_and(|r| r.matches(image)) {
        return None;
    }
    let host = host_mismatch(image)?;
    Some(format!(
        "image {name} is for platform {image}, which does not match the detected host \
         platform ({host}): it is imported, but will not run here"
    ))
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_platform_parse_and_match() {
        let p = Platform::parse("linux/arm64/v8").expect("valid");
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(Platform::parse("linux/arm64").expect("valid").matches(&p));
        assert!(!p.matches(&Platform::parse("linux/arm64").expect("valid")));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//x").is_err());
        assert_eq!(Platform::new("linux", "x86_64", None).arch, "amd64");
    }

    #[test]
    fn test_platform_host_mismatch_names_both_platforms() {
        let host = Platform::host();
        assert_eq!(host_mismatch(&host), None);
        assert_eq!(run_mismatch_warning(&host.to_string()), None);
        let other = if host.arch == "arm64" {
            "amd64"
        } else {
            "arm64"
        };
        let foreign = Platform::new("linux", other, None);
        assert_eq!(host_mismatch(&foreign), Some(host.clone()));
        let w = run_mismatch_warning(&foreign.to_string()).expect("warns");
        assert_eq!(
            w,
            format!(
                "The requested image's platform (linux/{other}) does not match the detected \
                 host platform ({host}) and no specific platform was requested"
            )
        );
        assert_eq!(
            host_mismatch(&Platform::new("unknown", "unknown", None)),
            None
        );
        assert_eq!(run_mismatch_warning("garbage"), None);
    }
}
