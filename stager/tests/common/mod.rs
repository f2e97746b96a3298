//! A real nats-server with the blob store, a stager on it, and helpers to put packages and
//! follow staging jobs the way the controller and `nimbus push` do.

#![allow(dead_code)] // Each test file uses a different subset.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::object_store::{self, ObjectStore};
use futures::StreamExt as _;
use nimbus_bus::{NatsServer, ServerOptions};
use nimbus_protocol::droplet::{BLOB_STORE, package_object_name};
use nimbus_protocol::messages::{LogMessage, StagingAck, StagingDone, StagingLog, StagingRequest};
use nimbus_protocol::subjects;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// The longest a staging may take in a test: a cold Rust build on a slow 2-core machine.
const STAGING_DEADLINE: Duration = Duration::from_secs(15 * 60);

pub struct TestCloud {
    pub nats: async_nats::Client,
    pub blobs: ObjectStore,
    pub work_dir: PathBuf,
    stager: Option<nimbus_stager::Handle>,
    server: Option<NatsServer>,
    _dir: tempfile::TempDir,
}

/// What a follower of one staging job saw.
pub struct Staging {
    pub ack: StagingAck,
    /// Lines on `staging.<id>.log`.
    pub lines: Vec<String>,
    /// Lines on the app's log stream.
    pub app_log: Vec<LogMessage>,
    pub done: StagingDone,
}

impl Staging {
    /// The failure message, or a panic naming what happened instead.
    pub fn failure(&self) -> &str {
        match &self.done {
            StagingDone::Failed { message } => message,
            StagingDone::Staged { droplet } => panic!("expected a failure, staged {droplet:?}"),
        }
    }

    pub fn droplet(&self) -> &nimbus_protocol::DropletManifest {
        match &self.done {
            StagingDone::Staged { droplet } => droplet,
            StagingDone::Failed { message } => {
                panic!(
                    "staging failed: {message}\n--- log ---\n{}",
                    self.lines.join("\n")
                )
            }
        }
    }
}

