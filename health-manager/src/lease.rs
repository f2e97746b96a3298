//! Leadership: several health managers may run, one acts. The leader holds a key in a bucket
//! whose entries expire after the lease's TTL, and renews it well before; the others try to
//! create the key, which succeeds only once it is gone (expired, or released by a leader
//! shutting down). A leader counts itself leader only until shortly before its last renewal
//! could expire, so two never act at once.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use nimbus_protocol::state::HM_LEASE_BUCKET;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The one key of the lease bucket.
const LEADER_KEY: &str = "leader";

/// Follows and renews the lease; publishes until when this health manager may act.
pub struct Lease {
    id: String,
    ttl: Duration,
    bucket: Option<kv::Store>,
    revision: Option<u64>,
    leading_until: watch::Sender<Option<Instant>>,
}

impl Lease {
    pub fn new(id: String, ttl: Duration) -> (Lease, watch::Receiver<Option<Instant>>) {
        let (leading_until, receiver) = watch::channel(None);
        let lease = Lease {
            id,
            ttl,
            bucket: None,
            revision: None,
            leading_until,
        };
        (lease, receiver)
    }

    /// Tries to take or renew the lease every third of its TTL until `stop`; then releases it.
    pub async fn run(mut self, nats: async_nats::Client, stop: CancellationToken) {
        let js = jetstream::new(nats);
        let mut every = tokio::time::interval(self.ttl / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            self.attempt(&js).await;
        }
        self.release().await;
    }

    async fn attempt(&mut self, js: &jetstream::Context) {
        let Some(bucket) = self.bucket(js).await else {
            return;
        };
        let started = Instant::now();
        let value = self.id.clone().into_bytes().into();
        let result = match self.revision {
            Some(revision) => bucket
                .update(LEADER_KEY, value, revision)
                .await
                .map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                }),
            None => bucket.create(LEADER_KEY, value).await.map_err(|e| {
                (
                    e.kind() == kv::CreateErrorKind::AlreadyExists,
                    e.to_string(),
                )
            }),
        };
        match result {
            Ok(revision) => {
                if self.revision.is_none() {
                    tracing::info!(id = %self.id, "took the health manager lease: leading");
                }
                self.revision = Some(revision);
                // Our write landed after `started`, so the server keeps it at least until
                // `started + ttl`; stop acting a quarter earlier.
                self.leading_until
                    .send_replace(Some(started + self.ttl * 3 / 4));
            }
            Err((true, _)) => {
                if self.revision.take().is_some() {
                    tracing::warn!(id = %self.id, "lost the health manager lease to another");
                    self.leading_until.send_replace(None);
                }
            }
            // The bus is away: the lease lapses by itself unless a later renewal lands.
            Err((false, error)) => tracing::debug!(%error, "failed to renew the lease"),
        }
    }

    async fn bucket(&mut self, js: &jetstream::Context) -> Option<kv::Store> {
        if self.bucket.is_none() {
            let config = kv::Config {
                bucket: HM_LEASE_BUCKET.to_string(),
                history: 1,
                max_age: self.ttl,
                storage: jetstream::stream::StorageType::Memory,
                ..Default::default()
            };
            // Creating is idempotent for the same settings; a peer with another TTL made it
            // first if this fails, and its bucket serves as well.
            let opened = match js.create_key_value(config).await {
                Ok(bucket) => Ok(bucket),
                Err(_) => js
                    .get_key_value(HM_LEASE_BUCKET)
                    .await
                    .map_err(|e| e.to_string()),
            };
            match opened {
                Ok(bucket) => self.bucket = Some(bucket),
                Err(error) => tracing::debug!(%error, "failed to open the lease bucket"),
            }
        }
        self.bucket.clone()
    }

    /// Gives the lease up so a standby takes over at once instead of after the TTL.
    async fn release(&mut self) {
        self.leading_until.send_replace(None);
        if let (Some(bucket), Some(revision)) = (&self.bucket, self.revision.take())
            && let Err(error) = bucket
                .delete_expect_revision(LEADER_KEY, Some(revision))
                .await
        {
            tracing::debug!(%error, "failed to release the lease");
        }
    }
}
