//! `livesettings`: a thin command-line front end over the library.

mod args;
mod commands;
mod diff_output;
mod failure;
mod formats;
mod output;
mod serve;
mod stats;
mod status;
#[cfg(feature = "nats")]
mod sync;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = args::Cli::parse();
    init_logging(args.verbose);
    commands::run(args).unwrap_or_else(failure::Failure::report)
}

/// `-v` raises the level one step from warnings; `RUST_LOG` (error, warn,
/// info, debug, trace) sets it directly.
fn init_logging(verbose: u8) {
    use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|level| level.parse::<LevelFilter>().ok());
    let level = from_env.unwrap_or(match verbose {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    });
    let config = ConfigBuilder::new()
        .set_time_level(LevelFilter::Off)
        .build();
    // Logging to stderr keeps stdout for data (`get`, `export`, `watch --json`).
    let _ = TermLogger::init(level, config, TerminalMode::Stderr, ColorChoice::Never);
}
