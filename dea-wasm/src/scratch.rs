//! An instance's private scratch directory, `<data_dir>/scratch/<instance_id>`, preopened as
//! `/tmp` (read-write) in every request's store and removed when the instance stops.
//!
//! WASI has no quota, so the cap is enforced after the fact: after each request the DEA sums the
//! directory and, if it is over the cap, wipes it and reports `scratch_limit`. A single request
//! can therefore exceed the cap until it ends (bounded by its fuel and time limits); the disk
//! of `data_dir` should have room for that.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The reason reported when the scratch directory overflows.
pub(crate) const SCRATCH_LIMIT: &str = "scratch_limit";
/// Where the guest sees its scratch directory.
pub(crate) const GUEST_PATH: &str = "/tmp";

/// One instance's scratch directory.
pub(crate) struct Scratch {
    path: PathBuf,
    cap: u64,
}

impl Scratch {
    /// Creates an empty directory for a new instance.
    pub(crate) fn create(
        data_dir: &Path,
        instance_id: uuid::Uuid,
        cap: u64,
    ) -> anyhow::Result<Scratch> {
        let path = data_dir.join("scratch").join(instance_id.to_string());
        std::fs::create_dir_all(&path).with_context(|| {
            format!("failed to create the scratch directory {}", path.display())
        })?;
        Ok(Scratch { path, cap })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    /// If the directory holds more than the cap, empties it and returns the size it had.
    /// Whether the directory holds nothing (or cannot be read, in which case there is nothing
    /// to check either).
    pub(crate) fn is_empty(&self) -> bool {
        std::fs::read_dir(&self.path).map_or(true, |mut entries| entries.next().is_none())
    }

    pub(crate) fn enforce(&self) -> Option<u64> {
        let size = directory_size(&self.path);
        if size <= self.cap {
            return None;
        }
        if let Err(error) = empty_directory(&self.path) {
            tracing::warn!(%error, path = %self.path.display(), "failed to wipe a scratch directory");
        }
        Some(size)
    }

    /// Removes the directory; the instance is gone.
    pub(crate) fn remove(&self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, path = %self.path.display(), "failed to remove a scratch directory");
        }
    }
}

/// Removes scratch directories left by a DEA that did not stop cleanly.
pub(crate) fn remove_leftovers(data_dir: &Path) {
    let dir = data_dir.join("scratch");
    if let Err(error) = std::fs::remove_dir_all(&dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(%error, path = %dir.display(), "failed to remove old scratch directories");
    }
}

/// Bytes of regular files under `path`; symlinks are not followed (guests cannot make them
/// point outside, but we do not walk into them either).
fn directory_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => directory_size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

fn empty_directory(path: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipes_the_directory_once_it_exceeds_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::create(dir.path(), uuid::Uuid::new_v4(), 100).unwrap();
        std::fs::write(scratch.path().join("small"), [0u8; 60]).unwrap();
        assert_eq!(scratch.enforce(), None);
        assert!(!scratch.is_empty());
        std::fs::create_dir(scratch.path().join("sub")).unwrap();
        std::fs::write(scratch.path().join("sub/more"), [0u8; 60]).unwrap();
        assert_eq!(scratch.enforce(), Some(120));
        assert!(scratch.is_empty());
        scratch.remove();
        assert!(!scratch.path().exists());
    }
}
