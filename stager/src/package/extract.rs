//! Safe extraction of a `.tar.gz` package. Packages come from users of a shared platform, so an
//! archive is hostile until proven otherwise:
//!
//! - every entry path must be relative and free of `..`, so nothing lands outside the app dir;
//! - only regular files and directories are accepted: links could point anywhere (and a link
//!   written first would let a later file entry escape through it), devices and FIFOs have no
//!   business in an app;
//! - the decompressed stream is capped while it is read, so a small archive that inflates to
//!   terabytes (a "zip bomb") stops at the cap instead of filling the disk;
//! - the number of entries is capped too, so a package cannot exhaust inodes with empty files.

use std::cell::Cell;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use flate2::read::GzDecoder;
use tar::EntryType;

use super::{PackageError, human_size};

/// More entries than any real app has; enough to stop inode exhaustion.
pub(crate) const MAX_ENTRIES: usize = 100_000;

/// Unpacks a gzip-compressed tar stream into `dest` (which must exist), refusing anything unsafe.
///
/// On error `dest` may hold part of the archive; the caller discards the whole job directory.
pub(crate) fn extract_tar_gz(
    reader: impl Read,
    dest: &Path,
    max_bytes: u64,
) -> Result<(), PackageError> {
    extract_with_limits(reader, dest, max_bytes, MAX_ENTRIES)
}

fn extract_with_limits(
    reader: impl Read,
    dest: &Path,
    max_bytes: u64,
    max_entries: usize,
) -> Result<(), PackageError> {
    // The reader is moved into the archive; this flag tells us afterwards whether an I/O error
    // was the cap being hit rather than a broken archive.
    let exceeded = Rc::new(Cell::new(false));
    let capped = CappedReader {
        inner: GzDecoder::new(reader),
        remaining: max_bytes,
        exceeded: exceeded.clone(),
    };
    let too_large = || PackageError::TooLarge {
        limit: human_size(max_bytes),
    };
    let read_error = |error: io::Error| {
        if exceeded.get() {
            too_large()
        } else {
            PackageError::Corrupt(error.to_string())
        }
    };

    let mut archive = tar::Archive::new(capped);
    let mut seen = 0usize;
    let mut files = 0usize;
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        seen += 1;
        if seen > max_entries {
            return Err(PackageError::TooManyEntries { limit: max_entries });
        }
        let raw_path = entry.path().map_err(read_error)?.into_owned();
        let shown = raw_path.display().to_string();
        let kind = entry.header().entry_type();

        let rejected = |kind: &'static str| PackageError::UnsupportedEntry {
            path: shown.clone(),
            kind,
        };
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            // Metadata records (long names, pax attributes); tar has already applied them.
            EntryType::GNULongName
            | EntryType::GNULongLink
            | EntryType::XHeader
            | EntryType::XGlobalHeader => continue,
            EntryType::Symlink => return Err(rejected("symbolic link")),
            EntryType::Link => return Err(rejected("hard link")),
            EntryType::Char => return Err(rejected("character device")),
            EntryType::Block => return Err(rejected("block device")),
            EntryType::Fifo => return Err(rejected("FIFO")),
            EntryType::GNUSparse => return Err(rejected("sparse file")),
            _ => return Err(rejected("special entry")),
        }

        let Some(relative) = safe_relative_path(&raw_path) else {
            return Err(PackageError::UnsafePath { path: shown });
        };
        let target = dest.join(&relative);
        let io_error = |error: io::Error| {
            if exceeded.get() {
                too_large()
            } else {
                PackageError::Io(format!("{}: {error}", relative.display()))
            }
        };

        if kind == EntryType::Directory {
            std::fs::create_dir_all(&target).map_err(io_error)?;
            continue;
        }
        if relative.as_os_str().is_empty() {
            // A file named `.` or `./`: there is nowhere to put it.
            return Err(PackageError::UnsafePath { path: shown });
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        // Keep only the executable bit: ownership and setuid bits from a stranger mean nothing.
        let mode = if entry.header().mode().unwrap_or(0) & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&target)
            .map_err(io_error)?;
        io::copy(&mut entry, &mut file).map_err(io_error)?;
        files += 1;
    }
    if files == 0 {
        return Err(PackageError::Empty);
    }
    Ok(())
}

