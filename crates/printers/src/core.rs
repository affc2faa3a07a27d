//! Printers for the core (`""`) API group.

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::format::{
    age, array_at, bool_at, container_cells, format_labels, get, int_at, is_deleting, join_host_port, len_at, name,
    opt_int, opt_str, quantity, since, str_at, time_at,
};
use crate::{col, wide, Column, Printer, AGE, CONTAINERS, IMAGES, NAME};

pub(crate) fn printer(kind: &str) -> Option<&'static Printer> {
    Some(match kind {
        "Pod" => &POD,
        "PodTemplate" => &POD_TEMPLATE,
        "ReplicationController" => &REPLICATION_CONTROLLER,
        "Service" => &SERVICE,
        "Endpoints" => &ENDPOINTS,
        "Node" => &NODE,
        "Event" => &EVENT,
        "Namespace" => &NAMESPACE,
        "Secret" => &SECRET,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        "PersistentVolume" => &PERSISTENT_VOLUME,
        "PersistentVolumeClaim" => &PERSISTENT_VOLUME_CLAIM,
        "ComponentStatus" => &COMPONENT_STATUS,
        "ConfigMap" => &CONFIG_MAP,
        "ResourceQuota" => &RESOURCE_QUOTA,
        _ => return None,
    })
}

// === Pod ===

static POD: Printer = Printer::new(
    &[
        NAME,
        col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        col("Status", "string", "The aggregate status of the containers in this pod."),
        col(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the \
             last container in this pod has restarted.",
        ),
        AGE,
        wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster."),
        wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
        wide(
            "Nominated Node",
            "string",
            "nominatedNodeName is set only when this pod preempts other pods on the node.",
        ),
        wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
    ],
    pod_cells,
)
.with_conditions(pod_conditions);

