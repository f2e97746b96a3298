//! One staging job from package to droplet: fetch, unpack, detect, build, validate, store.
//!
//! Errors returned from here end the job and become the `Failed` message the developer reads,
//! so each one says in plain words what was wrong with the package or the build.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail, ensure};
use async_nats::jetstream;
use nimbus_protocol::DropletManifest;
use nimbus_protocol::droplet::BLOB_STORE;
use nimbus_protocol::messages::StagingRequest;

use crate::BuildUser;
use crate::config::Config;
use crate::droplet::{self, Stored};
use crate::fetch::fetch_package;
use crate::log::BuildLog;
use crate::package::{self, human_size};
use crate::stagers::{BuildContext, NO_STAGER_MESSAGE, Registry};
use crate::validate::Validator;

/// What every job of one stager shares.
pub(crate) struct Stager {
    pub config: Config,
    pub registry: Registry,
    pub validator: Validator,
    pub jetstream: jetstream::Context,
}

impl Stager {
    /// Stages `request`, writing progress to `log`, and returns the stored droplet's manifest.
    #[tracing::instrument(skip_all, fields(staging_id = %request.staging_id, app_id = %request.app_id))]
    pub(crate) async fn stage(
        &self,
        request: &StagingRequest,
        log: &BuildLog,
    ) -> anyhow::Result<DropletManifest> {
        let config = &self.config;
        log.out(format!(
            "-----> Staging {} on {}",
            request.app_name, config.id
        ))
        .await;
        let blobs = self
            .jetstream
            .get_object_store(BLOB_STORE)
            .await
            .context("failed to open the blob store")?;

        // Everything of this job lives in one directory, removed when the job ends however it ends.
        let builds = config.builds_dir();
        tokio::fs::create_dir_all(&builds)
            .await
            .with_context(|| format!("failed to create {}", builds.display()))?;
        let job_dir = tempfile::Builder::new()
            .prefix("staging-")
            .tempdir_in(&builds)
            .with_context(|| {
                format!("failed to create a build directory in {}", builds.display())
            })?;

        let package_file = job_dir.path().join("package");
        let size = fetch_package(
            &blobs,
            &request.package_sha256,
            &package_file,
            config.max_package_bytes,
        )
        .await?;
        log.out(format!(
            "-----> Downloaded the package ({})",
            human_size(size)
        ))
        .await;

        let unpack_dir = job_dir.path().join("app");
        let max_bytes = config.max_package_bytes;
        let app_dir = tokio::task::spawn_blocking(move || {
            std::fs::create_dir(&unpack_dir)
                .map_err(|e| package::PackageError::Io(e.to_string()))?;
            package::unpack(&package_file, &unpack_dir, max_bytes)
        })
        .await
        .context("the unpacking task failed")??;

        let stager = self
            .registry
            .detect(&app_dir)
            .ok_or_else(|| anyhow!(NO_STAGER_MESSAGE))?;
        tracing::info!(stager = stager.name(), "building");
        let cache_dir = config.app_cache_dir(request.app_id);
        tokio::fs::create_dir_all(cache_dir.join("home"))
            .await
            .with_context(|| format!("failed to create {}", cache_dir.display()))?;
        if let Some(user) = &config.build_user {
            hand_over(user, job_dir.path(), &cache_dir).await?;
        }
        let ctx = BuildContext {
            app_dir,
            output: job_dir.path().join("built.wasm"),
            cache_dir,
            timeout: config.build_timeout,
            memory_bytes: config.build_memory_bytes,
            max_file_bytes: config.max_package_bytes,
            assets_dir: config.assets_dir(),
            js_toolchain: config.js_toolchain.clone(),
            user: config.build_user.clone(),
            log: log.clone(),
        };
        let build_started = Instant::now();
        let wasm_path = stager.build(&ctx).await?;
        // The build chose this path, in directories its user owns: read only a regular file
        // inside them, never through a link to somewhere else.
        let wasm_path = confine(&wasm_path, &[job_dir.path(), &ctx.cache_dir])?;
        log.out(format!(
            "-----> Build finished in {:.1}s",
            build_started.elapsed().as_secs_f64()
        ))
        .await;

        let wasm_size = tokio::fs::metadata(&wasm_path)
            .await
            .with_context(|| format!("failed to read the built wasm {}", wasm_path.display()))?
            .len();
        if wasm_size > config.max_package_bytes {
            bail!(
                "the built wasm is {}, more than the limit of {}",
                human_size(wasm_size),
                human_size(config.max_package_bytes)
            );
        }
        let wasm = {
            let path = wasm_path.clone();
            tokio::task::spawn_blocking(move || read_no_follow(&path))
                .await
                .context("the reading task failed")?
                .with_context(|| format!("failed to read the built wasm {}", wasm_path.display()))?
        };

        log.out(format!(
            "-----> Validating and compiling the droplet ({}) for the cluster's engine",
            human_size(wasm_size)
        ))
        .await;
        let compile_started = Instant::now();
        let validated = self.validator.validate_async(wasm).await?;
        if validated.adapted {
            log.out("       a WASI p1 command module: made into a command component")
                .await;
        }
        log.out(format!(
            "       exports {}: runs as {} (compiled in {:.1}s)",
            validated.export,
            validated.kind,
            compile_started.elapsed().as_secs_f64()
        ))
        .await;

        let manifest = droplet::manifest(&validated.wasm, validated.kind, stager.name());
        match droplet::store(&blobs, &manifest, &validated.wasm).await? {
            Stored::Uploaded => log.out("-----> Uploaded the droplet").await,
            Stored::AlreadyPresent => {
                log.out("-----> The droplet is already stored (same SHA-256); nothing to upload")
                    .await
            }
        }
        let engine_hash = self.validator.engine_hash();
        droplet::store_precompiled(&blobs, &manifest, engine_hash, &validated.artifact).await?;
        log.out(format!(
            "-----> Stored the precompiled droplet ({}, engine {engine_hash})",
            human_size(validated.artifact.len() as u64)
        ))
        .await;
        log.out(format!(
            "-----> Droplet: {} {}, {}, sha256 {}",
            manifest.language,
            manifest.kind,
            human_size(manifest.size),
            manifest.sha256
        ))
        .await;
        Ok(manifest)
    }
}

/// Gives the job's directory and the app's build cache to the build user. The cache is handed
/// over once, when it is new (or was made before builds had a user of their own).
async fn hand_over(user: &BuildUser, job_dir: &Path, cache_dir: &Path) -> anyhow::Result<()> {
    let user = user.clone();
    let dirs = [job_dir.to_path_buf(), cache_dir.to_path_buf()];
    tokio::task::spawn_blocking(move || {
        for dir in &dirs {
            if !user.owns(dir) {
                user.hand_over(dir).with_context(|| {
                    format!(
                        "failed to give {} to the build user {}",
                        dir.display(),
                        user.name
                    )
                })?;
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("the hand-over task failed")?
}

/// `path` resolved, if it is a regular file inside one of `roots`.
fn confine(path: &Path, roots: &[&Path]) -> anyhow::Result<PathBuf> {
    let resolved = path
        .canonicalize()
        .with_context(|| format!("the build's output {} cannot be read", path.display()))?;
    let inside = roots.iter().any(|root| {
        root.canonicalize()
            .is_ok_and(|root| resolved.starts_with(root))
    });
    ensure!(
        inside,
        "the build's output {} lies outside its build directories",
        path.display()
    );
    ensure!(
        resolved.is_file(),
        "the build's output {} is not a file",
        path.display()
    );
    Ok(resolved)
}

/// Reads a file, failing if its last component is a symbolic link.
fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}
