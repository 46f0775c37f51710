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
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;

use crate::decode::Malformed;
use crate::decode::Position;

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
    /// How many raw bytes the record had, and their SHA-256 (hex): whole
    /// even when `raw` holds only their beginning.
    pub raw_bytes: usize,
    pub raw_sha256: String,
    /// `raw` / `raw_base64` hold only the first bytes (the record was too
    /// large for a dead letter that must always be deliverable).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// With `privacy.pseudonymise`: `raw` holds the record with its names and
    /// addresses replaced, or (`withheld`) nothing, when it is not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pseudonymised: Option<&'static str>,
    /// When mfawatch wrote it (RFC 3339).
    pub written_at: String,
}

/// A dead letter is at most this large unless configured (`dead_letter.max_bytes`).
pub const DEFAULT_MAX_BYTES: usize = crate::config::DEAD_LETTER_MAX_BYTES as usize;

impl<'a> DeadLetter<'a> {
    pub fn new(position: &Position, index: Option<usize>, malformed: &Malformed<'a>) -> DeadLetter<'a> {
        use sha2::Digest as _;
        let mut letter = DeadLetter {
            source: position.to_string(),
            index,
            reason: malformed.error.reason(),
            error: malformed.error.to_string(),
            raw: None,
            raw_base64: None,
            raw_bytes: malformed.raw.len(),
            raw_sha256: hex(&sha2::Sha256::digest(malformed.raw)),
            truncated: false,
            pseudonymised: None,
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        letter.keep_raw(malformed.raw, malformed.raw.len());
        letter
    }

    /// Keeps the first `keep` raw bytes (a whole character for text).
    fn keep_raw(&mut self, raw: &'a [u8], keep: usize) {
        self.truncated = keep < raw.len();
        match std::str::from_utf8(raw) {
            Ok(text) => {
                let end = (0..=keep.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                (self.raw, self.raw_base64) = (Some(Cow::Borrowed(&text[..end])), None);
            }
            Err(_) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&raw[..keep.min(raw.len())]);
                (self.raw, self.raw_base64) = (None, Some(b64));
            }
        }
    }

    /// The dead letter as one JSON document of at most `max` bytes: when the
    /// record is too large, `raw` keeps its beginning and says it was cut
    /// (length and hash stay whole), so that a dead letter can always be
    /// delivered and never stops the pipeline by its size.
    pub fn encode(mut self, raw: &'a [u8], max: usize) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(&self).expect("a dead letter serialises");
        let mut keep = raw.len();
        while bytes.len() > max && keep > 0 {
            // Escapes make text grow by up to 6×: shrink by what is over, then some.
            let over = bytes.len() - max;
            keep = keep.saturating_sub(over.max(keep / 8) + 64);
            self.keep_raw(raw, keep);
            bytes = serde_json::to_vec(&self).expect("a dead letter serialises");
        }
        bytes
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
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
        let dir = path.parent().unwrap_or(Path::new(""));
        crate::durable::create_dir_durable(dir)?;
        let new = !path.exists();
        let mut file =
            OpenOptions::new().create(true).read(true).append(true).mode(crate::durable::FILE_MODE).open(path)?;
        if new {
            // The file's name must survive a power cut as its lines do.
            crate::durable::sync_dir(dir)?;
        }
        drop_partial_last_line(&mut file)?;
        Ok(DeadLetterFile { path: path.to_owned(), out: BufWriter::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one encoded dead letter as a line.
    pub fn write(&mut self, letter: &[u8]) -> io::Result<()> {
        self.out.write_all(letter)?;
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
pub struct Deliveries {
    failure: std::sync::Mutex<Option<String>>,
    /// `auth = "entra"`: where OAUTHBEARER tokens come from.
    pub tokens: Option<std::sync::Arc<crate::kafka::entra::TokenSource>>,
    events: crate::events::Events,
}

impl Deliveries {
    /// `tokens`: where OAUTHBEARER tokens come from under `auth = "entra"`.
    pub fn new(
        tokens: Option<std::sync::Arc<crate::kafka::entra::TokenSource>>,
        events: crate::events::Events,
    ) -> Deliveries {
        Deliveries { failure: std::sync::Mutex::default(), tokens, events }
    }
}

impl rdkafka::ClientContext for Deliveries {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        crate::kafka::oauth_token(self.tokens.as_deref(), &self.events)
    }
}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failure = crate::locks::lock(&self.failure);
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
        let failure = crate::locks::lock(&self.producer.context().failure);
        match failure.as_ref() {
            Some(e) => Err(io::Error::other(format!("dead-letter topic {}: delivery failed: {e}", self.topic))),
            None => Ok(()),
        }
    }

    /// Produces one encoded dead letter, keyed by its source position.
    pub fn write(&mut self, key: &str, payload: &[u8]) -> io::Result<()> {
        use rdkafka::producer::BaseRecord;
        self.failed()?;
        let mut record = BaseRecord::to(&self.topic).key(key).payload(payload);
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

    /// Whether the topic exists, from the brokers' metadata.
    pub fn exists(&self, timeout: std::time::Duration) -> Result<(), TopicProblem> {
        use rdkafka::producer::Producer;
        let metadata = self.producer.client().fetch_metadata(Some(&self.topic), timeout).map_err(|e| {
            TopicProblem::Unreachable(format!("cannot read the metadata of dead-letter topic {}: {e}", self.topic))
        })?;
        match metadata.topics().iter().find(|t| t.name() == self.topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            Some(t) if t.error().is_some() => {
                let code = rdkafka::error::RDKafkaErrorCode::from(t.error().expect("checked"));
                Err(TopicProblem::Missing(format!(
                    "dead-letter topic {}: {code} (does it exist, may mfawatch write to it?)",
                    self.topic
                )))
            }
            _ => Err(TopicProblem::Missing(format!(
                "dead-letter topic {} does not exist: create it, or unset dead_letter.topic",
                self.topic
            ))),
        }
    }

    /// Checks at start that the topic exists and takes a dead letter: a
    /// probe, marked as one (`reason: "probe"`), is produced and flushed. A
    /// topic that cannot take dead letters would otherwise stop the daemon
    /// at the first malformed record, over and over.
    pub fn check(&mut self, timeout: std::time::Duration) -> Result<(), String> {
        use rdkafka::producer::Producer;
        self.exists(timeout).map_err(|p| p.to_string())?;
        let probe = serde_json::json!({
            "reason": "probe",
            "error": "written by mfawatch at start to check that this topic takes dead letters; not a record",
            "written_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        self.write("mfawatch-probe", probe.to_string().as_bytes()).map_err(|e| e.to_string())?;
        let hint =
            "(does the credential have Send rights, is the topic's max message size at least dead_letter.max_bytes?)";
        self.producer
            .flush(timeout)
            .map_err(|e| format!("dead-letter topic {} does not take messages: {e} {hint}", self.topic))?;
        self.failed().map_err(|e| format!("{e} {hint}"))
    }
}

/// Why the dead-letter topic cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TopicProblem {
    /// The brokers did not answer: nothing is known.
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Missing(String),
}

/// Every configured dead-letter target.
pub struct DeadLetters {
    pub file: Option<DeadLetterFile>,
    pub topic: Option<DeadLetterTopic>,
    /// Largest dead letter written (`dead_letter.max_bytes`).
    pub max_bytes: usize,
    /// `privacy.pseudonymise`: dead letters hold no name or address either.
    pub pseudonyms: Option<crate::privacy::Pseudonyms>,
}

impl Default for DeadLetters {
    fn default() -> Self {
        DeadLetters { file: None, topic: None, max_bytes: DEFAULT_MAX_BYTES, pseudonyms: None }
    }
}

impl DeadLetters {
    /// Keeps the malformed record at `position` (index in its message).
    pub fn write(&mut self, position: &Position, index: Option<usize>, malformed: &Malformed<'_>) -> io::Result<()> {
        if self.file.is_none() && self.topic.is_none() {
            return Ok(());
        }
        let mut letter = DeadLetter::new(position, index, malformed);
        let cleaned = self.pseudonyms.as_ref().map(|p| p.raw_record(malformed.raw));
        let raw: &[u8] = match &cleaned {
            None => malformed.raw,
            Some(Some(cleaned)) => {
                letter.pseudonymised = Some("replaced");
                cleaned
            }
            Some(None) => {
                letter.pseudonymised = Some("withheld");
                &[]
            }
        };
        letter.keep_raw(raw, raw.len());
        if raw.is_empty() {
            (letter.raw, letter.raw_base64) = (None, None);
        }
        let key = letter.source.clone();
        let bytes = letter.encode(raw, self.max_bytes);
        if let Some(file) = &mut self.file {
            file.write(&bytes)?;
        }
        if let Some(topic) = &mut self.topic {
            topic.write(&key, &bytes)?;
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
        let letter = DeadLetter::new(&Position::File { path: "f".into(), line: 1 }, Some(0), &malformed);
        file.write(&letter.encode(malformed.raw, DEFAULT_MAX_BYTES)).unwrap();
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

    #[test]
    fn an_oversized_record_becomes_a_dead_letter_that_fits_and_says_it_was_cut() {
        let position = Position::Kafka { topic: "t".into(), partition: 0, offset: 9 };
        // ~0.9 MB of text full of characters JSON must escape (up to 6× on output).
        let raw: Vec<u8> = "{\"records\":[\u{1}\"é".repeat(150_000).into_bytes();
        let malformed = Malformed { raw: &raw, error: DecodeError::Syntax("expected value".into()) };
        let bytes = DeadLetter::new(&position, None, &malformed).encode(&raw, DEFAULT_MAX_BYTES);
        assert!(bytes.len() <= DEFAULT_MAX_BYTES, "{} bytes", bytes.len());
        let letter: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(letter["truncated"], true);
        assert_eq!(letter["raw_bytes"], raw.len());
        assert!(raw.starts_with(letter["raw"].as_str().unwrap().as_bytes()));
        use sha2::Digest as _;
        assert_eq!(letter["raw_sha256"], hex(&sha2::Sha256::digest(&raw)));
        // Bytes that are not UTF-8 are cut the same way, in base64.
        let binary = vec![0xffu8; 900_000];
        let malformed = Malformed { raw: &binary, error: DecodeError::Syntax("invalid".into()) };
        let bytes = DeadLetter::new(&position, None, &malformed).encode(&binary, DEFAULT_MAX_BYTES);
        let letter: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(bytes.len() <= DEFAULT_MAX_BYTES && letter["truncated"] == true && letter["raw_base64"].is_string());
        // A small record is kept whole, without the flag.
        let malformed = Malformed { raw: b"{}", error: DecodeError::MissingTime };
        let letter: serde_json::Value =
            serde_json::from_slice(&DeadLetter::new(&position, Some(0), &malformed).encode(b"{}", 1024)).unwrap();
        assert_eq!((letter["raw"].as_str(), letter.get("truncated")), (Some("{}"), None));
    }
}
