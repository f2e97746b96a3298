//! Checks a built wasm before it becomes a droplet, and decides how the DEA will run it.
//!
//! - A WASI p1 command module (`_start`, imports only from `wasi_snapshot_preview1`) is turned
//!   into a command component with wasmtime's preview1 adapter, so the DEA runs one kind of
//!   thing: components.
//! - A component must link against exactly what a DEA provides (`nimbus_engine::add_to_linker`)
//!   and export `wasi:http/incoming-handler@0.2.x` (kind `http-component`) or `wasi:cli/run`
//!   (kind `wagi`: a command serving HTTP the CGI way).
//!
//! Validation compiles the component with the cluster's engine settings, so its result is also
//! the precompiled artifact DEAs load instead of compiling. Catching a bad app here gives the
//! developer a message at push time instead of a crash loop on every DEA.

use std::sync::Arc;

use anyhow::Context as _;
use nimbus_engine::EngineSettings;
use nimbus_protocol::DropletKind;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, ExternType, Module};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The interface an HTTP app exports (any 0.2 version links against wasmtime 48).
const HTTP_HANDLER: &str = "wasi:http/incoming-handler";
/// The interface a command exports.
const CLI_RUN: &str = "wasi:cli/run";
/// The only module a p1 command may import from: the adapter provides it.
const PREVIEW1: &str = "wasi_snapshot_preview1";

/// Why a wasm is not a runnable app. Every message is meant for the app developer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValidationError {
    #[error("the app is not WebAssembly: a .wasm file starts with the bytes `\\0asm`")]
    NotWasm,
    #[error("the wasm is invalid: {0}")]
    Invalid(String),
    #[error(
        "the module does not export `_start`: it is not a WASI command (a web module must be a \
         command that writes a CGI response to stdout, or a component exporting {HTTP_HANDLER})"
    )]
    NoStart,
    #[error(
        "the module imports `{module}::{name}`, which Nimbus does not provide: a module may \
         only import from {PREVIEW1}"
    )]
    ForeignImport { module: String, name: String },
    #[error(
        "the component exports neither {HTTP_HANDLER} nor {CLI_RUN}, so it is neither an HTTP \
         app nor a command ({found})"
    )]
    NoEntryPoint { found: String },
    #[error("the component exports {name} but not its `{function}` function")]
    MissingFunction {
        name: String,
        function: &'static str,
    },
    #[error("the component imports something Nimbus does not provide: {0}")]
    MissingImport(String),
    #[error("the component's {export} export does not have the standard type: {reason}")]
    WrongType { export: String, reason: String },
}

/// A validated droplet.
pub(crate) struct Validated {
    pub(crate) kind: DropletKind,
    /// The component to store: the built wasm, or the component made from a p1 module.
    pub(crate) wasm: Vec<u8>,
    /// The entry point it exports, for the build log.
    pub(crate) export: String,
    /// The machine code for engines with [`Validator::engine_hash`].
    pub(crate) artifact: Vec<u8>,
    /// Whether `wasm` was adapted from a WASI p1 module.
    pub(crate) adapted: bool,
}

impl std::fmt::Debug for Validated {
    // The bytes would drown the rest.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validated")
            .field("kind", &self.kind)
            .field("export", &self.export)
            .field("wasm_bytes", &self.wasm.len())
            .field("artifact_bytes", &self.artifact.len())
            .field("adapted", &self.adapted)
            .finish()
    }
}

/// Validates with an engine configured like the cluster's DEAs; cheap to clone.
#[derive(Clone)]
pub(crate) struct Validator {
    engine: Engine,
    linker: Arc<Linker<Host>>,
    engine_hash: Arc<str>,
}

