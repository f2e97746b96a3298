//! Packs what `nimbus push -p PATH` names: a `.wasm` file as it is, a directory as a gzipped tar.

use std::path::Path;

use anyhow::{Context as _, bail};

/// Directory entries never worth uploading: build output and version control.
const SKIPPED: &[&str] = &["target", ".git", "node_modules", "__pycache__"];

/// The bytes to upload for `path`.
pub fn pack(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_file() {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if bytes.is_empty() {
            bail!("{} is empty: nothing to push", path.display());
        }
        return Ok(bytes);
    }
    let mut files = 0;
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut archive = tar::Builder::new(encoder);
    archive.follow_symlinks(false);
    add_dir(&mut archive, path, Path::new(""), &mut files)?;
    if files == 0 {
        bail!("{} has no files: nothing to push", path.display());
    }
    let encoder = archive
        .into_inner()
        .context("failed to pack the directory")?;
    encoder.finish().context("failed to pack the directory")
}

fn add_dir(
    archive: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
    dir: &Path,
    relative: &Path,
    files: &mut usize,
) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name()); // The same tree always packs to the same bytes.
    for entry in entries {
        let name = entry.file_name();
        if SKIPPED.iter().any(|s| name == *s) {
            continue;
        }
        let (path, inside) = (entry.path(), relative.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            add_dir(archive, &path, &inside, files)?;
        } else if kind.is_file() {
            let mut header = tar::Header::new_gnu();
            let data =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0); // Reproducible: unchanged sources give an unchanged package.
            header.set_cksum();
            archive.append_data(&mut header, &inside, data.as_slice())?;
            *files += 1;
        }
        // Symlinks and special files stay behind: they could point outside the app.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_a_directory_reproducibly_without_build_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[package]").unwrap();
        std::fs::create_dir_all(dir.path().join("target/debug")).unwrap();
        std::fs::write(dir.path().join("target/debug/big"), "x").unwrap();
        let first = pack(dir.path()).unwrap();
        assert_eq!(first, pack(dir.path()).unwrap());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(first.as_slice()));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Cargo.toml"]);
    }

    #[test]
    fn refuses_empty_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let err = pack(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no files"), "{err}");
        std::fs::write(dir.path().join("empty.wasm"), "").unwrap();
        let err = pack(&dir.path().join("empty.wasm"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is empty"), "{err}");
        assert!(pack(&dir.path().join("missing")).is_err());
    }
}
