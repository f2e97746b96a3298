//! `nimbus logs NAME [--recent]`.

use std::time::Duration;

use nimbus_protocol::messages::{LogMessage, LogStream};

use crate::client::Client;
use crate::output;

/// How often the follow mode asks for new lines.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

pub async fn logs(client: &Client, name: &str, recent: bool) -> anyhow::Result<()> {
    let mut last = client.recent_logs(name).await?;
    for line in &last {
        print_line(line);
    }
    if recent {
        return Ok(());
    }
    // Follow: print what is new since the last read, until Ctrl-C.
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        let now = client.recent_logs(name).await?;
        let fresh = new_lines(&last, &now);
        for line in fresh {
            print_line(line);
        }
        last = now;
    }
}

/// Lines of `now` after the newest line already seen in `before` (both are oldest first).
fn new_lines<'a>(before: &[LogMessage], now: &'a [LogMessage]) -> &'a [LogMessage] {
    match before.last() {
        None => now,
        Some(seen) => match now.iter().rposition(|line| line == seen) {
            Some(at) => &now[at + 1..],
            None => now,
        },
    }
}

fn print_line(line: &LogMessage) {
    let stream = match line.stream {
        LogStream::Out => "OUT",
        LogStream::Err => "ERR",
    };
    println!(
        "{} [{}] {stream} {}",
        output::clock(line.timestamp),
        line.source,
        line.message
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u64) -> LogMessage {
        LogMessage {
            app_id: uuid::Uuid::nil(),
            source: "APP/0".into(),
            stream: LogStream::Out,
            timestamp: n,
            message: n.to_string(),
        }
    }

    #[test]
    fn follows_only_lines_after_the_last_one_seen() {
        let before = [line(1), line(2)];
        let now = [line(2), line(3), line(4)];
        assert_eq!(new_lines(&before, &now), &now[1..]);
        assert_eq!(new_lines(&[], &now), &now[..]);
        assert!(new_lines(&now, &now).is_empty());
    }
}
