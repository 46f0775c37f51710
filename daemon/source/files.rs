//! Files and stdin: frames a file into messages.
//!
//! Sign-in exports come as NDJSON (one record or envelope per line), as one
//! JSON document (a Graph page, a Log Analytics array, a pretty-printed
//! record), or as several documents one after another; any of them may be
//! gzip-compressed. NDJSON is streamed line by line; a document is read whole.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use serde_json::value::RawValue;

use super::Position;

/// What reading one input produced, besides its messages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileStats {
    pub messages: u64,
    pub bytes: u64,
}

/// Opens `path` ("-" is stdin), unwrapping gzip when the bytes say so.
pub fn open(path: &str) -> io::Result<Box<dyn BufRead>> {
    let raw: Box<dyn Read> = if path == "-" {
        Box::new(io::stdin().lock())
    } else {
        if Path::new(path).is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "is a directory"));
        }
        Box::new(File::open(path)?)
    };
    let mut reader = BufReader::with_capacity(1 << 20, raw);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(reader))))
    } else {
        Ok(Box::new(reader))
    }
}

/// The files `replay` reads from a folder, by how their names end (any
/// letter case): Capture's Avro, NDJSON and JSON exports, CSV downloads,
/// each gzipped too.
pub const INPUT_EXTENSIONS: [&str; 7] = [".avro", ".ndjson", ".jsonl", ".json", ".csv", ".gz", ".log"];

/// Every input file under `dir` (its sub-folders too), hidden files left
/// out: Capture's `.avro` files in the time order of their folders
/// (`…/2025/06/29/23/50/00.avro`), the others by path.
pub fn inputs_in(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_lowercase();
            if name.starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if INPUT_EXTENSIONS.iter().any(|e| name.ends_with(e)) {
                out.push(path);
            }
        }
    }
    // The last six parts of a Capture path are its time; other files sort by path.
    let key = |p: &std::path::PathBuf| {
        let avro = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("avro"));
        let parts: Vec<String> = p.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        let time = if avro { parts[parts.len().saturating_sub(6)..].join("/") } else { String::new() };
        (avro, time, p.clone())
    };
    out.sort_by_cached_key(key);
    Ok(out)
}

/// When a message was received, if its input says (an Event Hubs Capture
/// event's enqueued time).
pub type Received = Option<chrono::DateTime<chrono::Utc>>;

/// Reads every message of one input and hands each, with its position (and
/// when it was received, where the input says), to `each`: JSON in any of
/// its framings, an Event Hubs Capture file (Avro), a CSV download.
/// I/O errors (reading, or returned by `each`) end the read and are returned;
/// bad JSON is not an error here.
pub fn read_messages(
    path: &str,
    mut each: impl FnMut(&[u8], &Position, Received) -> io::Result<()>,
) -> io::Result<FileStats> {
    let name: Arc<str> = if path == "-" { Arc::from("<stdin>") } else { Arc::from(path) };
    let mut reader = open(path)?;
    let head = reader.fill_buf()?;
    // A `.avro` file is a Capture file, whatever its first bytes say (a
    // damaged one is then named as such, not read as text).
    if super::capture::is_avro(head) || path.to_ascii_lowercase().ends_with(".avro") {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        return super::capture::read_messages(&name, &bytes, each);
    }
    if super::csv::is_csv(&name, head) {
        return super::csv::read_messages(&name, reader, |bytes, position| each(bytes, position, None));
    }
    let mut each = |bytes: &[u8], position: &Position| each(bytes, position, None);
    let mut stats = FileStats::default();
    let mut line = Vec::with_capacity(64 * 1024);
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| broken(e, number + 1, stats.bytes))?;
        if n == 0 {
            return Ok(stats);
        }
        number += 1;
        stats.bytes += n as u64;
        let content = trim_line(&line, number == 1);
        if content.is_empty() {
            continue;
        }
        if starts_document(content) {
            // The rest of the input is one or more JSON documents.
            let first_line = number;
            let mut document = strip_bom(&line, number == 1).to_vec();
            let before = document.len();
            reader.read_to_end(&mut document).map_err(|e| broken(e, number, stats.bytes))?;
            stats.bytes += (document.len() - before) as u64;
            stats.messages += each_document(&document, &name, first_line, &mut each)?;
            return Ok(stats);
        }
        stats.messages += 1;
        each(content, &Position::File { path: name.clone(), line: number })?;
    }
}

