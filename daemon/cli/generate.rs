//! `mfawatch generate`: write a synthetic tenant's sign-in stream.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::generate::{Format, Generator, PerHub, Spray, TenantSpec};

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Users in the tenant.
    #[arg(long, default_value_t = 1_000)]
    pub users: u32,
    /// Records to write.
    #[arg(long, default_value_t = 10_000)]
    pub records: u64,
    /// Days the sign-ins span, ending at --end.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Seed: the same seed and --end give the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// End of the span (RFC 3339). Default: the start of the current hour.
    #[arg(long)]
    pub end: Option<DateTime<Utc>>,
    /// `envelope`: Event Hubs messages `{"records":[...]}`, one per line; `ndjson`: one record per line.
    #[arg(long, value_enum, default_value_t = Format::Envelope)]
    pub format: Format,
    /// Records per envelope message.
    #[arg(long, default_value_t = 40)]
    pub records_per_message: u32,
    /// Malformed records per 10,000 (missing time, word outcome, wrong field type).
    #[arg(long, default_value_t = 0)]
    pub malformed_per_10k: u32,
    /// MFA fatigue sequences planted per 10,000 records (3–5 prompts denied
    /// or unanswered, then a successful sign-in).
    #[arg(long, default_value_t = 0)]
    pub fatigue_per_10k: u32,
    /// Re-deliveries per 10,000 records: a successful interactive sign-in
    /// published again later with a risk found offline (same id and time).
    #[arg(long, default_value_t = 0)]
    pub redeliveries_per_10k: u32,
    /// Instead of a tenant: a password spray of N failed sign-ins (50034)
    /// for N made-up accounts over Authenticated SMTP, in the hour before --end.
    #[arg(long, value_name = "N")]
    pub spray: Option<u64>,
    /// Also write the alerts the default rules should raise, as JSON
    /// lines {"rule":..., "user":...} (user: object id), to this file.
    #[arg(long, value_name = "FILE")]
    pub expect_alerts: Option<PathBuf>,
    /// Write here instead of stdout.
    #[arg(long, short, conflicts_with = "per_hub")]
    pub out: Option<PathBuf>,
    /// As Entra's diagnostic setting sends it: one file per hub
    /// (insights-logs-signinlogs.ndjson, ...) in this folder, each message of
    /// one category.
    #[arg(long, value_name = "DIR", conflicts_with = "spray")]
    pub per_hub: Option<PathBuf>,
}

impl GenerateArgs {
    pub fn spec(&self) -> TenantSpec {
        TenantSpec {
            users: self.users,
            records: self.records,
            days: self.days,
            seed: self.seed,
            end: self.end.unwrap_or_else(current_hour),
            format: self.format,
            records_per_message: self.records_per_message,
            malformed_per_10k: self.malformed_per_10k,
            fatigue_per_10k: self.fatigue_per_10k,
            redeliveries_per_10k: self.redeliveries_per_10k,
        }
    }
}

pub fn current_hour() -> DateTime<Utc> {
    let now = Utc::now().timestamp();
    DateTime::from_timestamp(now - now.rem_euclid(3600), 0).unwrap_or_default()
}

/// The alerts the default rules should raise for what `generator` wrote, one JSON line each.
fn write_expected(path: &std::path::Path, generator: &Generator) -> anyhow::Result<()> {
    let mut lines = String::new();
    for (rule, user) in generator.expected_alerts() {
        lines.push_str(&serde_json::json!({"rule": rule, "user": user}).to_string());
        lines.push('\n');
    }
    std::fs::write(path, lines).with_context(|| format!("cannot write {}", path.display()))
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    args.spec().validate()?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(io::BufWriter::new(io::stdout().lock())),
    };
    let spec = args.spec();
    let mut message = Vec::new();
    let mut write = |message: &mut Vec<u8>| -> io::Result<bool> {
        message.push(b'\n');
        match out.write_all(message) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            other => other.map(|()| true),
        }
    };
    if let Some(dir) = &args.per_hub {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut files: std::collections::BTreeMap<String, io::BufWriter<std::fs::File>> = Default::default();
        let mut per_hub = PerHub::new(spec);
        while let Some((hub, mut message)) = per_hub.next_message() {
            let file = match files.entry(hub.clone()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let path = dir.join(format!("{hub}.ndjson"));
                    let file =
                        std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
                    e.insert(io::BufWriter::new(file))
                }
            };
            message.push(b'\n');
            file.write_all(&message)?;
        }
        for (_, mut file) in files {
            file.flush()?;
        }
        if let Some(path) = &args.expect_alerts {
            write_expected(path, per_hub.generator())?;
        }
        return Ok(());
    }
    if let Some(n) = args.spray {
        let mut spray = Spray::new(n, spec.end, spec.seed, spec.records_per_message);
        while spray.next_message(&mut message) {
            if !write(&mut message)? {
                return Ok(());
            }
        }
    } else {
        let mut generator = Generator::new(spec);
        while generator.next_message(&mut message) {
            if !write(&mut message)? {
                return Ok(());
            }
        }
        if let Some(path) = &args.expect_alerts {
            write_expected(path, &generator)?;
        }
    }
    match out.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
