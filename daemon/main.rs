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
    /// Run a benchmark and print its figures (use a release build).
    Bench(cli::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(args) => cli::classify::run(args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Bench(args) => cli::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mfawatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}
