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
