//! capture: Event Hubs Capture files (Avro object containers, one folder per
//! hub / partition / time in Blob Storage or Data Lake). Each record's `Body`
//! is one Event Hubs message — for Entra, a `{"records":[...]}` envelope — and
//! goes through decode as if Kafka had delivered it, with its position
//! (`file.avro block B event E`) and its `EnqueuedTimeUtc`.
//!
//! The container framing is walked here block by block (magic, metadata,
//! sync marker; then count, size, data, sync per block) and each block is
//! inflated and decoded with `apache-avro`'s codec and datum reader. Its own
//! `Reader` is not used: it stops at the first block of zero records, which
//! Capture writes, and tells nothing of block boundaries. The writer schema is
//! the one each file carries (Capture's has changed over the years).

use std::collections::HashMap;
use std::io::{self, Cursor, Read};
use std::sync::Arc;

use apache_avro::types::Value;
use apache_avro::{Codec, Schema};
use chrono::{DateTime, Utc};

use super::Position;
use super::files::FileStats;

/// Whether `head` starts an Avro object container.
pub fn is_avro(head: &[u8]) -> bool {
    head.starts_with(b"Obj\x01")
}

fn bad(path: &str, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{path}: not a readable Event Hubs Capture file: {what}"))
}

/// An Avro `long`: zig-zag varint.
fn long(r: &mut impl Read) -> io::Result<i64> {
    let (mut n, mut shift) = (0u64, 0u32);
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        if shift > 63 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "varint too long"));
        }
        n |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
}

/// A length that must fit what is left of the file.
fn length(r: &mut Cursor<&[u8]>, total: usize) -> io::Result<usize> {
    let n = long(r)?;
    let left = total.saturating_sub(r.position() as usize);
    if n < 0 || n as usize > left {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a length of {n} with {left} bytes left")));
    }
    Ok(n as usize)
}

/// Reads every message (record `Body`) of one Capture file and hands each,
/// with its position and enqueued time, to `each`. The whole file is checked
/// first: a damaged one is an error naming it and the block, and nothing of
/// it has been handed on — a backfill can skip it and go on.
pub fn read_messages(
    path: &str,
    bytes: &[u8],
    mut each: impl FnMut(&[u8], &Position, Option<DateTime<Utc>>) -> io::Result<()>,
) -> io::Result<FileStats> {
    // The first pass checks every block and record without keeping
    // anything; the second hands the events on.
    walk(path, bytes, None)?;
    walk(path, bytes, Some(&mut each))
}

/// The events `each` gets: the body, where it is, when it was enqueued.
type Each<'e> = &'e mut dyn FnMut(&[u8], &Position, Option<DateTime<Utc>>) -> io::Result<()>;

