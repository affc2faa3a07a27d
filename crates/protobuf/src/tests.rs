use serde_json::{json, Value};

use super::*;
use crate::wire::{put_key, put_varint, VARINT};

/// Encodes, checks the envelope, decodes, and returns the decoded object.
fn round_trip(obj: &Value) -> Value {
    let body = encode(obj).unwrap_or_else(|e| panic!("encode: {e}"));
    assert!(is_protobuf_envelope(&body));
    decode(&body).unwrap_or_else(|e| panic!("decode: {e}"))
}

/// A message body wrapped in an envelope by hand, as another encoder would.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::new();
    put_bytes(&mut type_meta, 1, api_version.as_bytes());
    put_bytes(&mut type_meta, 2, kind.as_bytes());
    let mut out = MAGIC.to_vec();
    put_bytes(&mut out, 1, &type_meta);
    put_bytes(&mut out, 2, raw);
    out
}

#[test]
fn a_pod_with_probes_quantities_and_times_round_trips() {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "default",
            "uid": "6f1e2c1a-1111-2222-3333-444455556666",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2024-01-02T03:04:05Z",
            "deletionTimestamp": "2024-01-02T04:00:00Z",
            "deletionGracePeriodSeconds": 0,
            "labels": {"app": "web", "tier": ""},
            "annotations": {"note": "hi"},
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": "web",
                "uid": "0000",
                "controller": true,
                "blockOwnerDeletion": false
            }],
            "finalizers": ["example.com/keep"],
            "managedFields": [{
                "manager": "kubectl",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2024-01-02T03:04:05Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
            }]
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "nginx:1.27",
                "command": ["nginx", "-g", "daemon off;"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pass", "optional": false}}}
                ],
                "resources": {
                    "limits": {"cpu": "500m", "memory": "128Mi"},
                    "requests": {"cpu": "250m", "memory": "64Mi"}
                },
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                    "initialDelaySeconds": 3,
                    "periodSeconds": 10
                },
                "readinessProbe": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1},
                "startupProbe": {"exec": {"command": ["true"]}, "failureThreshold": 30},
                "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": false},
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}, {"name": "conf", "mountPath": "/etc/nginx"}]
            }],
            "ephemeralContainers": [{
                "name": "debug",
                "image": "busybox",
                "targetContainerName": "web",
                "stdin": true,
                "tty": true
            }],
            "volumes": [
                {"name": "cache", "emptyDir": {}},
                {"name": "conf", "configMap": {"name": "nginx-conf", "defaultMode": 420}}
            ],
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 300}]
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "podIPs": [{"ip": "10.0.0.5"}],
            "startTime": "2024-01-02T03:04:06Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-02T03:04:09Z"}],
            "containerStatuses": [{
                "name": "web",
                "ready": true,
                "restartCount": 2,
                "image": "nginx:1.27",
                "imageID": "sha256:abc",
                "started": true,
                "state": {"running": {"startedAt": "2024-01-02T03:04:07Z"}}
            }]
        }
    });
    assert_eq!(round_trip(&pod), pod);
}

#[test]
fn int_or_string_is_written_as_upstream_lays_it_out() {
    let pdb = json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "p"},
        "spec": {"minAvailable": "50%", "maxUnavailable": 1}
    });
    let body = encode(&pdb).unwrap();
    // spec (2) → minAvailable (1) = {type: 1, intVal: 0, strVal: "50%"}.
    let min_available = [0x0a, 0x09, 0x08, 0x01, 0x10, 0x00, 0x1a, 0x03, b'5', b'0', b'%'];
    assert!(body.windows(min_available.len()).any(|w| w == min_available));
    assert_eq!(round_trip(&pdb), pdb);
}

#[test]
fn a_deployment_list_round_trips_without_item_type_meta() {
    let list = json!({
        "apiVersion": "apps/v1",
        "kind": "DeploymentList",
        "metadata": {"resourceVersion": "7", "continue": "abc", "remainingItemCount": 0},
        "items": [
            {"metadata": {"name": "a"}, "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}}, "status": {}},
            {"metadata": {"name": "b"}, "spec": {"replicas": 2, "selector": {}, "template": {}}, "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "2024-01-02T03:04:05Z"}]}}
        ]
    });
    assert_eq!(round_trip(&list), list);
    let mut typed = list.clone();
    typed["items"][0]["apiVersion"] = "apps/v1".into();
    typed["items"][0]["kind"] = "Deployment".into();
    assert_eq!(round_trip(&typed), list);
}

#[test]
fn secrets_and_config_maps_carry_bytes_as_base64() {
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "type": "Opaque",
        "immutable": true,
        "data": {"bin": "AAEC//4=", "empty": ""},
        "stringData": {"plain": "text"}
    });
    let body = encode(&secret).unwrap();
    assert!(body.windows(5).any(|w| w == [0, 1, 2, 0xff, 0xfe]));
    assert_eq!(round_trip(&secret), secret);

    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"a": "b"},
        "binaryData": {"blob": "aGVsbG8="}
    });
    assert_eq!(round_trip(&cm), cm);
}

