//! Property tests: no input makes decode or classify panic, and every record
//! of a message is accounted for (classified, skipped or malformed).

use mfawatch::classify::{Rules, classify};
use mfawatch::decode::{Item, decode_message};
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

/// Real-looking messages to mutate: generated records plus the public samples.
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
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples/public/panther");
    for entry in std::fs::read_dir(samples).unwrap() {
        let text = std::fs::read(entry.unwrap().path()).unwrap();
        out.extend(text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_and_classify(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(text in r#"[\[\]{}":,0-9a-zA-Z .\-\\]{0,200}"#) {
        decode_and_classify(text.as_bytes());
    }

    #[test]
    fn mutated_real_messages_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
    ) {
        let seeds = seeds();
        let mut bytes = seeds[pick.index(seeds.len())].clone();
        for (at, byte, kind) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                2 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
        }
        decode_and_classify(&bytes);
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
