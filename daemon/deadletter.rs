//! deadletter: records that could not be used, kept with why and where.
//!
//! Nothing malformed is dropped silently (SIGNIN-SEMANTICS §1): each one is
//! counted by the caller and written here with its raw bytes, its source
//! position and the reason. A dead letter is one JSON line, appended to a file
//! and/or produced to a Kafka topic. `sync` makes them durable; the checkpoint
//! calls it before committing offsets, so after a crash a dead letter may be
//! written twice but never lost.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;

use crate::decode::Malformed;
use crate::source::Position;

/// One dead letter as written.
#[derive(Debug, Serialize)]
pub struct DeadLetter<'a> {
    /// `file:line` or `topic[partition]@offset`.
    pub source: String,
    /// Index of the record inside its message; absent when the whole message was unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Bounded reason code (`missing_time`, `syntax`, ...).
    pub reason: &'static str,
    /// The full error message.
    pub error: String,
    /// The raw bytes, as text when they are UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Cow<'a, str>>,
    /// The raw bytes in base64 when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    /// When mfawatch wrote it (RFC 3339).
    pub written_at: String,
}

impl<'a> DeadLetter<'a> {
    pub fn new(position: &Position, index: Option<usize>, malformed: &Malformed<'a>) -> DeadLetter<'a> {
        let (raw, raw_base64) = match std::str::from_utf8(malformed.raw) {
            Ok(text) => (Some(Cow::Borrowed(text)), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(malformed.raw))),
        };
        DeadLetter {
            source: position.to_string(),
            index,
            reason: malformed.error.reason(),
            error: malformed.error.to_string(),
            raw,
            raw_base64,
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// Appends dead letters to a file, one JSON line each.
pub struct DeadLetterFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl DeadLetterFile {
    /// Opens `path` for appending. A line cut short by a crash is removed:
    /// its record was not checkpointed and will be written again whole.
    pub fn open(path: &Path) -> io::Result<DeadLetterFile> {
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(path)?;
        drop_partial_last_line(&mut file)?;
        Ok(DeadLetterFile { path: path.to_owned(), out: BufWriter::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, letter: &DeadLetter<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, letter)?;
        self.out.write_all(b"\n")
    }

    /// Makes everything written so far durable (before offsets are committed).
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

fn drop_partial_last_line(file: &mut File) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Look back for the last newline, a block at a time.
    let mut end = len;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)?;
            }
            return Ok(());
        }
        end = start;
    }
    file.set_len(0)
}

/// Produces dead letters to a Kafka topic (keyed by source position).
pub struct DeadLetterTopic {
    producer: rdkafka::producer::BaseProducer<Deliveries>,
    topic: String,
}

/// Remembers the first failed delivery: a dead letter the broker did not take
/// is lost unless its record is read again, so it must stop the checkpoint.
#[derive(Default)]
pub struct Deliveries {
    failure: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            failure.get_or_insert_with(|| e.to_string());
        }
    }
}

impl DeadLetterTopic {
    pub fn new(producer: rdkafka::producer::BaseProducer<Deliveries>, topic: &str) -> DeadLetterTopic {
        DeadLetterTopic { producer, topic: topic.to_owned() }
    }

    fn failed(&self) -> io::Result<()> {
        use rdkafka::producer::Producer;
        let failure = self.producer.context().failure.lock().unwrap_or_else(|e| e.into_inner());
        match failure.as_ref() {
            Some(e) => Err(io::Error::other(format!("dead-letter topic {}: delivery failed: {e}", self.topic))),
            None => Ok(()),
        }
    }

    pub fn write(&mut self, letter: &DeadLetter<'_>) -> io::Result<()> {
        use rdkafka::producer::BaseRecord;
        self.failed()?;
        let payload = serde_json::to_vec(letter)?;
        let mut record = BaseRecord::to(&self.topic).key(&letter.source).payload(&payload);
        // A full queue means the broker is not taking them: wait a bounded while.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) if std::time::Instant::now() < give_up => {
                    record = r;
                    self.producer.poll(std::time::Duration::from_millis(100));
                    self.failed()?;
                }
                Err((e, _)) => {
                    return Err(io::Error::other(format!("dead-letter topic {}: {e}", self.topic)));
                }
            }
        }
        self.producer.poll(std::time::Duration::ZERO);
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        use rdkafka::producer::Producer;
        self.producer
            .flush(std::time::Duration::from_secs(30))
            .map_err(|e| io::Error::other(format!("dead-letter topic {}: {e}", self.topic)))?;
        self.failed()
    }
}

/// Every configured dead-letter target.
#[derive(Default)]
pub struct DeadLetters {
    pub file: Option<DeadLetterFile>,
    pub topic: Option<DeadLetterTopic>,
}

impl DeadLetters {
    pub fn write(&mut self, letter: &DeadLetter<'_>) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            file.write(letter)?;
        }
        if let Some(topic) = &mut self.topic {
            topic.write(letter)?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            file.sync()?;
        }
        if let Some(topic) = &mut self.topic {
            topic.sync()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::DecodeError;

    #[test]
    fn a_line_cut_short_by_a_crash_is_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let mut file = DeadLetterFile::open(&path).unwrap();
        let malformed = Malformed { raw: b"x", error: DecodeError::MissingTime };
        file.write(&DeadLetter::new(&Position::File { path: "f".into(), line: 1 }, Some(0), &malformed)).unwrap();
        file.sync().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{text}");
    }

    #[test]
    fn a_file_of_one_partial_line_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        std::fs::write(&path, "{\"c\":").unwrap();
        DeadLetterFile::open(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
