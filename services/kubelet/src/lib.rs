//! kubelet: the node agent. It registers its node and keeps its Lease,
//! receives the pods bound to it through the apiserver, runs them through the
//! CRI on containerd (one worker per pod), probes them and reports status.
#![forbid(unsafe_code)]

pub mod containers;
pub mod cri;
pub mod deviceplugin;
pub mod fieldpath;
pub mod labels;
pub mod logs;
pub mod network;
pub mod node;
pub mod options;
pub mod podresources;
pub mod pods;
pub mod probes;
pub mod server;
pub mod service_env;
pub mod static_pods;
pub mod stats;
pub mod status;
pub mod volumes;
pub mod workers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use component_base::events::Recorder;
use futures::StreamExt;
use k8s_cri::v1 as cri_v1;
use k8s_openapi::api::core::v1::{NodeAddress, Pod};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use crate::options::Options;
use crate::workers::PodWorkers;

/// Sandboxes started at once (each is a network namespace, a CNI ADD and a pause container).
const SANDBOX_STARTS: usize = 4;

fn detect_ip() -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:1")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

async fn connect_runtime(endpoint: &str, timeout: Duration) -> anyhow::Result<cri::Runtime> {
    let mut last = None;
    for _ in 0..60 {
        match cri::Runtime::connect(endpoint, timeout).await {
            Ok(r) => match r.version().await {
                Ok(_) => return Ok(r),
                Err(e) => last = Some(e.to_string()),
            },
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!("the container runtime at {endpoint} is not answering: {}", last.unwrap_or_default())
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let client_flags = component_base::ClientFlags { kubeconfig: opts.kubeconfig.clone(), ..Default::default() };
    let client = client_flags.client().await?;
    let runtime = connect_runtime(&opts.container_runtime_endpoint, opts.runtime_request_timeout).await?;
    let version = runtime.version().await?;
    let runtime_version = format!("{}://{}", version.runtime_name, version.runtime_version);
    let node_name = opts
        .hostname_override
        .clone()
        .unwrap_or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string())
        .to_lowercase();
    let host_ip = opts.node_ip.clone().unwrap_or_else(detect_ip);
    let machine = node::Machine::detect(&opts.root_dir, &runtime_version);
    let mut reserved = options::parse_map(&opts.kube_reserved).context("--kube-reserved")?;
    reserved.extend(options::parse_map(&opts.system_reserved).context("--system-reserved")?);
    let (capacity, allocatable) = node::resources(&machine, opts.max_pods, &reserved);
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".into(), node_name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), machine.info.architecture.clone());
    labels.insert("beta.kubernetes.io/os".into(), "linux".into());
    labels.insert("beta.kubernetes.io/arch".into(), machine.info.architecture.clone());
    labels.extend(options::parse_map(&opts.node_labels).context("--node-labels")?);
    let taints = options::parse_taints(&opts.register_with_taints).context("--register-with-taints")?;
    let devices = deviceplugin::DeviceManager::new(&opts.root_dir);
    let metrics = stats::KubeletMetrics::new(&node_name, &runtime);
    let agent = Arc::new(node::NodeAgent {
        client: client.clone(),
        name: node_name.clone(),
        runtime: runtime.clone(),
        machine,
        addresses: vec![
            NodeAddress { type_: "InternalIP".into(), address: host_ip.clone() },
            NodeAddress { type_: "Hostname".into(), address: node_name.clone() },
        ],
        capacity,
        allocatable: allocatable.clone(),
        extended: devices.extended(),
        labels,
        taints,
        port: opts.port,
        lease_duration_seconds: opts.node_lease_duration_seconds,
        status_update_frequency: opts.node_status_update_frequency,
        status_report_frequency: opts.node_status_report_frequency,
    });
    // Registration waits for the apiserver; static pods must not.
    {
        let (a, register) = (agent.clone(), opts.register_node);
        tokio::spawn(async move {
            if register {
                if let Err(e) = a.register().await {
                    tracing::error!("registering the node: {e:#}");
                }
            }
            let l = a.clone();
            tokio::spawn(async move { l.lease_loop().await });
            a.status_loop().await
        });
    }

    let probes = probes::ProbeManager::new(runtime.clone());
    let kubelet = Arc::new(pods::Kubelet {
        client: client.clone(),
        runtime: runtime.clone(),
        node_name: node_name.clone(),
        host_ip: host_ip.clone(),
        volumes: volumes::VolumeManager::new(&opts.root_dir, client.clone()),
        status: status::StatusManager::new(client.clone()),
        probes: probes.clone(),
        settings: containers::Settings {
            cluster_dns: opts.cluster_dns.clone(),
            cluster_domain: opts.cluster_domain.clone(),
            resolv_conf: opts.resolv_conf.clone(),
            allocatable,
        },
        sync_frequency: opts.sync_frequency,
        recorder: Recorder::new(client.clone(), "kubelet", Some(node_name.clone())),
        pull_lock: tokio::sync::Mutex::new(()),
        sandbox_starts: tokio::sync::Semaphore::new(SANDBOX_STARTS),
        serialize_pulls: opts.serialize_image_pulls,
        devices: devices.clone(),
        metrics: metrics.clone(),
        service_env: service_env::ServiceEnv::start(client.clone()),
    });
    let workers = PodWorkers::new(kubelet.clone());
    {
        let weak = Arc::downgrade(&workers);
        probes.set_wake(Arc::new(move |uid: &str| {
            if let Some(w) = weak.upgrade() {
                w.wake(uid);
            }
        }));
    }
    tokio::spawn(pleg(runtime.clone(), workers.clone()));
    // Container logs rotate by size so a chatty container cannot fill the disk.
    let rotation = logs::Rotation {
        max_size: logs::parse_size(&opts.container_log_max_size)
            .with_context(|| format!("--container-log-max-size {:?}", opts.container_log_max_size))?,
        max_files: opts.container_log_max_files.max(2) as usize,
    };
    tokio::spawn(logs::rotate_loop(runtime.clone(), rotation));
    server::set_idle_timeout(opts.streaming_connection_idle_timeout);
    let static_pods = opts.pod_manifest_path.clone().map(|dir| {
        let s = static_pods::StaticPods::new(
            dir,
            node_name.clone(),
            client.clone(),
            workers.clone(),
            kubelet.status.clone(),
        );
        s.scan();
        tokio::spawn(s.clone().run());
        s
    });
    let podresources = podresources::PodResourcesServer { workers: workers.clone(), devices: devices.clone() };
    let root_dir = opts.root_dir.clone();
    tokio::spawn(async move {
        if let Err(e) = podresources.serve(root_dir).await {
            tracing::error!("pod resources API: {e}");
        }
    });
    tokio::spawn(async move {
        if let Err(e) = devices.serve().await {
            tracing::error!("device plugin registration: {e}");
        }
    });

    let serving = component_base::serving::ServingFlags {
        tls_cert_file: opts.tls_cert_file.clone(),
        tls_private_key_file: opts.tls_private_key_file.clone(),
        cert_dir: Some(opts.root_dir.join("pki").display().to_string()),
        ..Default::default()
    };
    let tls = component_base::serving::tls_config(&serving, "kubelet")?;
    let auth = server::server_auth::AuthSettings::from_options(&opts)?;
    let tls = match &auth.client_ca_file {
        Some(ca) => server::server_auth::with_client_ca(&tls, ca)?,
        None => tls,
    };
    tracing::info!(anonymous = auth.anonymous, token_webhook = auth.token_webhook, mode = ?auth.mode,
        client_ca = auth.client_ca_file.is_some(), "kubelet API authentication and authorization");
    let https: std::net::SocketAddr = format!("{}:{}", opts.address, opts.port).parse().context("--address/--port")?;
    let healthz: std::net::SocketAddr =
        format!("{}:{}", opts.healthz_bind_address, opts.healthz_port).parse().context("--healthz-bind-address")?;
    let server = Arc::new(server::Server {
        workers: workers.clone(),
        stats: stats::StatsProvider::new(runtime.clone(), node_name.clone(), opts.root_dir.clone()),
        metrics,
        runtime: runtime.clone(),
        auth: Arc::new(server::server_auth::KubeletAuth::new(auth, client.clone(), node_name.clone())),
    });
    let serve = tokio::spawn(server::serve(server, tls, https, healthz));

    let network = network::NetworkSettings {
        node_name: node_name.clone(),
        conf_dir: opts.cni_conf_dir.clone(),
        data_dir: opts.root_dir.join("cni").join("rustkube"),
        cluster_cidr: opts.cluster_cidr.clone(),
        pod_cidr: opts.pod_cidr.clone(),
    };
    let net_client = client.clone();
    tokio::spawn(async move {
        if let Err(e) = network::run(net_client, network).await {
            tracing::error!("pod network: {e:#}");
        }
    });

    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(housekeeping(kubelet.clone(), workers.clone(), static_pods, synced_rx));
    let pods = watch_pods(client, node_name, workers, synced_tx);
    tokio::select! {
        r = pods => r,
        r = serve => r.context("kubelet server")?,
        _ = component_base::shutdown_signal() => Ok(()),
    }
}

/// The apiserver source: pods bound to this node.
async fn watch_pods(
    client: kube::Client,
    node: String,
    workers: Arc<PodWorkers>,
    synced: tokio::sync::watch::Sender<bool>,
) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        // The watcher retries with back-off; static pods keep running meanwhile.
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!("watching this node's pods: {e}");
                continue;
            }
        };
        match event {
            // Mirror pods are the API's view of static pods, which run from their manifests.
            Event::InitApply(pod) | Event::Apply(pod) | Event::Delete(pod) if static_pods::is_mirror(&pod) => {}
            Event::Init => seen.clear(),
            Event::InitApply(pod) => {
                seen.insert(pod.metadata.uid.clone().unwrap_or_default());
                workers.update(pod);
            }
            Event::InitDone => {
                for pod in workers.pods() {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if !seen.contains(&uid) && !static_pods::is_static(&pod) {
                        workers.remove(&uid);
                    }
                }
                let _ = synced.send(true);
            }
            Event::Apply(pod) => workers.update(pod),
            Event::Delete(pod) => workers.remove(pod.metadata.uid.as_deref().unwrap_or("")),
        }
    }
    Ok(())
}

