//! Turns an uploaded package into an app directory a stager can look at.
//!
//! A package is either a raw WebAssembly file or a gzip-compressed tar archive. Either way the
//! result is a directory: a raw `.wasm` becomes `app.wasm` alone in it, an archive is unpacked
//! into it by [`extract`], which treats every archive as hostile.

mod extract;

use std::io::Read as _;
use std::path::{Path, PathBuf};

pub(crate) use extract::extract_tar_gz;

/// The name a raw `.wasm` package gets in its app directory.
pub(crate) const RAW_WASM_NAME: &str = "app.wasm";

/// What kind of package was uploaded, decided by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackageFormat {
    /// A WebAssembly binary (core module or component).
    Wasm,
    /// A gzip-compressed tar archive.
    TarGz,
}

/// Why a package could not become an app directory. Every message is meant for the app developer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PackageError {
    #[error("the package is empty")]
    Empty,
    #[error(
        "the package is neither a WebAssembly file nor a gzip-compressed tar archive (.tar.gz){hint}"
    )]
    UnknownFormat { hint: &'static str },
    #[error("the package is larger than the limit of {limit} once unpacked")]
    TooLarge { limit: String },
    #[error("the package has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("the archive entry {path:?} points outside the app directory (absolute path or `..`)")]
    UnsafePath { path: String },
    #[error("the archive entry {path:?} is a {kind}; packages may hold only files and directories")]
    UnsupportedEntry { path: String, kind: &'static str },
    #[error("the package is not a valid .tar.gz archive: {0}")]
    Corrupt(String),
    #[error("failed to unpack the package: {0}")]
    Io(String),
}

/// Decides the format of a package from its first bytes.
pub(crate) fn detect_format(head: &[u8]) -> Result<PackageFormat, PackageError> {
    if head.is_empty() {
        return Err(PackageError::Empty);
    }
    if head.starts_with(b"\0asm") {
        return Ok(PackageFormat::Wasm);
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(PackageFormat::TarGz);
    }
    // Name the common near-misses, so the developer knows what to change.
    let hint = if head.starts_with(b"PK\x03\x04") {
        ": zip archives are not supported, upload a .tar.gz"
    } else if head.len() > 262 && &head[257..262] == b"ustar" {
        ": uncompressed tar archives are not supported, gzip it"
    } else if head.trim_ascii_start().starts_with(b"(") {
        ": WebAssembly text (.wat) is not supported, upload the binary .wasm"
    } else {
        ""
    };
    Err(PackageError::UnknownFormat { hint })
}

/// Unpacks the package file into the empty directory `dest` and returns the app directory:
/// `dest` itself, or its only subdirectory when the archive wraps everything in one folder (as
/// `tar czf app.tgz app/` does).
pub(crate) fn unpack(package: &Path, dest: &Path, max_bytes: u64) -> Result<PathBuf, PackageError> {
    let mut file = std::fs::File::open(package).map_err(|e| PackageError::Io(e.to_string()))?;
    let mut head = Vec::with_capacity(512);
    (&mut file)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| PackageError::Io(e.to_string()))?;
    match detect_format(&head)? {
        PackageFormat::Wasm => {
            std::fs::copy(package, dest.join(RAW_WASM_NAME))
                .map_err(|e| PackageError::Io(e.to_string()))?;
            Ok(dest.to_path_buf())
        }
        PackageFormat::TarGz => {
            let file = std::fs::File::open(package).map_err(|e| PackageError::Io(e.to_string()))?;
            extract_tar_gz(std::io::BufReader::new(file), dest, max_bytes)?;
            app_root(dest)
        }
    }
}

/// `dest`, or its single subdirectory if that is all it holds.
fn app_root(dest: &Path) -> Result<PathBuf, PackageError> {
    let entries = std::fs::read_dir(dest)
        .map_err(|e| PackageError::Io(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PackageError::Io(e.to_string()))?;
    if let [only] = entries.as_slice() {
        // file_type() does not follow links; extraction never creates any anyway.
        if only.file_type().is_ok_and(|t| t.is_dir()) {
            return Ok(only.path());
        }
    }
    Ok(dest.to_path_buf())
}

/// Formats a byte count the way people read sizes: `512 MiB`, `84.2 KiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_wasm_and_gzip_by_magic_bytes() {
        assert_eq!(
            detect_format(b"\0asm\x01\0\0\0").unwrap(),
            PackageFormat::Wasm
        );
        assert_eq!(
            detect_format(&[0x1f, 0x8b, 8, 0]).unwrap(),
            PackageFormat::TarGz
        );
    }

    #[test]
    fn rejects_empty_and_unknown_packages_with_clear_messages() {
        assert_eq!(
            detect_format(b"").unwrap_err().to_string(),
            "the package is empty"
        );
        let garbage = detect_format(b"hello world").unwrap_err().to_string();
        assert!(garbage.contains("neither a WebAssembly file"), "{garbage}");
        let zip = detect_format(b"PK\x03\x04rest").unwrap_err().to_string();
        assert!(zip.contains("zip archives are not supported"), "{zip}");
        let wat = detect_format(b"  (module)").unwrap_err().to_string();
        assert!(wat.contains(".wat"), "{wat}");
    }

    #[test]
    fn a_raw_wasm_package_becomes_app_wasm() {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join("package");
        std::fs::write(&package, b"\0asm\x01\0\0\0").unwrap();
        let dest = dir.path().join("app");
        std::fs::create_dir(&dest).unwrap();
        let root = unpack(&package, &dest, 1024).unwrap();
        assert_eq!(root, dest);
        assert_eq!(
            std::fs::read(dest.join(RAW_WASM_NAME)).unwrap(),
            b"\0asm\x01\0\0\0"
        );
    }

    #[test]
    fn a_single_wrapping_folder_becomes_the_app_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("hello/src")).unwrap();
        assert_eq!(app_root(dir.path()).unwrap(), dir.path().join("hello"));
        std::fs::write(dir.path().join("README"), "x").unwrap();
        assert_eq!(app_root(dir.path()).unwrap(), dir.path());
    }

    #[test]
    fn sizes_read_like_a_person_wrote_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(512 * 1024 * 1024), "512 MiB");
        assert_eq!(human_size(1536), "1.5 KiB");
    }
}
