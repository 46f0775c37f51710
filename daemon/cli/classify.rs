//! `mfawatch classify [FILE...|-]`: label exported sign-ins without a server.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::classify::{Labels, Rules, VerdictLine, classify};
use crate::deadletter::{DeadLetterFile, DeadLetters};
use crate::decode::{Item, decode_message};
use crate::source::{RecordAt, files};

#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// Files to read (NDJSON, Event Hubs envelopes, Graph pages, Log Analytics
    /// exports; gzip is fine). `-` or nothing reads stdin.
    pub inputs: Vec<String>,
    /// Print only a JSON summary: records, sign-ins, labels, skipped, malformed.
    #[arg(long)]
    pub summary: bool,
    /// Append each malformed record (raw bytes, position, reason) to FILE.
    #[arg(long, value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,
    /// Take the legacy client list, risk threshold and `privacy.pseudonymise`
    /// (then no output names anyone) from this config file.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Add each record's source position (`file:line record N`) to its line.
    #[arg(long)]
    pub with_source: bool,
}

/// The `--summary` answer.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub inputs: Vec<String>,
    pub messages: u64,
    pub bytes: u64,
    /// Records read, whatever became of them (as `mfawatch_records_total`):
    /// `sign_ins` + `directory.total` + `skipped.total` + `malformed.total`.
    pub records: u64,
    /// Sign-ins classified.
    pub sign_ins: u64,
    pub labels: BTreeMap<&'static str, u64>,
    pub subjects: BTreeMap<&'static str, u64>,
    pub categories: BTreeMap<&'static str, u64>,
    pub mfa_failures: BTreeMap<&'static str, u64>,
    pub legacy_clients: BTreeMap<String, u64>,
    /// Directory records (audit, Identity Protection, seeds), by category and family.
    pub directory: Counted<String>,
    pub skipped: Counted<String>,
    pub malformed: Counted<&'static str>,
    /// Inputs that could not be read (the others were).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// A total and its breakdown.
#[derive(Debug, Serialize)]
pub struct Counted<K: Ord> {
    pub total: u64,
    pub by: BTreeMap<K, u64>,
}

impl<K: Ord> Default for Counted<K> {
    fn default() -> Self {
        Counted { total: 0, by: BTreeMap::new() }
    }
}

impl<K: Ord> Counted<K> {
    fn add(&mut self, key: K) {
        self.total += 1;
        *self.by.entry(key).or_default() += 1;
    }
}

/// Malformed records are reported on stderr up to this many; the rest are counted.
const WARN_LIMIT: u64 = 20;

