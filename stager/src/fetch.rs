//! Downloads a package from the object store to a file, bounded in size and checked against the
//! SHA-256 it is named by.

use std::path::Path;

use anyhow::{Context as _, bail};
use async_nats::jetstream::object_store::{GetErrorKind, ObjectStore};
use nimbus_protocol::droplet::package_object_name;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::droplet::hex;
use crate::package::human_size;

/// Writes the package named by `sha256` to `dest` and returns its size.
pub(crate) async fn fetch_package(
    blobs: &ObjectStore,
    sha256: &str,
    dest: &Path,
    max_bytes: u64,
) -> anyhow::Result<u64> {
    // The id becomes part of an object name: accept only what a SHA-256 looks like.
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("the package id {sha256:?} is not a SHA-256");
    }
    let name = package_object_name(sha256);
    let mut object = match blobs.get(&name).await {
        Ok(object) => object,
        Err(error) if error.kind() == GetErrorKind::NotFound => {
            bail!("the package {sha256} is not in the blob store (was the upload completed?)")
        }
        Err(error) => return Err(error).with_context(|| format!("failed to fetch {name}")),
    };
    let too_large = || {
        anyhow::anyhow!(
            "the package is larger than the limit of {}",
            human_size(max_bytes)
        )
    };
    if object.info().size as u64 > max_bytes {
        return Err(too_large());
    }

    let mut file = tokio::fs::File::create(dest)
        .await
        .with_context(|| format!("failed to create {}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = object
            .read(&mut buffer)
            .await
            .with_context(|| format!("failed to download {name}"))?;
        if read == 0 {
            break;
        }
        // Checked while reading too: the stored size is only what the uploader claimed.
        size += read as u64;
        if size > max_bytes {
            return Err(too_large());
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read])
            .await
            .with_context(|| format!("failed to write {}", dest.display()))?;
    }
    file.flush()
        .await
        .with_context(|| format!("failed to write {}", dest.display()))?;

    let actual = hex(&hasher.finalize());
    if !actual.eq_ignore_ascii_case(sha256) {
        bail!("the package is corrupt: its SHA-256 is {actual}, expected {sha256}");
    }
    Ok(size)
}
