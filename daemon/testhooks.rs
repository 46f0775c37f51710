//! testhooks: pauses and injected faults that the fault tests switch on.
//!
//! Off unless the environment variable `MFAWATCH_TEST_HOOKS` is set, which no
//! configuration and no unit does; read once. It holds comma-separated hooks:
//! - `pause=POINT:MS` — at the named point, log "test hook: paused at POINT"
//!   and sleep MS milliseconds (every time), so that a test can kill the
//!   process exactly there. Points: `snapshot-before-rename`,
//!   `checkpoint-before-commit`, `pipeline` (every message: a stalled
//!   pipeline), `compact-before-remove` (a day's merged file in place, the
//!   files it merged not yet removed), `deliver-before-clear` (a receiver
//!   took alerts, the outbox still has them).
//! - `fatal-after=N` — after N messages, librdkafka raises a fatal error
//!   (`rd_kafka_test_fatal_error`), as a fenced static member would.
//! - `fail-writes=PATH` — while the file PATH exists, snapshot writes fail
//!   with "No space left on device" (where the test cannot mount a small
//!   filesystem).
//! - `clock-offset-file=PATH` — the host clock (as the `clock` module reads it) is
//!   off by the number of seconds the file PATH holds (read again at most
//!   every 200 ms; no file: 0), as a host clock that jumps would be.

use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, Default)]
struct Hooks {
    pauses: Vec<(String, u64)>,
    fatal_after: Option<u64>,
    fail_writes: Option<std::path::PathBuf>,
    clock_offset_file: Option<std::path::PathBuf>,
}

fn hooks() -> &'static Hooks {
    static HOOKS: OnceLock<Hooks> = OnceLock::new();
    HOOKS.get_or_init(|| {
        let mut hooks = Hooks::default();
        let Ok(text) = std::env::var("MFAWATCH_TEST_HOOKS") else { return hooks };
        for hook in text.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            match hook.split_once('=') {
                Some(("pause", spec)) => {
                    if let Some((point, ms)) = spec.rsplit_once(':')
                        && let Ok(ms) = ms.parse()
                    {
                        hooks.pauses.push((point.to_owned(), ms));
                    }
                }
                Some(("fatal-after", n)) => hooks.fatal_after = n.parse().ok(),
                Some(("fail-writes", path)) => hooks.fail_writes = Some(path.into()),
                Some(("clock-offset-file", path)) => hooks.clock_offset_file = Some(path.into()),
                _ => {}
            }
        }
        if !hooks.pauses.is_empty()
            || hooks.fatal_after.is_some()
            || hooks.fail_writes.is_some()
            || hooks.clock_offset_file.is_some()
        {
            tracing::warn!(hooks = %text, "test hooks are on (MFAWATCH_TEST_HOOKS): never in production");
        }
        hooks
    })
}

/// Pauses at `point` when a test asked for it.
pub fn pause(point: &str) {
    for (name, ms) in &hooks().pauses {
        if name == point {
            tracing::warn!(point, ms, "test hook: paused at {point}");
            std::thread::sleep(Duration::from_millis(*ms));
        }
    }
}

/// Whether a fatal error is to be injected after `messages` messages.
pub fn fatal_due(messages: u64) -> bool {
    hooks().fatal_after.is_some_and(|n| messages >= n)
}

/// An injected "disk full" for writes of the state, while the test's flag file exists.
pub fn write_fault() -> std::io::Result<()> {
    match &hooks().fail_writes {
        Some(flag) if flag.exists() => Err(std::io::Error::from_raw_os_error(28)), // ENOSPC
        _ => Ok(()),
    }
}

/// Seconds the host clock is off by, as a test set it (0 without the hook).
pub fn clock_offset() -> i64 {
    use std::sync::Mutex;
    use std::time::Instant;
    static READ: Mutex<Option<(Instant, i64)>> = Mutex::new(None);
    let Some(path) = &hooks().clock_offset_file else { return 0 };
    let mut read = crate::locks::lock(&READ);
    match *read {
        Some((at, offset)) if at.elapsed() < Duration::from_millis(200) => offset,
        _ => {
            let offset = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
            *read = Some((Instant::now(), offset));
            offset
        }
    }
}