/// A read error, saying where the input broke: a gzip file cut short (a
/// copy that did not finish) fails with "unexpected end of file".
fn broken(e: io::Error, line: u64, bytes: u64) -> io::Error {
    let hint = if e.kind() == io::ErrorKind::UnexpectedEof {
        ": the compressed data ends early, the file is truncated (what came before was read)"
    } else {
        ""
    };
    io::Error::new(e.kind(), format!("broken at line {line}, after {bytes} bytes of content: {e}{hint}"))
}

/// A line opens a multi-line document when it starts a JSON array, or is an
/// object's opening alone or ending in an opening bracket (`{`, `{"value": [`),
/// as pretty printers write them. Any other line is a message by itself: a
/// record cut short on its line is one malformed message, not the rest of the file.
fn starts_document(line: &[u8]) -> bool {
    matches!((line.first(), line.last()), (Some(b'['), _) | (Some(b'{'), Some(b'{' | b'[')))
}

/// Splits concatenated JSON documents (and any records on lines of their own
/// after them); each is one message at its first line. Where the JSON breaks
/// on the line a value starts, that line becomes one malformed message and
/// reading resumes at the next line, so a bad line costs only itself. Where
/// it breaks inside a document spread over several lines (a trailing comma
/// in a pretty-printed Graph page), the document — the rest of the input, as
/// where it would end cannot be known — is one malformed message, reported
/// once with the line and column of the error in it.
fn each_document(
    bytes: &[u8],
    name: &Arc<str>,
    first_line: u64,
    each: &mut impl FnMut(&[u8], &Position) -> io::Result<()>,
) -> io::Result<u64> {
    let mut from = 0; // where the current stream starts in `bytes`
    let mut line = first_line; // the line at `counted`
    let mut counted = 0; // up to where newlines are counted
    let mut messages = 0;
    let line_at = |at: usize, line: &mut u64, counted: &mut usize| {
        *line += count_newlines(&bytes[*counted..at]);
        *counted = at;
        *line
    };
    while from < bytes.len() {
        let from_line = line_at(from, &mut line, &mut counted);
        let mut stream = serde_json::Deserializer::from_slice(&bytes[from..]).into_iter::<&RawValue>();
        loop {
            let offset = from + stream.byte_offset();
            match stream.next() {
                None => return Ok(messages),
                Some(Ok(raw)) => {
                    let text = raw.get().as_bytes();
                    let begin = text.as_ptr() as usize - bytes.as_ptr() as usize;
                    messages += 1;
                    each(text, &Position::File { path: name.clone(), line: line_at(begin, &mut line, &mut counted) })?;
                }
                Some(Err(e)) => {
                    let rest = &bytes[offset..];
                    let skipped = rest.len() - rest.trim_ascii_start().len();
                    let begin = offset + skipped;
                    let end = memchr::memchr(b'\n', &bytes[begin..]).map_or(bytes.len(), |n| begin + n);
                    // serde counts lines from `from`; the value began on the line of `begin`.
                    let error_line = from_line + e.line().saturating_sub(1) as u64;
                    let start_line = line_at(begin, &mut line, &mut counted);
                    if error_line > start_line {
                        messages += 1;
                        each(trim_ascii(&bytes[begin..]), &Position::File { path: name.clone(), line: start_line })?;
                        return Ok(messages);
                    }
                    let bad = trim_ascii(&bytes[begin..end]);
                    if !bad.is_empty() {
                        messages += 1;
                        each(
                            bad,
                            &Position::File { path: name.clone(), line: line_at(begin, &mut line, &mut counted) },
                        )?;
                    }
                    from = end;
                    break;
                }
            }
        }
    }
    Ok(messages)
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

fn trim_line(line: &[u8], first: bool) -> &[u8] {
    trim_ascii(strip_bom(line, first))
}

fn strip_bom(line: &[u8], first: bool) -> &[u8] {
    if first { line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line) } else { line }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn frames(content: &[u8]) -> Vec<(String, String)> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content).unwrap();
        let path = file.path().to_str().unwrap().to_owned();
        let mut out = Vec::new();
        read_messages(&path, |bytes, pos, _| {
            let Position::File { line, .. } = pos else { unreachable!() };
            out.push((line.to_string(), String::from_utf8_lossy(bytes).into_owned()));
            Ok(())
        })
        .unwrap();
        out
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn ndjson_lines_are_messages_numbered_by_line() {
        let got = frames(b"{\"a\":1}\r\n\n{\"b\":2}\n{broken\n{\"c\":3}");
        assert_eq!(got, pairs(&[("1", "{\"a\":1}"), ("3", "{\"b\":2}"), ("4", "{broken"), ("5", "{\"c\":3}")]));
    }

    #[test]
    fn a_pretty_printed_document_is_one_message() {
        let got = frames(b"\n{\n  \"value\": [\n    {\"a\": 1}\n  ]\n}\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "2");
        assert!(got[0].1.starts_with('{') && got[0].1.ends_with('}'));
    }

    #[test]
    fn concatenated_documents_are_separate_messages_at_their_lines() {
        let got = frames(b"[\n 1\n]\n{\n \"x\": 2\n}\n");
        assert_eq!(got, pairs(&[("1", "[\n 1\n]"), ("4", "{\n \"x\": 2\n}")]));
    }

    #[test]
    fn a_document_broken_inside_is_one_message_to_the_end_of_the_input() {
        let got = frames(b"[1]\n[2,\n{\"a\":1}\n");
        assert_eq!(got, pairs(&[("1", "[1]"), ("2", "[2,\n{\"a\":1}")]));
        // A Graph page with a trailing comma, as the docs samples have.
        let page = b"{\n  \"value\": [\n    {\"id\": \"1\"},\n    {\"id\": \"2\"},\n  ]\n}\n";
        let got = frames(page);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "1");
    }

    #[test]
    fn a_record_cut_short_costs_only_its_line() {
        let got = frames(b"{\"a\":1}\n{\"time\":\"2025\",\"cat\n{\"b\":2}\n{\"c\":3}\n");
        assert_eq!(
            got,
            pairs(&[("1", "{\"a\":1}"), ("2", "{\"time\":\"2025\",\"cat"), ("3", "{\"b\":2}"), ("4", "{\"c\":3}")])
        );
    }

    #[test]
    fn records_after_a_pretty_printed_document_survive_a_bad_line() {
        let got = frames(b"{\n  \"value\": []\n}\n{oops\n{\"b\":2}\n");
        assert_eq!(got, pairs(&[("1", "{\n  \"value\": []\n}"), ("4", "{oops"), ("5", "{\"b\":2}")]));
    }

    #[test]
    fn gzip_input_is_unwrapped() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        let got = frames(&gz.finish().unwrap());
        assert_eq!(got, pairs(&[("1", "{\"a\":1}"), ("2", "{\"b\":2}")]));
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        assert_eq!(frames(b"\xef\xbb\xbf{\"a\":1}\n"), pairs(&[("1", "{\"a\":1}")]));
    }

    #[test]
    fn a_missing_file_is_an_error() {
        assert!(read_messages("/nonexistent/signins.json", |_, _, _| Ok(())).is_err());
    }
}
