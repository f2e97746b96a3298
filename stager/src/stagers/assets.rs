//! Files the stagers need besides the toolchains, compiled into the stager so that a stager
//! binary is complete on its own: the WIT worlds given to componentize-py and componentize-js,
//! and the Node script driving componentize-js. [`write_assets`] puts them on disk once per
//! stager start.

use std::path::Path;

use anyhow::Context as _;

/// The Python world: wasmtime-wasi-http 48's WIT, unchanged (`wasi:http/proxy@0.2.12`).
pub(crate) const PYTHON_WIT: &str = "wit/python";
/// The JavaScript world: `wasi:http@0.2.10`, the version componentize-js 0.23 requires.
pub(crate) const JS_WIT: &str = "wit/js";
/// The componentize-js driver.
pub(crate) const JS_BUILD: &str = "js/build.mjs";

/// Every asset by its path under the assets directory.
const ASSETS: &[(&str, &str)] = &[
    (
        "wit/python/world.wit",
        include_str!("../../wit/python/world.wit"),
    ),
    (
        "wit/python/deps/cli.wit",
        include_str!("../../wit/python/deps/cli.wit"),
    ),
    (
        "wit/python/deps/clocks.wit",
        include_str!("../../wit/python/deps/clocks.wit"),
    ),
    (
        "wit/python/deps/filesystem.wit",
        include_str!("../../wit/python/deps/filesystem.wit"),
    ),
    (
        "wit/python/deps/http.wit",
        include_str!("../../wit/python/deps/http.wit"),
    ),
    (
        "wit/python/deps/io.wit",
        include_str!("../../wit/python/deps/io.wit"),
    ),
    (
        "wit/python/deps/random.wit",
        include_str!("../../wit/python/deps/random.wit"),
    ),
    (
        "wit/python/deps/sockets.wit",
        include_str!("../../wit/python/deps/sockets.wit"),
    ),
    ("wit/js/world.wit", include_str!("../../wit/js/world.wit")),
    (
        "wit/js/deps/clocks.wit",
        include_str!("../../wit/js/deps/clocks.wit"),
    ),
    (
        "wit/js/deps/http.wit",
        include_str!("../../wit/js/deps/http.wit"),
    ),
    (
        "wit/js/deps/io.wit",
        include_str!("../../wit/js/deps/io.wit"),
    ),
    ("js/build.mjs", include_str!("../../js/build.mjs")),
];

/// Writes every asset under `dir`, replacing older versions.
pub(crate) fn write_assets(dir: &Path) -> anyhow::Result<()> {
    for (path, text) in ASSETS {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create {}", parent.display()))?;
        }
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_asset_where_the_stagers_look() {
        let dir = tempfile::tempdir().unwrap();
        write_assets(dir.path()).unwrap();
        for path in [PYTHON_WIT, JS_WIT] {
            assert!(dir.path().join(path).join("world.wit").is_file(), "{path}");
        }
        assert!(dir.path().join(JS_BUILD).is_file());
    }

    #[test]
    fn embeds_every_wit_file_in_the_repository() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for world in [PYTHON_WIT, JS_WIT] {
            for entry in std::fs::read_dir(root.join(world).join("deps")).unwrap() {
                let name = entry.unwrap().file_name();
                let path = format!("{world}/deps/{}", name.to_string_lossy());
                assert!(
                    ASSETS.iter().any(|(p, _)| *p == path),
                    "{path} is not embedded"
                );
            }
        }
    }
}