#[test]
fn micro_times_and_durations_use_their_json_spellings() {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "node-a", "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": "node-a",
            "leaseDurationSeconds": 40,
            "acquireTime": "2024-01-02T03:04:05.000000Z",
            "renewTime": "2024-01-02T03:04:05.123456Z",
            "leaseTransitions": 0
        }
    });
    assert_eq!(round_trip(&lease), lease);

    let metrics = json!({
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": {"name": "p"},
        "timestamp": "2024-01-02T03:04:05Z",
        "window": "1m30s",
        "containers": [{"name": "c", "usage": {"cpu": "1m", "memory": "2Mi"}}]
    });
    assert_eq!(round_trip(&metrics), metrics);
}

#[test]
fn raw_extensions_embed_json_or_nested_protobuf() {
    let list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {},
        "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, null]
    });
    assert_eq!(round_trip(&list), list);

    // Upstream encodes a watch event's object as a protobuf envelope of its own.
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}});
    let nested = encode(&namespace).unwrap();
    let mut object = Vec::new();
    put_bytes(&mut object, 1, &nested);
    let mut event = Vec::new();
    put_bytes(&mut event, 1, b"ADDED");
    put_bytes(&mut event, 2, &object);
    let decoded = decode(&envelope("meta.k8s.io/v1", "WatchEvent", &event)).unwrap();
    assert_eq!(
        decoded,
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "WatchEvent", "type": "ADDED", "object": namespace})
    );
}

#[test]
fn string_list_wrappers_are_plain_arrays() {
    let review = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "metadata": {},
        "status": {"userInfo": {
            "username": "alice",
            "groups": ["system:authenticated"],
            "extra": {"scopes": ["a", "b"], "none": []}
        }}
    });
    assert_eq!(round_trip(&review), review);

    let resources = json!({
        "apiVersion": "v1",
        "kind": "APIResourceList",
        "groupVersion": "apps/v1",
        "resources": [{"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "verbs": ["get", "list"], "shortNames": ["deploy"]}]
    });
    assert_eq!(round_trip(&resources), resources);
}

#[test]
fn meta_kinds_resolve_in_any_built_in_group_version() {
    let status = json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": "pods \"x\" not found",
        "reason": "NotFound",
        "details": {"name": "x", "kind": "pods", "causes": [{"reason": "FieldValueInvalid", "field": "spec"}]},
        "code": 404
    });
    assert_eq!(round_trip(&status), status);

    let delete = json!({
        "apiVersion": "apps/v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Foreground",
        "preconditions": {"uid": "u", "resourceVersion": ""},
        "dryRun": ["All"]
    });
    assert_eq!(round_trip(&delete), delete);
}

#[test]
fn inline_fields_flatten_into_their_parent() {
    let pv = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pv"},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "hostPath": {"path": "/data", "type": "DirectoryOrCreate"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain"
        }
    });
    assert_eq!(round_trip(&pv), pv);

    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "i"},
        "spec": {"rules": [{"host": "foo.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]}
    });
    assert_eq!(round_trip(&ingress), ingress);

    let webhooks = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "w"},
        "webhooks": [{
            "name": "w.example.com",
            "clientConfig": {"service": {"namespace": "ns", "name": "svc", "port": 443}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"]
        }]
    });
    assert_eq!(round_trip(&webhooks), webhooks);
}

