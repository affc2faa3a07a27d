//! Printers for the remaining groups: coordination, events, policy,
//! scheduling, RBAC, autoscaling, certificates, node, admission
//! registration, flow control, dynamic resources and apiserver internals.

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use crate::core::{event_cells, EventFields, EVENT_COLUMNS};
use crate::duration::human_signed_duration;
use crate::format::{
    age, array_at, bool_at, get, int_at, int_or_string, is_deleting, len_at, list_with_more, name, opt_int, opt_str,
    quantity, str_at, time_at,
};
use crate::{col, wide, Printer, AGE, NAME};

pub(crate) fn printer(group: &str, kind: &str) -> Option<&'static Printer> {
    Some(match (group, kind) {
        ("coordination.k8s.io", "Lease") => &LEASE,
        ("coordination.k8s.io", "LeaseCandidate") => &LEASE_CANDIDATE,
        ("events.k8s.io", "Event") => &EVENT,
        ("policy", "PodDisruptionBudget") => &POD_DISRUPTION_BUDGET,
        ("scheduling.k8s.io", "PriorityClass") => &PRIORITY_CLASS,
        ("rbac.authorization.k8s.io", "RoleBinding") => &ROLE_BINDING,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => &CLUSTER_ROLE_BINDING,
        ("autoscaling", "HorizontalPodAutoscaler") => &HORIZONTAL_POD_AUTOSCALER,
        ("certificates.k8s.io", "CertificateSigningRequest") => &CERTIFICATE_SIGNING_REQUEST,
        ("certificates.k8s.io", "ClusterTrustBundle") => &CLUSTER_TRUST_BUNDLE,
        ("node.k8s.io", "RuntimeClass") => &RUNTIME_CLASS,
        ("admissionregistration.k8s.io", kind) => admission_printer(kind)?,
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => &FLOW_SCHEMA,
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => &PRIORITY_LEVEL,
        ("resource.k8s.io", "DeviceClass") => &DEVICE_CLASS,
        ("resource.k8s.io", "ResourceClaim") => &RESOURCE_CLAIM,
        ("resource.k8s.io", "ResourceClaimTemplate") => &RESOURCE_CLAIM_TEMPLATE,
        ("resource.k8s.io", "ResourceSlice") => &RESOURCE_SLICE,
        ("internal.apiserver.k8s.io", "StorageVersion") => &STORAGE_VERSION,
        _ => return None,
    })
}

// === coordination.k8s.io ===

