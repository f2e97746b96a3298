//! The wasmtime engine configuration: fuel, epochs, copy-on-write memory images, and the pooling
//! instance allocator when the host's address space allows it (on-demand allocation otherwise).
//!
//! Pool sizing, from [`Config`](crate::Config): `max_instances` component instances, each with up
//! to [`CORE_INSTANCES_PER_COMPONENT`] core instances and [`TABLES_PER_COMPONENT`] tables, one
//! linear-memory slot per component instance of `max_instance_memory_mb` (that is also the memory
//! reservation, so every slot is `max_instance_memory_mb` + [`nimbus_engine::MEMORY_GUARD`] of
//! address space),
//! and one async stack per instance.

use anyhow::Context as _;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig, Store,
};

use crate::config::Config as DeaConfig;

/// Core instances one component may create (Rust and wstd components use 3–5, Python and JS
/// a few more); also a per-store cap.
pub(crate) const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
/// Tables one component may create; also a per-store cap.
pub(crate) const TABLES_PER_COMPONENT: u32 = 16;
/// Memories one component may create; also a per-store cap. The pool holds one memory slot per
/// component instance on average: the rare multi-memory component takes two.
pub(crate) const MEMORIES_PER_COMPONENT: u32 = 4;
/// Elements per table; also a per-store cap (StoreLimits' `table_elements`).
pub(crate) const TABLE_ELEMENTS: usize = 20_000;
/// Fuel a guest burns between yields to the executor, so a busy tenant lets other tasks run
/// roughly every half millisecond: every app shares the executor's few workers, and a
/// neighbour's request waits behind whole slices (a yield itself costs about a microsecond).
pub(crate) const FUEL_YIELD_INTERVAL: u64 = 1_000_000;

/// How the engine allocates instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots; fast instantiation, memory images mapped copy-on-write.
    Pooling,
    /// mmap per instance; the fallback when the pool's reservation is refused or disabled.
    OnDemand,
}

/// Builds the DEA's engine: pooling if configured and the probe succeeds, else on-demand with
/// one warning saying why.
pub(crate) fn build_engine(dea: &DeaConfig) -> anyhow::Result<(Engine, Allocator)> {
    if dea.pooling {
        match pooling_engine(dea) {
            Ok(engine) => {
                tracing::info!(
                    max_instances = dea.max_instances,
                    max_instance_memory_mb = dea.max_instance_memory_mb,
                    "using the pooling instance allocator"
                );
                return Ok((engine, Allocator::Pooling));
            }
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "the pooling allocator is unavailable on this host; allocating instances on demand"
            ),
        }
    } else {
        tracing::warn!("pooling is disabled by configuration; allocating instances on demand");
    }
    let engine = Engine::new(&base_config(dea)).map_err(anyhow::Error::from)?;
    Ok((engine, Allocator::OnDemand))
}

/// The shared code-generation settings (so stager-precompiled droplets load here); the same
/// for both allocators, so switching allocator keeps the compiled-code cache valid.
fn base_config(dea: &DeaConfig) -> Config {
    nimbus_engine::codegen_config(dea.engine_settings())
}

fn pooling_engine(dea: &DeaConfig) -> anyhow::Result<Engine> {
    let memory = dea.max_instance_memory_mb.saturating_mul(1024 * 1024);
    let n = dea.max_instances;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(n)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(n.saturating_mul(TABLES_PER_COMPONENT))
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .total_stacks(n)
        .max_memory_size(usize::try_from(memory).context("the memory slot is too large")?);
    let mut config = base_config(dea);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Creating the engine reserves the whole pool; instantiating commits one slot.
    let engine = Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("failed to reserve the instance pool")?;
    probe(&engine, dea.fuel_metering).context("failed to instantiate from the instance pool")?;
    Ok(engine)
}

/// Instantiates a module with one page of memory, proving a slot can be used.
fn probe(engine: &Engine, fuel_metering: bool) -> anyhow::Result<()> {
    // (module (memory 1)) in binary form.
    const ONE_PAGE: &[u8] = b"\0asm\x01\0\0\0\x05\x03\x01\x00\x01";
    let module = Module::new(engine, ONE_PAGE).map_err(anyhow::Error::from)?;
    let mut store = Store::new(engine, ());
    // Setting fuel on an engine that does not meter it is an error.
    if fuel_metering {
        store.set_fuel(1).map_err(anyhow::Error::from)?;
    }
    store.set_epoch_deadline(1);
    wasmtime::Instance::new(&mut store, &module, &[]).map_err(anyhow::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn uses_the_pool_when_the_host_allows_it() {
        let mut config = DeaConfig::new(PathBuf::from("/tmp/x"));
        config.max_instances = 10;
        let (_, allocator) = build_engine(&config).unwrap();
        assert_eq!(allocator, Allocator::Pooling);
    }

    #[test]
    fn uses_the_pool_without_fuel_metering_too() {
        // The probe must not set fuel on an engine that does not meter it.
        let mut config = DeaConfig::new(PathBuf::from("/tmp/x"));
        config.max_instances = 10;
        config.fuel_metering = false;
        let (_, allocator) = build_engine(&config).unwrap();
        assert_eq!(allocator, Allocator::Pooling);
    }

    #[test]
    fn falls_back_to_on_demand_when_the_pool_cannot_be_reserved() {
        let mut config = DeaConfig::new(PathBuf::from("/tmp/x"));
        // 100,000 slots of 4 GiB: 400 TiB, beyond a 47-bit address space.
        config.max_instances = 100_000;
        config.max_instance_memory_mb = 4096;
        let (engine, allocator) = build_engine(&config).unwrap();
        assert_eq!(allocator, Allocator::OnDemand);
        probe(&engine, true).unwrap();
    }

    #[test]
    fn on_demand_when_pooling_is_disabled() {
        let mut config = DeaConfig::new(PathBuf::from("/tmp/x"));
        config.pooling = false;
        assert_eq!(build_engine(&config).unwrap().1, Allocator::OnDemand);
    }
}
