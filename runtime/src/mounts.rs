//! The launcher's private mount namespace and the job's root filesystem.
//!
//! A launcher (a `skiff run` process, or a pool launcher) first moves into
//! a private mount namespace. Every mount it makes for a job (the scratch
//! tmpfs, the overlay rootfs) exists only there, so a SIGKILLed launcher
//! leaves no mount behind on the host: the kernel drops them with the
//! namespace.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use imagestore::MountDescription;

use crate::error::{Error, Result};

/// Enter a new mount namespace whose mounts do not propagate to the host.
pub fn enter_private_mount_namespace() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| Error::Mount {
        what: "a private mount namespace",
        target: PathBuf::from("/"),
        source: e.into(),
    })?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::Mount {
        what: "private propagation",
        target: PathBuf::from("/"),
        source: e.into(),
    })
}

/// Mount a tmpfs of `size` bytes for a job's scratch (overlay upper and
/// work, bundle, etc): the size caps the job's writable layer.
pub fn mount_scratch_tmpfs(target: &Path, size: u64) -> Result<()> {
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("mode=0700,size={size}").as_str()),
    )
    .map_err(|e| Error::Mount {
        what: "scratch tmpfs",
        target: target.to_path_buf(),
        source: e.into(),
    })
}

/// The directories that the job's kernel filesystems are mounted on, and
/// that libcontainer builds `/dev` symlinks and device nodes under by plain
/// path joins (see `docs/upstream-libcontainer.md`), with their modes.
pub const INIT_LAYER_DIRS: [(&str, u32); 6] = [
    ("dev", 0o755),
    ("dev/pts", 0o755),
    ("dev/shm", 0o1777),
    ("dev/mqueue", 0o1777),
    ("proc", 0o555),
    ("sys", 0o555),
];

/// skiff's equivalent of Docker's init layer: make every kernel mount
/// target a real directory in the job's (still empty) overlay upper
/// directory, before the overlay is mounted. Whatever the image holds at
/// `/dev`, `/proc` or `/sys` (a symlink to a host path, a file), the upper
/// directory hides it, so nothing that libcontainer does to those paths
/// can follow the image out of the rootfs.
pub fn init_layer(upper: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    for (dir, mode) in INIT_LAYER_DIRS {
        let p = upper.join(dir);
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(&p)
            .map_err(|e| Error::io("create init layer directory", &p, e))?;
        // The umask may have trimmed the mode.
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(|e| Error::io("set the mode of", &p, e))?;
    }
    Ok(())
}

/// Detach a mount (missing is fine).
pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::Mount {
            what: "unmount",
            target: target.to_path_buf(),
            source: e.into(),
        }),
    }
}

fn check_option_path(p: &Path) -> Result<()> {
    let b = p.as_os_str().as_bytes();
    if b.iter().any(|c| matches!(c, b',' | b':' | b'\\' | b'=')) {
        return Err(Error::InvalidOption {
            what: "overlay path",
            value: p.display().to_string(),
            detail: "must not contain , : \\ or =".into(),
        });
    }
    Ok(())
}

/// Build the overlay option string. When every lower directory has the same
/// parent, they are named relative to it (the caller chdirs there), so 60+
/// layers fit in a page: `lowerdir=ab12:cd34:…`.
pub fn overlay_options(
    desc: &MountDescription,
    upper: &Path,
    work: &Path,
    volatile: bool,
) -> Result<(String, Option<PathBuf>)> {
    for p in desc
        .lowerdirs
        .iter()
        .chain([upper.to_path_buf(), work.to_path_buf()].iter())
    {
        check_option_path(p)?;
    }
    let parent = desc
        .lowerdirs
        .first()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf);
    let common = parent.filter(|par| {
        desc.lowerdirs
            .iter()
            .all(|l| l.parent() == Some(par.as_path()))
    });
    let lowers: Vec<String> = desc
        .lowerdirs
        .iter()
        .map(|l| match (&common, l.file_name()) {
            (Some(_), Some(name)) => name.to_string_lossy().into_owned(),
            _ => l.to_string_lossy().into_owned(),
        })
        .collect();
    let mut opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    if volatile {
        opts.push_str(",volatile");
    }
    Ok((opts, common))
}

