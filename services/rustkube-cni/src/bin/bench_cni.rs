//! Times a `rustkube-bridge` plugin binary: N ADDs then N DELs, sequentially and
//! P-way parallel, each into a throwaway network namespace; prints wall time per
//! operation (mean, p50, p99, max) and the CPU time the plugin processes and
//! whatever they spawned used (getrusage of the reaped children).
//!
//! Needs root. Everything it creates (netns `rkbench-<pid>-<i>`, bridge, nftables
//! table, IPAM dir) is named after its pid and removed at the end.
//!
//!     bench_cni [--plugin PATH] [--count N] [--parallel P]
//!
//! The plugin defaults to `rustkube-cni` beside this binary. One ADD and DEL run
//! before the timed ones, so the bridge and the masquerade rule exist, as on a
//! node that already runs pods.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeValLike;
use serde_json::json;

struct Setup {
    plugin: PathBuf,
    config: String,
    tag: String,
    count: usize,
    bridge: String,
    table: String,
    data_dir: PathBuf,
}

impl Setup {
    fn netns_name(&self, i: usize) -> String {
        format!("rkbench-{}-{i}", self.tag)
    }

    fn container_id(&self, i: usize) -> String {
        format!("bench-{}-{i}", self.tag)
    }

    /// Runs the plugin once; Err with its output when it fails.
    fn invoke(&self, command: &str, i: usize) -> Result<Duration, String> {
        let start = Instant::now();
        let mut child = Command::new(&self.plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", self.container_id(i))
            .env("CNI_NETNS", format!("/var/run/netns/{}", self.netns_name(i)))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.plugin.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", self.plugin.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(self.config.as_bytes()).map_err(|e| format!("writing the config: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("waiting for the plugin: {e}"))?;
        let took = start.elapsed();
        if !out.status.success() {
            return Err(format!(
                "{command} {i}: {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(took)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for i in 0..self.count {
            let _ = Command::new("ip").args(["netns", "del", &self.netns_name(i)]).status();
        }
        let _ = Command::new("ip").args(["link", "del", "dev", &self.bridge]).stderr(Stdio::null()).status();
        let _ = Command::new("nft").args(["delete", "table", "ip", &self.table]).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn children_cpu() -> Duration {
    match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let micros = u.user_time().num_microseconds() + u.system_time().num_microseconds();
            Duration::from_micros(u64::try_from(micros).unwrap_or(0))
        }
        Err(_) => Duration::ZERO,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `command` for every namespace with `parallel` workers and prints one line of figures.
fn phase(setup: &Setup, command: &str, parallel: usize) -> Result<(), String> {
    let next = AtomicUsize::new(0);
    let times = Mutex::new(Vec::with_capacity(setup.count));
    let cpu_before = children_cpu();
    let start = Instant::now();
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..parallel)
            .map(|_| {
                s.spawn(|| {
                    let mut failed = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= setup.count {
                            break;
                        }
                        match setup.invoke(command, i) {
                            Ok(took) => times.lock().unwrap_or_else(|e| e.into_inner()).push(took),
                            Err(e) => failed.push(e),
                        }
                    }
                    failed
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|_| vec!["a worker panicked".to_string()])).collect()
    });
    let wall = start.elapsed();
    let cpu = children_cpu().saturating_sub(cpu_before);
    if let Some(first) = failures.first() {
        return Err(format!("{} of {} {command}s failed; first: {first}", failures.len(), setup.count));
    }
    let mut times = times.into_inner().unwrap_or_else(|e| e.into_inner());
    times.sort();
    let n = times.len().max(1);
    let mean = times.iter().sum::<Duration>() / n as u32;
    let pct = |p: f64| times.get(((n as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default();
    println!(
        "{command:<5} x{:<3} {parallel:>2}-way  total {:>8.1} ms  per op: mean {:>6.1} ms  p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  CPU {:>6.2} ms/op ({:.0} ms total)",
        times.len(),
        ms(wall),
        ms(mean),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(times.last().copied().unwrap_or_default()),
        ms(cpu) / n as f64,
        ms(cpu),
    );
    Ok(())
}

fn run() -> Result<(), String> {
    let mut plugin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("rustkube-cni")))
        .unwrap_or_else(|| PathBuf::from("rustkube-cni"));
    let mut count = 50usize;
    let mut parallel = 10usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--plugin" => plugin = PathBuf::from(value()?),
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--parallel" => parallel = value()?.parse().map_err(|e| format!("--parallel: {e}"))?,
            "-h" | "--help" => {
                println!("bench_cni [--plugin PATH] [--count N (≤ 250)] [--parallel P]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !(1..=250).contains(&count) || parallel == 0 {
        return Err("--count must be 1..=250 and --parallel at least 1".to_string());
    }
    let plugin = std::fs::canonicalize(&plugin).map_err(|e| format!("plugin {}: {e}", plugin.display()))?;
    let pid = std::process::id();
    let tag = pid.to_string();
    let bridge = format!("rkb{}", pid % 1_000_000);
    let table = format!("rkbench-{pid}");
    let data_dir = std::env::temp_dir().join(format!("rkbench-{pid}"));
    let octet = pid % 256;
    let config = json!({
        "cniVersion": "1.0.0",
        "name": "rkbench",
        "type": "rustkube-bridge",
        "bridge": bridge,
        "subnet": format!("10.238.{octet}.0/24"),
        "clusterCIDR": "10.238.0.0/16",
        "nftTable": table,
        "dataDir": data_dir,
    })
    .to_string();
    let setup = Setup { plugin, config, tag, count, bridge, table, data_dir };
    for i in 0..count {
        let status = Command::new("ip")
            .args(["netns", "add", &setup.netns_name(i)])
            .status()
            .map_err(|e| format!("ip netns add: {e}"))?;
        if !status.success() {
            return Err(format!("ip netns add {} failed (root needed)", setup.netns_name(i)));
        }
    }
    println!("plugin {}: {count} pods, bridge {}, nft table {}", setup.plugin.display(), setup.bridge, setup.table);
    // Warm up: the bridge and the masquerade rule exist from here on, as on a busy node.
    setup.invoke("ADD", 0)?;
    setup.invoke("DEL", 0)?;
    for parallel in [1, parallel] {
        phase(&setup, "ADD", parallel)?;
        phase(&setup, "DEL", parallel)?;
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_cni: {e}");
        std::process::exit(1);
    }
}
