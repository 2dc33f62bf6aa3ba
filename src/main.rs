use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = rudder::cli::Cli::parse();
    match rudder::app::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