static LEASE: Printer = Printer::new(
    &[NAME, col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."), AGE],
    |obj, now| vec![name(obj), Value::from(str_at(obj, &["spec", "holderIdentity"])), age(obj, now)],
);

static LEASE_CANDIDATE: Printer = Printer::new(
    &[
        NAME,
        col("LeaseName", "string", "LeaseName is the name of the lease for which this candidate is contending."),
        col("BinaryVersion", "string", "BinaryVersion is the binary version."),
        col("EmulationVersion", "string", "EmulationVersion is the emulation version."),
        AGE,
    ],
    |obj, now| {
        let spec = |key: &str| Value::from(str_at(obj, &["spec", key]));
        vec![name(obj), spec("leaseName"), spec("binaryVersion"), spec("emulationVersion"), age(obj, now)]
    },
);

// === events.k8s.io ===

/// events.k8s.io events print like core events, read from their own fields.
static EVENT: Printer = Printer::new(EVENT_COLUMNS, |event, now| {
    let fields = EventFields {
        object: get(event, &["regarding"]),
        message: str_at(event, &["note"]),
        source: get(event, &["deprecatedSource"]),
        first: time_at(event, &["deprecatedFirstTimestamp"]),
        last: time_at(event, &["deprecatedLastTimestamp"]),
        count: int_at(event, &["deprecatedCount"]),
        reporting_controller: str_at(event, &["reportingController"]),
    };
    event_cells(event, &fields, now)
});

// === policy ===

static POD_DISRUPTION_BUDGET: Printer = Printer::new(
    &[
        NAME,
        col("Min Available", "string", "The minimum number of pods that must be available."),
        col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
        col("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
        AGE,
    ],
    |obj, now| {
        let bound = |key: &str| match get(obj, &["spec", key]) {
            Some(v) => int_or_string(v),
            None => "N/A".to_string(),
        };
        vec![
            name(obj),
            Value::from(bound("minAvailable")),
            Value::from(bound("maxUnavailable")),
            Value::from(int_at(obj, &["status", "disruptionsAllowed"])),
            age(obj, now),
        ]
    },
);

// === scheduling.k8s.io ===

static PRIORITY_CLASS: Printer = Printer::new(
    &[
        NAME,
        col("Value", "integer", "value represents the integer value of this priority class."),
        col(
            "Global-Default",
            "boolean",
            "globalDefault specifies whether this PriorityClass should be considered as the \
             default priority for pods that do not have any priority class.",
        ),
        AGE,
        col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
    ],
    |obj, now| {
        vec![
            name(obj),
            Value::from(int_at(obj, &["value"])),
            Value::from(bool_at(obj, &["globalDefault"])),
            age(obj, now),
            Value::from(str_at(obj, &["preemptionPolicy"])),
        ]
    },
);

// === rbac.authorization.k8s.io ===

static ROLE_BINDING: Printer = Printer::new(
    &[
        NAME,
        col(
            "Role",
            "string",
            "RoleRef can reference a Role in the current namespace or a ClusterRole in the \
             global namespace.",
        ),
        AGE,
        wide("Users", "string", "Users in the roleBinding"),
        wide("Groups", "string", "Groups in the roleBinding"),
        wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
    ],
    binding_cells,
);

static CLUSTER_ROLE_BINDING: Printer = Printer::new(
    &[
        NAME,
        col("Role", "string", "RoleRef can only reference a ClusterRole in the global namespace."),
        AGE,
        wide("Users", "string", "Users in the clusterRoleBinding"),
        wide("Groups", "string", "Groups in the clusterRoleBinding"),
        wide("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding"),
    ],
    binding_cells,
);

fn binding_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!("{}/{}", str_at(obj, &["roleRef", "kind"]), str_at(obj, &["roleRef", "name"]));
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in array_at(obj, &["subjects"]) {
        let subject_name = str_at(subject, &["name"]);
        match str_at(subject, &["kind"]) {
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            "ServiceAccount" => service_accounts.push(format!("{}/{subject_name}", str_at(subject, &["namespace"]))),
            _ => {}
        }
    }
    vec![
        name(obj),
        Value::from(role),
        age(obj, now),
        Value::from(users.join(", ")),
        Value::from(groups.join(", ")),
        Value::from(service_accounts.join(", ")),
    ]
}

// === autoscaling ===

static HORIZONTAL_POD_AUTOSCALER: Printer = Printer::new(
    &[
        NAME,
        col("Reference", "string", "scaleTargetRef points to the target resource to scale."),
        col(
            "Targets",
            "string",
            "metrics contains the specifications for which to use to calculate the desired \
             replica count.",
        ),
        col(
            "MinPods",
            "string",
            "minReplicas is the lower limit for the number of replicas to which the autoscaler \
             can scale down.",
        ),
        col(
            "MaxPods",
            "string",
            "maxReplicas is the upper limit for the number of replicas to which the autoscaler \
             can scale up.",
        ),
        col("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler."),
        AGE,
    ],
    horizontal_pod_autoscaler_cells,
);

fn horizontal_pod_autoscaler_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(obj, &["spec", "scaleTargetRef", "kind"]),
        str_at(obj, &["spec", "scaleTargetRef", "name"])
    );
    let min_pods = match opt_int(obj, &["spec", "minReplicas"]) {
        Some(n) => n.to_string(),
        None => "<unset>".to_string(),
    };
    let (specs, statuses) = hpa_metrics(obj);
    vec![
        name(obj),
        Value::from(reference),
        Value::from(format_hpa_metrics(&specs, &statuses)),
        Value::from(min_pods),
        Value::from(int_at(obj, &["spec", "maxReplicas"])),
        Value::from(int_at(obj, &["status", "currentReplicas"])),
        age(obj, now),
    ]
}

