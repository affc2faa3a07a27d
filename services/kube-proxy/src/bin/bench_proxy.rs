//! Loads 10,000 Services × 5 endpoints into a private network namespace
//! with the real nft, then changes one endpoint at a time: prints the time
//! of the first full sync, of one change, and the element and chain counts.
//! Needs root. `bench-proxy [services] [endpoints] [changes]`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use kube_proxy::model::{Backend, Frontend, FrontendKey, Masquerade, NoEndpoints, Protocol};
use kube_proxy::nft::Runner;
use kube_proxy::ruleset::TableConfig;
use kube_proxy::syncer::Syncer;

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn service(i: u32, endpoints: u32, generation: u32) -> Frontend {
    let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i);
    Frontend {
        key: FrontendKey { ip: vip, protocol: Protocol::Tcp, port: 80 },
        backends: (0..endpoints)
            .map(|e| Backend {
                ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i * 16 + e + generation * 8),
                port: 8080,
            })
            .collect(),
        masquerade: Masquerade::OffCluster,
        affinity_timeout: None,
        no_endpoints: NoEndpoints::Reject,
        cluster_backends: Vec::new(),
        service: format!("bench/svc-{i}:http"),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<u32> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let services = args.first().copied().unwrap_or(10_000);
    let endpoints = args.get(1).copied().unwrap_or(5);
    let changes = args.get(2).copied().unwrap_or(20);
    let ns = Netns(format!("kpbench-{}", std::process::id()));
    let status = Command::new("ip").args(["netns", "add", &ns.0]).status()?;
    anyhow::ensure!(status.success(), "ip netns add failed (root needed)");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut syncer = Syncer::new(
        TableConfig { name: "kube-proxy".into(), cluster_cidrs: vec!["10.244.0.0/16".into()] },
        Runner { netns: Some(ns.0.clone()) },
    );
    let mut all: Vec<Frontend> = (0..services).map(|i| service(i, endpoints, 0)).collect();
    let none = BTreeSet::new();
    let full = rt.block_on(syncer.sync(all.clone(), &none, false))?;
    println!(
        "full sync: {services} services x {endpoints} endpoints: {:.3} s ({} elements, {} chains, script {} KiB)",
        full.duration.as_secs_f64(),
        full.elements,
        full.chains,
        full.script_bytes / 1024
    );
    let mut times: Vec<Duration> = Vec::new();
    for c in 0..changes {
        // One endpoint of one Service replaced.
        let i = (c * 7919) % services;
        let mut f = service(i, endpoints, 0);
        if let Some(b) = f.backends.last_mut() {
            b.ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + c);
        }
        all[i as usize] = f;
        let stats = rt.block_on(syncer.sync(all.clone(), &none, false))?;
        times.push(stats.duration);
    }
    times.sort();
    if !times.is_empty() {
        println!(
            "one endpoint change ({} samples): median {:.1} ms, max {:.1} ms",
            times.len(),
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3
        );
    }
    let t = std::time::Instant::now();
    let _ = kube_proxy::ruleset::Desired::build(&all, &none);
    println!("(building the whole content, as full syncs and resyncs do: {:.1} ms)", t.elapsed().as_secs_f64() * 1e3);
    let t = std::time::Instant::now();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "nft",
            "add",
            "element",
            "ip",
            "kube-proxy",
            "backends",
            "{ 10.96.0.1 . tcp . 80 . 9 : 10.1.1.1 . 80 }",
        ])
        .output()?;
    println!(
        "(one element added with the nft CLI: {:.1} ms, ok {})",
        t.elapsed().as_secs_f64() * 1e3,
        out.status.success()
    );
    let resync = rt.block_on(syncer.sync(all, &none, true))?;
    println!("periodic resync (rewrite in place): {:.3} s", resync.duration.as_secs_f64());
    let listed = Command::new("ip").args(["netns", "exec", &ns.0, "nft", "list", "chains"]).output()?;
    let chains = String::from_utf8_lossy(&listed.stdout).matches("chain ").count();
    println!("chains in the kernel: {chains}");
    Ok(())
}
