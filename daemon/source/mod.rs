//! source: where messages come from, each with its position.
//!
//! A source yields raw message bytes and a [`Position`] that names where they
//! came from (file and line, topic, partition and offset, or a Graph listing's page). It never looks
//! inside a message: that is decode's job.

pub mod capture;
pub mod csv;
pub mod files;
pub mod graph;
pub mod kafka;

pub use crate::decode::{Position, RecordAt};
