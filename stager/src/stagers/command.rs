//! Runs a build tool as a child process the way every stager should: a scrubbed environment,
//! its own process group and working directory, rlimits on CPU time, memory and file size
//! (inherited by every compiler it spawns), output streamed line by line as it happens, and a
//! wall-clock limit that really stops the whole build.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::Command;

use super::BuildContext;

/// How many of the last output lines a failure message quotes.
pub(crate) const TAIL_LINES: usize = 20;

/// How a finished build ended.
#[derive(Debug)]
pub(crate) struct BuildRun {
    pub status: ExitStatus,
    /// The last [`TAIL_LINES`] lines the tool printed for people (stderr, and stdout lines the
    /// caller chose to show).
    pub tail: Vec<String>,
}

/// A command in the app directory whose environment holds only the variables named in `keep`
/// (those the stager has, or can tell: see [`inherited`]) and `HOME`, the app's own: the
/// stager's secrets and settings must not leak into someone else's build.
pub(crate) fn scrubbed_command(program: &str, ctx: &BuildContext, keep: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.env_clear().env("HOME", ctx.home());
    for name in keep {
        if let Some(value) = inherited(name) {
            command.env(name, value);
        }
    }
    command
        .current_dir(&ctx.app_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout can stop the compilers it spawned too.
        .process_group(0);
    command
}

/// The stager's value of `name`. Toolchain homes that tools derive from `HOME` when unset
/// (rustup's, pyenv's) are spelled out, because a build's `HOME` is not the stager's.
fn inherited(name: &str) -> Option<OsString> {
    if let Some(value) = std::env::var_os(name) {
        return Some(value);
    }
    let under_home = match name {
        "RUSTUP_HOME" => ".rustup",
        "PYENV_ROOT" => ".pyenv",
        _ => return None,
    };
    let dir = PathBuf::from(std::env::var_os("HOME")?).join(under_home);
    dir.is_dir().then(|| dir.into_os_string())
}

/// Runs `command` to completion within the context's timeout, writing every stderr line to the
/// build log as it arrives. Each stdout line goes to `on_stdout`, which returns the text to show,
/// if any (tools like cargo speak JSON there).
pub(crate) async fn run(
    mut command: Command,
    ctx: &BuildContext,
    mut on_stdout: impl FnMut(&str) -> Option<String> + Send,
) -> anyhow::Result<BuildRun> {
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    contain(&mut command, ctx);
    let mut child = command
        .spawn()
        .with_context(|| format!("failed to run {program} (is it installed on the stager?)"))?;
    // Dropped on every path out of here: after a normal exit it finds nothing left to kill; on
    // a timeout or a cancelled job it stops the build's whole process tree.
    let _group = GroupKiller(child.id());
    let stdout = child
        .stdout
        .take()
        .context("the child's stdout is not piped")?;
    let stderr = child
        .stderr
        .take()
        .context("the child's stderr is not piped")?;

    // Both streams are read on this one task: the lock is never contended (a RefCell would
    // do, but would make the build future unsendable).
    let tail = Mutex::new(VecDeque::with_capacity(TAIL_LINES));
    let tail_ref = &tail;
    let show = |line: String| async move {
        ctx.log.out(line.clone()).await;
        push_tail(
            &mut tail_ref.lock().unwrap_or_else(PoisonError::into_inner),
            line,
        );
    };
    let work = async {
        tokio::join!(
            async {
                let mut lines = BufReader::new(stdout);
                let mut buffer = Vec::new();
                while read_line(&mut lines, &mut buffer).await {
                    let line = String::from_utf8_lossy(&buffer);
                    if let Some(text) = on_stdout(line.trim_end()) {
                        show(text).await;
                    }
                }
            },
            async {
                let mut lines = BufReader::new(stderr);
                let mut buffer = Vec::new();
                while read_line(&mut lines, &mut buffer).await {
                    show(String::from_utf8_lossy(&buffer).trim_end().to_string()).await;
                }
            },
        );
        child.wait().await.context("failed to wait for the build")
    };
    match tokio::time::timeout(ctx.timeout, work).await {
        Ok(status) => Ok(BuildRun {
            status: status?,
            tail: tail
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .into(),
        }),
        Err(_) => anyhow::bail!(
            "the build did not finish within {} s and was stopped",
            ctx.timeout.as_secs_f64()
        ),
    }
}

/// Runs one build step that must succeed; on failure the message names the step and the tool's
/// exit status, then quotes the last lines the tool printed (the compiler's error, usually).
pub(crate) async fn run_step(
    command: Command,
    ctx: &BuildContext,
    step: &str,
    on_stdout: impl FnMut(&str) -> Option<String> + Send,
) -> anyhow::Result<()> {
    let tool = Path::new(command.as_std().get_program())
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let BuildRun { status, tail } = run(command, ctx, on_stdout).await?;
    if !status.success() {
        anyhow::bail!(
            "{step} failed ({tool} {status}); the last lines of its output:\n{}",
            tail.join("\n")
        );
    }
    Ok(())
}

/// Every line of output, shown as it is.
pub(crate) fn show(line: &str) -> Option<String> {
    Some(line.to_string())
}

/// Sets the build's resource limits in the child before it runs the tool, and drops to the
/// build user when there is one (see [`crate::BuildUser`]). Limits are per
/// process: CPU time allows every core for the whole wall-clock limit (the timeout is the real
/// bound; this stops a runaway that escaped the process group), memory is `RLIMIT_DATA`
/// (`RLIMIT_AS` would break runtimes that reserve address space, such as V8 and wasmtime), and
/// no core dumps.
fn contain(command: &mut Command, ctx: &BuildContext) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let cpu_seconds = ctx.timeout.as_secs().max(1).saturating_mul(cores);
    let limits = [
        (libc::RLIMIT_CPU, cpu_seconds),
        (libc::RLIMIT_DATA, ctx.memory_bytes),
        (libc::RLIMIT_FSIZE, ctx.max_file_bytes),
        (libc::RLIMIT_CORE, 0),
    ];
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit(2),
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(move || {
            for (resource, value) in limits {
                let limit = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // The standard library drops supplementary groups, then sets the gid, then the uid.
    if let Some(user) = &ctx.user {
        command.uid(user.uid).gid(user.gid);
    }
}

/// Reads one line into `buffer`; false at the end of the stream. Bytes, not `String`, because
/// build output is not always UTF-8 and one bad byte must not end the log.
async fn read_line(reader: &mut BufReader<impl AsyncRead + Unpin>, buffer: &mut Vec<u8>) -> bool {
    buffer.clear();
    matches!(reader.read_until(b'\n', buffer).await, Ok(n) if n > 0)
}

fn push_tail(tail: &mut VecDeque<String>, line: String) {
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(line);
}

/// Kills a process group when dropped.
struct GroupKiller(Option<u32>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // The standard library cannot signal a group; kill(1) is on every host we target.
            // Failure means the group is already gone, which is what we want.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::Duration;

    fn context(
        dir: &Path,
        timeout: Duration,
    ) -> (
        BuildContext,
        tokio::sync::mpsc::Receiver<crate::log::LogLine>,
    ) {
        BuildContext::for_test(dir, timeout)
    }

    fn shell(ctx: &BuildContext, script: &str) -> Command {
        let mut command = scrubbed_command("sh", ctx, &["PATH"]);
        command.args(["-c", script]);
        command
    }

    async fn drain(mut lines: tokio::sync::mpsc::Receiver<crate::log::LogLine>) -> Vec<String> {
        let mut all = Vec::new();
        while let Some(line) = lines.recv().await {
            all.push(line.text);
        }
        all
    }

    #[tokio::test]
    async fn streams_output_and_reports_the_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, lines) = context(dir.path(), Duration::from_secs(60));
        let script = "echo '{\"json\":1}'; echo plain; echo oops >&2; exit 3";
        let mut json = Vec::new();
        let run = run(shell(&ctx, script), &ctx, |line| {
            if line.starts_with('{') {
                json.push(line.to_string());
                None
            } else {
                Some(line.to_string())
            }
        })
        .await
        .unwrap();
        drop(ctx);
        assert_eq!(run.status.code(), Some(3));
        assert_eq!(json, ["{\"json\":1}"]);
        assert!(run.tail.contains(&"oops".to_string()), "{:?}", run.tail);
        let logged = drain(lines).await;
        assert!(logged.contains(&"oops".to_string()), "{logged:?}");
        assert!(logged.contains(&"plain".to_string()), "{logged:?}");
    }

    #[tokio::test]
    async fn shows_each_line_while_the_build_still_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, mut lines) = context(dir.path(), Duration::from_secs(60));
        // The build waits for an answer to its first stdout line; if lines were held back until
        // it exited, the answer would never come and it would fail.
        let script = "echo first; i=0; while [ ! -e go ] && [ $i -lt 100 ]; do sleep 0.1; \
                      i=$((i+1)); done; [ -e go ]";
        let answer = async {
            let first = lines.recv().await.unwrap();
            assert_eq!(first.text, "first");
            std::fs::write(dir.path().join("go"), b"").unwrap();
        };
        let (run, ()) = tokio::join!(run(shell(&ctx, script), &ctx, show), answer);
        assert!(run.unwrap().status.success());
    }

    #[tokio::test]
    async fn builds_as_the_build_user_in_a_home_of_the_apps_own() {
        let Some(user) = crate::BuildUser::default_for_this_process() else {
            return; // not root: builds run as the stager's own user
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (mut ctx, lines) = context(dir.path(), Duration::from_secs(60));
        ctx.user = Some(user.clone());
        let script = "echo uid=$(id -u) groups=$(id -G) home=$HOME >&2; touch /root/nimbus-owned";
        let run = run(shell(&ctx, script), &ctx, |_| None).await.unwrap();
        drop(ctx);
        let logged = drain(lines).await;
        let home = dir.path().join("cache/home");
        assert_eq!(
            logged[0],
            format!(
                "uid={} groups={} home={}",
                user.uid,
                user.gid,
                home.display()
            )
        );
        assert!(!run.status.success(), "the build user wrote into /root");
        assert!(!Path::new("/root/nimbus-owned").exists());
    }

    #[tokio::test]
    async fn keeps_only_the_last_lines_for_the_failure_message() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _lines) = context(dir.path(), Duration::from_secs(60));
        let script = "i=0; while [ $i -lt 50 ]; do echo line$i >&2; i=$((i+1)); done";
        let drainer = tokio::spawn(drain(_lines));
        let run = run(shell(&ctx, script), &ctx, |_| None).await.unwrap();
        drop(ctx);
        assert_eq!(run.tail.len(), TAIL_LINES);
        assert_eq!(run.tail.last().map(String::as_str), Some("line49"));
        assert_eq!(drainer.await.unwrap().len(), 50);
    }

    #[tokio::test]
    async fn limits_the_build_processes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ctx, lines) = context(dir.path(), Duration::from_secs(60));
        ctx.memory_bytes = 256 * 1024 * 1024;
        ctx.max_file_bytes = 4096;
        let script = "echo data=$(ulimit -d) core=$(ulimit -c) >&2; \
                      head -c 10000 /dev/zero > big || echo write refused >&2";
        run(shell(&ctx, script), &ctx, |_| None).await.unwrap();
        drop(ctx);
        let logged = drain(lines).await;
        // ulimit -d reports KiB.
        assert_eq!(logged[0], "data=262144 core=0", "{logged:?}");
        assert!(
            logged.iter().any(|l| l.contains("write refused")),
            "{logged:?}"
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("big")).unwrap().len(),
            4096
        );
    }

    #[tokio::test]
    async fn scrubs_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, lines) = context(dir.path(), Duration::from_secs(60));
        // cargo sets CARGO_MANIFEST_DIR for the test binary; the build must not see it.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let script = "echo \"manifest=[$CARGO_MANIFEST_DIR]\" >&2";
        run(shell(&ctx, script), &ctx, |_| None).await.unwrap();
        drop(ctx);
        assert_eq!(drain(lines).await, ["manifest=[]"]);
    }

    #[tokio::test]
    async fn stops_a_build_that_runs_past_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _lines) = context(dir.path(), Duration::from_millis(200));
        // The grandchild must die too, or it would keep running after the job ended.
        let marker = dir.path().join("survived");
        let script = format!("(sleep 3; touch {}) & sleep 30", marker.display());
        let error = run(shell(&ctx, &script), &ctx, |_| None).await.unwrap_err();
        assert!(error.to_string().contains("did not finish"), "{error}");
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !marker.exists(),
            "a process of the build outlived its timeout"
        );
    }
}
