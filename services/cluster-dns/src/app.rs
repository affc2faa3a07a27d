//! The running add-on: reflectors on Services and EndpointSlices, a zone
//! rebuilt on every change, the DNS listeners, and the health endpoint.

use std::sync::Arc;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;

use crate::forward::Forwarder;
use crate::options::{Options, DEFAULT_SECURE_PORT};
use crate::server::{self, Handler, Metrics};
use crate::zone::Zone;

pub async fn run(options: Options) -> anyhow::Result<()> {
    let domain = options.domain()?;
    let upstreams = options.upstreams()?;
    let dns_addr = options.dns_address()?;
    // Bind first: a taken port is an error at start, not a silent add-on.
    let udp = Arc::new(UdpSocket::bind(dns_addr).await.with_context(|| format!("listening on {dns_addr}/udp"))?);
    let tcp = TcpListener::bind(dns_addr).await.with_context(|| format!("listening on {dns_addr}/tcp"))?;
    let client = options.client.client().await?;

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let registry = Arc::new(registry);
    let handler = Arc::new(Handler::new(&domain, Forwarder::new(upstreams.clone()), metrics));
    tracing::info!(%dns_addr, %domain, ?upstreams, "serving DNS over UDP and TCP");
    tokio::spawn(server::serve_udp(udp, handler.clone()));
    tokio::spawn(server::serve_tcp(tcp, handler.clone()));

    let changed = Arc::new(Notify::new());
    let (services, w) = reflector::store::<Service>();
    spawn_reflector(Api::<Service>::all(client.clone()), w, changed.clone());
    let (slices, w) = reflector::store::<EndpointSlice>();
    spawn_reflector(Api::<EndpointSlice>::all(client), w, changed.clone());
    for (ready, what) in [
        (services.wait_until_ready().await.is_ok(), "services"),
        (slices.wait_until_ready().await.is_ok(), "endpointslices"),
    ] {
        if !ready {
            anyhow::bail!("the {what} cache never became ready");
        }
    }
    rebuild(&handler, &domain, options.ttl, &services, &slices);
    tracing::info!(services = handler.metrics.services.get(), "caches synced; answering the cluster zone");

    // Healthy and ready from here on: the zone is answered from synced caches.
    let serving = options.serving.clone();
    tokio::spawn(async move {
        if let Err(e) = component_base::serving::serve(&serving, DEFAULT_SECURE_PORT, "cluster-dns", registry).await {
            tracing::error!(error = %e, "the health endpoint stopped");
        }
    });

    let shutdown = component_base::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = changed.notified() => rebuild(&handler, &domain, options.ttl, &services, &slices),
        }
    }
    tracing::info!("shutting down");
    Ok(())
}

fn rebuild(handler: &Handler, domain: &str, ttl: u32, services: &Store<Service>, slices: &Store<EndpointSlice>) {
    let svcs = services.state();
    let sls = slices.state();
    // The SOA serial: seconds since the epoch of this rebuild, as CoreDNS does.
    let serial =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
    let zone = Zone::build(domain, ttl, serial, svcs.iter().map(|s| &**s), sls.iter().map(|s| &**s));
    tracing::debug!(services = zone.service_count(), "zone rebuilt");
    handler.set_zone(zone);
}

fn spawn_reflector<K>(api: Api<K>, writer: reflector::store::Writer<K>, changed: Arc<Notify>)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(e) => tracing::warn!(error = %e, "watch failed; retrying"),
            }
        }
    });
}
