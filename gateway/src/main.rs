//! `gateway`: parse, load, run. See `gateway --help`.

use std::process::ExitCode;

use clap::Parser;
use gateway::cli::{Cli, Command};
use gateway::{Config, Gateway};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Keygen { file }) = &cli.command {
        return match gw_core::generate_key_file(file) {
            Ok(id) => {
                println!("wrote encryption key {id} to {}", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gateway keygen: {}: {e}", file.display());
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    gateway::logging::init(config.log_format);
    // Before the runtime and the store take descriptors of their own; the
    // doors derive their caps from the limit in force (doors.rs).
    match gateway::fd_limit::raise() {
        Some(l) if l.soft > l.before => tracing::info!(
            from = l.before,
            to = l.soft,
            "file descriptor limit raised from {} to {} (the hard limit)",
            l.before,
            l.soft
        ),
        Some(l) => tracing::info!(
            limit = l.soft,
            hard = l.hard,
            "file descriptor limit {} (hard limit {})",
            l.soft,
            l.hard
        ),
        None => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let grace = config.shutdown_grace;
        let mut signals = gateway::shutdown::Signals::install();
        let gw = match Gateway::start(config).await {
            Ok(gw) => gw,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let sig = signals.next().await;
        tracing::info!("{sig}: shutting down, letting connections finish for up to {}s (signal again to exit now)", grace.as_secs());
        tokio::spawn(async move {
            let again = signals.next().await;
            tracing::warn!("{again} again: exiting at once");
            std::process::exit(again.exit_status());
        });
        if gw.stop(grace).await {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        } else {
            tracing::error!("stopped, but the store did not close cleanly");
            ExitCode::FAILURE
        }
    })
}
