//! cli: the subcommands of the `mfawatch` binary. Each parses its arguments,
//! wires the stages together and reports errors for people (anyhow, with
//! context). No pipeline logic lives here.

pub mod bench;
pub mod classify;
pub mod cost;
pub mod demo;
pub mod generate;
pub mod latency;
pub mod report;
pub mod restart;
pub mod run;
