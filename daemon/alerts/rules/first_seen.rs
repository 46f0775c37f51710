//! legacy_auth_success in `mode = "first_seen"`: a successful legacy
//! sign-in with a protocol the user has not used successfully in the
//! `lookback` before it (docs/labels.md "First-seen legacy protocol").
//!
//! The rule, in event time: a sign-in at `t` is first seen when no recorded
//! successful use of its protocol by the user lies in `[t - lookback, t)`.
//! The uses are kept as runs — the first and last of uses each at most
//! `lookback` after the one before — which answer that exactly for the
//! uses recorded so far, in whatever order they arrived, in a few bytes: a
//! mailbox polling IMAP every minute is one run.

use serde::{Deserialize, Serialize};

/// At most this many protocols are kept per user; past it the one used
/// least recently is forgotten.
pub(super) const PROTOCOLS_PER_USER: usize = 16;
/// At most this many runs are kept per protocol; past it the oldest is forgotten.
const RUNS_PER_PROTOCOL: usize = 8;
/// A protocol's name is cut to this many bytes.
const PROTOCOL_NAME: usize = 64;
/// Runs are kept this long past what the low watermark still needs, for
/// sign-ins read late (the same hour the alert ids are kept longer).
pub(super) const LATE: i64 = 3600;

/// One user's successful uses of one legacy protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Protocol {
    name: String,
    /// In time order, each more than `lookback` after the one before.
    runs: Vec<Run>,
}

/// Uses each at most `lookback` after the previous one: together they make
/// `(first, last + lookback]` not new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Run {
    first: i64,
    last: i64,
}

/// Records a successful use of `protocol` at `time` in a user's
/// `protocols`; true when it is first seen (no use recorded in
/// `[time - lookback, time)`).
pub(super) fn record(protocols: &mut Vec<Protocol>, protocol: &str, time: i64, lookback: i64) -> bool {
    let name = super::bounded(protocol, PROTOCOL_NAME);
    let at = match protocols.iter().position(|p| p.name.eq_ignore_ascii_case(&name)) {
        Some(at) => at,
        None => {
            if protocols.len() >= PROTOCOLS_PER_USER
                && let Some(oldest) = (0..protocols.len()).min_by_key(|&i| protocols[i].newest())
            {
                protocols.swap_remove(oldest);
            }
            protocols.push(Protocol { name, runs: Vec::new() });
            protocols.len() - 1
        }
    };
    let runs = &mut protocols[at].runs;
    let first_seen = !runs.iter().any(|r| r.first < time && time <= r.last + lookback);
    // The runs `time` joins (it is within `lookback` of them, either side)
    // become one; the others stay more than `lookback` away.
    let mut joined = Run { first: time, last: time };
    runs.retain(|r| {
        let joins = r.first - lookback <= time && time <= r.last + lookback;
        if joins {
            joined = Run { first: joined.first.min(r.first), last: joined.last.max(r.last) };
        }
        !joins
    });
    let at = runs.partition_point(|r| r.first < joined.first);
    runs.insert(at, joined);
    if runs.len() > RUNS_PER_PROTOCOL {
        runs.remove(0);
    }
    first_seen
}

/// Forgets the runs that make nothing at or after `horizon` not new, and
/// the protocols and users left with none.
pub(super) fn prune(seen: &mut std::collections::HashMap<String, Vec<Protocol>>, horizon: i64, lookback: i64) {
    seen.retain(|_, protocols| {
        protocols.retain_mut(|p| {
            p.runs.retain(|r| r.last + lookback >= horizon);
            !p.runs.is_empty()
        });
        !protocols.is_empty()
    });
}

impl Protocol {
    fn newest(&self) -> i64 {
        self.runs.last().map_or(i64::MIN, |r| r.last)
    }

    #[cfg(test)]
    pub(super) fn runs(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    /// The same answers as looking at every use recorded, in any order.
    #[test]
    fn runs_answer_as_every_use_would_in_any_order() {
        let uses = [0, DAY, 9 * DAY, 3 * DAY, 20 * DAY, 13 * DAY, 27 * DAY, 16 * DAY, 2 * DAY, 40 * DAY];
        let orders: [Vec<usize>; 3] =
            [(0..uses.len()).collect(), (0..uses.len()).rev().collect(), vec![4, 1, 7, 0, 9, 2, 5, 8, 3, 6]];
        for order in orders {
            let (mut protocols, mut seen) = (Vec::new(), Vec::<i64>::new());
            for i in order {
                let t = uses[i];
                let expected = !seen.iter().any(|&u| t - 7 * DAY <= u && u < t);
                assert_eq!(record(&mut protocols, "IMAP4", t, 7 * DAY), expected, "use at day {}", t / DAY);
                seen.push(t);
            }
            assert!(protocols[0].runs.windows(2).all(|w| w[1].first - w[0].last > 7 * DAY), "{protocols:?}");
        }
    }

    #[test]
    fn protocols_and_runs_are_bounded() {
        let mut protocols = Vec::new();
        for i in 0..100 {
            record(&mut protocols, &format!("P{i}"), i, DAY);
            record(&mut protocols, "IMAP4", i * 10 * DAY, DAY);
        }
        assert_eq!(protocols.len(), PROTOCOLS_PER_USER);
        let imap = protocols.iter().find(|p| p.name == "IMAP4").unwrap();
        assert_eq!(imap.runs.len(), RUNS_PER_PROTOCOL);
    }
}
