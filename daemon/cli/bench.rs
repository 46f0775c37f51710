//! `mfawatch bench`: throughput and memory benchmarks that print figures.
//!
//! Each benchmark measures a baseline over the same bytes in the same run, so
//! the ratio holds across machines. Run them from a release build.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;

use crate::classify::{Rules, classify};
use crate::decode::{Item, decode_message};
use crate::generate::{Format, Generator, TenantSpec};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: Bench,
}

#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// decode + classify on one thread, beside serde_json's parse-only (IgnoredAny) over the same bytes.
    Decode {
        /// Records to generate (realistic sizes, Event Hubs envelopes of 40).
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        #[arg(long, default_value_t = 5_000)]
        users: u32,
        /// Passes over the data; the best pass counts.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        Bench::Decode { records, users, rounds } => decode(records, users, rounds),
    }
}

/// Generates `records` records of a tenant in envelope messages, kept in memory.
pub fn generated_messages(records: u64, users: u32) -> Vec<Vec<u8>> {
    let spec = TenantSpec { users, records, format: Format::Envelope, ..TenantSpec::default() };
    Generator::new(spec).collect()
}

/// A named measurement: runs once per round and returns a count.
pub type Pass<'a> = (&'static str, Box<dyn FnMut() -> u64 + 'a>);

/// Runs every pass once per round, interleaved so that a slow moment of the
/// machine hits all of them alike, and keeps each pass's fastest round.
pub fn best_of_interleaved(rounds: u32, passes: &mut [Pass<'_>]) -> Vec<(Duration, u64)> {
    let mut best = vec![(Duration::MAX, 0); passes.len()];
    for _ in 0..rounds.max(1) {
        for (slot, (_, pass)) in best.iter_mut().zip(passes.iter_mut()) {
            let start = Instant::now();
            let n = black_box(pass());
            let elapsed = start.elapsed();
            if elapsed < slot.0 {
                *slot = (elapsed, n);
            }
        }
    }
    best
}

pub struct Figure {
    pub name: &'static str,
    pub elapsed: Duration,
    pub records: u64,
    pub bytes: u64,
}

impl Figure {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

pub fn print_table(title: &str, figures: &[Figure]) {
    let baseline = figures[0].mb_per_s();
    println!("{title}");
    println!("{:<44} {:>10} {:>12} {:>14} {:>8}", "", "seconds", "MB/s", "records/s", "ratio");
    for f in figures {
        println!(
            "{:<44} {:>10.3} {:>12.1} {:>14.0} {:>7.0}%",
            f.name,
            f.elapsed.as_secs_f64(),
            f.mb_per_s(),
            f.records_per_s(),
            100.0 * f.mb_per_s() / baseline
        );
    }
}

fn decode(records: u64, users: u32, rounds: u32) -> anyhow::Result<()> {
    eprintln!("generating {records} records for {users} users...");
    let messages = generated_messages(records, users);
    let bytes: u64 = messages.iter().map(|m| m.len() as u64).sum();
    let rules = Rules::default();
    println!(
        "input: {} messages, {} records, {:.1} MB, {:.0} bytes/record on average, {} pass(es), best counts",
        messages.len(),
        records,
        bytes as f64 / 1e6,
        bytes as f64 / records as f64,
        rounds
    );

    let mut passes: Vec<Pass> = vec![
        (
            "serde_json::from_slice::<IgnoredAny> (baseline)",
            Box::new(|| messages.iter().map(|m| serde_json::from_slice::<IgnoredAny>(m).map_or(0, |_| 1u64)).sum()),
        ),
        ("decode", Box::new(|| messages.iter().map(|m| decode_message(m).len() as u64).sum())),
        (
            "decode + classify",
            Box::new(|| {
                let mut n = 0u64;
                for m in &messages {
                    for item in decode_message(m) {
                        if let Item::SignIn(record) = item {
                            black_box(classify(&record, &rules));
                        }
                        n += 1;
                    }
                }
                n
            }),
        ),
    ];
    let best = best_of_interleaved(rounds, &mut passes);
    let (decoded, classified) = (best[1].1, best[2].1);
    anyhow::ensure!(
        decoded == records && classified == records,
        "decoded {decoded}, classified {classified} of {records}"
    );
    let names: Vec<&'static str> = passes.iter().map(|(name, _)| *name).collect();
    let figures: Vec<Figure> = names
        .iter()
        .zip(&best)
        .map(|(name, (elapsed, _))| Figure { name, elapsed: *elapsed, records, bytes })
        .collect();
    print_table("decode + classify, one thread", &figures);
    Ok(())
}
