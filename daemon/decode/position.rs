//! Where a message came from, and a record in it: a source gives the
//! position, decode, the dead letters, history and alerts name it.

use std::fmt;
use std::sync::Arc;

/// Where a message came from. Shown in every error and dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    File {
        path: Arc<str>,
        line: u64,
    },
    Kafka {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
    },
    /// An event of an Event Hubs Capture file: its Avro block and place in it.
    Avro {
        path: Arc<str>,
        block: u64,
        event: u64,
    },
    /// A page of a Microsoft Graph listing (`role_assignments`, …), from 1.
    Graph {
        listing: Arc<str>,
        page: u32,
    },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Position::File { path, line } => write!(f, "{path}:{line}"),
            Position::Kafka { topic, partition, offset } => write!(f, "{topic}[{partition}]@{offset}"),
            Position::Avro { path, block, event } => write!(f, "{path} block {block} event {event}"),
            Position::Graph { listing, page } => write!(f, "Graph {listing} page {page}"),
        }
    }
}

/// A position plus the index of a record inside its message (`None` when
/// the whole message is meant, e.g. it was not JSON at all).
#[derive(Clone, Copy, Debug)]
pub struct RecordAt<'a> {
    pub position: &'a Position,
    pub index: Option<usize>,
}

impl fmt::Display for RecordAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.index {
            Some(index) => write!(f, "{} record {index}", self.position),
            None => write!(f, "{}", self.position),
        }
    }
}
