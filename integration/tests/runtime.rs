//! The node runtime environment the kubelet stands on: a private containerd
//! (CRI v1) with the project's pause and test images and the project's CNI
//! plugin. Pods get addresses from rustkube-bridge, serve HTTP to the host,
//! reach each other with their own source address, and give their address
//! back when removed. Needs root.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration::containerd::{Containerd, ContainerdOptions, LocalRegistry, TEST_IMAGE, TEST_PAGE_MARKER};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec, ImageStatusRequest,
    LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest, PortMapping,
    PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::Channel;

type Cri = RuntimeServiceClient<Channel>;

struct Pod {
    name: String,
    sandbox_id: String,
    container_id: String,
    ip: Ipv4Addr,
}

fn sandbox_config(ctrd: &Containerd, name: &str, host_port: Option<u16>) -> PodSandboxConfig {
    PodSandboxConfig {
        port_mappings: host_port
            .map(|p| PortMapping { protocol: 0, container_port: 80, host_port: i32::from(p), host_ip: String::new() })
            .into_iter()
            .collect(),
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("uid-{name}-{}", std::process::id()),
            namespace: "default".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: ctrd.pod_log_dir().join(name).to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// A sandbox with one container of the test image running its httpd.
async fn run_httpd_pod(cri: Cri, ctrd: &Containerd, name: &str) -> Result<Pod> {
    run_httpd_pod_with(cri, ctrd, name, None).await
}

async fn run_httpd_pod_with(mut cri: Cri, ctrd: &Containerd, name: &str, host_port: Option<u16>) -> Result<Pod> {
    let config = sandbox_config(ctrd, name, host_port);
    let sandbox_id = cri
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
        .await
        .with_context(|| format!("RunPodSandbox {name}"))?
        .into_inner()
        .pod_sandbox_id;
    let container_id = cri
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox_id.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata { name: "httpd".to_string(), attempt: 0 }),
                image: Some(ImageSpec { image: TEST_IMAGE.to_string(), ..Default::default() }),
                log_path: "httpd.log".to_string(),
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await
        .with_context(|| format!("CreateContainer in {name}"))?
        .into_inner()
        .container_id;
    cri.start_container(StartContainerRequest { container_id: container_id.clone() })
        .await
        .with_context(|| format!("StartContainer in {name}"))?;
    let status = cri
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sandbox_id.clone(), verbose: false })
        .await?
        .into_inner()
        .status
        .context("PodSandboxStatus without a status")?;
    let ip = status.network.context("PodSandboxStatus without network")?.ip;
    let ip: Ipv4Addr = ip.parse().with_context(|| format!("pod {name} has no IPv4 address: {ip:?}"))?;
    Ok(Pod { name: name.to_string(), sandbox_id, container_id, ip })
}

/// The sandbox's network namespace path, from the verbose status' runtime spec.
async fn sandbox_netns(cri: &mut Cri, sandbox_id: &str) -> Result<String> {
    let status = cri
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sandbox_id.to_string(), verbose: true })
        .await?
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(status.info.get("info").context("no verbose info")?)?;
    let namespaces = info["runtimeSpec"]["linux"]["namespaces"].as_array().context("no namespaces in the spec")?;
    namespaces
        .iter()
        .find(|ns| ns["type"] == "network")
        .and_then(|ns| ns["path"].as_str())
        .map(str::to_string)
        .context("no network namespace path in the sandbox spec")
}

async fn remove_pod(cri: &mut Cri, pod: &Pod) -> Result<()> {
    cri.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.sandbox_id.clone() }).await?;
    cri.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.sandbox_id.clone() }).await?;
    Ok(())
}

