use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    allocator::reexec_with(allocator::Footprint::Lazy);
    let options = kube_controller_manager::options::Options::parse();
    // To stderr, as upstream's components log.
    component_base::init_logging(options.v);
    match kube_controller_manager::run(options).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