impl Validator {
    /// Creates the engine and the linker once.
    pub(crate) fn new(settings: EngineSettings) -> anyhow::Result<Validator> {
        let engine = Engine::new(&nimbus_engine::codegen_config(settings))
            .map_err(anyhow::Error::from)
            .context("failed to create the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        nimbus_engine::add_to_linker(&mut linker)?;
        Ok(Validator {
            engine_hash: nimbus_engine::compatibility_hash(&engine).into(),
            engine,
            linker: Arc::new(linker),
        })
    }

    /// The compatibility hash of the engines the artifacts are for.
    pub(crate) fn engine_hash(&self) -> &str {
        &self.engine_hash
    }

    /// Validates on a blocking thread: compiling is CPU-heavy (seconds for Python or JS).
    pub(crate) async fn validate_async(&self, wasm: Vec<u8>) -> anyhow::Result<Validated> {
        let validator = self.clone();
        let result = tokio::task::spawn_blocking(move || validator.validate(wasm))
            .await
            .context("the validation task failed")?;
        Ok(result?)
    }

    pub(crate) fn validate(&self, wasm: Vec<u8>) -> Result<Validated, ValidationError> {
        if !wasm.starts_with(b"\0asm") {
            return Err(ValidationError::NotWasm);
        }
        // Bytes 6..8 are the layer: 0 for a core module, 1 for a component.
        let (wasm, adapted) = if wasm.get(6..8) == Some(&[0, 0]) {
            (self.adapt(&wasm)?, true)
        } else {
            (wasm, false)
        };
        // from_binary, not new: a droplet must be binary, never WAT text.
        let component = Component::from_binary(&self.engine, &wasm)
            .map_err(|error| ValidationError::Invalid(format!("{error:#}")))?;
        let (kind, export) = self.entry_point(&component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|error| ValidationError::MissingImport(format!("{error:#}")))?;
        // Exactly what the DEA does with it, so a droplet that passes here links there.
        let typed = match kind {
            DropletKind::HttpComponent => ProxyPre::new(pre).map(drop),
            DropletKind::Wagi => CommandPre::new(pre).map(drop),
        };
        typed.map_err(|error| ValidationError::WrongType {
            export: export.clone(),
            reason: format!("{error:#}"),
        })?;
        let artifact = component
            .serialize()
            .map_err(|error| ValidationError::Invalid(format!("{error:#}")))?;
        Ok(Validated {
            kind,
            wasm,
            export,
            artifact,
            adapted,
        })
    }

    /// Turns a WASI p1 command module into a command component.
    fn adapt(&self, module: &[u8]) -> Result<Vec<u8>, ValidationError> {
        let compiled = Module::from_binary(&self.engine, module)
            .map_err(|error| ValidationError::Invalid(format!("{error:#}")))?;
        let has_start = compiled
            .exports()
            .any(|export| export.name() == "_start" && matches!(export.ty(), ExternType::Func(_)));
        if !has_start {
            return Err(ValidationError::NoStart);
        }
        if let Some(import) = compiled
            .imports()
            .find(|import| import.module() != PREVIEW1)
        {
            return Err(ValidationError::ForeignImport {
                module: import.module().to_string(),
                name: import.name().to_string(),
            });
        }
        let adapter =
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER;
        wit_component::ComponentEncoder::default()
            .module(module)
            .and_then(|encoder| encoder.adapter(PREVIEW1, adapter))
            .and_then(|encoder| encoder.validate(true).encode())
            .map_err(|error| {
                ValidationError::Invalid(format!(
                    "the WASI p1 module could not be made into a component: {error:#}"
                ))
            })
    }

    /// The kind of the component and the export that makes it so.
    fn entry_point(&self, component: &Component) -> Result<(DropletKind, String), ValidationError> {
        let ty = component.component_type();
        let mut names = Vec::new();
        for (name, export) in ty.exports(&self.engine) {
            // The function and its arity: handle(request, response-outparam), run() -> result.
            let (kind, function, params, results) =
                if name.starts_with(&format!("{HTTP_HANDLER}@0.2.")) {
                    (DropletKind::HttpComponent, "handle", 2, 0)
                } else if name.starts_with(&format!("{CLI_RUN}@0.2.")) {
                    (DropletKind::Wagi, "run", 0, 1)
                } else {
                    names.push(name.to_string());
                    continue;
                };
            let func = match &export.ty {
                ComponentItem::ComponentInstance(instance) => {
                    match instance.get_export(&self.engine, function).map(|e| e.ty) {
                        Some(ComponentItem::ComponentFunc(func)) => Some(func),
                        _ => None,
                    }
                }
                _ => None,
            };
            let Some(func) = func else {
                return Err(ValidationError::MissingFunction {
                    name: name.to_string(),
                    function,
                });
            };
            if func.params().len() != params || func.results().len() != results {
                return Err(ValidationError::WrongType {
                    export: format!("{name}#{function}"),
                    reason: format!(
                        "it takes {} parameters and returns {} results, not {params} and {results}",
                        func.params().len(),
                        func.results().len()
                    ),
                });
            }
            return Ok((kind, name.to_string()));
        }
        let found = if names.is_empty() {
            "it exports nothing".to_string()
        } else {
            format!("it exports {}", names.join(", "))
        };
        Err(ValidationError::NoEntryPoint { found })
    }
}

/// The store data the linker is typed over; validation never instantiates, so it is never made.
struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator() -> Validator {
        Validator::new(EngineSettings::default()).unwrap()
    }

