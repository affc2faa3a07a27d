use clap::Parser;

/// mimalloc returns freed memory to the system, so a burst of load (watch
/// fan-out, big lists) does not leave the RSS high afterwards as glibc's
/// per-thread arenas do.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use kube_apiserver::options::Options;

fn main() -> std::process::ExitCode {
    allocator::reexec_with(allocator::Footprint::Lazy);
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(options.log_filter())),
        )
        // Logs go to stderr, as upstream's klog and the other components' (stdout was discarded by supervisors
        // and the test harness alike).
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kube-apiserver: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kube_apiserver::run(options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("kube-apiserver: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
