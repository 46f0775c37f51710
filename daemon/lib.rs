//! mfawatch: labels Microsoft Entra ID sign-ins and keeps per-user MFA coverage.
//!
//! The modules follow the data flow of DESIGN.md, one per stage:
//! `source` (bytes + position) → `decode` (records) → `classify` (verdicts)
//! → sinks (`deadletter`, ...). `config` is the TOML file, `generate` makes
//! synthetic tenants for tests, benchmarks and the demo, `cli` the commands.

// The generator builds realistic records with serde_json::json!, which nests deeply.
#![recursion_limit = "256"]

pub mod checkpoint;
pub mod classify;
pub mod cli;
pub mod config;
pub mod coverage;
pub mod deadletter;
pub mod decode;
pub mod generate;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod source;