#[test]
fn value_fields_at_zero_are_dropped_but_pointer_fields_are_kept() {
    // DeploymentSpec: replicas (1) is *int32, minReadySeconds (5) and paused (7) are values.
    let mut spec = Vec::new();
    for (field, value) in [(1, 0), (5, 0), (7, 0)] {
        put_key(&mut spec, field, VARINT);
        put_varint(&mut spec, value);
    }
    let mut meta = Vec::new();
    put_bytes(&mut meta, 1, b"d");
    put_bytes(&mut meta, 2, b""); // generateName: a value field, empty.
    put_bytes(&mut meta, 8, b""); // creationTimestamp: Go's zero time.
    let mut raw = Vec::new();
    put_bytes(&mut raw, 1, &meta);
    put_bytes(&mut raw, 2, &spec);
    put_bytes(&mut raw, 3, b"");
    let decoded = decode(&envelope("apps/v1", "Deployment", &raw)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"replicas": 0},
            "status": {}
        })
    );
}

#[test]
fn the_unix_epoch_is_not_the_zero_time() {
    let ns = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "n", "creationTimestamp": "1970-01-01T00:00:00Z"}
    });
    assert_eq!(round_trip(&ns), ns);
}

#[test]
fn repeated_singular_messages_merge_like_protobuf() {
    let mut first = Vec::new();
    put_bytes(&mut first, 1, b"n");
    let mut second = Vec::new();
    put_bytes(&mut second, 3, b"ns");
    let mut raw = Vec::new();
    put_bytes(&mut raw, 1, &first);
    put_bytes(&mut raw, 1, &second);
    let decoded = decode(&envelope("v1", "ConfigMap", &raw)).unwrap();
    assert_eq!(decoded["metadata"], json!({"name": "n", "namespace": "ns"}));
}

#[test]
fn unknown_json_fields_are_dropped() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "future": 1}, "extra": true});
    assert_eq!(round_trip(&cm), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}));
}

#[test]
fn support_follows_the_descriptors() {
    assert!(supports("v1", "Pod"));
    assert!(supports("apps/v1", "DeploymentList"));
    assert!(supports("rbac.authorization.k8s.io/v1", "ClusterRole"));
    assert!(supports("autoscaling/v2", "HorizontalPodAutoscaler"));
    assert!(!supports("apiextensions.k8s.io/v1", "CustomResourceDefinition"));
    assert!(!supports("example.com/v1", "Widget"));
    assert!(!supports("v1", "ObjectMeta"));
    assert!(!supports("", "Pod"));
}

#[test]
fn errors_name_what_is_wrong_and_where() {
    assert!(matches!(decode(b"{\"kind\":\"Pod\"}"), Err(Error::NotProtobuf)));
    assert!(!is_protobuf_envelope(b"k8s"));

    let err = encode(&json!({"kind": "Pod"})).unwrap_err();
    assert!(matches!(err, Error::MissingTypeMeta), "{err}");

    let err = encode(&json!({"apiVersion": "example.com/v1", "kind": "Widget"})).unwrap_err();
    assert!(matches!(err, Error::UnsupportedKind { .. }), "{err}");

    let bad = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "spec": {"template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": "80"}]}]}}}
    });
    let err = encode(&bad).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid value at spec.template.spec.containers[0].ports[0].containerPort: expected an integer, got a string"
    );

    let too_big = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 1u64 << 40}});
    assert!(encode(&too_big).unwrap_err().to_string().contains("out of range"));

    let bad_time = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"creationTimestamp": "soon"}});
    assert!(encode(&bad_time).unwrap_err().to_string().starts_with("invalid value at metadata.creationTimestamp"));

    let body = encode(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "abc"}})).unwrap();
    for cut in 5..body.len() - 1 {
        // Every truncation either fails cleanly or decodes a prefix; none panics.
        let _ = decode(&body[..cut]);
    }
    let err = decode(&body[..body.len() - 9]).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");

    let mut encoded = body.clone();
    encoded.extend_from_slice(&[0x1a, 0x04, b'g', b'z', b'i', b'p']);
    assert!(matches!(decode(&encoded), Err(Error::UnsupportedContentEncoding(e)) if e == "gzip"));
}

#[test]
fn deeply_nested_raw_extensions_are_refused() {
    let mut body = encode(&json!({"apiVersion": "v1", "kind": "Namespace"})).unwrap();
    for _ in 0..MAX_DEPTH + 10 {
        let mut object = Vec::new();
        put_bytes(&mut object, 1, &body);
        let mut event = Vec::new();
        put_bytes(&mut event, 2, &object);
        body = envelope("meta.k8s.io/v1", "WatchEvent", &event);
    }
    assert!(matches!(decode(&body), Err(Error::TooDeep { .. })));
}
