use clap::Parser;

/// mimalloc keeps the RSS low after bursts (see kube-apiserver's main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A node agent should hold little memory: mimalloc is told to commit arena
/// memory as it is used and to give freed pages back at once. With its
/// defaults (eager arena commit, delayed purge) the kubelet's heap RSS with
/// 100 pods was 26 MiB; with these it is about 11 MiB, at no measurable CPU
/// cost (scripts/bench-kubelet.sh). mimalloc reads its options when the
/// process loads, before `main`, and its first arena is already set up by
/// then (setting them through `mi_option_set` here changed nothing), so the
/// kubelet re-executes itself once with them in its environment. An operator's
/// own `MIMALLOC_*` settings win.
fn lean_allocator() {
    const OPTIONS: [(&str, &str); 2] = [("MIMALLOC_ARENA_EAGER_COMMIT", "0"), ("MIMALLOC_PURGE_DELAY", "0")];
    const MARK: &str = "RUSTKUBE_KUBELET_ALLOCATOR";
    if std::env::var_os(MARK).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).env(MARK, "1");
    for (k, v) in OPTIONS {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    use std::os::unix::process::CommandExt;
    // `exec` only returns on failure: then run as we are.
    let e = cmd.exec();
    eprintln!("kubelet: re-executing with lean allocator settings: {e}; going on without them");
}

fn main() -> std::process::ExitCode {
    lean_allocator();
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
