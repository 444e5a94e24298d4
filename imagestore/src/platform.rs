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
}