/// One pass over the file: with `each`, the events are decoded and handed
/// on; without, they are only checked (skipped by the schema, no copies).
fn walk(path: &str, bytes: &[u8], mut each: Option<Each<'_>>) -> io::Result<FileStats> {
    let name: Arc<str> = Arc::from(path);
    let total = bytes.len();
    let mut stats = FileStats { bytes: total as u64, ..FileStats::default() };
    if total == 0 {
        return Ok(stats); // a blob not written yet
    }
    let mut c = Cursor::new(bytes);
    let mut magic = [0u8; 4];
    c.read_exact(&mut magic).map_err(|e| bad(path, e))?;
    if !is_avro(&magic) {
        return Err(bad(path, "no Avro magic (Obj 1)"));
    }
    let mut meta: HashMap<String, Vec<u8>> = HashMap::new();
    loop {
        let mut n = long(&mut c).map_err(|e| bad(path, format!("header: {e}")))?;
        if n == 0 {
            break;
        }
        if n < 0 {
            long(&mut c).map_err(|e| bad(path, format!("header: {e}")))?;
            n = -n;
        }
        for _ in 0..n {
            let k = length(&mut c, total).map_err(|e| bad(path, format!("header: {e}")))?;
            let mut key = vec![0; k];
            c.read_exact(&mut key).map_err(|e| bad(path, e))?;
            let v = length(&mut c, total).map_err(|e| bad(path, format!("header: {e}")))?;
            let mut value = vec![0; v];
            c.read_exact(&mut value).map_err(|e| bad(path, e))?;
            meta.insert(String::from_utf8_lossy(&key).into_owned(), value);
        }
    }
    let mut sync = [0u8; 16];
    c.read_exact(&mut sync).map_err(|e| bad(path, format!("header: {e}")))?;
    let codec_name = meta.get("avro.codec").map_or("null", |v| std::str::from_utf8(v).unwrap_or("?"));
    let codec: Codec =
        codec_name.parse().map_err(|_| bad(path, format!("codec {codec_name:?} is not one mfawatch reads")))?;
    let schema_text = meta.get("avro.schema").ok_or_else(|| bad(path, "no schema in the header"))?;
    let schema =
        Schema::parse_str(&String::from_utf8_lossy(schema_text)).map_err(|e| bad(path, format!("schema: {e}")))?;
    let datum = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .map_err(|e| bad(path, format!("schema: {e}")))?;
    let skippable = skippable(&schema);
    let mut block = 0u64;
    while (c.position() as usize) < total {
        let where_ = |e: &dyn std::fmt::Display| bad(path, format!("block {block}: {e}"));
        let count = long(&mut c).map_err(|e| where_(&e))?;
        let size = length(&mut c, total).map_err(|e| where_(&e))?;
        if count < 0 {
            return Err(where_(&format!("{count} records")));
        }
        let at = c.position() as usize;
        let Some(block_bytes) = bytes.get(at..at + size) else {
            return Err(where_(&"the block runs past the end of the file (the file is cut)"));
        };
        c.set_position((at + size) as u64);
        let mut marker = [0u8; 16];
        c.read_exact(&mut marker).map_err(|e| where_(&e))?;
        if marker != sync {
            return Err(where_(&"sync marker does not match the header's (the file is cut or damaged)"));
        }
        // Uncompressed blocks (Capture's default) are read where they lie.
        let data: std::borrow::Cow<'_, [u8]> = if matches!(codec, Codec::Null) {
            std::borrow::Cow::Borrowed(block_bytes)
        } else {
            let mut data = block_bytes.to_vec();
            codec.decompress(&mut data).map_err(|e| where_(&e))?;
            std::borrow::Cow::Owned(data)
        };
        let mut records = Cursor::new(&data[..]);
        for record in 0..count as u64 {
            stats.messages += 1;
            let Some(each) = each.as_mut() else {
                if skippable {
                    skip(&schema, &mut records).map_err(|e| where_(&format!("record {record}: {e}")))?;
                } else {
                    datum.read_value(&mut records).map_err(|e| where_(&format!("record {record}: {e}")))?;
                }
                continue;
            };
            let value = datum.read_value(&mut records).map_err(|e| where_(&format!("record {record}: {e}")))?;
            let (body, enqueued) = body_and_time(value);
            if let Some(body) = body {
                let position = Position::Avro { path: name.clone(), block, event: record };
                each(&body, &position, enqueued)?;
            }
        }
        if (records.position() as usize) != data.len() {
            return Err(where_(&format!(
                "{} bytes after its {count} records",
                data.len() - records.position() as usize
            )));
        }
        block += 1;
    }
    Ok(stats)
}

/// Whether [`skip`] knows every type of `schema` (Capture's does; another
/// writer's may use logical types, then checked by decoding).
fn skippable(schema: &Schema) -> bool {
    match schema {
        Schema::Null
        | Schema::Boolean
        | Schema::Int
        | Schema::Long
        | Schema::Enum(_)
        | Schema::Float
        | Schema::Double
        | Schema::Bytes
        | Schema::String
        | Schema::Fixed(_) => true,
        Schema::Array(a) => skippable(&a.items),
        Schema::Map(m) => skippable(&m.types),
        Schema::Union(u) => u.variants().iter().all(skippable),
        Schema::Record(r) => r.fields.iter().all(|f| skippable(&f.schema)),
        _ => false,
    }
}

/// Reads one item of an Avro array or map from a block.
type Item<'a> = dyn FnMut(&mut Cursor<&[u8]>) -> Result<(), String> + 'a;

/// Skips one datum of `schema`, checking that it is there whole.
fn skip(schema: &Schema, c: &mut Cursor<&[u8]>) -> Result<(), String> {
    let total = c.get_ref().len();
    let bytes = |c: &mut Cursor<&[u8]>| -> Result<(), String> {
        let n = length(c, total).map_err(|e| e.to_string())?;
        c.set_position(c.position() + n as u64);
        Ok(())
    };
    let fixed = |c: &mut Cursor<&[u8]>, n: usize| -> Result<(), String> {
        if total - (c.position() as usize) < n {
            return Err("a value runs past the end of its block".into());
        }
        c.set_position(c.position() + n as u64);
        Ok(())
    };
    // Arrays and maps come in blocks of items, each block's count first.
    let blocks = |c: &mut Cursor<&[u8]>, item: &mut Item| {
        loop {
            let mut n = long(c).map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(());
            }
            if n < 0 {
                long(c).map_err(|e| e.to_string())?; // the block's size in bytes
                n = -n;
            }
            for _ in 0..n {
                item(c)?;
            }
        }
    };
    match schema {
        Schema::Null => Ok(()),
        Schema::Boolean => fixed(c, 1),
        Schema::Int | Schema::Long | Schema::Enum(_) => long(c).map(drop).map_err(|e| e.to_string()),
        Schema::Float => fixed(c, 4),
        Schema::Double => fixed(c, 8),
        Schema::Bytes | Schema::String => bytes(c),
        Schema::Fixed(f) => fixed(c, f.size),
        Schema::Array(a) => blocks(c, &mut |c| skip(&a.items, c)),
        Schema::Map(m) => blocks(c, &mut |c| {
            bytes(c)?;
            skip(&m.types, c)
        }),
        Schema::Union(u) => {
            let i = long(c).map_err(|e| e.to_string())?;
            let branch = usize::try_from(i).ok().and_then(|i| u.variants().get(i));
            skip(branch.ok_or_else(|| format!("union branch {i} does not exist"))?, c)
        }
        Schema::Record(r) => r.fields.iter().try_for_each(|f| skip(&f.schema, c)),
        other => Err(format!("a schema type mfawatch does not read: {other:?}")),
    }
}

