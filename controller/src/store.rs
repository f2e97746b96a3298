//! Desired state in JetStream: apps and tokens in key-value buckets (every write is a
//! compare-and-set on the key's revision), packages and droplets in the object store.

use anyhow::Context as _;
use async_nats::jetstream::{self, kv, object_store};
use futures::{StreamExt as _, TryStreamExt as _};
use nimbus_protocol::droplet::BLOB_STORE;
use nimbus_protocol::messages::{AppEvent, LogMessage};
use nimbus_protocol::state::{APP_NAMES_BUCKET, APPS_BUCKET, AppRecord, TOKENS_BUCKET};
use nimbus_protocol::subjects;
use uuid::Uuid;

const LOGS_STREAM: &str = "NIMBUS_LOGS";
const EVENTS_STREAM: &str = "NIMBUS_EVENTS";
/// Lines kept per app for `nimbus logs --recent`.
pub const RECENT_LOG_LINES: i64 = 1000;
/// Events kept per app for `nimbus events`.
pub const RECENT_EVENTS: i64 = 200;

/// Why a store operation failed, for callers that branch on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("an app named {0:?} already exists")]
    NameTaken(String),
    #[error("the app was changed or deleted concurrently")]
    Conflict,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Handles on every bucket the controller uses.
#[derive(Clone)]
pub struct Store {
    apps: kv::Store,
    names: kv::Store,
    tokens: kv::Store,
    pub blobs: object_store::ObjectStore,
    logs: jetstream::stream::Stream,
    events: jetstream::stream::Stream,
}

impl Store {
    /// Opens the buckets, creating them on first start (creation is idempotent).
    pub async fn open(js: &jetstream::Context) -> anyhow::Result<Store> {
        let bucket = |name: &str| kv::Config {
            bucket: name.to_string(),
            history: 5,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let apps = js
            .create_key_value(bucket(APPS_BUCKET))
            .await
            .context("failed to open the apps bucket")?;
        let names = js
            .create_key_value(bucket(APP_NAMES_BUCKET))
            .await
            .context("failed to open the app-names bucket")?;
        let tokens = js
            .create_key_value(bucket(TOKENS_BUCKET))
            .await
            .context("failed to open the tokens bucket")?;
        let blobs = js
            .create_object_store(object_store::Config {
                bucket: BLOB_STORE.to_string(),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .context("failed to open the blob store")?;
        let per_app_stream = |name: &str, filter: &str, keep: i64| jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![filter.to_string()],
            max_messages_per_subject: keep,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let logs = js
            .get_or_create_stream(per_app_stream(
                LOGS_STREAM,
                subjects::LOGS_ALL,
                RECENT_LOG_LINES,
            ))
            .await
            .context("failed to open the log stream")?;
        let events = js
            .get_or_create_stream(per_app_stream(
                EVENTS_STREAM,
                subjects::EVENTS_ALL,
                RECENT_EVENTS,
            ))
            .await
            .context("failed to open the event stream")?;
        Ok(Store {
            apps,
            names,
            tokens,
            blobs,
            logs,
            events,
        })
    }

    /// Records a new app; its name must be free.
    pub async fn create_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        match self
            .names
            .create(&app.name, app.id.to_string().into())
            .await
        {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                return Err(StoreError::NameTaken(app.name.clone()));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("failed to reserve the app name")
                    .into());
            }
        }
        if let Err(e) = self.apps.create(app.id.to_string(), encode(app)).await {
            // Give the name back so a retry can succeed.
            let _ = self.names.delete(&app.name).await;
            return Err(anyhow::Error::new(e)
                .context("failed to store the app")
                .into());
        }
        Ok(())
    }