    fn validate(wat: &str) -> Result<Validated, ValidationError> {
        validator().validate(wat::parse_str(wat).unwrap())
    }

    /// A component whose instance exports a function `function` under `name`.
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

    /// A p1 command writing a CGI response.
    const P1_COMMAND: &str = r#"(module
        (import "wasi_snapshot_preview1" "fd_write"
          (func $fd_write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "Content-Type: text/plain\n\nhi\n")
        (func (export "_start")
          (i32.store (i32.const 0) (i32.const 16))
          (i32.store (i32.const 4) (i32.const 29))
          (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

    #[test]
    fn refuses_an_entry_point_of_the_wrong_type() {
        // `handle` must take a request and a response outparam, not nothing.
        let name = "wasi:http/incoming-handler@0.2.0";
        let error = validate(&component_exporting(name, "handle")).unwrap_err();
        assert!(
            matches!(error, ValidationError::WrongType { .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("incoming-handler@0.2.0#handle"),
            "{error}"
        );
    }

    #[test]
    fn precompiles_for_engines_with_the_same_settings() {
        let validated = validate(P1_COMMAND).unwrap();
        let engine =
            Engine::new(&nimbus_engine::codegen_config(EngineSettings::default())).unwrap();
        assert_eq!(
            nimbus_engine::compatibility_hash(&engine),
            validator().engine_hash()
        );
        // SAFETY: the artifact was just produced by wasmtime for an engine with these settings.
        unsafe { Component::deserialize(&engine, &validated.artifact) }.unwrap();
    }

    #[test]
    fn adapts_a_p1_command_into_a_wagi_component() {
        let validated = validate(P1_COMMAND).unwrap();
        assert_eq!(validated.kind, DropletKind::Wagi);
        assert!(validated.adapted);
        assert!(
            validated.export.starts_with("wasi:cli/run@0.2."),
            "{}",
            validated.export
        );
        assert_eq!(validated.wasm.get(6..8), Some(&[1u8, 0][..]), "a component");
    }

    #[test]
    fn refuses_modules_that_are_not_p1_commands() {
        let error = validate("(module (func (export \"main\")))").unwrap_err();
        assert!(
            error.to_string().contains("does not export `_start`"),
            "{error}"
        );
        let foreign = r#"(module (import "env" "magic" (func)) (func (export "_start")))"#;
        let error = validate(foreign).unwrap_err().to_string();
        assert!(error.contains("imports `env::magic`"), "{error}");
    }

    #[test]
    fn refuses_a_component_without_an_entry_point() {
        let error = validate("(component)").unwrap_err().to_string();
        assert!(
            error.contains("neither wasi:http/incoming-handler"),
            "{error}"
        );
        assert!(error.contains("it exports nothing"), "{error}");
        let other = component_exporting("example:thing/api@1.0.0", "go");
        let error = validate(&other).unwrap_err().to_string();
        assert!(
            error.contains("it exports example:thing/api@1.0.0"),
            "{error}"
        );
        let old = component_exporting("wasi:http/incoming-handler@0.3.0", "handle");
        assert!(matches!(
            validate(&old).unwrap_err(),
            ValidationError::NoEntryPoint { .. }
        ));
        let no_handle = component_exporting("wasi:http/incoming-handler@0.2.0", "other");
        let error = validate(&no_handle).unwrap_err().to_string();
        assert!(error.contains("not its `handle` function"), "{error}");
    }

    #[test]
    fn refuses_a_component_importing_what_the_dea_does_not_provide() {
        let wat = r#"(component
            (import "example:secret/keys@1.0.0" (instance (export "get" (func))))
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (type $t (func (result (result))))
            (core module $m2 (func (export "g") (result i32) (i32.const 0)))
            (core instance $i2 (instantiate $m2))
            (func $f (type $t) (canon lift (core func $i2 "g")))
            (instance $run (export "run" (func $f)))
            (export "wasi:cli/run@0.2.0" (instance $run)))"#;
        let error = validate(wat).unwrap_err().to_string();
        assert!(
            error.contains("imports something Nimbus does not provide"),
            "{error}"
        );
        assert!(error.contains("example:secret/keys@1.0.0"), "{error}");
    }

    #[test]
    fn refuses_bytes_that_are_not_wasm_or_not_valid() {
        let error = validator().validate(b"hello".to_vec()).unwrap_err();
        assert!(matches!(error, ValidationError::NotWasm), "{error}");
        let truncated = validator()
            .validate(b"\0asm\x0d\0\x01\0\x07".to_vec())
            .unwrap_err();
        assert!(
            matches!(truncated, ValidationError::Invalid(_)),
            "{truncated}"
        );
    }
}
