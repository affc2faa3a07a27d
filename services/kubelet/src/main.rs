use clap::Parser;

/// mimalloc keeps the RSS low after bursts (see kube-apiserver's main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Node memory is for the pods: commit lazily and give freed pages back at once.
    allocator::reexec_with(allocator::Footprint::Minimal);
    let options = kubelet::options::Options::parse();
    component_base::init_logging(options.verbosity);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubelet: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kubelet::run(options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("kubelet: {e:#}");
            eprintln!("kubelet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