pub fn run(args: ClassifyArgs) -> anyhow::Result<()> {
    let config = args.config.as_deref().map(crate::config::Config::load).transpose()?;
    let rules = config.as_ref().map_or_else(Rules::default, |c| c.rules());
    // privacy.pseudonymise holds here too: verdicts and dead letters name no one.
    let pseudonyms = match &config {
        Some(c) => crate::privacy::Pseudonyms::from_config(&c.privacy)?,
        None => None,
    };
    let inputs = if args.inputs.is_empty() { vec!["-".to_string()] } else { args.inputs.clone() };
    let mut dead_letters = DeadLetters { pseudonyms: pseudonyms.clone(), ..DeadLetters::default() };
    if let Some(path) = &args.dead_letter {
        dead_letters.file = Some(
            DeadLetterFile::open(path).with_context(|| format!("cannot open dead-letter file {}", path.display()))?,
        );
    }
    let mut summary = Summary { inputs: inputs.clone(), ..Summary::default() };
    for (_, name) in Labels::ALL {
        summary.labels.insert(name, 0);
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());

    for input in &inputs {
        // A failure to write (stdout, the dead-letter file) stops everything;
        // only a failure to read an input lets the others be read.
        let mut write_failure: Option<io::Error> = None;
        let result = files::read_messages(input, |bytes, position, _| {
            let mut stop = |e: io::Error| {
                let kind = e.kind();
                write_failure = Some(e);
                io::Error::new(kind, "output failed")
            };
            summary.messages += 1;
            summary.bytes += bytes.len() as u64;
            for (index, item) in decode_message(bytes).into_iter().enumerate() {
                match item {
                    Item::SignIn(mut record) => {
                        if let Some(p) = &pseudonyms {
                            p.apply(&mut record.fields);
                        }
                        let verdict = classify(&record, &rules);
                        tally(&mut summary, &rules, &record.category, &verdict);
                        if !args.summary {
                            let mut line = VerdictLine::new(&record, &verdict);
                            if args.with_source {
                                line.source = Some(RecordAt { position, index: Some(index) }.to_string());
                            }
                            serde_json::to_writer(&mut out, &line).map_err(|e| stop(e.into()))?;
                            out.write_all(b"\n").map_err(&mut stop)?;
                        }
                    }
                    Item::Directory(mut record) => {
                        if let Some(p) = &pseudonyms {
                            p.apply_directory(&mut record);
                        }
                        summary.directory.add(format!("{}/{}", record.category.as_str(), record.family().as_str()));
                        if !args.summary {
                            let mut line =
                                serde_json::json!({ "directory": record, "identity": record.identity().hex() });
                            if args.with_source {
                                line["source"] = RecordAt { position, index: Some(index) }.to_string().into();
                            }
                            serde_json::to_writer(&mut out, &line).map_err(|e| stop(e.into()))?;
                            out.write_all(b"\n").map_err(&mut stop)?;
                        }
                    }
                    Item::Skipped { category } => summary.skipped.add(category.into_owned()),
                    Item::Malformed(malformed) => {
                        summary.malformed.add(malformed.error.reason());
                        let index = malformed.record_index(index);
                        if summary.malformed.total <= WARN_LIMIT {
                            eprintln!("warning: {}: {}", RecordAt { position, index }, malformed.error);
                        }
                        dead_letters.write(position, index, &malformed).map_err(&mut stop)?;
                    }
                }
            }
            Ok(())
        });
        match write_failure {
            Some(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Some(e) => return Err(anyhow::Error::new(e).context("cannot write the output")),
            None => {}
        }
        match result {
            Ok(_) => {}
            // The other inputs are still read; the exit status says one was not.
            Err(e) => {
                eprintln!("error: cannot read {input}: {e}");
                summary.unreadable.push(input.clone());
            }
        }
    }
    if summary.malformed.total > WARN_LIMIT {
        eprintln!("warning: {} malformed records in all ({} shown)", summary.malformed.total, WARN_LIMIT);
    }
    if let Some(path) = &args.dead_letter {
        dead_letters.sync().with_context(|| format!("cannot write dead-letter file {}", path.display()))?;
    }
    summary.records = summary.sign_ins + summary.directory.total + summary.skipped.total + summary.malformed.total;
    if args.summary {
        serde_json::to_writer_pretty(&mut out, &summary)?;
        out.write_all(b"\n")?;
    }
    match out.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        other => other.context("cannot write the output")?,
    }
    match summary.unreadable.len() {
        0 => Ok(()),
        n => anyhow::bail!("{n} of {} inputs could not be read: {}", inputs.len(), summary.unreadable.join(", ")),
    }
}

fn tally(
    summary: &mut Summary,
    rules: &Rules,
    category: &crate::decode::Category,
    verdict: &crate::classify::Verdict<'_>,
) {
    summary.sign_ins += 1;
    for name in verdict.labels.names() {
        *summary.labels.entry(name).or_default() += 1;
    }
    *summary.subjects.entry(verdict.subject.as_str()).or_default() += 1;
    *summary.categories.entry(category.as_str()).or_default() += 1;
    if let Some(f) = verdict.mfa_failure {
        *summary.mfa_failures.entry(f.as_str()).or_default() += 1;
    }
    if let Some(i) = verdict.legacy_client {
        *summary.legacy_clients.entry(rules.legacy_clients[i].clone()).or_default() += 1;
    }
}