impl TestCloud {
    /// Starts nats-server, creates the blob store and starts a stager.
    pub async fn start() -> TestCloud {
        let dir = tempfile::tempdir().unwrap();
        // Builds run as an unprivileged user when the tests run as root; it must get through.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let server = NatsServer::start(ServerOptions::ephemeral(dir.path().join("nats")))
            .await
            .unwrap();
        let nats = nimbus_bus::connect(server.config(), "stager-test")
            .await
            .unwrap();
        let blobs = async_nats::jetstream::new(nats.clone())
            .create_object_store(object_store::Config {
                bucket: BLOB_STORE.to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
        let work_dir = dir.path().join("stager");
        let stager =
            nimbus_stager::start(nimbus_stager::Config::new(work_dir.clone()), nats.clone())
                .await
                .unwrap();
        TestCloud {
            nats,
            blobs,
            work_dir,
            stager: Some(stager),
            server: Some(server),
            _dir: dir,
        }
    }

    /// Uploads a package as the controller does and returns its SHA-256.
    pub async fn put_package(&self, bytes: &[u8]) -> String {
        let sha = sha256_hex(bytes);
        let mut reader = bytes;
        self.blobs
            .put(package_object_name(&sha).as_str(), &mut reader)
            .await
            .unwrap();
        sha
    }

    /// Uploads `package` and stages it for `app_id`, following the job to its end.
    pub async fn stage(&self, app_id: Uuid, package: &[u8]) -> Staging {
        let sha = self.put_package(package).await;
        self.stage_sha(app_id, &sha).await
    }

    /// Stages an already uploaded package.
    pub async fn stage_sha(&self, app_id: Uuid, sha: &str) -> Staging {
        let staging_id = Uuid::new_v4();
        // Subscribe before asking, or the first lines (or even the result) could be missed.
        let mut log = self
            .nats
            .subscribe(subjects::staging_log(staging_id))
            .await
            .unwrap();
        let mut done = self
            .nats
            .subscribe(subjects::staging_done(staging_id))
            .await
            .unwrap();
        let mut app_log = self.nats.subscribe(subjects::logs(app_id)).await.unwrap();
        self.nats.flush().await.unwrap();

        let request = StagingRequest {
            staging_id,
            app_id,
            app_name: "hello".to_string(),
            package_sha256: sha.to_string(),
        };
        let reply = self
            .nats
            .request(subjects::STAGING, nimbus_protocol::encode(&request).into())
            .await
            .unwrap();
        let ack: StagingAck = nimbus_protocol::decode(&reply.payload).unwrap();

        let mut lines = Vec::new();
        let mut app_lines = Vec::new();
        let result = tokio::time::timeout(STAGING_DEADLINE, async {
            loop {
                tokio::select! {
                    Some(message) = log.next() => {
                        let line: StagingLog = nimbus_protocol::decode(&message.payload).unwrap();
                        lines.push(line.line);
                    }
                    Some(message) = app_log.next() => {
                        app_lines.push(nimbus_protocol::decode(&message.payload).unwrap());
                    }
                    Some(message) = done.next() => {
                        break nimbus_protocol::decode::<StagingDone>(&message.payload).unwrap();
                    }
                }
            }
        })
        .await
        .expect("staging did not finish in time");
        // One connection delivers in order: lines published before the result have arrived
        // already; collect those not yet taken from their subscriptions.
        drain(&mut log, |m| {
            lines.push(
                nimbus_protocol::decode::<StagingLog>(&m.payload)
                    .unwrap()
                    .line,
            )
        })
        .await;
        drain(&mut app_log, |m| {
            app_lines.push(nimbus_protocol::decode(&m.payload).unwrap())
        })
        .await;
        Staging {
            ack,
            lines,
            app_log: app_lines,
            done: result,
        }
    }

    /// Whether the blob store holds an object of this name.
    pub async fn has_object(&self, name: &str) -> bool {
        self.blobs.info(name).await.is_ok_and(|info| !info.deleted)
    }

    /// Reads a whole object from the blob store.
    pub async fn read_object(&self, name: &str) -> Vec<u8> {
        use tokio::io::AsyncReadExt as _;
        let mut object = self.blobs.get(name).await.unwrap();
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.unwrap();
        bytes
    }

    pub async fn shutdown(mut self) {
        if let Some(stager) = self.stager.take() {
            stager.shutdown().await;
        }
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

async fn drain(subscriber: &mut async_nats::Subscriber, mut each: impl FnMut(async_nats::Message)) {
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(200), subscriber.next()).await
    {
        each(message);
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sample app's source directory.
pub fn hello_rust_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-apps/hello-rust")
}

/// The sample app built by its own cargo build (in its own target dir), built now if missing.
pub fn hello_wasm() -> Vec<u8> {
    let dir = hello_rust_dir();
    let wasm = dir.join("target/wasm32-wasip2/release/hello_rust.wasm");
    if !wasm.exists() {
        let status = std::process::Command::new("cargo")
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .current_dir(&dir)
            // The workspace's shared target dir must not capture the sample's build.
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("failed to run cargo for the sample app");
        assert!(status.success(), "building sample-apps/hello-rust failed");
    }
    std::fs::read(&wasm).unwrap()
}

/// The sample app's source (no `target/`) as a `.tar.gz`, as `nimbus push` would upload it.
pub fn hello_rust_source() -> Vec<u8> {
    let dir = hello_rust_dir();
    let mut files = Vec::new();
    for name in ["Cargo.toml", "Cargo.lock"] {
        files.push((name.to_string(), std::fs::read(dir.join(name)).unwrap()));
    }
    for entry in std::fs::read_dir(dir.join("src")).unwrap() {
        let entry = entry.unwrap();
        let name = format!("src/{}", entry.file_name().to_string_lossy());
        files.push((name, std::fs::read(entry.path()).unwrap()));
    }
    tar_gz(&files)
}

/// A `.tar.gz` holding these files.
pub fn tar_gz<N: AsRef<str>, D: AsRef<[u8]>>(files: &[(N, D)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let data = data.as_ref();
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name.as_ref(), data)
            .unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}
