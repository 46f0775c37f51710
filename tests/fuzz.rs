//! Property tests: no input makes decode or classify panic, every record of a
//! message is accounted for (classified, skipped or malformed), and decode's
//! two readers (the fast hand-written one and the serde one) read alike.

mod common;

use mfawatch::classify::{Rules, classify};
use mfawatch::decode::{Fields, Item, decode_message, fields, scan};
use mfawatch::generate::{Format, Generator, TenantSpec};
use proptest::prelude::*;

fn decode_and_classify(bytes: &[u8]) -> usize {
    let rules = Rules::default();
    let items = decode_message(bytes);
    for item in &items {
        if let Item::SignIn(record) = item {
            let verdict = classify(record, &rules);
            // A verdict is internally consistent whatever the input.
            assert!(
                !(verdict.labels.contains(mfawatch::classify::Labels::MFA_SATISFIED)
                    && verdict.labels.contains(mfawatch::classify::Labels::SINGLE_FACTOR))
            );
            assert_eq!(verdict.success, !verdict.labels.contains(mfawatch::classify::Labels::FAILED));
        }
    }
    items.len()
}

fn read_with<'a>(
    reader: fn(&'a [u8], mfawatch::decode::fields::EachRecord<'_, 'a>) -> Result<Option<Fields<'a>>, ()>,
    bytes: &'a [u8],
) -> Option<Vec<Fields<'a>>> {
    let mut records = Vec::new();
    let single = reader(bytes, &mut |r| records.push(r)).ok()?;
    records.extend(single);
    Some(records)
}

/// What the fast reader reads, the serde reader reads to the same fields.
/// Where the fast reader gives up, decode uses the serde reader: no check.
fn readers_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Some(fast) = read_with(|b, each| scan::parse_message(b, each).map_err(drop), bytes) {
        let serde = read_with(|b, each| fields::parse_message(b, each).map_err(drop), bytes);
        prop_assert_eq!(Some(fast), serde, "{:?}", String::from_utf8_lossy(bytes));
    }
    Ok(())
}

/// Real-looking messages to mutate: generated records, the public samples and
/// the Graph / Log Analytics fixtures.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(make_seeds)
}

fn make_seeds() -> Vec<Vec<u8>> {
    let spec = TenantSpec {
        users: 50,
        records: 60,
        format: Format::Envelope,
        records_per_message: 6,
        ..TenantSpec::default()
    };
    let mut out: Vec<Vec<u8>> = Generator::new(spec).collect();
    let root = common::root();
    let dirs = [
        "../shared/samples/public/panther",
        "../shared/samples/public/elastic",
        "tests/fixtures",
        "tests/fixtures/directory",
    ];
    for dir in dirs {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                continue;
            }
            let text = std::fs::read(&path).unwrap();
            match path.extension().and_then(|e| e.to_str()) {
                // Whole documents: pretty-printed Graph pages and Log Analytics arrays.
                Some("json") if dir.starts_with("tests/fixtures") => out.push(text),
                Some("json" | "ndjson" | "log") => {
                    out.extend(text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec))
                }
                _ => {}
            }
        }
    }
    // The public directory samples, whole files (Graph pages, Event Hubs records) and lines.
    for sample in common::directory_samples() {
        let text = std::fs::read(&sample).unwrap();
        if sample.extension().is_some_and(|e| e == "json") {
            out.push(text);
        } else {
            out.extend(text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
        }
    }
    out
}

#[test]
fn every_seed_is_read_alike() {
    for seed in seeds() {
        readers_agree(seed).unwrap();
        assert!(!decode_message(seed).is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_and_classify(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics_and_is_read_alike(text in r#"[\[\]{}":,0-9a-zA-Z .\-\\]{0,200}"#) {
        decode_and_classify(text.as_bytes());
        readers_agree(text.as_bytes())?;
    }

    #[test]
    fn mutated_real_messages_never_panic_and_are_read_alike(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..7), 1..8),
    ) {
        let seeds = seeds();
        let mut bytes = seeds[pick.index(seeds.len())].clone();
        let pick_byte = |from: &[u8], byte: u8| from[byte as usize % from.len()];
        for (at, byte, kind) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                2 => bytes.insert(i, byte),
                3 => bytes.truncate(i),
                // Edits that often keep the JSON valid: a letter's case, whitespace, JSON's own bytes.
                4 => bytes[i] ^= 0x20 * u8::from(bytes[i].is_ascii_alphabetic()),
                5 => bytes.insert(i, pick_byte(b" \n\t\r", byte)),
                _ => bytes.insert(i, pick_byte(b"0-.eE\\u\"{}[],:n", byte)),
            }
        }
        decode_and_classify(&bytes);
        readers_agree(&bytes)?;
    }


    #[test]
    fn every_record_of_an_envelope_is_accounted_for(n in 1usize..30, bad in proptest::collection::vec(any::<bool>(), 30)) {
        // n records, some replaced by broken ones: still n items.
        let good = r#"{"time":"2025-01-15T09:30:25Z","category":"SignInLogs","resultType":0,"properties":{"userId":"u"}}"#;
        let broken = r#"{"time":7,"category":["x"],"properties":{"status":"oops"}}"#;
        let records: Vec<&str> = (0..n).map(|i| if bad[i] { broken } else { good }).collect();
        let message = format!(r#"{{"records":[{}]}}"#, records.join(","));
        let items = decode_message(message.as_bytes());
        prop_assert_eq!(items.len(), n);
        for (item, is_bad) in items.iter().zip(&bad) {
            prop_assert_eq!(matches!(item, Item::Malformed(_)), *is_bad);
        }
    }
}
