//! The `mfawatch` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mfawatch::cli;

/// Labels Microsoft Entra ID sign-ins (MFA, single-factor, legacy auth, risky)
/// and tracks per-user MFA coverage.
#[derive(Debug, Parser)]
#[command(name = "mfawatch", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Label sign-ins from files or stdin; one JSON verdict per record on stdout.
    Classify(cli::classify::ClassifyArgs),
    /// Write a deterministic synthetic tenant's sign-in stream.
    Generate(cli::generate::GenerateArgs),
    /// Run the daemon: consume Event Hubs / Kafka, keep coverage, serve metrics and the API.
    Run(cli::run::RunArgs),
    /// Run the same pipeline over files (backfill), then save the state.
    Replay(cli::run::ReplayArgs),
    /// The weekly MFA-coverage report (HTML, Markdown, JSON, CSV) from the history.
    Report(cli::report::ReportArgs),
    /// Validate a configuration file and print the effective configuration.
    CheckConfig(cli::run::CheckConfigArgs),
    /// What the daemon calls a user when privacy.pseudonymise is on (its key, its pseudonym).
    Pseudonym(cli::run::PseudonymArgs),
    /// The real pipeline on a synthetic tenant through an in-process Kafka cluster.
    Demo(cli::demo::DemoArgs),
    /// Run a benchmark and print its figures (use a release build).
    Bench(cli::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    mfawatch::secrets::no_core_dumps();
    // What mfawatch writes holds user names and IPs: its own files 0600 and
    // folders 0700 whatever umask it was started with; a report's 0640/0750,
    // for the group that reads reports.
    let umask = if matches!(cli.command, Command::Report(_)) { 0o027 } else { 0o077 };
    // SAFETY: umask(2) only sets this process's file creation mask.
    unsafe { libc::umask(umask) };
    let result = match cli.command {
        Command::Classify(args) => cli::classify::run(args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Replay(args) => cli::run::replay(args),
        Command::Report(args) => cli::report::run(args),
        Command::CheckConfig(args) => cli::run::check_config(args),
        Command::Pseudonym(args) => cli::run::pseudonym(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Bench(args) => cli::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mfawatch: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once (a message that already quotes
/// its cause, as "cannot read FILE: No such file" does, is not followed by it).
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1).map(ToString::to_string) {
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}
