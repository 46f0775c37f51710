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
pub struct Throttle(Mutex<HashMap<String, Window>>);

/// One kind's current minute: when it began, how many were logged in it,
/// and how many were held back since the last line.
struct Window {
    start: Instant,
    admitted: u32,
    held: u64,
}

impl Throttle {
    pub const EVERY: Duration = Duration::from_secs(60);

    /// `Some(held back since the last one)` when a report of `kind` is to be logged now.
    pub fn admit(&self, kind: &str) -> Option<u64> {
        self.admit_n(kind, 1)
    }

    /// As [`Throttle::admit`], logging up to `burst` reports of `kind` a minute.
    pub fn admit_n(&self, kind: &str, burst: u32) -> Option<u64> {
        let mut kinds = crate::locks::lock(&self.0);
        let now = Instant::now();
        match kinds.get_mut(kind) {
            Some(w) if now.duration_since(w.start) < Self::EVERY && w.admitted >= burst.max(1) => {
                w.held += 1;
                None
            }
            Some(w) if now.duration_since(w.start) < Self::EVERY => {
                w.admitted += 1;
                Some(std::mem::take(&mut w.held))
            }
            Some(w) => {
                let held = std::mem::take(&mut w.held);
                *w = Window { start: now, admitted: 1, held: 0 };
                Some(held)
            }
            None => {
                kinds.insert(kind.to_owned(), Window { start: now, admitted: 1, held: 0 });
                Some(0)
            }
        }
    }

    /// How many reports of `kind` were held back since its last line, if
    /// any; it starts again from none.
    pub fn take_held_of(&self, kind: &str) -> Option<u64> {
        let mut kinds = crate::locks::lock(&self.0);
        kinds.get_mut(kind).map(|w| std::mem::take(&mut w.held)).filter(|&n| n > 0)
    }

    /// The kinds with reports held back since their last line, and how
    /// many; they start again from none.
    #[cfg(test)]
    pub fn take_held(&self) -> Vec<(String, u64)> {
        let mut kinds = crate::locks::lock(&self.0);
        let mut held: Vec<(String, u64)> = kinds
            .iter_mut()
            .filter(|(_, w)| w.held > 0)
            .map(|(k, w)| (k.clone(), std::mem::take(&mut w.held)))
            .collect();
        held.sort();
        held
    }

    #[cfg(test)]
    fn age(&self, kind: &str, by: Duration) {
        if let Some(w) = self.0.lock().unwrap().get_mut(kind) {
            w.start -= by;
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
