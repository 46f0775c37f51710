//! mfawatch: labels Microsoft Entra ID sign-ins and keeps per-user MFA coverage.
//!
//! The modules follow the data flow and the layers of `docs/design.md`, one
//! per stage: `source` (bytes + position) → `checkpoint` → `pipeline`:
//! `decode` (records) → `classify` (verdicts) → `coverage`, `metrics` and
//! the `sinks` (`alerts`, `history`) and `deadletter`. `kafka` is Kafka as a
//! client; `events` counts and logs what happens; `daemon` assembles the
//! stages for `run`, `replay` and `demo`; `http` serves the API; `report`
//! reads the history; `config` is the TOML file, `generate` makes synthetic
//! tenants for tests, benchmarks and the demo, `cli` the commands.

// The generator builds realistic records with serde_json::json!, which nests deeply.
#![recursion_limit = "256"]

pub mod alerts;
pub mod checkpoint;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod coverage;
pub mod daemon;
pub mod deadletter;
pub mod decode;
pub mod directory;
pub mod durable;
pub mod events;
pub mod generate;
pub mod health;
pub mod history;
pub mod http;
pub mod kafka;
pub mod locks;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod pipeline;
pub mod privacy;
pub mod report;
pub mod secrets;
pub mod sinks;
pub mod source;
pub mod testhooks;
