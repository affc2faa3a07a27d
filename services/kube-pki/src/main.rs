use clap::Parser;

fn main() -> std::process::ExitCode {
    match kube_pki::cli::run(kube_pki::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-pki: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
