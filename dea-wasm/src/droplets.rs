//! The droplet cache: droplet wasm downloaded once from the blob store, verified against its
//! SHA-256 and kept on disk under `<data_dir>/droplets/<sha256>.wasm`; and the stager's
//! precompiled machine code for this DEA's engine, when the blob store has it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use async_nats::jetstream::object_store::GetErrorKind;
use nimbus_protocol::droplet::{BLOB_STORE, droplet_object_name, precompiled_object_name};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

/// Largest droplet accepted; protects the DEA's memory from a bogus object.
pub(crate) const MAX_DROPLET_BYTES: u64 = 512 * 1024 * 1024;

/// Downloads and caches droplets.
#[derive(Clone)]
pub(crate) struct Droplets {
    nats: async_nats::Client,
    dir: PathBuf,
}

impl Droplets {
    pub(crate) fn new(nats: async_nats::Client, data_dir: &Path) -> Droplets {
        Droplets {
            nats,
            dir: data_dir.join("droplets"),
        }
    }

    /// The droplet's wasm, from disk if cached and intact, else from the blob store.
    pub(crate) async fn fetch(&self, sha256: &str) -> anyhow::Result<Vec<u8>> {
        check_sha256(sha256)?;
        let path = self.dir.join(format!("{sha256}.wasm"));
        match tokio::fs::read(&path).await {
            Ok(bytes) if sha256_hex(&bytes) == sha256 => return Ok(bytes),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "cached droplet is corrupt; downloading it again");
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot read cached droplet; downloading it again");
            }
        }
        let bytes = self.download(sha256).await?;
        if let Err(error) = self.store(&path, &bytes).await {
            // The cache only saves a download next time; running the droplet matters more.
            tracing::warn!(
                error = format!("{error:#}"),
                "failed to cache droplet on disk"
            );
        }
        Ok(bytes)
    }

    /// The droplet's machine code as a stager precompiled it for engines with `engine_hash`, if
    /// the blob store has it. Any failure only means compiling here, so it is logged, not
    /// returned.
    pub(crate) async fn precompiled(&self, sha256: &str, engine_hash: &str) -> Option<Vec<u8>> {
        let name = precompiled_object_name(sha256, engine_hash);
        let read = async {
            let object = match self.blob_store().await?.get(&name).await {
                Ok(object) => object,
                Err(error) if error.kind() == GetErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(anyhow::Error::from(error)),
            };
            let mut bytes = Vec::new();
            object
                .take(MAX_DROPLET_BYTES + 1)
                .read_to_end(&mut bytes)
                .await?;
            if bytes.len() as u64 > MAX_DROPLET_BYTES {
                bail!("larger than {MAX_DROPLET_BYTES} bytes");
            }
            anyhow::Ok(Some(bytes))
        };
        match read.await {
            Ok(Some(bytes)) => {
                tracing::info!(sha256, size = bytes.len(), "downloaded precompiled droplet");
                Some(bytes)
            }
            Ok(None) => {
                tracing::info!(
                    sha256,
                    engine_hash,
                    "no droplet precompiled for this engine"
                );
                None
            }
            Err(error) => {
                tracing::warn!(
                    sha256,
                    error = format!("{error:#}"),
                    "failed to download the precompiled droplet; compiling it"
                );
                None
            }
        }
    }

    async fn blob_store(&self) -> anyhow::Result<async_nats::jetstream::object_store::ObjectStore> {
        async_nats::jetstream::new(self.nats.clone())
            .get_object_store(BLOB_STORE)
            .await
            .with_context(|| format!("failed to open the blob store {BLOB_STORE}"))
    }

    async fn download(&self, sha256: &str) -> anyhow::Result<Vec<u8>> {
        let name = droplet_object_name(sha256);
        let store = self.blob_store().await?;
        let object = match store.get(&name).await {
            Ok(object) => object,
            Err(error) if error.kind() == GetErrorKind::NotFound => {
                bail!("droplet {sha256} was not found in the blob store")
            }
            Err(error) => {
                return Err(error).with_context(|| format!("failed to download droplet {sha256}"));
            }
        };
        let mut bytes = Vec::new();
        object
            .take(MAX_DROPLET_BYTES + 1)
            .read_to_end(&mut bytes)
            .await
            .with_context(|| format!("failed to download droplet {sha256}"))?;
        if bytes.len() as u64 > MAX_DROPLET_BYTES {
            bail!("droplet {sha256} is larger than {MAX_DROPLET_BYTES} bytes");
        }
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            bail!("droplet {sha256} failed verification: its content hashes to {actual}");
        }
        tracing::info!(sha256, size = bytes.len(), "downloaded droplet");
        Ok(bytes)
    }

    /// Writes through a unique temporary file and renames, so concurrent starts of one droplet
    /// never see a half-written file.
    async fn store(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .with_context(|| format!("failed to create {}", self.dir.display()))?;
        let temporary = self
            .dir
            .join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&temporary, bytes)
            .await
            .with_context(|| format!("failed to write {}", temporary.display()))?;
        if let Err(error) = tokio::fs::rename(&temporary, path).await {
            let _ = tokio::fs::remove_file(&temporary).await;
            return Err(error).with_context(|| format!("failed to write {}", path.display()));
        }
        Ok(())
    }
}

/// Droplet hashes come from the network and become file names: accept exactly 64 lower-case
/// hex digits.
pub(crate) fn check_sha256(sha256: &str) -> anyhow::Result<()> {
    let valid = sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !valid {
        bail!("{sha256:?} is not a droplet SHA-256 (64 lower-case hex digits)");
    }
    Ok(())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_lower_case_hex_hashes() {
        check_sha256(&sha256_hex(b"droplet")).unwrap();
        assert!(check_sha256("../../etc/passwd").is_err());
        assert!(check_sha256(&"AB".repeat(32)).is_err());
        assert!(check_sha256(&"ab".repeat(31)).is_err());
    }

    #[test]
    fn hashes_as_lower_case_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
