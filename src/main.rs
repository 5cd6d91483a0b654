//! The `meridian` binary: parses the command line, runs the command, and turns its error
//! into an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use meridian::cli::{self, Cli, Command};
use meridian::text::escape_all_but_newlines;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match args.config() {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            // Colour codes only for a terminal (NO_COLOR, https://no-color.org, turns them off
            // there too); a file or a journal gets plain text.
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            cli::init_logs(config.log_format, colour);
            let env_token = std::env::var("MERIDIAN_ADMIN_TOKEN").ok();
            match cli::serve(config, env_token) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "meridian stopped");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => match cli::check(&args) {
            Ok(summary) => {
                print!("{}", escape_all_but_newlines(&summary));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Generate(args) => match cli::generate(&args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Dnssec(command) => match cli::dnssec(&command) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Route(args) => match cli::route(&args) {
            Ok(out) => {
                print!("{}", escape_all_but_newlines(&out));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

/// Prints `e` for the operator: it may quote a file name or a value from a file, whose control
/// characters must not reach the terminal.
fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{}", escape_all_but_newlines(&e.to_string()));
    ExitCode::FAILURE
}