/// The pod lifecycle event generator, by relisting: every second, the
/// runtime's containers are compared with the last list and the workers of
/// pods whose containers changed are woken.
async fn pleg(runtime: cri::Runtime, workers: Arc<PodWorkers>) {
    let mut last: HashMap<String, (String, i32)> = HashMap::new();
    loop {
        if let Ok(list) = runtime.list_containers().await {
            let mut now: HashMap<String, (String, i32)> = HashMap::new();
            for c in list {
                let uid = c.labels.get(labels::POD_UID).cloned().unwrap_or_default();
                now.insert(c.id, (uid, c.state));
            }
            let mut changed: HashSet<&str> = HashSet::new();
            for (id, (uid, state)) in &now {
                if last.get(id).map(|(_, s)| s) != Some(state) {
                    changed.insert(uid);
                }
            }
            for (id, (uid, _)) in &last {
                if !now.contains_key(id) {
                    changed.insert(uid);
                }
            }
            for uid in changed {
                workers.wake(uid);
            }
            last = now;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every few seconds, once the pod list is synced: removes what the runtime
/// holds for pods this kubelet no longer has, and old dead containers (one
/// exited instance per container stays, for `logs --previous`).
async fn housekeeping(
    kubelet: Arc<pods::Kubelet>,
    workers: Arc<PodWorkers>,
    static_pods: Option<Arc<static_pods::StaticPods>>,
    mut synced: tokio::sync::watch::Receiver<bool>,
) {
    while !*synced.borrow() {
        if synced.changed().await.is_err() {
            return;
        }
    }
    loop {
        let mut known = workers.uids();
        known.extend(static_pods.iter().flat_map(|s| s.uids()));
        let sandboxes = kubelet.runtime.list_pod_sandboxes().await.unwrap_or_default();
        let orphans: HashSet<String> = sandboxes
            .iter()
            .filter(|s| s.labels.contains_key(labels::KUBELET_MANAGED))
            .filter_map(|s| s.labels.get(labels::POD_UID).cloned())
            .filter(|uid| !known.contains(uid))
            .collect();
        for uid in orphans {
            tracing::info!(pod_uid = %uid, "removing the containers of a pod that is gone");
            kubelet.remove_pod_resources(&uid).await;
            kubelet.volumes.teardown(&uid);
        }
        if let Ok(containers) = kubelet.runtime.list_containers().await {
            let mut by_name: HashMap<(String, String), Vec<&cri_v1::Container>> = HashMap::new();
            for c in containers.iter().filter(|c| c.state == cri_v1::ContainerState::ContainerExited as i32) {
                let uid = c.labels.get(labels::POD_UID).cloned().unwrap_or_default();
                let name = c.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_default();
                by_name.entry((uid, name)).or_default().push(c);
            }
            for (_, mut dead) in by_name {
                dead.sort_by_key(|c| std::cmp::Reverse(c.created_at));
                for c in dead.into_iter().skip(2) {
                    let _ = kubelet.runtime.remove_container(&c.id).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