fn overlay_mount(target: &Path, opts: &str) -> nix::Result<()> {
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(opts),
    )
}

/// Mount the overlay root filesystem of a job on `target`: the image's layers
/// read-only below, `upper`/`work` (both empty, on the same filesystem)
/// above. Uses `volatile` (no syncs; the scratch is disposable) when the
/// kernel accepts it. Device nodes in the image are inert (`nodev`).
pub fn mount_rootfs(
    desc: &MountDescription,
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<()> {
    if desc.lowerdirs.is_empty() {
        return Err(Error::InvalidOption {
            what: "image",
            value: String::new(),
            detail: "has no layers".into(),
        });
    }
    let err = |e: nix::Error| Error::Mount {
        what: "overlay rootfs",
        target: target.to_path_buf(),
        source: e.into(),
    };
    let (opts, chdir_to) = overlay_options(desc, upper, work, true)?;
    let cwd = match &chdir_to {
        Some(dir) => {
            let here = open_dir(Path::new("."))?;
            nix::unistd::chdir(dir.as_path()).map_err(|e| Error::io("chdir", dir, e.into()))?;
            Some(here)
        }
        None => None,
    };
    let mut result = overlay_mount(target, &opts);
    if result == Err(nix::errno::Errno::EINVAL) {
        // Older kernels do not know `volatile`.
        let plain = opts.trim_end_matches(",volatile").to_string();
        result = overlay_mount(target, &plain);
    }
    if let Some(fd) = cwd {
        nix::unistd::fchdir(fd.as_raw_fd()).map_err(|e| Error::io("chdir back", ".", e.into()))?;
    }
    result.map_err(err)
}

fn open_dir(p: &Path) -> Result<OwnedFd> {
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::io("open", p, io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: valid C string; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::io("open", p, io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_overlay_options_relative_lowerdirs() {
        let desc = MountDescription {
            lowerdirs: vec![
                PathBuf::from("/s/snapshots/bbb"),
                PathBuf::from("/s/snapshots/aaa"),
            ],
        };
        let (o, dir) =
            overlay_options(&desc, Path::new("/r/u"), Path::new("/r/w"), true).expect("ok");
        assert_eq!(o, "lowerdir=bbb:aaa,upperdir=/r/u,workdir=/r/w,volatile");
        assert_eq!(dir, Some(PathBuf::from("/s/snapshots")));
    }

    #[test]
    fn test_overlay_options_mixed_parents_stay_absolute() {
        let desc = MountDescription {
            lowerdirs: vec![PathBuf::from("/a/x"), PathBuf::from("/b/y")],
        };
        let (o, dir) = overlay_options(&desc, Path::new("/u"), Path::new("/w"), false).expect("ok");
        assert!(o.starts_with("lowerdir=/a/x:/b/y,"));
        assert_eq!(dir, None);
    }

    #[test]
    fn test_overlay_options_sixty_layers_fit_in_a_page() {
        let desc = MountDescription {
            lowerdirs: (0..64)
                .map(|i| PathBuf::from(format!("/var/lib/skiff/snapshots/{i:010}")))
                .collect(),
        };
        let (o, _) = overlay_options(
            &desc,
            Path::new("/var/lib/skiff/run/job/s/u"),
            Path::new("/var/lib/skiff/run/job/s/w"),
            true,
        )
        .expect("ok");
        assert!(o.len() < 4096, "{}", o.len());
    }

    #[test]
    fn test_overlay_options_refuses_commas() {
        let desc = MountDescription {
            lowerdirs: vec![PathBuf::from("/a,b/x")],
        };
        assert!(overlay_options(&desc, Path::new("/u"), Path::new("/w"), false).is_err());
    }
}