async fn exec(cri: &mut Cri, container_id: &str, cmd: &[&str]) -> Result<(i32, String, String)> {
    let out = cri
        .exec_sync(ExecSyncRequest {
            container_id: container_id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .with_context(|| format!("ExecSync {cmd:?}"))?
        .into_inner();
    Ok((
        out.exit_code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// GET / from the host over plain TCP, retried while httpd starts.
fn http_get(ip: Ipv4Addr) -> Result<String> {
    http_get_at(SocketAddr::from((ip, 80)))
}

fn http_get_at(addr: SocketAddr) -> Result<String> {
    let start = Instant::now();
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")?;
            let mut body = String::new();
            stream.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if body.contains(TEST_PAGE_MARKER) => return Ok(body),
            Ok(body) if start.elapsed() > Duration::from_secs(20) => bail!("GET http://{addr}/ answered {body:?}"),
            Err(e) if start.elapsed() > Duration::from_secs(20) => bail!("GET http://{addr}/: {e}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn in_subnet(ip: Ipv4Addr, ctrd: &Containerd) -> bool {
    let prefix = ctrd.subnet().trim_end_matches("0/24");
    ip.to_string().starts_with(prefix)
}

async fn start() -> Result<(Containerd, Cri)> {
    let ctrd = tokio::task::spawn_blocking(|| Containerd::start(ContainerdOptions::default())).await??;
    let cri = RuntimeServiceClient::new(ctrd.cri_channel().await?);
    Ok((ctrd, cri))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_gets_an_address_serves_http_to_the_host_and_gives_the_address_back() -> Result<()> {
    let (ctrd, mut cri) = start().await?;
    let pod = run_httpd_pod(cri.clone(), &ctrd, "web").await?;
    assert!(in_subnet(pod.ip, &ctrd), "pod IP {} outside {}", pod.ip, ctrd.subnet());
    assert_eq!(ctrd.allocated_ips(), vec![pod.ip.to_string()]);

    let ip = pod.ip;
    let page = tokio::task::spawn_blocking(move || http_get(ip)).await??;
    assert!(page.contains("200 OK"), "{page}");

    // The pod's default route is the bridge; masquerade is installed for leaving the cluster network.
    let (code, routes, _) = exec(&mut cri, &pod.container_id, &["ip", "route"]).await?;
    assert_eq!(code, 0);
    assert!(routes.contains(&format!("default via {}", ctrd.gateway())), "{routes}");
    let table = std::process::Command::new("nft").args(["list", "table", "ip", ctrd.nft_table()]).output()?;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!("ip saddr {} ip daddr != {} masquerade", ctrd.subnet(), ctrd.cluster_cidr())),
        "{table}"
    );

    // CHECK by hand against the live sandbox netns agrees that all is in place.
    let netns = sandbox_netns(&mut cri, &pod.sandbox_id).await?;
    let (ok, out) = ctrd.cni_invoke("CHECK", &pod.sandbox_id, Some(Path::new(&netns)))?;
    assert!(ok, "CHECK failed: {out}");
    let (ok, out) = ctrd.cni_invoke("CHECK", "not-a-container", Some(Path::new(&netns)))?;
    assert!(!ok && out.contains("\"code\""), "CHECK of an unknown container should fail with a CNI error: {out}");

    remove_pod(&mut cri, &pod).await?;
    assert_eq!(ctrd.allocated_ips(), Vec::<String>::new(), "the address was not released");

    // DEL again by hand, as a runtime retrying would: with the netns gone, and without one.
    let gone = Path::new("/var/run/netns/rustkube-test-gone");
    for netns in [Some(gone), None, Some(gone)] {
        let (ok, out) = ctrd.cni_invoke("DEL", &pod.sandbox_id, netns)?;
        assert!(ok, "DEL {netns:?} failed: {out}");
    }
    // And the plugin answers VERSION per spec.
    let (ok, out) = ctrd.cni_invoke("VERSION", &pod.sandbox_id, None)?;
    assert!(ok && out.contains("supportedVersions") && out.contains("1.0.0"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_get_distinct_addresses_and_reach_each_other_with_their_own_source_address() -> Result<()> {
    let (ctrd, mut cri) = start().await?;
    let (a, b) = tokio::join!(run_httpd_pod(cri.clone(), &ctrd, "alpha"), run_httpd_pod(cri.clone(), &ctrd, "beta"));
    let (a, b) = (a?, b?);
    assert_ne!(a.ip, b.ip);
    assert!(in_subnet(a.ip, &ctrd) && in_subnet(b.ip, &ctrd));

    // beta fetches alpha's page over the bridge (no `wget -T`: Debian's busybox-static crashes on it)...
    let url = format!("http://{}/", a.ip);
    let start = Instant::now();
    loop {
        let (code, out, err) = exec(&mut cri, &b.container_id, &["wget", "-q", "-O", "-", &url]).await?;
        if code == 0 && out.contains(TEST_PAGE_MARKER) {
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("wget {url} from {}: exit {code}, {out} {err}", b.name);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // ... and alpha's httpd saw beta's own address, not the gateway's: no NAT inside the cluster.
    // (busybox httpd -v logs the peer as `[::ffff:<ip>]:<port>` or `<ip>:<port>`.)
    let logged = |log: &str, ip: &str| log.contains(&format!("{ip}]:")) || log.contains(&format!(" {ip}:"));
    let log_path = ctrd.pod_log_dir().join(&a.name).join("httpd.log");
    let start = Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if logged(&log, &b.ip.to_string()) || start.elapsed() > Duration::from_secs(10) {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(logged(&log, &b.ip.to_string()), "alpha's httpd log lacks beta's address {}:\n{log}", b.ip);
    assert!(!logged(&log, ctrd.gateway()), "pod-to-pod traffic was masqueraded:\n{log}");

    // ICMP works both ways too.
    let (code, out, err) = exec(&mut cri, &a.container_id, &["ping", "-c", "1", "-W", "3", &b.ip.to_string()]).await?;
    assert_eq!(code, 0, "ping {} from alpha: {out} {err}", b.ip);

    let mut allocated = ctrd.allocated_ips();
    allocated.sort();
    let mut want = vec![a.ip.to_string(), b.ip.to_string()];
    want.sort();
    assert_eq!(allocated, want);
    remove_pod(&mut cri, &a).await?;
    remove_pod(&mut cri, &b).await?;
    assert_eq!(ctrd.allocated_ips(), Vec::<String>::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portmap_chained_after_rustkube_bridge_forwards_a_host_port() -> Result<()> {
    let (ctrd, mut cri) = start().await?;
    let host_port = integration::free_port();
    let pod = run_httpd_pod_with(cri.clone(), &ctrd, "published", Some(host_port)).await?;
    // A host address (the bridge's own) and the host port: portmap's DNAT takes it to the pod's :80.
    let gateway: Ipv4Addr = ctrd.gateway().parse()?;
    let page = tokio::task::spawn_blocking(move || http_get_at(SocketAddr::from((gateway, host_port)))).await??;
    assert!(page.contains("200 OK"), "{page}");
    remove_pod(&mut cri, &pod).await?;
    assert_eq!(ctrd.allocated_ips(), Vec::<String>::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_pushed_to_a_local_registry_are_pulled_through_the_cri() -> Result<()> {
    let (ctrd, registry) = tokio::task::spawn_blocking(|| -> Result<_> {
        let ctrd = Containerd::start(ContainerdOptions { import_images: false, ..Default::default() })?;
        let registry = LocalRegistry::start()?;
        registry.push_images()?;
        ctrd.trust_plain_http_registry(registry.addr())?;
        Ok((ctrd, registry))
    })
    .await??;
    let mut images = ImageServiceClient::new(ctrd.cri_channel().await?);
    for name in ["rustkube/testimage:latest", "pause:3.9"] {
        let image = format!("{}/{name}", registry.addr());
        let spec = ImageSpec { image: image.clone(), ..Default::default() };
        let pulled = images
            .pull_image(PullImageRequest { image: Some(spec.clone()), auth: None, sandbox_config: None })
            .await
            .with_context(|| format!("PullImage {image}"))?
            .into_inner()
            .image_ref;
        assert!(pulled.starts_with("sha256:"), "{pulled}");
        let status = images.image_status(ImageStatusRequest { image: Some(spec), verbose: false }).await?.into_inner();
        let tags = status.image.map(|i| i.repo_tags).unwrap_or_default();
        assert!(tags.contains(&image), "{image} not among {tags:?}");
    }
    Ok(())
}
