//! notify: what systemd hears from the daemon (`Type=notify`): READY=1 once
//! the state is loaded and the HTTP server listens, STATUS= lines saying
//! what it is doing, WATCHDOG=1 from the pipeline's own loop (a pipeline that
//! stops turning is restarted), STOPPING=1 on the way out. Outside systemd
//! (no `NOTIFY_SOCKET`) every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// Startup is finished: the state is loaded and the HTTP server listens.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pets systemd's watchdog from the loop that does the work, twice per
/// `WatchdogSec=` at most.
pub struct Watchdog {
    every: Option<Duration>,
    last: Option<Instant>,
}

impl Watchdog {
    pub fn from_env() -> Watchdog {
        Watchdog { every: sd_notify::watchdog_enabled().map(|d| d / 2), last: None }
    }

    /// The loop turned.
    pub fn pet(&mut self) {
        let Some(every) = self.every else { return };
        if self.last.is_none_or(|t| t.elapsed() >= every) {
            self.last = Some(Instant::now());
            send(&[NotifyState::Watchdog]);
        }
    }
}

/// "consuming 4 partitions, lag 120 messages, 1,943 users" (and why it is not ready, if it is not).
pub fn describe(partitions: usize, lag: i64, users: usize, not_ready: Option<&str>) -> String {
    let mut text = format!(
        "consuming {partitions} partition{}, lag {} message{}, {} user{}",
        if partitions == 1 { "" } else { "s" },
        thousands(lag.max(0) as u64),
        if lag == 1 { "" } else { "s" },
        thousands(users as u64),
        if users == 1 { "" } else { "s" }
    );
    if let Some(reason) = not_ready {
        text.push_str("; not ready: ");
        text.push_str(reason);
    }
    text
}

/// 1943 → "1,943".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_read_like_a_sentence() {
        assert_eq!(describe(4, 120, 1943, None), "consuming 4 partitions, lag 120 messages, 1,943 users");
        assert_eq!(
            describe(1, 1, 1, Some("stopping")),
            "consuming 1 partition, lag 1 message, 1 user; not ready: stopping"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(0), "0");
    }
}
