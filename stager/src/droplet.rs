//! Droplets are content-addressed: named by the SHA-256 of their wasm, so the same build staged
//! twice (or by two apps) is stored once.

use anyhow::Context as _;
use async_nats::jetstream::object_store::{InfoErrorKind, ObjectStore};
use nimbus_protocol::droplet::{droplet_object_name, precompiled_object_name};
use nimbus_protocol::{DropletKind, DropletManifest};
use sha2::{Digest as _, Sha256};

/// Lower-case hex of a SHA-256 digest.
pub(crate) fn hex(digest: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(digest.len() * 2);
    for byte in digest {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Lower-case hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The manifest of a droplet of `kind` built by the stager named `language`.
pub(crate) fn manifest(wasm: &[u8], kind: DropletKind, language: &str) -> DropletManifest {
    DropletManifest {
        sha256: sha256_hex(wasm),
        kind,
        language: language.to_string(),
        size: wasm.len() as u64,
        staged_at: nimbus_protocol::now_ms(),
    }
}

/// Whether storing a droplet uploaded it or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    Uploaded,
    AlreadyPresent,
}

/// Stores the droplet's wasm under its content address unless an intact copy is already there.
pub(crate) async fn store(
    blobs: &ObjectStore,
    manifest: &DropletManifest,
    wasm: &[u8],
) -> anyhow::Result<Stored> {
    put_once(blobs, &droplet_object_name(&manifest.sha256), wasm).await
}

/// Stores the droplet's machine code for engines with `engine_hash` beside the droplet.
pub(crate) async fn store_precompiled(
    blobs: &ObjectStore,
    manifest: &DropletManifest,
    engine_hash: &str,
    artifact: &[u8],
) -> anyhow::Result<Stored> {
    put_once(
        blobs,
        &precompiled_object_name(&manifest.sha256, engine_hash),
        artifact,
    )
    .await
}

/// Puts `bytes` under `name` unless an object of that size is already there: names are
/// content-derived, so the same name means the same bytes.
async fn put_once(blobs: &ObjectStore, name: &str, bytes: &[u8]) -> anyhow::Result<Stored> {
    match blobs.info(&name).await {
        // Same name means same bytes; the size check only guards against a half-written object.
        Ok(info) if !info.deleted && info.size == bytes.len() => {
            return Ok(Stored::AlreadyPresent);
        }
        Ok(_) => {}
        Err(error) if error.kind() == InfoErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("failed to look up droplet {name}"));
        }
    }
    let mut reader = bytes;
    blobs
        .put(name, &mut reader)
        .await
        .with_context(|| format!("failed to store droplet {name}"))?;
    Ok(Stored::Uploaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_as_lower_case_hex() {
        // SHA-256 of the empty string, a well-known value.
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn manifest_describes_an_http_component() {
        let manifest = manifest(b"\0asm", DropletKind::HttpComponent, "wasm");
        assert_eq!(manifest.kind, DropletKind::HttpComponent);
        assert_eq!(manifest.size, 4);
        assert_eq!(manifest.language, "wasm");
        assert_eq!(manifest.sha256, sha256_hex(b"\0asm"));
    }
}
