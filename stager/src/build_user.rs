//! The unprivileged user that builds run as when the stager runs as root.
//!
//! A build runs code the app's author wrote (`build.rs`, compiler plugins, package hooks), so it
//! must not inherit the stager's powers: with a build user, every build process drops to that
//! user's uid and gid (no supplementary groups) before it executes, and owns only its job's
//! directory and its app's build cache. `scripts/setup` creates the dedicated user; `nobody` is
//! the fallback when it does not exist.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anyhow::{Context as _, bail};

/// The user `scripts/setup` creates for builds.
pub const DEDICATED_BUILD_USER: &str = "nimbus-build";
/// Used when the dedicated user does not exist.
const FALLBACK_BUILD_USER: &str = "nobody";

/// Who a build runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl BuildUser {
    /// The build user for a stager started by this process: none unless it runs as root (a
    /// stager that is not root cannot switch users, and is already unprivileged); as root,
    /// [`DEDICATED_BUILD_USER`], else `nobody`.
    pub fn default_for_this_process() -> Option<BuildUser> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        [DEDICATED_BUILD_USER, FALLBACK_BUILD_USER]
            .into_iter()
            .find_map(|name| BuildUser::lookup(name).ok().flatten())
    }

    /// The user called `name` in the passwd database, if there is one.
    pub fn lookup(name: &str) -> anyhow::Result<Option<BuildUser>> {
        let c_name = CString::new(name).context("a user name cannot contain a NUL byte")?;
        // SAFETY: a zeroed passwd is a valid out-parameter; getpwnam_r writes the strings it
        // points to into `buffer`, which outlives every use of `entry` below.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buffer = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let status = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if status != 0 {
            bail!(
                "failed to look up the user {name}: {}",
                std::io::Error::from_raw_os_error(status)
            );
        }
        if found.is_null() {
            return Ok(None);
        }
        Ok(Some(BuildUser {
            name: name.to_string(),
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        }))
    }

    /// Gives `path` and everything under it to this user, without following symlinks.
    pub(crate) fn hand_over(&self, path: &Path) -> std::io::Result<()> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))?;
        if std::fs::symlink_metadata(path)?.is_dir() {
            for entry in std::fs::read_dir(path)? {
                self.hand_over(&entry?.path())?;
            }
        }
        Ok(())
    }

    /// Whether this user owns `path` already.
    pub(crate) fn owns(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|meta| meta.uid() == self.uid)
    }

    /// Fails, naming the directory in the way, unless this user may pass through every directory
    /// from `/` to `dir`: builds work and read the stager's files under it.
    pub(crate) fn check_reachable(&self, dir: &Path) -> anyhow::Result<()> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("failed to resolve {}", dir.display()))?;
        for ancestor in dir.ancestors() {
            let meta = std::fs::metadata(ancestor)
                .with_context(|| format!("failed to read {}", ancestor.display()))?;
            let mode = meta.mode();
            let may_pass = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !may_pass {
                bail!(
                    "builds run as the unprivileged user {}, who cannot enter {} (mode {:o}): \
                     allow it through (chmod o+x, as scripts/setup does for the toolchains' \
                     home) or give the stager a work directory it can reach",
                    self.name,
                    ancestor.display(),
                    mode & 0o7777
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn finds_root_and_not_a_made_up_user() {
        let root = BuildUser::lookup("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(BuildUser::lookup("no-such-user-nimbus").unwrap(), None);
        assert!(BuildUser::lookup("bad\0name").is_err());
    }

    #[test]
    fn only_root_switches_to_a_build_user() {
        let user = BuildUser::default_for_this_process();
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            let user = user.expect("root builds as nimbus-build or nobody");
            assert_ne!(user.uid, 0);
        } else {
            assert_eq!(user, None);
        }
    }

    #[test]
    fn names_the_directory_a_build_user_cannot_enter() {
        let stranger = BuildUser {
            name: "stranger".into(),
            uid: 54_321,
            gid: 54_321,
        };
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("work");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let error = stranger.check_reachable(&inner).unwrap_err().to_string();
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
        assert!(error.contains("mode 700"), "{error}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        // The rest of the path (/tmp and /) lets everyone through.
        stranger.check_reachable(&inner).unwrap();
    }
}
