//! Helpers for the end-to-end tests: run `nimbus up` as a child process on free ports, run CLI
//! commands against it as a user would, and build the sample apps.
//!
//! The tests drive the real `nimbus` binary, so build it first (`cargo build -p nimbus-cli`;
//! `scripts/test` does).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the micro cloud gets to come up.
const UP_TIMEOUT: Duration = Duration::from_secs(60);

/// The `nimbus` binary next to the test executable (`target/<profile>/nimbus`).
pub fn nimbus_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let binary = profile_dir.join("nimbus");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p nimbus-cli` first",
        binary.display()
    );
    binary
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repo")
        .to_path_buf()
}

/// Builds `sample-apps/<name>` for wasm32-wasip2 (once; cargo skips it when up to date) and
/// returns the component's path.
pub fn sample_wasm(name: &str) -> PathBuf {
    let dir = repo_root().join("sample-apps").join(name);
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
        .current_dir(&dir)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {} failed", dir.display());
    dir.join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

/// A `nimbus up` child process with its own `NIMBUS_HOME`.
pub struct MicroCloud {
    child: Option<Child>,
    pub home: tempfile::TempDir,
    pub port: u16,
}

impl MicroCloud {
    /// Starts `nimbus up` on a free router port and waits until its API answers through the router.
    pub fn start() -> MicroCloud {
        let home = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        let mut cloud = MicroCloud {
            child: None,
            home,
            port,
        };
        cloud.boot();
        cloud
    }

    /// Starts `nimbus up` again on the same data directory and port.
    pub fn boot(&mut self) {
        let log = std::fs::File::create(self.home.path().join(format!("up-{}.log", now_ms())))
            .expect("a log file");
        let child = Command::new(nimbus_binary())
            .args(["up", "--port", &self.port.to_string(), "--nats-port", "0"])
            .env("NIMBUS_HOME", self.home.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nimbus up runs");
        self.child = Some(child);
        let deadline = Instant::now() + UP_TIMEOUT;
        while Instant::now() < deadline {
            if self.home.path().join("config.json").is_file() && self.api_answers() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "nimbus up did not come up within {UP_TIMEOUT:?}; logs:\n{}",
            self.logs()
        );
    }

    /// Stops `nimbus up` with SIGTERM, as Ctrl-C would, and waits for it to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the cloud is running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nimbus up did not stop within 30s after SIGTERM");
    }

    /// Runs `nimbus ARGS` against this cloud.
    pub fn nimbus(&self, args: &[&str]) -> Output {
        Command::new(nimbus_binary())
            .args(args)
            .env("NIMBUS_HOME", self.home.path())
            .stdin(Stdio::null())
            .output()
            .expect("nimbus runs")
    }

    /// The router URL of a host under the default domain, e.g. `url("hello")`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{name}.localhost:{}", self.port)
    }

    /// The admin token `nimbus up` wrote for the CLI.
    pub fn token(&self) -> String {
        let config =
            std::fs::read_to_string(self.home.path().join("config.json")).expect("config.json");
        let config: serde_json::Value = serde_json::from_str(&config).expect("valid config.json");
        config["token"].as_str().expect("a token").to_string()
    }

    /// Everything `nimbus up` logged so far, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.home.path()) {
            for entry in entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("up-"))
            {
                all += &std::fs::read_to_string(entry.path()).unwrap_or_default();
            }
        }
        all
    }

    fn api_answers(&self) -> bool {
        let url = format!("{}/v1/info", self.url("api"));
        block_on(async { get(&url).await.is_ok_and(|(status, _)| status == 200) })
    }
}

impl Drop for MicroCloud {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// GET through the router (resolving `*.localhost` to loopback): status and body.
pub async fn get(url: &str) -> anyhow::Result<(u16, String)> {
    let client = nimbus_cli::client::http_client()?;
    let response = client
        .get(url)
        .timeout(Duration::from_secs(30))
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

/// Runs a future to completion from synchronous test code.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes; returns its last answer.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A command's stdout and stderr together, for assertions and failure messages.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn free_port() -> u16 {
    nimbus_bus::free_port().expect("a free port")
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}
