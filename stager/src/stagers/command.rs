//! Runs a build tool as a child process the way every stager should: a scrubbed environment,
//! its own process group and working directory, rlimits on CPU time, memory and file size
//! (inherited by every compiler it spawns), output streamed line by line as it happens, and a
//! wall-clock limit that really stops the whole build.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

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

/// A command in `dir` whose environment holds only the variables named in `keep` (those that are
/// set): the stager's own secrets and settings must not leak into someone else's build.
pub(crate) fn scrubbed_command(program: &str, dir: &Path, keep: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    for name in keep {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout can stop the compilers it spawned too.
        .process_group(0);
    command
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

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let work = async {
        let (stdout_shown, ()) = tokio::join!(
            async {
                let mut shown = Vec::new();
                for_each_line(stdout, |line| {
                    if let Some(text) = on_stdout(&line) {
                        shown.push(text);
                    }
                })
                .await;
                shown
            },
            async {
                let mut lines = BufReader::new(stderr);
                let mut buffer = Vec::new();
                while read_line(&mut lines, &mut buffer).await {
                    let line = String::from_utf8_lossy(&buffer).trim_end().to_string();
                    ctx.log.out(line.clone()).await;
                    push_tail(&mut tail, line);
                }
            },
        );
        for line in stdout_shown {
            ctx.log.out(line.clone()).await;
            push_tail(&mut tail, line);
        }
        child.wait().await.context("failed to wait for the build")
    };
    match tokio::time::timeout(ctx.timeout, work).await {
        Ok(status) => Ok(BuildRun {
            status: status?,
            tail: tail.into(),
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

/// Sets the build's resource limits in the child before it runs the tool. Limits are per
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
}

/// Calls `each` with every line of `reader` until it ends or fails.
async fn for_each_line(reader: impl AsyncRead + Unpin, mut each: impl FnMut(String)) {
    let mut lines = BufReader::new(reader);
    let mut buffer = Vec::new();
    while read_line(&mut lines, &mut buffer).await {
        each(String::from_utf8_lossy(&buffer).trim_end().to_string());
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

    fn shell(dir: &Path, script: &str) -> Command {
        let mut command = scrubbed_command("sh", dir, &["PATH"]);
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
        let run = run(shell(dir.path(), script), &ctx, |line| {
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
    async fn keeps_only_the_last_lines_for_the_failure_message() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _lines) = context(dir.path(), Duration::from_secs(60));
        let script = "i=0; while [ $i -lt 50 ]; do echo line$i >&2; i=$((i+1)); done";
        let drainer = tokio::spawn(drain(_lines));
        let run = run(shell(dir.path(), script), &ctx, |_| None)
            .await
            .unwrap();
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
        run(shell(dir.path(), script), &ctx, |_| None)
            .await
            .unwrap();
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
        run(shell(dir.path(), script), &ctx, |_| None)
            .await
            .unwrap();
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
        let error = run(shell(dir.path(), &script), &ctx, |_| None)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("did not finish"), "{error}");
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !marker.exists(),
            "a process of the build outlived its timeout"
        );
    }
}
