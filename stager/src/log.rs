//! The output of one staging job, as the developer following `nimbus push` sees it.
//!
//! Stagers write lines into a [`BuildLog`]; the worker forwards them, in order, to NATS. The
//! channel keeps stagers free of NATS (so they are tested on their own) and its bound applies
//! back-pressure to a build that prints faster than the bus takes lines.

use nimbus_protocol::messages::LogStream;
use tokio::sync::mpsc;

/// How many lines may wait for the bus before writers wait.
const BUFFER_LINES: usize = 256;
/// Longer lines are cut: one line of a log is not the place for a megabyte of output.
const MAX_LINE_BYTES: usize = 4096;

/// One line of staging output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogLine {
    pub stream: LogStream,
    pub text: String,
}

/// Where a staging job writes its output; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct BuildLog {
    lines: mpsc::Sender<LogLine>,
}

impl BuildLog {
    /// A log and the receiving end its lines arrive on.
    pub(crate) fn channel() -> (BuildLog, mpsc::Receiver<LogLine>) {
        let (lines, receiver) = mpsc::channel(BUFFER_LINES);
        (BuildLog { lines }, receiver)
    }

    /// Writes a line of normal output.
    pub(crate) async fn out(&self, text: impl Into<String>) {
        self.write(LogStream::Out, text.into()).await;
    }

    /// Writes a line about a failure.
    pub(crate) async fn err(&self, text: impl Into<String>) {
        self.write(LogStream::Err, text.into()).await;
    }

    async fn write(&self, stream: LogStream, mut text: String) {
        truncate_at_char_boundary(&mut text, MAX_LINE_BYTES);
        // The receiver only goes away when the job is being torn down; the line has no reader.
        let _ = self.lines.send(LogLine { stream, text }).await;
    }
}

fn truncate_at_char_boundary(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push('…');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_arrive_in_order_on_their_stream() {
        let (log, mut lines) = BuildLog::channel();
        log.out("one").await;
        log.err("two").await;
        drop(log);
        assert_eq!(
            lines.recv().await,
            Some(LogLine {
                stream: LogStream::Out,
                text: "one".into()
            })
        );
        assert_eq!(lines.recv().await.map(|l| l.stream), Some(LogStream::Err));
        assert_eq!(lines.recv().await, None);
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let mut text = "é".repeat(3000);
        truncate_at_char_boundary(&mut text, MAX_LINE_BYTES);
        assert!(text.len() <= MAX_LINE_BYTES + '…'.len_utf8());
        assert!(text.ends_with('…'));
    }
}
