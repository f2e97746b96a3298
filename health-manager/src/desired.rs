//! Desired state, watched (not polled) from the controllers' apps bucket.
//!
//! A follower task opens a watch first, then reads a snapshot of every app, then forwards the
//! watch's entries; each app keeps the revision it was read at, so an entry the snapshot
//! already holds is not applied twice. Until the first snapshot has arrived the view is not
//! `loaded` and nothing may be judged: an app not yet read must not look deleted. A watch that
//! ends is opened again with a fresh snapshot; a view once loaded is never emptied by an outage.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use futures::{StreamExt as _, TryStreamExt as _};
use nimbus_protocol::state::{APPS_BUCKET, AppRecord};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Wait before opening the bucket again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// A change to desired state, as the follower reads it.
#[derive(Debug)]
pub enum Update {
    /// Every app, read after the watch was opened.
    Snapshot(Vec<(AppRecord, u64)>),
    Put(Box<AppRecord>, u64),
    Deleted(Uuid, u64),
}

/// The apps the platform should run.
#[derive(Debug, Default)]
pub struct Desired {
    apps: HashMap<Uuid, AppRecord>,
    revisions: HashMap<Uuid, u64>,
    loaded: bool,
}

impl Desired {
    /// Whether a full snapshot has been read.
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    pub fn apps(&self) -> &HashMap<Uuid, AppRecord> {
        &self.apps
    }

    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Snapshot(apps) => {
                self.apps.clear();
                self.revisions.clear();
                for (app, revision) in apps {
                    self.revisions.insert(app.id, revision);
                    self.apps.insert(app.id, app);
                }
                self.loaded = true;
            }
            Update::Put(app, revision) => {
                if self.is_newer(app.id, revision) {
                    self.revisions.insert(app.id, revision);
                    self.apps.insert(app.id, *app);
                }
            }
            Update::Deleted(id, revision) => {
                if self.is_newer(id, revision) {
                    self.revisions.insert(id, revision);
                    self.apps.remove(&id);
                }
            }
        }
    }

    fn is_newer(&self, id: Uuid, revision: u64) -> bool {
        self.revisions
            .get(&id)
            .is_none_or(|known| revision > *known)
    }
}

/// Follows the apps bucket until `stop`, sending every change to `updates`.
pub async fn follow(
    nats: async_nats::Client,
    updates: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    let js = jetstream::new(nats);
    loop {
        let followed = tokio::select! {
            _ = stop.cancelled() => return,
            followed = follow_once(&js, &updates) => followed,
        };
        if let Err(error) = followed {
            tracing::warn!(
                error = format!("{error:#}"),
                "lost the desired-state watch; reopening"
            );
        }
        if updates.is_closed() {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn follow_once(
    js: &jetstream::Context,
    updates: &mpsc::Sender<Update>,
) -> anyhow::Result<()> {
    let bucket = js
        .get_key_value(APPS_BUCKET)
        .await
        .context("failed to open the apps bucket (has a controller started?)")?;
    let mut watch = bucket
        .watch_all()
        .await
        .context("failed to watch the apps bucket")?;
    let snapshot = snapshot(&bucket).await?;
    tracing::info!(apps = snapshot.len(), "desired state loaded");
    if updates.send(Update::Snapshot(snapshot)).await.is_err() {
        return Ok(());
    }
    while let Some(entry) = watch.next().await {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                // After a server restart the watch reports missed heartbeats, then recovers.
                tracing::debug!(%error, "desired-state watch hiccup");
                continue;
            }
        };
        let Some(update) = to_update(&entry) else {
            continue;
        };
        if updates.send(update).await.is_err() {
            return Ok(());
        }
    }
    anyhow::bail!("the desired-state watch ended")
}

async fn snapshot(bucket: &kv::Store) -> anyhow::Result<Vec<(AppRecord, u64)>> {
    let keys: Vec<String> = bucket
        .keys()
        .await
        .context("failed to list apps")?
        .try_collect()
        .await
        .context("failed to list apps")?;
    let mut apps = Vec::with_capacity(keys.len());
    for key in keys {
        let entry = bucket
            .entry(key.as_str())
            .await
            .with_context(|| format!("failed to read app {key}"))?;
        if let Some(entry) = entry
            && let Some(Update::Put(app, revision)) = to_update(&entry)
        {
            apps.push((*app, revision));
        }
    }
    Ok(apps)
}

/// An entry as an update; malformed ones are logged and skipped.
fn to_update(entry: &kv::Entry) -> Option<Update> {
    let Ok(id) = entry.key.parse::<Uuid>() else {
        tracing::warn!(key = %entry.key, "ignoring an app key that is not an id");
        return None;
    };
    match entry.operation {
        kv::Operation::Put => match nimbus_protocol::decode::<AppRecord>(&entry.value) {
            Ok(app) => Some(Update::Put(Box::new(app), entry.revision)),
            Err(error) => {
                tracing::warn!(key = %entry.key, %error, "ignoring a malformed app record");
                None
            }
        },
        kv::Operation::Delete | kv::Operation::Purge => Some(Update::Deleted(id, entry.revision)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: Uuid, instances: u32) -> AppRecord {
        AppRecord {
            id,
            name: "a".into(),
            state: nimbus_protocol::api::AppState::Started,
            instances,
            limits: Default::default(),
            uris: vec![],
            droplet: None,
            package_sha256: None,
            version: Uuid::nil(),
            env: vec![],
            allowed_outbound_hosts: vec![],
            health_check_http_endpoint: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn entries_the_snapshot_already_holds_are_not_applied_again() {
        let id = Uuid::new_v4();
        let mut desired = Desired::default();
        assert!(!desired.loaded());
        desired.apply(Update::Put(Box::new(record(id, 1)), 4));
        desired.apply(Update::Snapshot(vec![(record(id, 2), 5)]));
        assert!(desired.loaded());
        desired.apply(Update::Put(Box::new(record(id, 1)), 5));
        assert_eq!(
            desired.apps()[&id].instances,
            2,
            "revision 5 was in the snapshot"
        );
        desired.apply(Update::Put(Box::new(record(id, 3)), 6));
        assert_eq!(desired.apps()[&id].instances, 3);
        desired.apply(Update::Deleted(id, 7));
        assert!(desired.apps().is_empty());
    }
}
