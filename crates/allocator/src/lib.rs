//! Allocator settings for the components, which all use mimalloc.
//!
//! mimalloc's defaults favour throughput over footprint: it commits whole
//! arenas eagerly and gives freed pages back only after a delay. For a
//! control plane that mostly idles, and a node agent that should take little
//! from the node, committing arena memory as it is used is the better trade
//! (the apiserver idled at 41 MiB with the defaults and at 25 MiB without eager
//! arena commit; the kubelet's heap with 100 pods went from 26 to 10 MiB with
//! immediate purging as well, see scripts/bench-*.sh).
//!
//! mimalloc reads its options while the process loads, before `main`, and its
//! first arena exists by then: `mi_option_set` in `main` comes too late. So a
//! component re-executes itself once with the options in its environment,
//! before it starts any thread. An operator's own `MIMALLOC_*` settings win,
//! and a failed re-exec only means running with mimalloc's defaults.

use std::os::unix::process::CommandExt;

/// Marks the re-executed process, so it happens once.
const MARK: &str = "RUSTKUBE_LEAN_ALLOCATOR";

/// How much footprint to trade for speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Footprint {
    /// Commit arena memory lazily (long-running control plane components).
    Lazy,
    /// Also give freed pages back at once (the kubelet: node memory is the pods').
    Minimal,
}

/// The `MIMALLOC_*` variables for a footprint.
pub fn options(footprint: Footprint) -> &'static [(&'static str, &'static str)] {
    match footprint {
        Footprint::Lazy => &[("MIMALLOC_ARENA_EAGER_COMMIT", "0")],
        Footprint::Minimal => &[("MIMALLOC_ARENA_EAGER_COMMIT", "0"), ("MIMALLOC_PURGE_DELAY", "0")],
    }
}

/// Re-executes the running binary with the allocator options of `footprint`
/// unless that already happened; returns only if it did or cannot happen.
/// Call it first thing in `main`.
pub fn reexec_with(footprint: Footprint) {
    if std::env::var_os(MARK).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1)).env(MARK, "1");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    for (k, v) in options(footprint) {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    // `exec` returns only on failure: then run as we are.
    let e = cmd.exec();
    eprintln!("{}: re-executing with allocator settings: {e}; going on without them", exe.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_footprint_adds_immediate_purging_to_lazy_commit() {
        assert!(options(Footprint::Lazy).iter().all(|o| options(Footprint::Minimal).contains(o)));
        assert!(options(Footprint::Minimal).contains(&("MIMALLOC_PURGE_DELAY", "0")));
    }
}
