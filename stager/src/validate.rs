//! Checks a built wasm before it becomes a droplet: it must compile with the engine settings the
//! DEA uses and be a component that exports `wasi:http/incoming-handler@0.2.x`. Catching a bad
//! app here gives the developer a message at push time instead of a crash loop on every DEA.

use std::sync::Arc;

use anyhow::Context as _;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;
use wasmtime::{Config, Engine};

/// The interface an HTTP app must export (any 0.2 version links against wasmtime 48).
const HTTP_HANDLER: &str = "wasi:http/incoming-handler";
const HTTP_HANDLER_VERSIONS: &str = "wasi:http/incoming-handler@0.2.";

/// Why a wasm is not a runnable HTTP app. Every message is meant for the app developer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValidationError {
    #[error("the app is not WebAssembly: a .wasm file starts with the bytes `\\0asm`")]
    NotWasm,
    #[error(
        "the app is a core wasm module, not a component, so it does not export \
         {HTTP_HANDLER}: it is not an HTTP app (build it for wasm32-wasip2, or turn it into a \
         component with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("the component does not export {HTTP_HANDLER}: it is not an HTTP app ({found})")]
    NotHttp { found: String },
    #[error("the component exports {name} but not its `handle` function")]
    NoHandle { name: String },
    #[error("the wasm is invalid: {0}")]
    Invalid(String),
}

/// Validates components with an engine configured like the DEA's; cheap to clone.
#[derive(Clone)]
pub(crate) struct Validator {
    engine: Arc<Engine>,
}

impl Validator {
    /// Creates the engine once; compiling with it is what validation costs.
    pub(crate) fn new() -> anyhow::Result<Validator> {
        let mut config = Config::new();
        // The DEA compiles with epoch interruption; compile the same way so a droplet that
        // validates here also compiles there.
        config.epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("failed to create the wasmtime engine")?;
        Ok(Validator {
            engine: Arc::new(engine),
        })
    }

    /// Validates on a blocking thread (compilation is CPU-heavy) and returns the name of the
    /// HTTP handler export.
    pub(crate) async fn validate_async(&self, wasm: Arc<[u8]>) -> anyhow::Result<String> {
        let validator = self.clone();
        let result = tokio::task::spawn_blocking(move || validator.validate(&wasm))
            .await
            .context("the validation task failed")?;
        Ok(result?)
    }

    /// Validates `wasm` and returns the name of its HTTP handler export.
    pub(crate) fn validate(&self, wasm: &[u8]) -> Result<String, ValidationError> {
        if !wasm.starts_with(b"\0asm") {
            return Err(ValidationError::NotWasm);
        }
        // Bytes 6..8 are the layer: 0 for a core module, 1 for a component.
        if wasm.get(6..8) == Some(&[0, 0]) {
            return Err(ValidationError::CoreModule);
        }
        // from_binary, not new: a droplet must be binary, never WAT text.
        let component = Component::from_binary(&self.engine, wasm)
            .map_err(|error| ValidationError::Invalid(format!("{error:#}")))?;
        let ty = component.component_type();
        let mut exports = Vec::new();
        for (name, export) in ty.exports(&self.engine) {
            if !name.starts_with(HTTP_HANDLER_VERSIONS) {
                exports.push(name.to_string());
                continue;
            }
            let has_handle = match &export.ty {
                ComponentItem::ComponentInstance(instance) => matches!(
                    instance.get_export(&self.engine, "handle").map(|e| e.ty),
                    Some(ComponentItem::ComponentFunc(_))
                ),
                _ => false,
            };
            return if has_handle {
                Ok(name.to_string())
            } else {
                Err(ValidationError::NoHandle {
                    name: name.to_string(),
                })
            };
        }
        let found = if exports.is_empty() {
            "it exports nothing".to_string()
        } else {
            format!("it exports {}", exports.join(", "))
        };
        Err(ValidationError::NotHttp { found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(wat: &str) -> Result<String, ValidationError> {
        let wasm = wat::parse_str(wat).unwrap();
        Validator::new().unwrap().validate(&wasm)
    }

    /// A component whose `handler` instance exports a `handle` function under `name`.
    fn component_exporting(name: &str, function: &str) -> String {
        format!(
            r#"(component
                 (core module $m (func (export "f")))
                 (core instance $i (instantiate $m))
                 (type $t (func))
                 (func $f (type $t) (canon lift (core func $i "f")))
                 (instance $handler (export "{function}" (func $f)))
                 (export "{name}" (instance $handler)))"#
        )
    }

    #[test]
    fn accepts_a_component_exporting_the_http_handler() {
        for version in ["0.2.0", "0.2.12"] {
            let name = format!("wasi:http/incoming-handler@{version}");
            assert_eq!(
                validate(&component_exporting(&name, "handle")).unwrap(),
                name
            );
        }
    }

    #[test]
    fn rejects_a_core_module_naming_the_missing_export() {
        let error = validate("(module)").unwrap_err();
        assert!(matches!(error, ValidationError::CoreModule), "{error}");
        assert!(error.to_string().contains("incoming-handler"), "{error}");
    }

    #[test]
    fn rejects_a_component_without_the_http_handler() {
        let error = validate("(component)").unwrap_err().to_string();
        assert!(
            error.contains("does not export wasi:http/incoming-handler"),
            "{error}"
        );
        assert!(error.contains("it exports nothing"), "{error}");
        let cli = component_exporting("wasi:cli/run@0.2.0", "run");
        let error = validate(&cli).unwrap_err().to_string();
        assert!(error.contains("it exports wasi:cli/run@0.2.0"), "{error}");
    }

    #[test]
    fn rejects_other_versions_and_a_handler_without_handle() {
        let old = component_exporting("wasi:http/incoming-handler@0.3.0", "handle");
        assert!(matches!(
            validate(&old).unwrap_err(),
            ValidationError::NotHttp { .. }
        ));
        let no_handle = component_exporting("wasi:http/incoming-handler@0.2.0", "other");
        let error = validate(&no_handle).unwrap_err().to_string();
        assert!(error.contains("not its `handle` function"), "{error}");
    }

    #[test]
    fn rejects_bytes_that_are_not_wasm_or_not_valid() {
        let validator = Validator::new().unwrap();
        let error = validator.validate(b"hello").unwrap_err();
        assert!(matches!(error, ValidationError::NotWasm), "{error}");
        let truncated = validator.validate(b"\0asm\x0d\0\x01\0\x07").unwrap_err();
        assert!(
            matches!(truncated, ValidationError::Invalid(_)),
            "{truncated}"
        );
    }
}
