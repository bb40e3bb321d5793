//! `lodcache`: serve, export, warm, inspect and clean level-of-detail pyramids of CT stacks.
//!
//! Exit status: 0 on success (and `--help`), 1 for a runtime error (the message on stderr,
//! names quoted), 2 for a usage error (with the usage), 130 after Ctrl-C and 143 after SIGTERM
//! (each a clean stop).

mod bench;
mod clean;
mod export;
mod info;
mod opts;
mod phantom;
mod server;
mod term;
mod verify;
mod warm;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::term::tell;

/// Level-of-detail pyramids of CT image stacks, made on demand and cached.
///
/// SCAN is a folder of slices (TIFF, BMP, PNG or JPEG). Sizes take units (512M, 2G),
/// durations too (90s, 10m).
#[derive(Debug, Parser)]
#[command(name = "lodcache", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves a scan to a web page and an HTTP API (the built-in sample when no SCAN)
    Serve(server::ServeArgs),
    /// Writes a scan's pyramid in CTHarvester's layout, OUT/LEVEL/NNNNNN.tif
    Export(export::ExportArgs),
    /// Builds a scan's cache folder ahead of use, most requested levels first
    Warm(warm::WarmArgs),
    /// Describes a scan, its levels and its cache folder
    Info(info::InfoArgs),
    /// Removes a scan's cache folder (only one that lodcache made)
    Clean(clean::CleanArgs),
    /// Checks a scan's sources by their content and drops cached slices made from changed ones
    Verify(verify::VerifyArgs),
    /// Writes a synthetic CT-like scan (16-bit TIFF slices) to try lodcache on
    Phantom(phantom::PhantomArgs),
    /// Benchmarks: lazy against eager (table) or the HTTP server under load (load)
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// How a subcommand ended, when it did not succeed plainly.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A runtime error: the message (names already quoted) for `error: ...`.
    Error(String),
    /// Stopped by Ctrl-C after a clean stop (status 130).
    Interrupted,
    /// Stopped by SIGTERM after a clean stop (status 143).
    Terminated,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Error(message)
    }
}

/// What a subcommand returns.
pub(crate) type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(&e),
    };
    let result = match cli.command {
        Command::Serve(args) => server::run(args),
        Command::Export(args) => export::run(args),
        Command::Warm(args) => warm::run(args),
        Command::Info(args) => info::run(args),
        Command::Clean(args) => clean::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Phantom(args) => phantom::run(args),
        Command::Bench(command) => bench::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Interrupted) => {
            tell!("interrupted");
            ExitCode::from(130)
        }
        Err(Failure::Terminated) => ExitCode::from(143),
        Err(Failure::Error(message)) => {
            tell!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Ends the program for a parse error: `--help` and `--version` print to stdout and exit 0;
/// usage errors print the error and the usage (of the subcommand given, if any) to stderr and
/// exit 2.
fn usage_error(e: &clap::Error) -> ! {
    use clap::CommandFactory;
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        std::process::exit(0);
    }
    let mut text = e.render().to_string();
    if !text.contains("Usage:") {
        let mut command = Cli::command();
        // Built, subcommands know their full names ("lodcache serve").
        command.build();
        // The deepest subcommand named on the command line.
        let mut usage = command.render_usage().to_string();
        let mut current = &mut command;
        for word in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
            match current.find_subcommand_mut(&word) {
                Some(sub) => {
                    usage = sub.render_usage().to_string();
                    current = sub;
                }
                None => break,
            }
        }
        text = format!("{}\n\n{}\n", text.trim_end(), usage.trim_end());
    }
    let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
    std::process::exit(2)
}

/// The scan to use: the one given, else the built-in sample (written once under the temp
/// folder).
pub(crate) fn scan_or_sample(scan: Option<PathBuf>) -> Result<PathBuf, String> {
    match scan {
        Some(s) => Ok(s),
        None => lodcache::sample_stack().map_err(|e| {
            format!(
                "writing the built-in sample: {}",
                term::clean(&e.to_string())
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