    /// The app with this id, with its revision for compare-and-set.
    pub async fn app(&self, id: Uuid) -> anyhow::Result<Option<(AppRecord, u64)>> {
        let entry = self
            .apps
            .entry(id.to_string())
            .await
            .context("failed to read an app")?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                Some((decode(&entry.value)?, entry.revision))
            }
            _ => None,
        })
    }

    /// The app called `name`.
    pub async fn app_named(&self, name: &str) -> anyhow::Result<Option<(AppRecord, u64)>> {
        if nimbus_protocol::api::validate_app_name(name).is_err() {
            return Ok(None); // Not a valid key either; such an app cannot exist.
        }
        let Some(id) = self
            .names
            .get(name)
            .await
            .context("failed to look up an app name")?
        else {
            return Ok(None);
        };
        let id: Uuid = std::str::from_utf8(&id)
            .ok()
            .and_then(|s| s.parse().ok())
            .context("the app-names bucket holds a malformed id")?;
        self.app(id).await
    }

    /// Every app.
    pub async fn apps(&self) -> anyhow::Result<Vec<AppRecord>> {
        let keys: Vec<String> = match self.apps.keys().await {
            Ok(keys) => keys.try_collect().await.context("failed to list apps")?,
            Err(e) => return Err(anyhow::Error::new(e).context("failed to list apps")),
        };
        let mut apps = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(id) = key.parse().ok()
                && let Some((app, _)) = self.app(id).await?
            {
                apps.push(app);
            }
        }
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(apps)
    }

    /// Writes `app` if it is still at `revision`.
    pub async fn update_app(&self, app: &AppRecord, revision: u64) -> Result<u64, StoreError> {
        self.apps
            .update(app.id.to_string(), encode(app), revision)
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => StoreError::Conflict,
                _ => anyhow::Error::new(e)
                    .context("failed to update the app")
                    .into(),
            })
    }

    /// Applies `change` to the app, re-reading and retrying when another writer got there first.
    pub async fn modify_app(
        &self,
        id: Uuid,
        mut change: impl FnMut(&mut AppRecord),
    ) -> Result<Option<AppRecord>, StoreError> {
        for _ in 0..10 {
            let Some((mut app, revision)) = self.app(id).await? else {
                return Ok(None);
            };
            change(&mut app);
            app.updated_at = nimbus_protocol::now_ms();
            match self.update_app(&app, revision).await {
                Ok(_) => return Ok(Some(app)),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Deletes the app if it is still at `revision`, then frees its name.
    pub async fn delete_app(&self, app: &AppRecord, revision: u64) -> Result<(), StoreError> {
        self.apps
            .delete_expect_revision(app.id.to_string(), Some(revision))
            .await
            .map_err(|e| anyhow::Error::new(e).context("failed to delete the app"))?;
        self.names
            .delete(&app.name)
            .await
            .map_err(|e| anyhow::Error::new(e).context("failed to free the app name"))?;
        Ok(())
    }

    /// Accepts `token_hash` (hex SHA-256 of a bearer token) from now on.
    pub async fn add_token(&self, token_hash: &str, user: &str) -> anyhow::Result<()> {
        self.tokens
            .put(token_hash, user.to_string().into())
            .await
            .context("failed to store a token")?;
        Ok(())
    }

    /// The user a token hash belongs to, if any.
    pub async fn token_user(&self, token_hash: &str) -> anyhow::Result<Option<String>> {
        let user = self
            .tokens
            .get(token_hash)
            .await
            .context("failed to read a token")?;
        Ok(user.map(|u| String::from_utf8_lossy(&u).into_owned()))
    }

    /// Whether an object exists in the blob store.
    pub async fn has_blob(&self, name: &str) -> bool {
        self.blobs.info(name).await.is_ok_and(|info| !info.deleted)
    }

    /// The whole object stored under `name`.
    pub async fn get_blob(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        use tokio::io::AsyncReadExt as _;
        let mut object = self
            .blobs
            .get(name)
            .await
            .with_context(|| format!("failed to open {name}"))?;
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .with_context(|| format!("failed to read {name}"))?;
        Ok(bytes)
    }

    /// Stores an object under `name` unless it is already there (blobs are content-addressed).
    pub async fn put_blob(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        if self.has_blob(name).await {
            return Ok(());
        }
        let mut reader = bytes;
        self.blobs
            .put(name, &mut reader)
            .await
            .with_context(|| format!("failed to store {name}"))?;
        Ok(())
    }

    /// The last lines of an app's log, oldest first.
    pub async fn recent_logs(&self, app_id: Uuid) -> anyhow::Result<Vec<LogMessage>> {
        recent(&self.logs, subjects::logs(app_id)).await
    }

    /// The last events of an app, oldest first.
    pub async fn recent_events(&self, app_id: Uuid) -> anyhow::Result<Vec<AppEvent>> {
        recent(&self.events, subjects::events(app_id)).await
    }
}

/// Every message a stream keeps on `subject`, oldest first; malformed ones are skipped.
async fn recent<T: serde::de::DeserializeOwned>(
    stream: &jetstream::stream::Stream,
    subject: String,
) -> anyhow::Result<Vec<T>> {
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("failed to read a stream")?;
    // An empty subject delivers nothing: the consumer's pending count says when to stop.
    if consumer.cached_info().num_pending == 0 {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    let mut messages = consumer
        .messages()
        .await
        .context("failed to read a stream")?;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(std::time::Duration::from_secs(2), messages.next()).await
    {
        if let Ok(value) = nimbus_protocol::decode(&message.payload) {
            found.push(value);
        }
        if message.info().is_ok_and(|info| info.pending == 0) {
            break;
        }
    }
    Ok(found)
}

fn encode(app: &AppRecord) -> bytes::Bytes {
    nimbus_protocol::encode(app).into()
}

fn decode(bytes: &[u8]) -> anyhow::Result<AppRecord> {
    nimbus_protocol::decode(bytes).context("the apps bucket holds a malformed app")
}

/// Hex SHA-256, the form tokens and blobs are keyed by.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
