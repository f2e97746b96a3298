//! Helpers for the end-to-end tests: run `nimbus up` as a child process on free ports, join
//! more components to it as processes of their own (`nimbus dea`…), run CLI commands against it
//! as a user would, keep a bounded load on an app, and build the sample apps.
//!
//! The tests drive the real `nimbus` binary, so build it first (`cargo build -p nimbus-cli`;
//! `scripts/test` does).

use std::os::unix::fs::PermissionsExt as _;
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
    /// Extra `nimbus up` flags, kept for restarts.
    flags: Vec<String>,
}

impl MicroCloud {
    /// Starts `nimbus up` on a free router port and waits until its API answers through the router.
    pub fn start() -> MicroCloud {
        MicroCloud::start_with(&[])
    }

    /// [`MicroCloud::start`] with more `nimbus up` flags, e.g. `--no-dea`.
    pub fn start_with(flags: &[&str]) -> MicroCloud {
        let home = tempfile::tempdir().expect("a temp dir");
        // Builds run as an unprivileged user when the tests run as root; it must get through
        // to the stager's directories (secrets in there are readable by their owner only).
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o711))
            .expect("a traversable temp dir");
        let port = free_port();
        let mut cloud = MicroCloud {
            child: None,
            home,
            port,
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        cloud.boot();
        cloud
    }

    /// Runs `nimbus ARGS` as a process of its own that joins this cloud (`dea`, `router`,
    /// `health-manager`), logging to a file in the cloud's home.
    pub fn join(&self, args: &[&str]) -> Component {
        let name = args.join("-").replace(['/', ' '], "_");
        let log_path = self.home.path().join(format!("{name}-{}.log", now_ms()));
        let log = std::fs::File::create(&log_path).expect("a log file");
        let child = Command::new(nimbus_binary())
            .args(args)
            .env("NIMBUS_HOME", self.home.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nimbus runs");
        Component {
            child: Some(child),
            log: log_path,
        }
    }

    /// The micro cloud's data directory (`$NIMBUS_HOME/cloud`).
    pub fn data_dir(&self) -> PathBuf {
        self.home.path().join("cloud")
    }

    /// The process id of the cloud's `nats-server`, from its pid file.
    pub fn nats_pid(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(self.data_dir().join("nats").join(nimbus_bus::PID_FILE));
        pid.ok()?.trim().parse().ok()
    }

    /// `nimbus app NAME --json`: the app and its instances.
    pub fn app_json(&self, name: &str) -> serde_json::Value {
        let out = self.nimbus(&["app", name, "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).expect("nimbus app --json prints JSON")
    }

    /// The app's instances of its current version that are running, as `nimbus app` shows them.
    pub fn running_instances(&self, name: &str) -> Vec<serde_json::Value> {
        let json = self.app_json(name);
        json["instances"]
            .as_array()
            .expect("an instance list")
            .iter()
            .filter(|i| i["state"] == "RUNNING" && i["current"] == true)
            .cloned()
            .collect()
    }

    /// Starts `nimbus up` again on the same data directory and port.
    pub fn boot(&mut self) {
        let log = std::fs::File::create(self.home.path().join(format!("up-{}.log", now_ms())))
            .expect("a log file");
        let child = Command::new(nimbus_binary())
            .args(["up", "--port", &self.port.to_string(), "--nats-port", "0"])
            .args(&self.flags)
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
        let child = self.child.take().expect("the cloud is running");
        sigterm_and_wait(child, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("nimbus up did not stop within 30s after SIGTERM"))
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

    /// Everything `nimbus up` and joined components logged so far, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.home.path()) {
            for entry in entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            {
                all += &format!("==> {}\n", entry.file_name().to_string_lossy());
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

/// A component running as its own process (see [`MicroCloud::join`]); killed when dropped.
pub struct Component {
    child: Option<Child>,
    log: PathBuf,
}

impl Component {
    /// What it logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log contains `text` (e.g. that it joined); panics with the log if not.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) {
        if !eventually(timeout, || self.logs().contains(text)) {
            panic!("{text:?} never appeared in the log:\n{}", self.logs());
        }
    }

    /// Kills it with SIGKILL, as a crashed host would go: no goodbye on the bus.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (at most `timeout`) for it to exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = self.child.take().expect("the component is running");
        sigterm_and_wait(child, timeout).unwrap_or_else(|| {
            panic!(
                "the component did not exit within {timeout:?} of SIGTERM:\n{}",
                self.logs()
            )
        })
    }
}

/// Sends SIGTERM to `child` and waits at most `timeout` for it to exit; past that it is killed
/// (and reaped) and the answer is `None`.
fn sigterm_and_wait(mut child: Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Drop for Component {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Steady GET requests to one URL from a few clients (keep-alive, as browsers do), each pausing
/// between requests, until [`Load::finish`]; never longer than [`Load::MAX`].
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

/// What a [`Load`] saw.
#[derive(Debug)]
pub struct LoadReport {
    pub ok: u64,
    /// One line per request that did not answer 200.
    pub failures: Vec<String>,
}

impl Load {
    /// The longest a load runs, whatever the test does.
    pub const MAX: Duration = Duration::from_secs(90);
    /// Pause between one client's requests.
    const PAUSE: Duration = Duration::from_millis(10);

    pub fn start(url: &str, clients: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = (0..clients)
            .map(|_| {
                let (url, stop) = (url.to_string(), stop.clone());
                std::thread::spawn(move || block_on(load_worker(url, stop)))
            })
            .collect();
        Load { stop, workers }
    }

    pub fn finish(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut report = LoadReport {
            ok: 0,
            failures: Vec::new(),
        };
        for worker in self.workers {
            let (ok, failures) = worker.join().expect("a load worker");
            report.ok += ok;
            report.failures.extend(failures);
        }
        report
    }
}

async fn load_worker(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u64, Vec<String>) {
    let client = nimbus_cli::client::http_client().expect("an HTTP client");
    let deadline = Instant::now() + Load::MAX;
    let (mut ok, mut failures) = (0, Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
        let sent = client
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == 200 => {
                let _ = response.bytes().await;
                ok += 1;
            }
            Ok(response) => {
                let status = response.status();
                let cause = response
                    .headers()
                    .get("x-nimbus-router-error")
                    .or_else(|| response.headers().get("x-nimbus-error"))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                failures.push(format!("{} {status} {cause}", now_ms()));
            }
            Err(error) => failures.push(format!("{} {error}", now_ms())),
        }
        tokio::time::sleep(Load::PAUSE).await;
    }
    (ok, failures)
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
