//! The pause program: PID 1 of every pod sandbox. It holds the pod's
//! namespaces open, reaps the zombies that end up re-parented to it, and
//! exits cleanly on SIGINT or SIGTERM.
//!
//! All signals it cares about are blocked and taken synchronously with
//! `sigwaitinfo`, so there are no asynchronous handlers at all. (A blocked
//! signal is queued even for a namespace's init, which drops unhandled ones.)
//! Built static, it is the only file in the sandbox image.

use std::io::Write;

fn main() {
    if let Some(arg) = std::env::args().nth(1) {
        if arg == "-v" || arg == "--version" {
            println!("pause.rustkube-{}", env!("CARGO_PKG_VERSION"));
            return;
        }
    }
    if std::process::id() != 1 {
        let _ = writeln!(std::io::stderr(), "pause: warning: not running as PID 1");
    }
    match wait_for_signals() {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "pause: {err}");
            std::process::exit(1);
        }
    }
}

/// Blocks SIGINT, SIGTERM and SIGCHLD and handles them one by one until asked to stop.
/// Returns the exit code.
fn wait_for_signals() -> std::io::Result<i32> {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; every pointer
    // handed to libc points at a live local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let sig = libc::sigwaitinfo(&set, std::ptr::null_mut());
            if sig < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            match sig {
                libc::SIGCHLD => reap_zombies(),
                libc::SIGINT | libc::SIGTERM => {
                    let _ = writeln!(std::io::stderr(), "pause: shutting down, got signal {sig}");
                    return Ok(0);
                }
                _ => {}
            }
        }
    }
}

/// Collects every exited child; several exits can be folded into one SIGCHLD.
fn reap_zombies() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG only writes the status into our local.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}