/// Metric specs and statuses in the autoscaling/v2 shape; autoscaling/v1
/// objects carry a CPU utilization target instead.
fn hpa_metrics(obj: &Value) -> (Vec<Value>, Vec<Value>) {
    if get(obj, &["spec", "metrics"]).is_some() {
        return (array_at(obj, &["spec", "metrics"]).to_vec(), array_at(obj, &["status", "currentMetrics"]).to_vec());
    }
    let cpu = |path: &[&str], field: &str| {
        opt_int(obj, path)
            .map(|v| json!({"type": "Resource", "resource": {"name": "cpu", field: {"averageUtilization": v}}}))
    };
    let specs = cpu(&["spec", "targetCPUUtilizationPercentage"], "target");
    let statuses = cpu(&["status", "currentCPUUtilizationPercentage"], "current");
    (specs.into_iter().collect(), statuses.into_iter().collect())
}

fn format_hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let list: Vec<String> =
        specs.iter().enumerate().map(|(i, spec)| format_hpa_metric(spec, statuses.get(i))).collect();
    let shown = list.iter().take(MAX).cloned().collect::<Vec<_>>().join(", ");
    if list.len() > MAX {
        return format!("{shown} + {} more...", list.len() - MAX);
    }
    shown
}

fn format_hpa_metric(spec: &Value, status: Option<&Value>) -> String {
    let status = status.unwrap_or(&Value::Null);
    // The current value of `source` in the status, if reported.
    let current = |source: &str, field: &str| get(status, &[source]).map(|s| quantity(get(s, &["current", field])));
    let unknown = || "<unknown>".to_string();
    match str_at(spec, &["type"]) {
        source_type @ ("External" | "Object") => {
            let source = if source_type == "External" { "external" } else { "object" };
            let target = |field: &str| get(spec, &[source, "target", field]);
            match target("averageValue") {
                Some(average) => {
                    let current = get(status, &[source, "current", "averageValue"])
                        .map(|v| quantity(Some(v)))
                        .unwrap_or_else(unknown);
                    format!("{current}/{} (avg)", quantity(Some(average)))
                }
                None => {
                    let current = current(source, "value").unwrap_or_else(unknown);
                    format!("{current}/{}", quantity(target("value")))
                }
            }
        }
        "Pods" => {
            let current = current("pods", "averageValue").unwrap_or_else(unknown);
            let target = quantity(get(spec, &["pods", "target", "averageValue"]));
            format!("{current}/{target}")
        }
        source_type @ ("Resource" | "ContainerResource") => {
            let source = if source_type == "Resource" { "resource" } else { "containerResource" };
            let resource = str_at(spec, &[source, "name"]);
            match get(spec, &[source, "target", "averageValue"]) {
                Some(average) => {
                    let current = current(source, "averageValue").unwrap_or_else(unknown);
                    format!("{resource}: {current}/{}", quantity(Some(average)))
                }
                None => {
                    let current = opt_int(status, &[source, "current", "averageUtilization"])
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(unknown);
                    let target = opt_int(spec, &[source, "target", "averageUtilization"])
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<auto>".to_string());
                    format!("{resource}: {current}/{target}")
                }
            }
        }
        _ => "<unknown type>".to_string(),
    }
}

// === certificates.k8s.io ===

static CERTIFICATE_SIGNING_REQUEST: Printer = Printer::new(
    &[
        NAME,
        AGE,
        col("SignerName", "string", "signerName indicates the requested signer, and is a qualified name."),
        col(
            "Requestor",
            "string",
            "username contains the name of the user that created the CertificateSigningRequest.",
        ),
        col(
            "RequestedDuration",
            "string",
            "expirationSeconds is the requested duration of validity of the issued certificate.",
        ),
        col(
            "Condition",
            "string",
            "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", \
             and \"Failed\".",
        ),
    ],
    |obj, now| {
        let requested = match opt_int(obj, &["spec", "expirationSeconds"]) {
            Some(seconds) => human_signed_duration(SignedDuration::from_secs(seconds)),
            None => "<none>".to_string(),
        };
        vec![
            name(obj),
            age(obj, now),
            Value::from(or_none(str_at(obj, &["spec", "signerName"]))),
            Value::from(str_at(obj, &["spec", "username"])),
            Value::from(requested),
            Value::from(csr_condition(obj)),
        ]
    },
);

