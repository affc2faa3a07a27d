//! Loads 10,000 Services × 5 endpoints into a private network namespace
//! with the real nft, then changes one endpoint at a time. The Services and
//! EndpointSlices are API objects, and each change takes the path the
//! binary's sync loop takes: a snapshot of the caches, the conversion of
//! what changed (`convert::Converter`), the difference and the nft
//! transaction (`Syncer::sync_changes`). Prints the time of the first full
//! sync, of one change (whole path, and its conversion part), of the
//! earlier path that cloned and converted every object on each change, and
//! the element and chain counts. Needs root.
//! `bench-proxy [services] [endpoints] [changes]`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube_proxy::convert::{self, Converter, NodeInfo, SERVICE_NAME_LABEL};
use kube_proxy::nft::Runner;
use kube_proxy::ruleset::TableConfig;
use kube_proxy::syncer::Syncer;

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn service(i: u32) -> Service {
    let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i);
    Service {
        metadata: ObjectMeta {
            name: Some(format!("svc-{i}")),
            namespace: Some("bench".into()),
            resource_version: Some(format!("{}", 1 + i)),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(vip.to_string()),
            cluster_ips: Some(vec![vip.to_string()]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::String("web".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The slice of Service `i`; `replaced` puts endpoint 0 on another address.
fn slice(i: u32, endpoints: u32, version: u64, replaced: Option<u32>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("svc-{i}-abcde")),
            namespace: Some("bench".into()),
            resource_version: Some(version.to_string()),
            labels: Some(BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), format!("svc-{i}"))])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        endpoints: (0..endpoints)
            .map(|e| {
                let mut ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i * 16 + e);
                if let (0, Some(c)) = (e, replaced) {
                    ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + c);
                }
                Endpoint {
                    addresses: vec![ip.to_string()],
                    conditions: Some(EndpointConditions { ready: Some(true), ..Default::default() }),
                    node_name: Some("elsewhere".into()),
                    ..Default::default()
                }
            })
            .collect(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median and maximum.
fn summary(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    match times.last() {
        Some(max) => (ms(times[times.len() / 2]), ms(*max)),
        None => (0.0, 0.0),
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
    let node = NodeInfo { name: "n1".into(), nodeport_ips: vec![] };
    // The caches: shared objects, as the reflector stores hold them.
    let svcs: Vec<Arc<Service>> = (0..services).map(|i| Arc::new(service(i))).collect();
    let mut slices: Vec<Arc<EndpointSlice>> =
        (0..services).map(|i| Arc::new(slice(i, endpoints, 1_000_000 + u64::from(i), None))).collect();
    let mut version = 2_000_000u64;
    let mut converter = Converter::default();

    let t = Instant::now();
    let first = converter.update(svcs.iter().map(|s| s.as_ref()), slices.iter().map(|s| s.as_ref()), &node);
    let hairpin = converter.local_ips();
    let conversion = t.elapsed();
    let full = rt.block_on(syncer.sync_changes(first, &hairpin, false))?;
    println!(
        "full sync: {services} services x {endpoints} endpoints: {:.3} s (conversion {:.0} ms; {} elements, {} chains, script {} KiB)",
        t.elapsed().as_secs_f64(),
        ms(conversion),
        full.elements,
        full.chains,
        full.script_bytes / 1024
    );

    // One endpoint of one Service replaced: the binary's whole per-change path.
    let (mut whole, mut converting) = (Vec::new(), Vec::new());
    for c in 0..changes {
        let i = (c * 7919) % services;
        version += 1;
        slices[i as usize] = Arc::new(slice(i, endpoints, version, Some(c)));
        let t = Instant::now();
        let (s, e) = (svcs.clone(), slices.clone());
        let changed = converter.update(s.iter().map(|s| s.as_ref()), e.iter().map(|s| s.as_ref()), &node);
        let hairpin = converter.local_ips();
        converting.push(t.elapsed());
        anyhow::ensure!(changed.len() == 1, "one change converted to {} frontend changes", changed.len());
        rt.block_on(syncer.sync_changes(changed, &hairpin, false))?;
        whole.push(t.elapsed());
    }
    let (median, max) = summary(whole);
    let (conv_median, conv_max) = summary(converting);
    println!(
        "one endpoint change, whole path ({changes} samples): median {median:.1} ms, max {max:.1} ms \
         (of which conversion: median {conv_median:.1} ms, max {conv_max:.1} ms)"
    );

    // The earlier path: every object cloned and converted again, all frontends compared.
    let mut earlier = Vec::new();
    for c in 0..changes.min(5) {
        let i = (c * 104_729 + 13) % services;
        version += 1;
        slices[i as usize] = Arc::new(slice(i, endpoints, version, Some(changes + c)));
        let t = Instant::now();
        let s: Vec<Service> = svcs.iter().map(|s| (**s).clone()).collect();
        let e: Vec<EndpointSlice> = slices.iter().map(|s| (**s).clone()).collect();
        let (frontends, hairpin) = convert::frontends(&s, &e, &node);
        rt.block_on(syncer.sync(frontends, &hairpin, false))?;
        earlier.push(t.elapsed());
    }
    let (median, _) = summary(earlier);
    println!("(the same change when every object was cloned and converted again: median {median:.1} ms)");
    // Bring the converter up to date with the changes synced around it.
    let changed = converter.update(svcs.iter().map(|s| s.as_ref()), slices.iter().map(|s| s.as_ref()), &node);
    rt.block_on(syncer.sync_changes(changed, &converter.local_ips(), false))?;

    let all: Vec<_> = converter.frontends().cloned().collect();
    let t = Instant::now();
    let _ = kube_proxy::ruleset::Desired::build(&all, &converter.local_ips());
    println!("(building the whole content, as full syncs and resyncs do: {:.1} ms)", ms(t.elapsed()));
    let t = Instant::now();
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
    println!("(one element added with the nft CLI: {:.1} ms, ok {})", ms(t.elapsed()), out.status.success());
    let resync = rt.block_on(syncer.sync(all, &converter.local_ips(), true))?;
    println!("periodic resync (rewrite in place): {:.3} s", resync.duration.as_secs_f64());
    let listed = Command::new("ip").args(["netns", "exec", &ns.0, "nft", "list", "chains"]).output()?;
    let chains = String::from_utf8_lossy(&listed.stdout).matches("chain ").count();
    println!("chains in the kernel: {chains}");
    Ok(())
}