fn pod_conditions(pod: &Value) -> Vec<Value> {
    let (reason, message) = match str_at(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![json!({"type": "Completed", "status": "True", "reason": reason, "message": message})]
}

/// Restart counts with the time of the latest restart.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int_at(status, &["restartCount"]);
        let finished = time_at(status, &["lastState", "terminated", "finishedAt"]);
        if finished > self.last {
            self.last = finished;
        }
    }
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let phase = str_at(pod, &["status", "phase"]);
    let status_reason = str_at(pod, &["status", "reason"]);
    let mut reason = if status_reason.is_empty() { phase } else { status_reason }.to_string();

    let conditions = array_at(pod, &["status", "conditions"]);
    if conditions.iter().any(|c| str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    // Sidecars (init containers with restartPolicy Always) count as containers.
    let init_containers = array_at(pod, &["spec", "initContainers"]);
    let is_sidecar = |container: &str| {
        init_containers.iter().any(|c| str_at(c, &["name"]) == container && str_at(c, &["restartPolicy"]) == "Always")
    };
    let sidecars = init_containers.iter().filter(|c| str_at(c, &["restartPolicy"]) == "Always").count();
    let total = array_at(pod, &["spec", "containers"]).len() + sidecars;
    let mut ready = 0;

    let mut restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();
    let mut initializing = false;
    for (i, status) in array_at(pod, &["status", "initContainerStatuses"]).iter().enumerate() {
        restarts.add(status);
        let sidecar = is_sidecar(str_at(status, &["name"]));
        if sidecar {
            sidecar_restarts.add(status);
        }
        let terminated = get(status, &["state", "terminated"]);
        let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && bool_at(status, &["started"]) {
            if bool_at(status, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match str_at(t, &["reason"]) {
                "" => match int_at(t, &["signal"]) {
                    0 => format!("Init:ExitCode:{}", int_at(t, &["exitCode"])),
                    signal => format!("Init:Signal:{signal}"),
                },
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .find(|c| str_at(c, &["type"]) == "Initialized")
        .is_some_and(|c| str_at(c, &["status"]) == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for status in array_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts.add(status);
            let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
            let terminated = get(status, &["state", "terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, &["reason"]) {
                    "" => match int_at(t, &["signal"]) {
                        0 => format!("ExitCode:{}", int_at(t, &["exitCode"])),
                        signal => format!("Signal:{signal}"),
                    },
                    r => r.to_string(),
                };
            } else if bool_at(status, &["ready"]) && get(status, &["state", "running"]).is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose containers are partly still running is not Completed.
        if reason == "Completed" && has_running {
            let pod_ready =
                conditions.iter().any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    if is_deleting(pod) {
        if status_reason == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".to_string();
        }
    }

    let restarts_cell = match restarts.last {
        Some(last) if restarts.count != 0 => {
            format!("{} ({} ago)", restarts.count, since(Some(last), now))
        }
        _ => restarts.count.to_string(),
    };

    let pod_ip = array_at(pod, &["status", "podIPs"])
        .first()
        .map(|ip| str_at(ip, &["ip"]))
        .unwrap_or_else(|| str_at(pod, &["status", "podIP"]));
    let readiness_gates = array_at(pod, &["spec", "readinessGates"]);
    let gates_cell = if readiness_gates.is_empty() {
        "<none>".to_string()
    } else {
        let passing = readiness_gates
            .iter()
            .filter(|gate| {
                let gate_type = str_at(gate, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| str_at(c, &["type"]) == gate_type)
                    .is_some_and(|c| str_at(c, &["status"]) == "True")
            })
            .count();
        format!("{passing}/{}", readiness_gates.len())
    };

    vec![
        name(pod),
        Value::from(format!("{ready}/{total}")),
        Value::from(reason),
        Value::from(restarts_cell),
        age(pod, now),
        Value::from(or_none(pod_ip)),
        Value::from(or_none(str_at(pod, &["spec", "nodeName"]))),
        Value::from(or_none(str_at(pod, &["status", "nominatedNodeName"]))),
        Value::from(gates_cell),
    ]
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

// === PodTemplate ===

static POD_TEMPLATE: Printer = Printer::new(
    &[
        NAME,
        col("Containers", "string", "Names of each container in the template."),
        col("Images", "string", "Images referenced by each container in the template."),
        col("Pod Labels", "string", "The labels for the pod template."),
    ],
    pod_template_cells,
);

fn pod_template_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(obj, &["template"]);
    let labels = format_labels(get(obj, &["template", "metadata", "labels"]));
    vec![name(obj), names, images, Value::from(labels)]
}

// === ReplicationController ===

static REPLICATION_CONTROLLER: Printer = Printer::new(
    &[
        NAME,
        col("Desired", "integer", "Replicas is the number of desired replicas."),
        col("Current", "integer", "Replicas is the most recently observed number of replicas."),
        col("Ready", "integer", "The number of ready replicas for this replication controller."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "Selector is a label query over pods that should match the Replicas count."),
    ],
    replication_controller_cells,
);

fn replication_controller_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(obj, &["spec", "template"]);
    vec![
        name(obj),
        Value::from(opt_int(obj, &["spec", "replicas"]).unwrap_or(1)),
        Value::from(int_at(obj, &["status", "replicas"])),
        Value::from(int_at(obj, &["status", "readyReplicas"])),
        age(obj, now),
        names,
        images,
        Value::from(format_labels(get(obj, &["spec", "selector"]))),
    ]
}

// === Service ===

static SERVICE: Printer = Printer::new(
    &[
        NAME,
        col("Type", "string", "type determines how the Service is exposed."),
        col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
        col(
            "External-IP",
            "string",
            "externalIPs is a list of IP addresses for which nodes in the cluster will also \
             accept traffic for this service.",
        ),
        col("Port(s)", "string", "The list of ports that are exposed by this service."),
        AGE,
        wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
    ],
    service_cells,
);

fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    let cluster_ip = array_at(svc, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(svc, &["spec", "clusterIP"]));
    let ports: Vec<String> = array_at(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let protocol = opt_str(p, &["protocol"]).unwrap_or("TCP");
            match int_at(p, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let ports = ports.join(",");
    vec![
        name(svc),
        Value::from(str_at(svc, &["spec", "type"])),
        Value::from(or_none(cluster_ip)),
        Value::from(service_external_ip(svc)),
        Value::from(or_none(&ports)),
        age(svc, now),
        Value::from(format_labels(get(svc, &["spec", "selector"]))),
    ]
}

fn service_external_ip(svc: &Value) -> String {
    let external_ips: Vec<&str> = array_at(svc, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    match str_at(svc, &["spec", "type"]) {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let mut all = load_balancer_addresses(svc);
            if all.is_empty() && external_ips.is_empty() {
                return "<pending>".to_string();
            }
            all.extend(external_ips.iter().map(|s| s.to_string()));
            all.join(",")
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// The sorted, distinct IPs (or else hostnames) of `status.loadBalancer`.
pub(crate) fn load_balancer_addresses(obj: &Value) -> Vec<String> {
    let mut addresses: Vec<String> = array_at(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .map(|i| match str_at(i, &["ip"]) {
            "" => str_at(i, &["hostname"]),
            ip => ip,
        })
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

// === Endpoints ===

static ENDPOINTS: Printer = Printer::new(
    &[NAME, col("Endpoints", "string", "The set of all endpoints is the union of all subsets."), AGE],
    endpoints_cells,
);

fn endpoints_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(obj), Value::from(format_endpoints(obj)), age(obj, now)]
}

fn format_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = array_at(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = array_at(subset, &["addresses"]);
        let ports = array_at(subset, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            let room = MAX.saturating_sub(shown.len());
            shown.extend(addresses.iter().take(room).map(|a| str_at(a, &["ip"]).to_string()));
            continue;
        }
        for port in ports {
            let port = int_at(port, &["port"]);
            count += addresses.len();
            let room = MAX.saturating_sub(shown.len());
            shown.extend(addresses.iter().take(room).map(|a| join_host_port(str_at(a, &["ip"]), port)));
        }
    }
    let joined = shown.join(",");
    if count > MAX {
        return format!("{joined} + {} more...", count - MAX);
    }
    joined
}

// === Node ===

static NODE: Printer = Printer::new(
    &[
        NAME,
        col("Status", "string", "The status of the node"),
        col("Roles", "string", "The roles of the node"),
        AGE,
        col("Version", "string", "Kubelet Version reported by the node."),
        wide("Internal-IP", "string", "List of addresses reachable to the node."),
        wide("External-IP", "string", "List of addresses reachable to the node."),
        wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release."),
        wide("Kernel-Version", "string", "Kernel Version reported by the node."),
        wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node."),
    ],
    node_cells,
);

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    // The last Ready condition decides, as upstream indexes them by type.
    let ready = array_at(node, &["status", "conditions"]).iter().rev().find(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if bool_at(node, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }

    let roles = node_roles(node).join(",");
    let info = |key: &str| match str_at(node, &["status", "nodeInfo", key]) {
        "" => "<unknown>",
        v => v,
    };
    vec![
        name(node),
        Value::from(status.join(",")),
        Value::from(or_none(&roles)),
        age(node, now),
        Value::from(str_at(node, &["status", "nodeInfo", "kubeletVersion"])),
        Value::from(node_address(node, "InternalIP")),
        Value::from(node_address(node, "ExternalIP")),
        Value::from(info("osImage")),
        Value::from(info("kernelVersion")),
        Value::from(info("containerRuntimeVersion")),
    ]
}

/// Roles from `node-role.kubernetes.io/<role>` label keys and the value of
/// a `kubernetes.io/role` label, sorted and distinct.
fn node_roles(node: &Value) -> Vec<&str> {
    let mut roles: Vec<&str> = get(node, &["metadata", "labels"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                return (!role.is_empty()).then_some(role);
            }
            let v = v.as_str().unwrap_or("");
            (k == "kubernetes.io/role" && !v.is_empty()).then_some(v)
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    roles
}

fn node_address<'a>(node: &'a Value, address_type: &str) -> &'a str {
    array_at(node, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == address_type)
        .map(|a| str_at(a, &["address"]))
        .unwrap_or("<none>")
}

// === Event ===

pub(crate) static EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    crate::Column { priority: 1, ..NAME },
];

static EVENT: Printer = Printer::new(EVENT_COLUMNS, core_event_cells);

/// The fields of an event that the table shows, wherever the API version
/// keeps them.
pub(crate) struct EventFields<'a> {
    pub(crate) object: Option<&'a Value>,
    pub(crate) message: &'a str,
    pub(crate) source: Option<&'a Value>,
    pub(crate) first: Option<Timestamp>,
    pub(crate) last: Option<Timestamp>,
    pub(crate) count: i64,
    pub(crate) reporting_controller: &'a str,
}

fn core_event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let fields = EventFields {
        object: get(event, &["involvedObject"]),
        message: str_at(event, &["message"]),
        source: get(event, &["source"]),
        first: time_at(event, &["firstTimestamp"]),
        last: time_at(event, &["lastTimestamp"]),
        count: int_at(event, &["count"]),
        reporting_controller: str_at(event, &["reportingComponent"]),
    };
    event_cells(event, &fields, now)
}

pub(crate) fn event_cells(event: &Value, f: &EventFields<'_>, now: Timestamp) -> Vec<Value> {
    let first = match f.first {
        Some(t) => since(Some(t), now),
        None => since(time_at(event, &["eventTime"]), now),
    };
    let mut last = match f.last {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = f.count;
    if let Some(series) = get(event, &["series"]) {
        last = since(time_at(series, &["lastObservedTime"]), now);
        count = int_at(series, &["count"]);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }

    let object = f.object.unwrap_or(&Value::Null);
    let kind = str_at(object, &["kind"]).to_lowercase();
    let target = match str_at(object, &["name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };

    let source = f.source.unwrap_or(&Value::Null);
    let component = first_non_empty(str_at(source, &["component"]), f.reporting_controller);
    let instance = first_non_empty(str_at(source, &["host"]), str_at(event, &["reportingInstance"]));
    let source = if instance.is_empty() { component.to_string() } else { format!("{component}, {instance}") };

    vec![
        Value::from(last),
        Value::from(str_at(event, &["type"])),
        Value::from(str_at(event, &["reason"])),
        Value::from(target),
        Value::from(str_at(object, &["fieldPath"])),
        Value::from(source),
        Value::from(f.message.trim()),
        Value::from(first),
        Value::from(count),
        name(event),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

// === Namespace, Secret, ServiceAccount, ConfigMap ===

static NAMESPACE: Printer =
    Printer::new(&[NAME, col("Status", "string", "The status of the namespace"), AGE], |obj, now| {
        vec![name(obj), Value::from(str_at(obj, &["status", "phase"])), age(obj, now)]
    });

static SECRET: Printer = Printer::new(
    &[
        NAME,
        col("Type", "string", "Used to facilitate programmatic handling of secret data."),
        col("Data", "string", "Data contains the secret data."),
        AGE,
    ],
    |obj, now| vec![name(obj), Value::from(str_at(obj, &["type"])), Value::from(len_at(obj, &["data"])), age(obj, now)],
);

static SERVICE_ACCOUNT: Printer = Printer::new(
    &[
        NAME,
        col(
            "Secrets",
            "string",
            "Secrets is a list of the secrets in the same namespace that pods running using \
             this ServiceAccount are allowed to use.",
        ),
        AGE,
    ],
    |obj, now| vec![name(obj), Value::from(len_at(obj, &["secrets"])), age(obj, now)],
);

static CONFIG_MAP: Printer =
    Printer::new(&[NAME, col("Data", "string", "Data contains the configuration data."), AGE], |obj, now| {
        let entries = len_at(obj, &["data"]) + len_at(obj, &["binaryData"]);
        vec![name(obj), Value::from(entries), age(obj, now)]
    });

// === PersistentVolume, PersistentVolumeClaim ===

static PERSISTENT_VOLUME: Printer = Printer::new(
    &[
        NAME,
        col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
        col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
        col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
        col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
        col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
        col("StorageClass", "string", "StorageClass of the pv"),
        col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
        col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
        AGE,
        wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
    ],
    persistent_volume_cells,
);

/// The access modes as `RWO,ROX,RWX,RWOP`, always in that order.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(mode, _)| has(mode))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// The storage class, preferring the beta annotation as upstream does.
fn storage_class<'a>(obj: &'a Value, spec_class: Option<&'a str>) -> &'a str {
    get(obj, &["metadata", "annotations", "volume.beta.kubernetes.io/storage-class"])
        .and_then(Value::as_str)
        .or(spec_class)
        .unwrap_or("")
}

fn terminating_or_phase(obj: &Value) -> &str {
    if is_deleting(obj) {
        "Terminating"
    } else {
        str_at(obj, &["status", "phase"])
    }
}

fn persistent_volume_cells(pv: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match get(pv, &["spec", "claimRef"]) {
        Some(c) => format!("{}/{}", str_at(c, &["namespace"]), str_at(c, &["name"])),
        None => String::new(),
    };
    vec![
        name(pv),
        Value::from(quantity(get(pv, &["spec", "capacity", "storage"]))),
        Value::from(access_modes(array_at(pv, &["spec", "accessModes"]))),
        Value::from(str_at(pv, &["spec", "persistentVolumeReclaimPolicy"])),
        Value::from(terminating_or_phase(pv)),
        Value::from(claim),
        Value::from(storage_class(pv, opt_str(pv, &["spec", "storageClassName"]))),
        Value::from(opt_str(pv, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
        Value::from(str_at(pv, &["status", "reason"])),
        age(pv, now),
        Value::from(opt_str(pv, &["spec", "volumeMode"]).unwrap_or("<unset>")),
    ]
}

static PERSISTENT_VOLUME_CLAIM: Printer = Printer::new(
    &[
        NAME,
        col("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
        col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
        col("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
        col("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
        col("StorageClass", "string", "StorageClass of the pvc"),
        col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
        AGE,
        wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
    ],
    persistent_volume_claim_cells,
);

fn persistent_volume_claim_cells(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let volume = str_at(pvc, &["spec", "volumeName"]);
    // Capacity and access modes are only shown once bound to a volume.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(get(pvc, &["status", "capacity", "storage"])),
            access_modes(array_at(pvc, &["status", "accessModes"])),
        )
    };
    vec![
        name(pvc),
        Value::from(terminating_or_phase(pvc)),
        Value::from(volume),
        Value::from(capacity),
        Value::from(modes),
        Value::from(storage_class(pvc, opt_str(pvc, &["spec", "storageClassName"]))),
        Value::from(opt_str(pvc, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
        age(pvc, now),
        Value::from(opt_str(pvc, &["spec", "volumeMode"]).unwrap_or("<unset>")),
    ]
}

// === ComponentStatus ===

static COMPONENT_STATUS: Printer = Printer::new(
    &[
        NAME,
        col("Status", "string", "Status of the component conditions"),
        col("Message", "string", "Message of the component conditions"),
        col("Error", "string", "Error of the component conditions"),
    ],
    |obj, _now| {
        let healthy = array_at(obj, &["conditions"]).iter().find(|c| str_at(c, &["type"]) == "Healthy");
        let (status, message, error) = match healthy {
            Some(c) => (
                if str_at(c, &["status"]) == "True" { "Healthy" } else { "Unhealthy" },
                str_at(c, &["message"]),
                str_at(c, &["error"]),
            ),
            None => ("Unknown", "", ""),
        };
        vec![name(obj), Value::from(status), Value::from(message), Value::from(error)]
    },
);

// === ResourceQuota ===

static RESOURCE_QUOTA: Printer = Printer::new(
    &[
        NAME,
        col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
        col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        AGE,
    ],
    resource_quota_cells,
);

fn resource_quota_cells(quota: &Value, now: Timestamp) -> Vec<Value> {
    let hard = get(quota, &["status", "hard"]).and_then(Value::as_object);
    let mut resources: Vec<&String> = hard.into_iter().flat_map(|m| m.keys()).collect();
    resources.sort();
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for resource in resources {
        let used = quantity(get(quota, &["status", "used", resource]));
        let limit = quantity(get(quota, &["status", "hard", resource]));
        let entry = format!("{resource}: {used}/{limit}");
        let mut pieces = resource.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![name(quota), Value::from(requests.join(", ")), Value::from(limits.join(", ")), age(quota, now)]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::TablePrinter;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn cells(kind: &str, obj: &Value) -> Vec<Value> {
        printer(kind).unwrap().cells(obj, now())
    }

    #[test]
    fn running_pod_with_restarts_shows_ready_count_and_last_restart() {
        let pod = json!({
            "metadata": {"name": "web-7d4b9c-x2x8q", "creationTimestamp": "2024-04-29T09:30:00Z"},
            "spec": {
                "nodeName": "node-a",
                "containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "sidecar", "image": "envoy:1.30"}]
            },
            "status": {
                "phase": "Running",
                "podIP": "10.244.1.7",
                "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00::7"}],
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "Ready", "status": "True"},
                    {"type": "ContainersReady", "status": "True"},
                    {"type": "PodScheduled", "status": "True"}
                ],
                "containerStatuses": [
                    {
                        "name": "app", "ready": true, "restartCount": 2, "started": true,
                        "state": {"running": {"startedAt": "2024-05-01T11:55:00Z"}},
                        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2024-05-01T11:55:00Z"}}
                    },
                    {
                        "name": "sidecar", "ready": true, "restartCount": 1, "started": true,
                        "state": {"running": {"startedAt": "2024-04-30T12:00:00Z"}},
                        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-04-30T12:00:00Z"}}
                    }
                ]
            }
        });
        assert_eq!(
            cells("Pod", &pod),
            [
                json!("web-7d4b9c-x2x8q"),
                json!("2/2"),
                json!("Running"),
                json!("3 (5m ago)"),
                json!("2d2h"),
                json!("10.244.1.7"),
                json!("node-a"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
        assert!(POD.row_conditions(&pod).is_empty());
    }

    #[test]
    fn terminating_pod_reads_terminating() {
        let pod = json!({
            "metadata": {
                "name": "db-0", "creationTimestamp": "2024-05-01T11:00:00Z",
                "deletionTimestamp": "2024-05-01T11:59:40Z"
            },
            "spec": {"containers": [{"name": "db", "image": "postgres:16"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [{
                    "name": "db", "ready": true, "restartCount": 0,
                    "state": {"running": {"startedAt": "2024-05-01T11:00:05Z"}}
                }]
            }
        });
        let row = cells("Pod", &pod);
        assert_eq!(row[1..4], [json!("1/1"), json!("Terminating"), json!("0")]);
    }

    #[test]
    fn pending_pod_shows_the_waiting_reason() {
        let pod = json!({
            "metadata": {"name": "api-5f", "creationTimestamp": "2024-05-01T11:59:50Z"},
            "spec": {"nodeName": "node-b", "containers": [{"name": "api", "image": "api:2"}]},
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{
                    "name": "api", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ContainerCreating"}}
                }]
            }
        });
        let row = cells("Pod", &pod);
        assert_eq!(
            row[..6],
            [json!("api-5f"), json!("0/1"), json!("ContainerCreating"), json!("0"), json!("10s"), json!("<none>")]
        );
    }

    #[test]
    fn crash_looping_container_reason_wins_over_phase() {
        let pod = json!({
            "metadata": {"name": "p", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [{
                    "name": "a", "ready": false, "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}}
                }]
            }
        });
        assert_eq!(cells("Pod", &pod)[1..4], [json!("0/1"), json!("CrashLoopBackOff"), json!("4 (2m ago)")]);
    }

    #[test]
    fn init_containers_show_progress_and_failures() {
        let mut pod = json!({
            "metadata": {"name": "p", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {
                "initContainers": [{"name": "migrate"}, {"name": "seed"}],
                "containers": [{"name": "app"}]
            },
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "Initialized", "status": "False"}],
                "initContainerStatuses": [
                    {"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "seed", "restartCount": 0, "state": {"running": {}}}
                ],
                "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]
            }
        });
        assert_eq!(cells("Pod", &pod)[2], json!("Init:1/2"));

        pod["status"]["initContainerStatuses"][1]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(cells("Pod", &pod)[2], json!("Init:CrashLoopBackOff"));

        pod["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 3}});
        assert_eq!(cells("Pod", &pod)[2], json!("Init:ExitCode:3"));

        pod["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 137, "signal": 9}});
        assert_eq!(cells("Pod", &pod)[2], json!("Init:Signal:9"));
    }

    #[test]
    fn sidecars_count_toward_ready_and_total() {
        let pod = json!({
            "metadata": {"name": "p", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {
                "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "app"}]
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{
                    "name": "proxy", "ready": true, "started": true, "restartCount": 1,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:30:00Z"}}
                }],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]
            }
        });
        assert_eq!(cells("Pod", &pod)[1..4], [json!("2/2"), json!("Running"), json!("1 (30m ago)")]);
    }

    #[test]
    fn completed_pod_reports_a_completed_row_condition() {
        let pod = json!({
            "metadata": {"name": "job-abc", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"containers": [{"name": "main"}]},
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{
                    "name": "main", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}
                }]
            }
        });
        assert_eq!(cells("Pod", &pod)[1..3], [json!("0/1"), json!("Completed")]);
        assert_eq!(
            POD.row_conditions(&pod),
            [
                json!({"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."})
            ]
        );
    }

    #[test]
    fn scheduling_gated_and_readiness_gates() {
        let pod = json!({
            "metadata": {"name": "p", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {
                "containers": [{"name": "a"}],
                "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]
            },
            "status": {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
                    {"type": "example.com/lb", "status": "True"}
                ]
            }
        });
        let row = cells("Pod", &pod);
        assert_eq!(row[2], json!("SchedulingGated"));
        assert_eq!(row[8], json!("1/2"));
    }

    #[test]
    fn ready_node_with_roles_and_cordon() {
        let mut node = json!({
            "metadata": {
                "name": "cp-1", "creationTimestamp": "2024-04-21T12:00:00Z",
                "labels": {
                    "kubernetes.io/hostname": "cp-1",
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/etcd": "",
                    "kubernetes.io/role": "master"
                }
            },
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"}
                ],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "cp-1"}],
                "nodeInfo": {
                    "kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.1.0-21-amd64", "containerRuntimeVersion": "containerd://1.7.13"
                }
            }
        });
        assert_eq!(
            cells("Node", &node),
            [
                json!("cp-1"),
                json!("Ready"),
                json!("control-plane,etcd,master"),
                json!("10d"),
                json!("v1.33.1"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0-21-amd64"),
                json!("containerd://1.7.13"),
            ]
        );
        node["spec"] = json!({"unschedulable": true});
        assert_eq!(cells("Node", &node)[1], json!("Ready,SchedulingDisabled"));
        node["status"]["conditions"][1]["status"] = json!("Unknown");
        assert_eq!(cells("Node", &node)[1], json!("NotReady,SchedulingDisabled"));
        node["status"]["conditions"] = json!([]);
        node["metadata"]["labels"] = json!({});
        let row = cells("Node", &node);
        assert_eq!(row[1..3], [json!("Unknown,SchedulingDisabled"), json!("<none>")]);
    }

    #[test]
    fn node_port_service_lists_node_ports() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T09:00:00Z"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.12.34",
                "clusterIPs": ["10.96.12.34"],
                "selector": {"app": "web", "tier": "frontend"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                    {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
                ]
            }
        });
        assert_eq!(
            cells("Service", &svc),
            [
                json!("web"),
                json!("NodePort"),
                json!("10.96.12.34"),
                json!("<none>"),
                json!("80:30080/TCP,443/TCP"),
                json!("3h"),
                json!("app=web,tier=frontend"),
            ]
        );
    }

    #[test]
    fn service_external_ips_by_type() {
        let mut svc = json!({
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.5"], "ports": [{"port": 53, "protocol": "UDP"}]}
        });
        assert_eq!(cells("Service", &svc)[3..5], [json!("<pending>"), json!("53/UDP")]);
        svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.9"}]}});
        svc["spec"]["externalIPs"] = json!(["198.51.100.1"]);
        assert_eq!(cells("Service", &svc)[3], json!("203.0.113.9,lb.example.com,198.51.100.1"));

        let external = json!({
            "metadata": {"name": "db"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"}
        });
        let row = cells("Service", &external);
        assert_eq!(row[2..5], [json!("<none>"), json!("db.example.com"), json!("<none>")]);
        assert_eq!(row[6], json!("<none>"));
    }

    #[test]
    fn endpoints_are_clipped_after_three() {
        let ep = json!({
            "metadata": {"name": "web"},
            "subsets": [{
                "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}],
                "ports": [{"port": 8080}, {"port": 8443}]
            }]
        });
        assert_eq!(cells("Endpoints", &ep)[1], json!("10.0.0.1:8080,10.0.0.2:8080,[fd00::3]:8080 + 3 more..."));
        let headless = json!({"metadata": {"name": "h"}, "subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]});
        assert_eq!(cells("Endpoints", &headless)[1], json!("10.0.0.9"));
        assert_eq!(cells("Endpoints", &json!({"metadata": {"name": "e"}}))[1], json!("<none>"));
    }

    #[test]
    fn events_show_series_source_and_target() {
        let event = json!({
            "metadata": {"name": "web.17c", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": "2024-05-01T11:00:00Z",
            "lastTimestamp": "2024-05-01T11:58:00Z",
            "count": 7,
            "type": "Warning"
        });
        assert_eq!(
            cells("Event", &event),
            [
                json!("2m"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!("spec.containers{app}"),
                json!("kubelet, node-a"),
                json!("Back-off restarting failed container"),
                json!("60m"),
                json!(7),
                json!("web.17c"),
            ]
        );

        let new_style = json!({
            "metadata": {"name": "n"},
            "involvedObject": {"kind": "Node"},
            "eventTime": "2024-05-01T11:59:00.000000Z",
            "series": {"count": 3, "lastObservedTime": "2024-05-01T11:59:30.000000Z"},
            "reportingComponent": "scheduler",
            "reportingInstance": "scheduler-1",
            "type": "Normal"
        });
        let row = cells("Event", &new_style);
        assert_eq!(row[0], json!("30s"));
        assert_eq!(row[3], json!("node"));
        assert_eq!(row[5], json!("scheduler, scheduler-1"));
        assert_eq!(row[7], json!("60s"));
        assert_eq!(row[8], json!(3));
    }

    #[test]
    fn config_maps_secrets_and_service_accounts_count_entries() {
        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(cells("ConfigMap", &cm)[..2], [json!("cfg"), json!(3)]);
        let secret =
            json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(cells("Secret", &secret)[..3], [json!("tls"), json!("kubernetes.io/tls"), json!(2)]);
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(cells("ServiceAccount", &sa)[..3], [json!("default"), json!(0), json!("<unknown>")]);
    }

    #[test]
    fn persistent_volumes_and_claims() {
        let pv = json!({
            "metadata": {"name": "pv-1", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "claimRef": {"namespace": "default", "name": "data"},
                "storageClassName": "fast",
                "volumeMode": "Filesystem"
            },
            "status": {"phase": "Bound"}
        });
        assert_eq!(
            cells("PersistentVolume", &pv),
            [
                json!("pv-1"),
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("fast"),
                json!("<unset>"),
                json!(""),
                json!("60m"),
                json!("Filesystem"),
            ]
        );
        let pending = json!({
            "metadata": {"name": "data", "annotations": {"volume.beta.kubernetes.io/storage-class": "slow"}},
            "spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"}
        });
        assert_eq!(
            cells("PersistentVolumeClaim", &pending)[..6],
            [json!("data"), json!("Pending"), json!(""), json!(""), json!(""), json!("slow")]
        );
        let bound = json!({
            "metadata": {"name": "data", "deletionTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"volumeName": "pv-1", "storageClassName": "fast"},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}
        });
        assert_eq!(
            cells("PersistentVolumeClaim", &bound)[..5],
            [json!("data"), json!("Terminating"), json!("pv-1"), json!("10Gi"), json!("RWO")]
        );
    }

    #[test]
    fn resource_quota_splits_requests_and_limits() {
        let quota = json!({
            "metadata": {"name": "compute"},
            "status": {
                "hard": {"requests.cpu": "1", "limits.memory": "2Gi", "pods": "10", "limits.cpu": "2"},
                "used": {"requests.cpu": "500m", "limits.cpu": "1", "pods": "3"}
            }
        });
        assert_eq!(
            cells("ResourceQuota", &quota)[1..3],
            [json!("pods: 3/10, requests.cpu: 500m/1"), json!("limits.cpu: 1/2, limits.memory: 0/2Gi")]
        );
    }

    #[test]
    fn replication_controllers_and_pod_templates() {
        let rc = json!({
            "metadata": {"name": "rc"},
            "spec": {
                "replicas": 3, "selector": {"app": "rc"},
                "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}
            },
            "status": {"replicas": 3, "readyReplicas": 2}
        });
        assert_eq!(
            cells("ReplicationController", &rc),
            [
                json!("rc"),
                json!(3),
                json!(3),
                json!(2),
                json!("<unknown>"),
                json!("a,b"),
                json!("a:1,b:1"),
                json!("app=rc")
            ]
        );
        let tmpl = json!({
            "metadata": {"name": "t"},
            "template": {"metadata": {"labels": {"app": "t"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        });
        assert_eq!(cells("PodTemplate", &tmpl), [json!("t"), json!("c"), json!("busybox"), json!("app=t")]);
    }

    #[test]
    fn namespaces_show_their_phase() {
        let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": "2024-04-01T12:00:00Z"}, "status": {"phase": "Active"}});
        assert_eq!(cells("Namespace", &ns), [json!("kube-system"), json!("Active"), json!("30d")]);
    }
}