fn csr_condition(obj: &Value) -> String {
    let has = |t: &str| array_at(obj, &["status", "conditions"]).iter().any(|c| str_at(c, &["type"]) == t);
    let mut status = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !str_at(obj, &["status", "certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    status
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

static CLUSTER_TRUST_BUNDLE: Printer = Printer::new(
    &[NAME, col("SignerName", "string", "signerName indicates the associated signer, if any.")],
    |obj, _now| vec![name(obj), Value::from(or_none(str_at(obj, &["spec", "signerName"])))],
);

// === node.k8s.io ===

static RUNTIME_CLASS: Printer = Printer::new(
    &[
        NAME,
        col(
            "Handler",
            "string",
            "handler specifies the underlying runtime and configuration that the CRI \
             implementation will use to handle pods of this class.",
        ),
        AGE,
    ],
    |obj, now| vec![name(obj), Value::from(str_at(obj, &["handler"])), age(obj, now)],
);

// === admissionregistration.k8s.io ===

fn admission_printer(kind: &str) -> Option<&'static Printer> {
    Some(match kind {
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => &WEBHOOK_CONFIGURATION,
        "ValidatingAdmissionPolicy" => &VALIDATING_ADMISSION_POLICY,
        "ValidatingAdmissionPolicyBinding" | "MutatingAdmissionPolicyBinding" => &ADMISSION_POLICY_BINDING,
        "MutatingAdmissionPolicy" => &MUTATING_ADMISSION_POLICY,
        _ => return None,
    })
}

static WEBHOOK_CONFIGURATION: Printer = Printer::new(
    &[
        NAME,
        col("Webhooks", "integer", "Webhooks indicates the number of webhooks registered in this configuration"),
        AGE,
    ],
    |obj, now| vec![name(obj), Value::from(len_at(obj, &["webhooks"])), age(obj, now)],
);

fn param_kind(obj: &Value) -> String {
    match get(obj, &["spec", "paramKind"]) {
        Some(p) => format!("{}/{}", str_at(p, &["apiVersion"]), str_at(p, &["kind"])),
        None => "<unset>".to_string(),
    }
}

const PARAM_KIND: crate::Column =
    col("ParamKind", "string", "ParamKind specifies the kind of resources used to parameterize this policy");

static VALIDATING_ADMISSION_POLICY: Printer = Printer::new(
    &[
        NAME,
        col(
            "Validations",
            "integer",
            "Validations indicates the number of validation rules defined in this configuration",
        ),
        PARAM_KIND,
        AGE,
    ],
    |obj, now| {
        vec![name(obj), Value::from(len_at(obj, &["spec", "validations"])), Value::from(param_kind(obj)), age(obj, now)]
    },
);

static MUTATING_ADMISSION_POLICY: Printer = Printer::new(
    &[
        NAME,
        col("Mutations", "integer", "Mutation indicates the number of mutations rules defined in this configuration"),
        PARAM_KIND,
        AGE,
    ],
    |obj, now| {
        vec![name(obj), Value::from(len_at(obj, &["spec", "mutations"])), Value::from(param_kind(obj)), age(obj, now)]
    },
);

static ADMISSION_POLICY_BINDING: Printer = Printer::new(
    &[
        NAME,
        col("PolicyName", "string", "PolicyName indicates the policy definition which the policy binding binded to"),
        col("ParamRef", "string", "ParamRef indicates the param resource which sets the configration param"),
        AGE,
    ],
    |obj, now| {
        let param = match get(obj, &["spec", "paramRef"]) {
            None => "<unset>".to_string(),
            Some(r) => match (str_at(r, &["name"]), str_at(r, &["namespace"])) {
                ("", _) => match get(r, &["selector"]) {
                    Some(selector) => go_label_selector(selector),
                    None => "<unset>".to_string(),
                },
                // Without a namespace the param may be cluster-scoped or in
                // any namespace.
                (n, "") => format!("*/{n}"),
                (n, ns) => format!("{ns}/{n}"),
            },
        };
        vec![name(obj), Value::from(str_at(obj, &["spec", "policyName"])), Value::from(param), age(obj, now)]
    },
);

/// A `metav1.LabelSelector` as its generated Go `String()` renders it.
fn go_label_selector(selector: &Value) -> String {
    let mut labels: Vec<(&String, &str)> = get(selector, &["matchLabels"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .collect();
    labels.sort();
    let labels: String = labels.iter().map(|(k, v)| format!("{k}: {v},")).collect();
    let expressions: String = array_at(selector, &["matchExpressions"])
        .iter()
        .map(|e| {
            let values: Vec<&str> = array_at(e, &["values"]).iter().filter_map(Value::as_str).collect();
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                str_at(e, &["key"]),
                str_at(e, &["operator"]),
                values.join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},\
         MatchExpressions:[]LabelSelectorRequirement{{{expressions}}},}}"
    )
}

// === flowcontrol.apiserver.k8s.io ===

static FLOW_SCHEMA: Printer = Printer::new(
    &[
        NAME,
        col("PriorityLevel", "string", "`name` is the name of the priority level configuration being referenced"),
        col(
            "MatchingPrecedence",
            "string",
            "`matchingPrecedence` is used to choose among the FlowSchemas that match a given \
             request.",
        ),
        col(
            "DistinguisherMethod",
            "string",
            "`distinguisherMethod` defines how to compute the flow distinguisher for requests \
             that match this schema.",
        ),
        AGE,
        col("MissingPL", "string", "references a broken or non-existent PriorityLevelConfiguration"),
    ],
    |obj, now| {
        let dangling = array_at(obj, &["status", "conditions"])
            .iter()
            .find(|c| str_at(c, &["type"]) == "Dangling")
            .map(|c| str_at(c, &["status"]))
            .unwrap_or("?");
        vec![
            name(obj),
            Value::from(str_at(obj, &["spec", "priorityLevelConfiguration", "name"])),
            Value::from(int_at(obj, &["spec", "matchingPrecedence"])),
            Value::from(opt_str(obj, &["spec", "distinguisherMethod", "type"]).unwrap_or("<none>")),
            age(obj, now),
            Value::from(dangling),
        ]
    },
);

static PRIORITY_LEVEL: Printer = Printer::new(
    &[
        NAME,
        col(
            "Type",
            "string",
            "`type` indicates whether this priority level is subject to limitation on request \
             execution.",
        ),
        col(
            "NominalConcurrencyShares",
            "string",
            "`nominalConcurrencyShares` (NCS) contributes to the computation of the \
             NominalConcurrencyLimit (NominalCL) of this level.",
        ),
        col("Queues", "string", "`queues` is the number of queues for this priority level."),
        col(
            "HandSize",
            "string",
            "`handSize` is a small positive number that configures the shuffle sharding of \
             requests into queues.",
        ),
        col(
            "QueueLengthLimit",
            "string",
            "`queueLengthLimit` is the maximum number of requests allowed to be waiting in a \
             given queue of this priority level at a time.",
        ),
        AGE,
    ],
    |obj, now| {
        let none = || Value::from("<none>");
        let limited = get(obj, &["spec", "limited"]);
        let shares = limited.map(|l| Value::from(int_at(l, &["nominalConcurrencyShares"]))).unwrap_or_else(none);
        let queuing = limited.and_then(|l| get(l, &["limitResponse", "queuing"]));
        let queue = |key: &str| queuing.map(|q| Value::from(int_at(q, &[key]))).unwrap_or_else(none);
        vec![
            name(obj),
            Value::from(str_at(obj, &["spec", "type"])),
            shares,
            queue("queues"),
            queue("handSize"),
            queue("queueLengthLimit"),
            age(obj, now),
        ]
    },
);

// === resource.k8s.io ===

static DEVICE_CLASS: Printer = Printer::new(&[NAME, AGE], name_and_age);

static RESOURCE_CLAIM_TEMPLATE: Printer = Printer::new(&[NAME, AGE], name_and_age);

fn name_and_age(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(obj), age(obj, now)]
}

static RESOURCE_CLAIM: Printer = Printer::new(
    &[NAME, col("State", "string", "A summary of the current state (allocated, pending, reserved, etc.)."), AGE],
    |obj, now| {
        let mut states = Vec::new();
        let deleting = is_deleting(obj);
        if deleting {
            states.push("deleted");
        }
        if get(obj, &["status", "allocation"]).is_some() {
            states.push("allocated");
            if !array_at(obj, &["status", "reservedFor"]).is_empty() {
                states.push("reserved");
            }
        } else if !deleting {
            states.push("pending");
        }
        vec![name(obj), Value::from(states.join(",")), age(obj, now)]
    },
);

static RESOURCE_SLICE: Printer = Printer::new(
    &[
        NAME,
        col("Node", "string", "NodeName identifies the node which provides the resources in this pool."),
        col("Driver", "string", "Driver identifies the DRA driver providing the capacity information."),
        col("Pool", "string", "Name is used to identify the pool."),
        AGE,
    ],
    |obj, now| {
        vec![
            name(obj),
            Value::from(str_at(obj, &["spec", "nodeName"])),
            Value::from(str_at(obj, &["spec", "driver"])),
            Value::from(str_at(obj, &["spec", "pool", "name"])),
            age(obj, now),
        ]
    },
);

// === internal.apiserver.k8s.io ===

static STORAGE_VERSION: Printer = Printer::new(
    &[
        NAME,
        col(
            "CommonEncodingVersion",
            "string",
            "If all API server instances agree on the same encoding storage version, then this \
             field is set to that version.",
        ),
        col("StorageVersions", "string", "The reported versions per API server instance."),
        AGE,
    ],
    |obj, now| {
        let versions: Vec<String> = array_at(obj, &["status", "storageVersions"])
            .iter()
            .map(|v| format!("{}={}", str_at(v, &["apiServerID"]), str_at(v, &["encodingVersion"])))
            .collect();
        vec![
            name(obj),
            Value::from(opt_str(obj, &["status", "commonEncodingVersion"]).unwrap_or("<unset>")),
            Value::from(list_with_more(&versions, 3)),
            age(obj, now),
        ]
    },
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::TablePrinter;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn cells(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
        printer(group, kind).unwrap().cells(obj, now())
    }

    #[test]
    fn lease_shows_its_holder() {
        let lease = json!({
            "metadata": {"name": "kube-scheduler", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"holderIdentity": "cp-1_4b1c", "leaseDurationSeconds": 15}
        });
        assert_eq!(
            cells("coordination.k8s.io", "Lease", &lease),
            [json!("kube-scheduler"), json!("cp-1_4b1c"), json!("60m")]
        );
        let free = json!({"metadata": {"name": "l"}, "spec": {}});
        assert_eq!(cells("coordination.k8s.io", "Lease", &free)[1], json!(""));
    }

    #[test]
    fn events_k8s_io_events_read_their_own_fields() {
        let event = json!({
            "metadata": {"name": "web.17d"},
            "eventTime": "2024-05-01T11:59:00.000000Z",
            "reportingController": "default-scheduler",
            "reportingInstance": "default-scheduler-cp-1",
            "action": "Binding",
            "reason": "Scheduled",
            "regarding": {"kind": "Pod", "namespace": "default", "name": "web"},
            "note": "Successfully assigned default/web to node-a",
            "type": "Normal"
        });
        assert_eq!(
            cells("events.k8s.io", "Event", &event),
            [
                json!("60s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/web"),
                json!(""),
                json!("default-scheduler, default-scheduler-cp-1"),
                json!("Successfully assigned default/web to node-a"),
                json!("60s"),
                json!(1),
                json!("web.17d"),
            ]
        );
    }

    #[test]
    fn pod_disruption_budget_bounds() {
        let pdb = json!({
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 2},
            "status": {"disruptionsAllowed": 1}
        });
        assert_eq!(
            cells("policy", "PodDisruptionBudget", &pdb)[..4],
            [json!("web"), json!("2"), json!("N/A"), json!(1)]
        );
        let pct = json!({"metadata": {"name": "p"}, "spec": {"maxUnavailable": "25%"}});
        assert_eq!(cells("policy", "PodDisruptionBudget", &pct)[1..3], [json!("N/A"), json!("25%")]);
    }

    #[test]
    fn priority_class_row() {
        let pc = json!({
            "metadata": {"name": "system-node-critical"},
            "value": 2000001000,
            "globalDefault": false,
            "preemptionPolicy": "PreemptLowerPriority"
        });
        assert_eq!(
            cells("scheduling.k8s.io", "PriorityClass", &pc),
            [
                json!("system-node-critical"),
                json!(2000001000),
                json!(false),
                json!("<unknown>"),
                json!("PreemptLowerPriority"),
            ]
        );
    }

    #[test]
    fn role_bindings_list_subjects_by_kind() {
        let binding = json!({
            "metadata": {"name": "admins"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [
                {"kind": "User", "name": "alice"},
                {"kind": "User", "name": "bob"},
                {"kind": "Group", "name": "ops"},
                {"kind": "ServiceAccount", "namespace": "ci", "name": "deployer"}
            ]
        });
        assert_eq!(
            cells("rbac.authorization.k8s.io", "RoleBinding", &binding),
            [
                json!("admins"),
                json!("ClusterRole/admin"),
                json!("<unknown>"),
                json!("alice, bob"),
                json!("ops"),
                json!("ci/deployer"),
            ]
        );
    }

    #[test]
    fn hpa_targets_from_v2_and_v1_shapes() {
        let v2 = json!({
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}}
                ]
            },
            "status": {
                "currentReplicas": 3,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 41, "averageValue": "205m"}}}
                ]
            }
        });
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &v2)[..6],
            [
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 41%/80%, memory: <unknown>/500Mi + 1 more..."),
                json!("2"),
                json!(10),
                json!(3),
            ]
        );
        let v1 = json!({
            "metadata": {"name": "old"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "old"}, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}
        });
        assert_eq!(
            cells("autoscaling", "HorizontalPodAutoscaler", &v1)[2..4],
            [json!("cpu: <unknown>/50%"), json!("<unset>")]
        );
    }

    #[test]
    fn csr_condition_and_duration() {
        let csr = json!({
            "metadata": {"name": "csr-8x2"},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet", "username": "system:node:node-a", "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}
        });
        assert_eq!(
            cells("certificates.k8s.io", "CertificateSigningRequest", &csr)[2..6],
            [
                json!("kubernetes.io/kube-apiserver-client-kubelet"),
                json!("system:node:node-a"),
                json!("24h"),
                json!("Approved,Issued"),
            ]
        );
    }

    #[test]
    fn admission_policy_binding_param_refs() {
        let named = json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "paramRef": {"name": "limits"}}});
        assert_eq!(
            cells("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding", &named)[1..3],
            [json!("p"), json!("*/limits")]
        );
        let selected = json!({
            "metadata": {"name": "b"},
            "spec": {"policyName": "p", "paramRef": {"selector": {"matchLabels": {"env": "prod"}}}}
        });
        assert_eq!(
            cells("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding", &selected)[2],
            json!("&LabelSelector{MatchLabels:map[string]string{env: prod,},MatchExpressions:[]LabelSelectorRequirement{},}")
        );
    }

    #[test]
    fn flow_control_rows() {
        let fs = json!({
            "metadata": {"name": "system-leader-election"},
            "spec": {"priorityLevelConfiguration": {"name": "leader-election"}, "matchingPrecedence": 100, "distinguisherMethod": {"type": "ByUser"}},
            "status": {"conditions": [{"type": "Dangling", "status": "False"}]}
        });
        let row = cells("flowcontrol.apiserver.k8s.io", "FlowSchema", &fs);
        assert_eq!(row[1..4], [json!("leader-election"), json!(100), json!("ByUser")]);
        assert_eq!(row[5], json!("False"));
        let exempt = json!({"metadata": {"name": "exempt"}, "spec": {"type": "Exempt"}});
        assert_eq!(
            cells("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration", &exempt)[1..6],
            [json!("Exempt"), json!("<none>"), json!("<none>"), json!("<none>"), json!("<none>")]
        );
    }

    #[test]
    fn resource_claim_states() {
        let pending = json!({"metadata": {"name": "gpu"}});
        assert_eq!(cells("resource.k8s.io", "ResourceClaim", &pending)[1], json!("pending"));
        let reserved = json!({
            "metadata": {"name": "gpu", "deletionTimestamp": "2024-05-01T11:00:00Z"},
            "status": {"allocation": {}, "reservedFor": [{"resource": "pods", "name": "p"}]}
        });
        assert_eq!(cells("resource.k8s.io", "ResourceClaim", &reserved)[1], json!("deleted,allocated,reserved"));
    }
}