/// A Capture record's `Body` and `EnqueuedTimeUtc` ("6/12/2020 6:32:34 PM", UTC).
fn body_and_time(value: Value) -> (Option<Vec<u8>>, Option<DateTime<Utc>>) {
    let Value::Record(fields) = value else { return (None, None) };
    let mut body = None;
    let mut enqueued = None;
    for (name, value) in fields {
        let value = match value {
            Value::Union(_, inner) => *inner,
            other => other,
        };
        match (name.as_str(), value) {
            ("Body", Value::Bytes(bytes)) => body = Some(bytes),
            ("Body", Value::String(text)) => body = Some(text.into_bytes()),
            ("EnqueuedTimeUtc", Value::String(text)) => enqueued = crate::decode::time::parse_event_time(&text),
            _ => {}
        }
    }
    (body, enqueued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Record;

    pub const SCHEMA: &str = r#"{"type":"record","name":"EventData","namespace":"Microsoft.ServiceBus.Messaging","fields":[{"name":"SequenceNumber","type":"long"},{"name":"Offset","type":"string"},{"name":"EnqueuedTimeUtc","type":"string"},{"name":"SystemProperties","type":{"type":"map","values":["long","double","string","bytes"]}},{"name":"Properties","type":{"type":"map","values":["long","double","string","bytes","null"]}},{"name":"Body","type":["null","bytes"]}]}"#;

    fn capture(codec: Codec, bodies: &[&[u8]], per_block: usize) -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let mut w = apache_avro::Writer::with_codec(&schema, Vec::new(), codec).unwrap();
        for (i, body) in bodies.iter().enumerate() {
            let mut r = Record::new(w.schema()).unwrap();
            r.put("SequenceNumber", i as i64);
            r.put("Offset", (i * 1024).to_string());
            r.put("EnqueuedTimeUtc", "6/12/2020 6:32:34 PM");
            r.put("SystemProperties", Value::Map(Default::default()));
            r.put("Properties", Value::Map(Default::default()));
            r.put("Body", Value::Union(1, Box::new(Value::Bytes(body.to_vec()))));
            w.append_value(r).unwrap();
            if (i + 1) % per_block == 0 {
                w.flush().unwrap();
            }
        }
        w.into_inner().unwrap()
    }

    fn read(bytes: &[u8]) -> io::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        read_messages("t.avro", bytes, |body, pos, time| {
            out.push((pos.to_string(), format!("{} {}", String::from_utf8_lossy(body), time.unwrap())));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn every_body_is_read_with_its_block_record_and_enqueued_time_whatever_the_codec() {
        for codec in [Codec::Null, Codec::Deflate(Default::default()), Codec::Snappy] {
            let file = capture(codec, &[b"{\"a\":1}", b"{\"b\":2}", b"{\"c\":3}"], 2);
            let got = read(&file).unwrap();
            assert_eq!(got.len(), 3, "{codec:?}");
            assert_eq!(got[2].0, "t.avro block 1 event 0");
            assert_eq!(got[0].1, "{\"a\":1} 2020-06-12 18:32:34 UTC");
        }
    }

    #[test]
    fn an_empty_block_is_skipped_not_taken_for_the_end() {
        let file = capture(Codec::Null, &[b"{\"a\":1}"], 1);
        // Capture writes blocks of zero records: splice one in before the data block.
        let header_end = find_first_block(&file);
        let sync = file[header_end - 16..header_end].to_vec();
        let mut spliced = file[..header_end].to_vec();
        spliced.extend_from_slice(&[0, 0]);
        spliced.extend_from_slice(&sync);
        spliced.extend_from_slice(&file[header_end..]);
        assert_eq!(read(&spliced).unwrap().len(), 1);
    }

    fn find_first_block(file: &[u8]) -> usize {
        // The header ends with the sync marker, which also ends the first block.
        let tail = &file[file.len() - 16..];
        (16..file.len()).find(|&i| &file[i - 16..i] == tail).unwrap()
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it_and_the_block() {
        let file = capture(Codec::Null, &[b"{\"a\":1}", b"{\"b\":2}"], 1);
        let err = read(&file[..file.len() - 5]).unwrap_err().to_string();
        assert!(err.contains("t.avro") && err.contains("block 1"), "{err}");
        assert!(read(b"{\"not\":\"avro\"}").unwrap_err().to_string().contains("magic"));
        assert!(read(b"").unwrap().is_empty(), "an empty blob holds nothing yet");
    }
}
