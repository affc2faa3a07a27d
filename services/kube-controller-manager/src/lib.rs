//! kube-controller-manager: the control loops. Each controller registers
//! handlers on shared informers, turning changes into keys on its work
//! queue, and a few workers reconcile those keys against the caches.
#![forbid(unsafe_code)]

pub mod clusterroleaggregation;
pub mod credentials;
pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpointslice;
pub mod endpointslicemirroring;
pub mod ephemeral;
pub mod garbagecollector;
pub mod history;
pub mod informer;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod options;
pub mod podautoscaler;
pub mod podgc;
pub mod pvbinder;
pub mod queue;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttlafterfinished;
pub mod util;

use std::sync::Arc;

use anyhow::Context;
use component_base::LeaderElector;
use prometheus_client::registry::Registry;

use crate::informer::Factory;
use crate::options::Options;
use crate::queue::{QueueMetrics, WorkQueue};

pub async fn run(options: Options) -> anyhow::Result<()> {
    options.validate()?;
    let client = options.client.client().await?;
    let metrics = QueueMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let registry = Arc::new(registry);

    let auth = Arc::new(component_base::DelegatedAuth::new(&options.auth, &options.client, &client).await?);
    let serving = component_base::serving::serve_authorized(
        &options.serving,
        10257,
        "kube-controller-manager",
        registry,
        Some(auth),
    );
    let controllers = async {
        if options.leader_election.leader_elect {
            let elector = LeaderElector::new(client.clone(), &options.leader_election, "kube-controller-manager")?;
            elector.run(start_controllers(&options, client.clone(), &metrics)).await
        } else {
            start_controllers(&options, client.clone(), &metrics).await
        }
    };
    tokio::select! {
        r = serving => r.context("serving health and metrics"),
        r = controllers => r,
        _ = component_base::shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

/// Registers every enabled controller, starts the informers, waits for their
/// caches and runs the workers; then runs until the process ends.
async fn start_controllers(options: &Options, client: kube::Client, metrics: &QueueMetrics) -> anyhow::Result<()> {
    // Informers list and watch as the controller-manager; each controller writes as itself.
    let factory = Factory::new(client.clone());
    let creds = credentials::Credentials::new(options, client.clone()).await?;
    let mut starters: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    let queue = |name: &str| WorkQueue::new(name, metrics);

    if options.enabled("replicaset-controller") {
        let c = replicaset::ReplicaSetController::<k8s_openapi::api::apps::v1::ReplicaSet>::register(
            &factory,
            creds.client_for("replicaset-controller").await?,
            queue("replicaset"),
        );
        let n = options.concurrent_replicaset_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("replicationcontroller-controller") {
        let c = replicaset::ReplicationManager::register(
            &factory,
            creds.client_for("replication-controller").await?,
            queue("replicationmanager"),
        );
        let n = options.concurrent_rc_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("resourcequota-controller") {
        let c = resourcequota::ResourceQuotaController::register(
            &factory,
            creds.client_for("resourcequota-controller").await?,
            queue("resourcequota_primary"),
            options.resource_quota_sync_period,
        );
        let n = options.concurrent_resource_quota_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("deployment-controller") {
        let c = deployment::DeploymentController::register(
            &factory,
            creds.client_for("deployment-controller").await?,
            queue("deployment"),
        );
        let n = options.concurrent_deployment_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("namespace-controller") {
        let c = namespace::NamespaceController::register(
            &factory,
            creds.client_for("namespace-controller").await?,
            queue("namespace"),
        );
        let n = options.concurrent_namespace_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("serviceaccount-controller") {
        let c = serviceaccount::ServiceAccountController::register(
            &factory,
            creds.client_for("service-account-controller").await?,
            queue("serviceaccount"),
        );
        starters.push(Box::new(move || c.run(1)));
    }
    if options.enabled("root-ca-certificate-publisher-controller") {
        match &options.root_ca_file {
            Some(path) => {
                let ca = std::fs::read_to_string(path).with_context(|| format!("reading --root-ca-file {path}"))?;
                let c = serviceaccount::RootCaPublisher::register(
                    &factory,
                    creds.client_for("root-ca-cert-publisher").await?,
                    queue("root_ca_cert_publisher"),
                    ca,
                );
                starters.push(Box::new(move || c.run(1)));
            }
            None => tracing::warn!("no --root-ca-file: not publishing kube-root-ca.crt"),
        }
    }
    if options.enabled("endpointslice-controller") {
        let endpoints_client = if options.enabled("endpoints-controller") {
            Some(creds.client_for("endpoint-controller").await?)
        } else {
            None
        };
        let c = endpointslice::EndpointSliceController::register(
            &factory,
            creds.client_for("endpointslice-controller").await?,
            endpoints_client,
            queue("endpoint_slice"),
        );
        let n = options.concurrent_service_endpoint_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("endpointslice-mirroring-controller") {
        let c = endpointslicemirroring::EndpointSliceMirroringController::register(
            &factory,
            creds.client_for("endpointslicemirroring-controller").await?,
            queue("endpoint_slice_mirroring"),
        );
        let n = options.mirroring_concurrent_service_endpoint_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("node-ipam-controller") && options.allocate_node_cidrs {
        let cidrs = nodeipam::CidrSet::new(&options.cluster_cidr, options.node_cidr_mask_size)?;
        let c = nodeipam::NodeIpamController::register(
            &factory,
            creds.client_for("node-controller").await?,
            queue("node_ipam"),
            cidrs,
        );
        starters.push(Box::new(move || c.run()));
    }
    if options.enabled("node-lifecycle-controller") {
        let c = nodelifecycle::NodeLifecycleController::register(
            &factory,
            creds.client_for("node-controller").await?,
            nodelifecycle::Config {
                grace: options.node_monitor_grace_period,
                period: options.node_monitor_period,
                eviction_rate: options.node_eviction_rate,
                secondary_eviction_rate: options.secondary_node_eviction_rate,
                unhealthy_zone_threshold: options.unhealthy_zone_threshold,
                large_cluster_size_threshold: options.large_cluster_size_threshold,
            },
        );
        starters.push(Box::new(move || c.run()));
    }
    if options.enabled("job-controller") {
        let c = job::JobController::register(&factory, creds.client_for("job-controller").await?, queue("job"));
        let n = options.concurrent_job_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("cronjob-controller") {
        let c = cronjob::CronJobController::register(
            &factory,
            creds.client_for("cronjob-controller").await?,
            queue("cronjob"),
        );
        let n = options.concurrent_cron_job_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("ttl-after-finished-controller") {
        let c = ttlafterfinished::TtlAfterFinishedController::register(
            &factory,
            creds.client_for("ttl-after-finished-controller").await?,
            queue("ttl_jobs_to_delete"),
        );
        let n = options.concurrent_ttl_after_finished_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("disruption-controller") {
        let c = disruption::DisruptionController::register(
            &factory,
            creds.client_for("disruption-controller").await?,
            queue("disruption"),
        );
        starters.push(Box::new(move || c.run(1)));
    }
    if options.enabled("daemonset-controller") {
        let c = daemonset::DaemonSetController::register(
            &factory,
            creds.client_for("daemon-set-controller").await?,
            queue("daemonset"),
        );
        let n = options.concurrent_daemonset_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("statefulset-controller") {
        let c = statefulset::StatefulSetController::register(
            &factory,
            creds.client_for("statefulset-controller").await?,
            queue("statefulset"),
        );
        let n = options.concurrent_statefulset_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("persistentvolume-binder-controller") {
        let c = pvbinder::PersistentVolumeBinder::register(
            &factory,
            creds.client_for("persistent-volume-binder").await?,
            queue("volumes"),
        );
        starters.push(Box::new(move || c.run()));
    }
    if options.enabled("ephemeral-volume-controller") {
        let c = ephemeral::EphemeralVolumeController::register(
            &factory,
            creds.client_for("ephemeral-volume-controller").await?,
            queue("ephemeral_volume"),
        );
        let n = options.concurrent_ephemeralvolume_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("clusterrole-aggregation-controller") {
        let c = clusterroleaggregation::ClusterRoleAggregationController::register(
            &factory,
            creds.client_for("clusterrole-aggregation-controller").await?,
            queue("ClusterRoleAggregator"),
        );
        starters.push(Box::new(move || c.run()));
    }
    if options.enabled("horizontal-pod-autoscaler-controller") {
        let c = podautoscaler::HorizontalController::register(
            &factory,
            client.clone(),
            creds.client_for("horizontal-pod-autoscaler").await?,
            queue("horizontalpodautoscaler"),
            podautoscaler::Config {
                sync_period: options.horizontal_pod_autoscaler_sync_period,
                tolerance: options.horizontal_pod_autoscaler_tolerance,
                cpu_initialization_period: options.horizontal_pod_autoscaler_cpu_initialization_period,
                initial_readiness_delay: options.horizontal_pod_autoscaler_initial_readiness_delay,
                downscale_stabilization: options.horizontal_pod_autoscaler_downscale_stabilization,
            },
        );
        let n = options.concurrent_horizontal_pod_autoscaler_syncs;
        starters.push(Box::new(move || c.run(n)));
    }
    if options.enabled("pod-garbage-collector-controller") {
        let c = podgc::PodGc::register(
            &factory,
            creds.client_for("pod-garbage-collector").await?,
            options.terminated_pod_gc_threshold,
        );
        starters.push(Box::new(move || c.run()));
    }
    let gc = if options.enabled("garbage-collector-controller") {
        let writer = creds.client_for("generic-garbage-collector").await?;
        Some(
            garbagecollector::GarbageCollector::new(
                client.clone(),
                writer,
                queue("garbage_collector_attempt_to_delete"),
            )
            .await?,
        )
    } else {
        None
    };

    factory.start();
    if let Some(gc) = &gc {
        gc.start_informers();
    }
    factory.wait_synced().await;
    if let Some(gc) = gc {
        gc.wait_synced().await;
        let n = options.concurrent_gc_syncs;
        starters.push(Box::new(move || gc.run(n)));
    }
    tracing::info!("caches synced; starting controllers");
    for s in starters {
        s();
    }
    futures::future::pending::<()>().await;
    Ok(())
}
