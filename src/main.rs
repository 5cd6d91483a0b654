use std::process::ExitCode;

use clap::Parser;
use meridian::cli::{self, Cli, Command};
use meridian::config::LogFormat;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match args.config() {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            init_logs(config.log_format);
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
                print!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Route(args) => match cli::route(&args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::FAILURE
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
