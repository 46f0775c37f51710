//! logging: tracing set up as the configuration asks, and the throttle that
//! keeps a repeated complaint to one line a minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{Config, LogFormat};

/// Starts logging as the configuration asks; `RUST_LOG` overrides the level.
pub fn init(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // Colours only for a person at a terminal: not in the journal or a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Complaints that repeat (a broker down reports itself several times a
/// second; a state that is full refuses every new user) are logged once a
/// minute per kind, saying how many were held back; metrics still count
/// every one.
#[derive(Default)]
pub struct Throttle(Mutex<HashMap<String, (Instant, u64)>>);

impl Throttle {
    pub const EVERY: Duration = Duration::from_secs(60);

    /// `Some(held back since the last one)` when a report of `kind` is to be logged now.
    pub fn admit(&self, kind: &str) -> Option<u64> {
        let mut kinds = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match kinds.get_mut(kind) {
            Some((last, held)) if now.duration_since(*last) < Self::EVERY => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                kinds.insert(kind.to_owned(), (now, 0));
                Some(0)
            }
        }
    }

    #[cfg(test)]
    fn age(&self, kind: &str, by: Duration) {
        if let Some((last, _)) = self.0.lock().unwrap().get_mut(kind) {
            *last -= by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_reports_are_held_back_per_kind() {
        let t = Throttle::default();
        assert_eq!(t.admit("AllBrokersDown"), Some(0));
        assert_eq!(t.admit("AllBrokersDown"), None);
        assert_eq!(t.admit("AllBrokersDown"), None);
        assert_eq!(t.admit("Transport"), Some(0));
        // A minute later the next one is logged with the count held back.
        t.age("AllBrokersDown", Throttle::EVERY);
        assert_eq!(t.admit("AllBrokersDown"), Some(2));
        assert_eq!(t.admit("AllBrokersDown"), None);
    }
}
