//! The wasmtime settings that decide what machine code looks like, in one place, because two
//! components must agree on them: the stager precompiles droplets and the DEA runs the result.
//! An artifact only loads into an engine with the same [`compatibility_hash`], so both build
//! their engines from [`codegen_config`] and name artifacts by that hash.
//!
//! Also here: [`add_to_linker`], the interfaces a DEA gives every guest, so that the stager can
//! refuse at push time a droplet importing anything else.

use std::hash::{Hash as _, Hasher};

use sha2::{Digest as _, Sha256};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine};
use wasmtime_wasi::WasiView;
use wasmtime_wasi_http::WasiHttpView;

/// Guard after each linear memory. Small, because memories are small (RUNTIME-NOTES.md):
/// bounds checks stay explicit instead of relying on a 4 GiB reservation.
pub const MEMORY_GUARD: u64 = 64 * 1024;

/// The largest memory one instance may have, by default, in MB; it is also each memory's
/// address-space reservation.
pub const DEFAULT_MAX_INSTANCE_MEMORY_MB: u64 = 1024;

/// The settings of a cluster's engines that change generated code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSettings {
    /// Whether guests are metered with fuel (instructions counted in the generated code).
    pub fuel_metering: bool,
    /// Reservation of each linear memory, in MB (bounds checks are compiled against it).
    pub max_instance_memory_mb: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            fuel_metering: true,
            max_instance_memory_mb: DEFAULT_MAX_INSTANCE_MEMORY_MB,
        }
    }
}

/// A wasmtime configuration with every setting that enters the compatibility hash. Callers
/// may add what does not (the instance allocator, for one).
pub fn codegen_config(settings: EngineSettings) -> Config {
    let mut config = Config::new();
    // Wall-clock limits and time slices ride on epochs, CPU budgets on fuel (RUNTIME-NOTES.md).
    config.epoch_interruption(true);
    config.consume_fuel(settings.fuel_metering);
    config.memory_init_cow(true);
    config
        .memory_reservation(settings.max_instance_memory_mb.saturating_mul(1024 * 1024))
        .memory_guard_size(MEMORY_GUARD)
        .memory_reservation_for_growth(0);
    config
}

/// The engine's precompile-compatibility hash as 32 hex digits. wasmtime only offers
/// `impl Hash`; feeding it to SHA-256 keeps the name stable across processes and Rust versions
/// (unlike `DefaultHasher`).
pub fn compatibility_hash(engine: &Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            // Never called: the digest is read from the inner hasher.
            0
        }
    }
    let mut hasher = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds every interface a DEA provides to guests: all of WASI p2 (real guests import
/// wasi:cli besides wasi:http) and the wasi:http interfaces (adding both full sets would
/// duplicate the shared ones).
pub fn add_to_linker<T>(linker: &mut Linker<T>) -> anyhow::Result<()>
where
    T: WasiView + WasiHttpView + 'static,
{
    wasmtime_wasi::p2::add_to_linker_async(linker)
        .map_err(|e| anyhow::Error::from(e).context("failed to link WASI p2 interfaces"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
        .map_err(|e| anyhow::Error::from(e).context("failed to link wasi:http interfaces"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(settings: EngineSettings) -> Engine {
        Engine::new(&codegen_config(settings)).unwrap()
    }

    #[test]
    fn engines_with_other_codegen_settings_get_other_hashes() {
        let default = EngineSettings::default();
        let unmetered = EngineSettings {
            fuel_metering: false,
            ..default
        };
        let small = EngineSettings {
            max_instance_memory_mb: 64,
            ..default
        };
        let hash = compatibility_hash(&engine(default));
        assert_eq!(hash.len(), 32);
        assert_eq!(hash, compatibility_hash(&engine(default)));
        assert_ne!(hash, compatibility_hash(&engine(unmetered)));
        assert_ne!(hash, compatibility_hash(&engine(small)));
    }

    #[test]
    fn the_instance_allocator_does_not_change_the_hash() {
        let settings = EngineSettings::default();
        let mut pooled = codegen_config(settings);
        // The pool's slots must fit the memory reservation, as the DEA's do.
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_memories(1)
            .total_core_instances(1)
            .total_component_instances(1)
            .total_tables(1)
            .total_stacks(1)
            .max_memory_size((settings.max_instance_memory_mb * 1024 * 1024) as usize);
        pooled.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        assert_eq!(
            compatibility_hash(&Engine::new(&pooled).unwrap()),
            compatibility_hash(&engine(settings))
        );
    }
}