/// The path with `.` removed, or `None` if it is absolute or climbs with `..`.
fn safe_relative_path(path: &Path) -> Option<PathBuf> {
    let mut safe = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => safe.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(safe)
}

/// Reads at most `remaining` bytes, then fails (and says so in `exceeded`) if more would follow.
struct CappedReader<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // At the cap: only a clean end of stream is acceptable.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.exceeded.set(true);
                    Err(io::Error::other("the package exceeds its size limit"))
                }
            };
        }
        let allowed = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..allowed])?;
        self.remaining -= read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// Appends an entry with exactly these raw bytes as its name, bypassing the checks
    /// `tar::Builder` does on paths, as an attacker's tool would.
    fn raw_entry(
        builder: &mut tar::Builder<Vec<u8>>,
        path: &str,
        kind: EntryType,
        data: &[u8],
        link: &str,
    ) {
        let mut header = tar::Header::new_old();
        {
            let old = header.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        gzip(&builder.into_inner().unwrap())
    }

    /// A scratch root with an empty `dest` inside, so tests can check nothing escaped to the root.
    fn scratch() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        (root, dest)
    }

    fn extract(bytes: &[u8], dest: &Path) -> Result<(), PackageError> {
        extract_tar_gz(bytes, dest, 1024 * 1024)
    }

    #[test]
    fn extracts_files_and_directories() {
        let bytes = archive(|b| {
            raw_entry(b, "src/", EntryType::Directory, b"", "");
            raw_entry(b, "./Cargo.toml", EntryType::Regular, b"[package]", "");
            raw_entry(b, "src/lib.rs", EntryType::Regular, b"fn main() {}", "");
            raw_entry(b, "deep/er/file.txt", EntryType::Regular, b"x", "");
        });
        let (_root, dest) = scratch();
        extract(&bytes, &dest).unwrap();
        assert_eq!(
            std::fs::read(dest.join("Cargo.toml")).unwrap(),
            b"[package]"
        );
        assert_eq!(
            std::fs::read(dest.join("src/lib.rs")).unwrap(),
            b"fn main() {}"
        );
        assert_eq!(std::fs::read(dest.join("deep/er/file.txt")).unwrap(), b"x");
    }

    #[test]
    fn rejects_parent_directory_components_and_writes_nothing_outside() {
        for path in ["../evil.txt", "a/../../evil.txt", "ok/../../../evil.txt"] {
            let bytes = archive(|b| raw_entry(b, path, EntryType::Regular, b"pwned", ""));
            let (root, dest) = scratch();
            let error = extract(&bytes, &dest).unwrap_err();
            assert!(
                matches!(error, PackageError::UnsafePath { .. }),
                "{path}: {error}"
            );
            assert!(
                error.to_string().contains("outside the app directory"),
                "{error}"
            );
            assert!(!root.path().join("evil.txt").exists());
            assert!(!root.path().parent().unwrap().join("evil.txt").exists());
        }
    }

    #[test]
    fn rejects_absolute_paths_and_writes_nothing_there() {
        let (root, dest) = scratch();
        let target = root.path().join("absolute-evil.txt");
        let path = target.to_str().unwrap().to_string();
        let bytes = archive(|b| raw_entry(b, &path, EntryType::Regular, b"pwned", ""));
        let error = extract(&bytes, &dest).unwrap_err();
        assert!(matches!(error, PackageError::UnsafePath { .. }), "{error}");
        assert!(!target.exists());
    }

    #[test]
    fn rejects_symbolic_and_hard_links() {
        for (kind, name) in [
            (EntryType::Symlink, "symbolic link"),
            (EntryType::Link, "hard link"),
        ] {
            let bytes = archive(|b| {
                raw_entry(b, "escape", kind, b"", "/etc");
                raw_entry(b, "escape/passwd", EntryType::Regular, b"pwned", "");
            });
            let (_root, dest) = scratch();
            let error = extract(&bytes, &dest).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
            assert!(std::fs::symlink_metadata(dest.join("escape")).is_err());
        }
    }

    #[test]
    fn rejects_devices_and_fifos() {
        for (kind, name) in [
            (EntryType::Char, "character device"),
            (EntryType::Block, "block device"),
            (EntryType::Fifo, "FIFO"),
        ] {
            let bytes = archive(|b| raw_entry(b, "dev", kind, b"", ""));
            let (_root, dest) = scratch();
            let error = extract(&bytes, &dest).unwrap_err();
            assert!(
                matches!(error, PackageError::UnsupportedEntry { .. }),
                "{error}"
            );
            assert!(error.to_string().contains(name), "{error}");
            assert!(std::fs::symlink_metadata(dest.join("dev")).is_err());
        }
    }

    #[test]
    fn stops_an_archive_bomb_at_the_size_cap() {
        // 8 MiB of zeros compresses to a few KiB.
        let zeros = vec![0u8; 8 * 1024 * 1024];
        let bytes = archive(|b| raw_entry(b, "bomb", EntryType::Regular, &zeros, ""));
        assert!(bytes.len() < 64 * 1024);
        let (_root, dest) = scratch();
        let error = extract_tar_gz(bytes.as_slice(), &dest, 1024 * 1024).unwrap_err();
        assert!(matches!(error, PackageError::TooLarge { .. }), "{error}");
        assert!(error.to_string().contains("1 MiB"), "{error}");
        let written = std::fs::metadata(dest.join("bomb")).map_or(0, |m| m.len());
        assert!(written <= 1024 * 1024, "wrote {written} bytes");
    }

    #[test]
    fn accepts_an_archive_right_under_the_cap() {
        let bytes = archive(|b| raw_entry(b, "f", EntryType::Regular, &[7u8; 1000], ""));
        let (_root, dest) = scratch();
        // header (512) + data padded to 1024 + two zero blocks (1024), plus tar's 10 KiB record
        // padding from Builder: cap at 16 KiB.
        extract_tar_gz(bytes.as_slice(), &dest, 16 * 1024).unwrap();
        assert_eq!(std::fs::read(dest.join("f")).unwrap().len(), 1000);
    }

    #[test]
    fn rejects_too_many_entries() {
        let bytes = archive(|b| {
            for i in 0..5 {
                raw_entry(b, &format!("f{i}"), EntryType::Regular, b"x", "");
            }
        });
        let (_root, dest) = scratch();
        let error = extract_with_limits(bytes.as_slice(), &dest, 1024 * 1024, 3).unwrap_err();
        assert!(
            matches!(error, PackageError::TooManyEntries { limit: 3 }),
            "{error}"
        );
    }

    #[test]
    fn rejects_an_empty_archive() {
        let (_root, dest) = scratch();
        let empty = archive(|_| {});
        assert_eq!(
            extract(&empty, &dest).unwrap_err().to_string(),
            "the package is empty"
        );
        let only_dirs = archive(|b| raw_entry(b, "src/", EntryType::Directory, b"", ""));
        assert!(matches!(
            extract(&only_dirs, &dest).unwrap_err(),
            PackageError::Empty
        ));
    }

    #[test]
    fn rejects_a_corrupt_gzip_stream() {
        let mut bytes = gzip(b"not a tar archive at all, just text that is long enough");
        let middle = bytes.len() / 2;
        bytes[middle..].iter_mut().for_each(|b| *b = 0xff);
        let (_root, dest) = scratch();
        let error = extract(&bytes, &dest).unwrap_err();
        assert!(matches!(error, PackageError::Corrupt(_)), "{error}");
        assert!(error.to_string().contains("not a valid .tar.gz"), "{error}");
    }
}
