//! Admission control: a request needs a permit from its instance (the app's
//! `max_concurrency`) and one from the DEA (`max_concurrent_requests`, at most the pool size).
//! A request waits up to [`ADMISSION_WAIT`] for both, then is refused with 503 `overloaded`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a request waits for a free slot before it is refused.
pub(crate) const ADMISSION_WAIT: Duration = Duration::from_secs(1);

/// Both permits of an admitted request; dropping it frees the slots.
pub(crate) struct Admitted {
    _instance: OwnedSemaphorePermit,
    _dea: OwnedSemaphorePermit,
}

/// The semaphores a request of one instance goes through.
#[derive(Clone)]
pub(crate) struct Admission {
    instance: Arc<Semaphore>,
    dea: Arc<Semaphore>,
}

impl Admission {
    pub(crate) fn new(max_concurrency: u32, dea: Arc<Semaphore>) -> Admission {
        Admission {
            instance: Arc::new(Semaphore::new(max_concurrency.max(1) as usize)),
            dea,
        }
    }

    /// Waits up to `wait` for both permits; `None` if the instance or the DEA stays full.
    pub(crate) async fn admit(&self, wait: Duration) -> Option<Admitted> {
        tokio::time::timeout(wait, async {
            // Instance first: a busy app queues on its own semaphore, not on the DEA's.
            let instance = self.instance.clone().acquire_owned().await.ok()?;
            let dea = self.dea.clone().acquire_owned().await.ok()?;
            Some(Admitted {
                _instance: instance,
                _dea: dea,
            })
        })
        .await
        .ok()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refuses_beyond_the_instance_limit_until_a_slot_frees() {
        let admission = Admission::new(1, Arc::new(Semaphore::new(10)));
        let first = admission.admit(ADMISSION_WAIT).await.unwrap();
        assert!(admission.admit(ADMISSION_WAIT).await.is_none());
        drop(first);
        assert!(admission.admit(ADMISSION_WAIT).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_dea_wide_cap_applies_across_instances() {
        let dea = Arc::new(Semaphore::new(1));
        let a = Admission::new(5, dea.clone());
        let b = Admission::new(5, dea);
        let held = a.admit(ADMISSION_WAIT).await.unwrap();
        assert!(b.admit(ADMISSION_WAIT).await.is_none());
        drop(held);
        assert!(b.admit(ADMISSION_WAIT).await.is_some());
    }
}
