//! resume: where an assigned partition starts reading — the rules as one
//! pure function, checked by a table (Quickwit's checkpoint deltas are the
//! model). The Kafka source asks the brokers for the partition's watermarks
//! and does what the answer says; nothing here talks to a broker.

use super::SourceIdentity;
use crate::config::StartPosition;

/// Where a partition starts, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// At the snapshot's offset.
    Snapshot(i64),
    /// The snapshot's offset is before the log start: retention ran out
    /// while we were away, `lost` messages are gone; at the log start.
    Gap { at: i64, lost: u64 },
    /// The snapshot's offset is past the log end (a recreated hub, or
    /// another namespace's state): not read at all.
    PastEnd { next: i64, end: i64 },
    /// A partition the snapshot does not list: at `kafka.start`, resolved to
    /// an offset so that it is snapshotted and committed like any other
    /// (never the consumer group's committed offset, which belongs to
    /// whatever state committed it).
    New(i64),
    /// Not in the snapshot, and the watermarks could not be read: where
    /// `kafka.start` says, as librdkafka resolves it.
    Start(StartPosition),
    /// The snapshot's offset, unchecked (the watermarks could not be read).
    Unchecked(i64),
    /// The brokers are another cluster than the state's: nothing is read.
    OtherCluster,
}

/// Whether the brokers are the cluster the state was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    Same,
    Other,
}

/// Where a partition resumes: `next` is the snapshot's next offset for it,
/// `watermarks` the partition's (low, high) as the brokers say.
pub fn resume_at(next: Option<i64>, watermarks: Option<(i64, i64)>, start: StartPosition, cluster: Cluster) -> Resume {
    if cluster == Cluster::Other {
        return Resume::OtherCluster;
    }
    match (next, watermarks) {
        (Some(next), Some((_, high))) if next > high => Resume::PastEnd { next, end: high },
        (Some(next), Some((low, _))) if next < low => Resume::Gap { at: low, lost: (low - next) as u64 },
        (Some(next), Some(_)) => Resume::Snapshot(next),
        (Some(next), None) => Resume::Unchecked(next),
        (None, Some((low, high))) => Resume::New(match start {
            StartPosition::Earliest => low,
            StartPosition::Latest => high,
        }),
        (None, None) => Resume::Start(start),
    }
}

/// Whether two identities name the same cluster: by cluster id when both
/// know one; for Event Hubs, by namespace host; otherwise assumed.
pub fn same_source(a: &SourceIdentity, b: &SourceIdentity, eventhubs: bool) -> bool {
    match (&a.cluster_id, &b.cluster_id) {
        (Some(x), Some(y)) => x == y,
        _ if eventhubs => a.brokers.eq_ignore_ascii_case(&b.brokers),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StartPosition::{Earliest, Latest};

    #[test]
    fn every_case_of_where_a_partition_resumes() {
        use Cluster::{Other, Same};
        /// (case, snapshot offset, watermarks, kafka.start, cluster, where it resumes)
        type Case = (&'static str, Option<i64>, Option<(i64, i64)>, StartPosition, Cluster, Resume);
        let table: [Case; 11] = [
            ("at the snapshot", Some(50), Some((0, 100)), Earliest, Same, Resume::Snapshot(50)),
            ("at the snapshot, at the end", Some(100), Some((0, 100)), Latest, Same, Resume::Snapshot(100)),
            ("at the snapshot, at the start", Some(10), Some((10, 100)), Earliest, Same, Resume::Snapshot(10)),
            ("gap: retention ran out", Some(5), Some((40, 100)), Earliest, Same, Resume::Gap { at: 40, lost: 35 }),
            (
                "past the end: hub recreated",
                Some(150),
                Some((0, 100)),
                Earliest,
                Same,
                Resume::PastEnd { next: 150, end: 100 },
            ),
            ("never seen, earliest", None, Some((7, 100)), Earliest, Same, Resume::New(7)),
            ("never seen, latest", None, Some((7, 100)), Latest, Same, Resume::New(100)),
            ("never seen, watermarks unknown", None, None, Latest, Same, Resume::Start(Latest)),
            ("snapshot, watermarks unknown", Some(42), None, Earliest, Same, Resume::Unchecked(42)),
            ("another cluster", Some(50), Some((0, 100)), Earliest, Other, Resume::OtherCluster),
            ("another cluster, never seen", None, Some((0, 100)), Earliest, Other, Resume::OtherCluster),
        ];
        for (case, next, marks, start, cluster, want) in table {
            assert_eq!(resume_at(next, marks, start, cluster), want, "{case}");
        }
    }

    #[test]
    fn a_state_belongs_to_the_cluster_it_was_built_from() {
        let id = |c: Option<&str>, b: &str| SourceIdentity { cluster_id: c.map(str::to_owned), brokers: b.into() };
        assert!(same_source(&id(Some("a"), "k1:9092"), &id(Some("a"), "k2:9092"), false));
        assert!(!same_source(&id(Some("a"), "k:9092"), &id(Some("b"), "k:9092"), false));
        // Event Hubs: the namespace names the cluster when no id is given.
        assert!(!same_source(
            &id(None, "one.servicebus.windows.net:9093"),
            &id(None, "two.servicebus.windows.net:9093"),
            true
        ));
        assert!(same_source(
            &id(None, "ONE.servicebus.windows.net:9093"),
            &id(None, "one.servicebus.windows.net:9093"),
            true
        ));
        // Plain Kafka without ids: a changed bootstrap list is not another cluster.
        assert!(same_source(&id(None, "k1:9092"), &id(None, "k1:9092,k2:9092"), false));
    }
}
