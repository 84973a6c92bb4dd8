//! The `efs2atlas` binary: parse flags, run, map errors to exit codes.

use std::io::IsTerminal;

use efs2atlas::error::exit;

fn main() {
    efs2atlas::mongo::raw::tune_allocator();
    let cli = efs2atlas::cli::parse();
    let color = efs2atlas::cli::style::init(&cli.global.color);
    let level = if cli.global.quiet {
        "error"
    } else {
        match cli.global.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EFS2ATLAS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("efs2atlas={level},warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color && std::io::stderr().is_terminal())
        .with_target(false)
        .init();

    let json = std::env::args().any(|a| a == "--json");
    last_resort(json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::FAILED);
        }
    };
    let code = match runtime.block_on(efs2atlas::cli::run::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": {"message": e.to_string(), "exit_code": e.exit_code()}})
                );
            }
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// After a forced stop (see `efs2atlas::cancel`) the run drops what it waits on, unlocks and
/// journals; should even that not end the process in time (a runtime worker stuck in a call
/// that never returns), this thread ends it, saying what to run next. A plain thread, so it
/// runs whatever the async runtime is doing.
fn last_resort(json: bool) {
    std::thread::spawn(move || {
        while !efs2atlas::cancel::forced() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::thread::sleep(efs2atlas::cancel::LAST_RESORT);
        let words = efs2atlas::cancel::last_words()
            .unwrap_or_else(|| "interrupted; the command could not stop cleanly".into());
        if json {
            println!(
                "{}",
                serde_json::json!({"error": {"message": words, "exit_code": exit::INTERRUPTED}})
            );
        }
        eprintln!("error: {words}");
        std::process::exit(exit::INTERRUPTED);
    });
}
