//! The CLI's configuration in `$NIMBUS_HOME` (default `~/.nimbus`): which API to talk to, and
//! the token to show it.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// `$NIMBUS_HOME/config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliConfig {
    /// e.g. `http://api.localhost:8080`
    pub api: String,
    pub token: String,
}

/// The CLI's home: `$NIMBUS_HOME`, else `~/.nimbus`.
pub fn home() -> PathBuf {
    if let Some(home) = std::env::var_os("NIMBUS_HOME") {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    user_home.join(".nimbus")
}

impl CliConfig {
    fn path() -> PathBuf {
        home().join("config.json")
    }

    /// The saved configuration, or a sentence saying how to get one.
    pub fn load() -> anyhow::Result<CliConfig> {
        let path = Self::path();
        let text = std::fs::read_to_string(&path).map_err(|_| {
            anyhow::anyhow!(
                "no API configured ({} is missing): start a micro cloud with `nimbus up`, which writes it",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid: run `nimbus up` again", path.display()))
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let path = Self::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        nimbus_bus::write_private(&path, &serde_json::to_vec_pretty(self)?)
    }
}
