use clap::Parser;

/// mimalloc keeps the RSS low after bursts (see kube-apiserver's main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    allocator::reexec_with(allocator::Footprint::Lazy);
    let options = kube_proxy::options::Options::parse();
    component_base::init_logging(options.verbosity);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kube-proxy: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kube_proxy::proxy::run(options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("kube-proxy: {e:#}");
            eprintln!("kube-proxy: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
