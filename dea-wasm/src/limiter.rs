//! The per-request resource limiter: wasmtime's [`StoreLimits`] (memory, tables, instances),
//! plus a note of whether it refused a growth, so a trap that follows can be blamed on the
//! memory limit rather than on the app's code.

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use crate::pool::{
    CORE_INSTANCES_PER_COMPONENT, MEMORIES_PER_COMPONENT, TABLE_ELEMENTS, TABLES_PER_COMPONENT,
};

/// Limits one request's store.
pub(crate) struct GuestLimiter {
    limits: StoreLimits,
    denied: bool,
}

impl GuestLimiter {
    /// Linear memory of at most `memory_mb` per memory, and the pool's per-component caps.
    pub(crate) fn new(memory_mb: u64) -> GuestLimiter {
        let memory = usize::try_from(memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory)
            .table_elements(TABLE_ELEMENTS)
            .instances(CORE_INSTANCES_PER_COMPONENT as usize)
            .tables(TABLES_PER_COMPONENT as usize)
            .memories(MEMORIES_PER_COMPONENT as usize)
            // A failed memory.grow returns -1 to the guest, as on a native OOM; Rust guests then
            // abort, which surfaces as a trap that `denied` lets us name.
            .trap_on_grow_failure(false)
            .build();
        GuestLimiter {
            limits,
            denied: false,
        }
    }

    /// Whether a memory or table growth was refused.
    pub(crate) fn denied(&self) -> bool {
        self.denied
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.denied |= !allowed;
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The pool's slot is full even though our limit allowed it (a limit above the slot).
        self.denied = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.table_growing(current, desired, maximum)?;
        self.denied |= !allowed;
        Ok(allowed)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.denied = true;
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1024 * 1024;

    #[test]
    fn remembers_a_refused_growth() {
        let mut limiter = GuestLimiter::new(2);
        assert!(limiter.memory_growing(MB, 2 * MB, None).unwrap());
        assert!(!limiter.denied());
        assert!(!limiter.memory_growing(2 * MB, 3 * MB, None).unwrap());
        assert!(limiter.denied());
    }

    #[test]
    fn caps_tables() {
        let mut limiter = GuestLimiter::new(2);
        assert!(!limiter.table_growing(0, TABLE_ELEMENTS + 1, None).unwrap());
        assert!(limiter.denied());
    }
}
