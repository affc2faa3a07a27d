use serde_json::{json, Value};

use super::*;
use crate::patch::builtin::annotate_openapi_schemas;
use crate::patch::SchemaPatchMeta;

/// A trimmed OpenAPI v3 `components.schemas` for pods and deployments, annotated
/// from the built-in table as the apiserver does before serving it.
fn schemas() -> Map<String, Value> {
    fn r(name: &str) -> Value {
        json!({"$ref": format!("#/components/schemas/io.k8s.api.{name}")})
    }
    fn list_of(name: &str) -> Value {
        json!({"type": "array", "items": r(name)})
    }
    let meta = json!({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"});
    let mut s = json!({
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"properties": {
            "name": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "items": {"type": "string"}},
            "ownerReferences": {"type": "array", "items": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"}}
        }},
        "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference": {"properties": {"uid": {"type": "string"}, "name": {"type": "string"}}},
        "io.k8s.api.core.v1.Pod": {"properties": {
            "metadata": {"allOf": [meta], "default": {}},
            "spec": {"allOf": [r("core.v1.PodSpec")], "default": {}}
        }},
        "io.k8s.api.core.v1.PodSpec": {"properties": {
            "containers": list_of("core.v1.Container"),
            "initContainers": list_of("core.v1.Container"),
            "volumes": list_of("core.v1.Volume"),
            "tolerations": list_of("core.v1.Toleration"),
            "securityContext": {"type": "object"}
        }},
        "io.k8s.api.core.v1.Container": {"properties": {
            "name": {"type": "string"},
            "image": {"type": "string"},
            "args": {"type": "array", "items": {"type": "string"}},
            "env": list_of("core.v1.EnvVar"),
            "ports": list_of("core.v1.ContainerPort"),
            "volumeMounts": list_of("core.v1.VolumeMount"),
            "resources": {"type": "object"}
        }},
        "io.k8s.api.core.v1.EnvVar": {"properties": {"name": {"type": "string"}, "value": {"type": "string"}}},
        "io.k8s.api.core.v1.ContainerPort": {"properties": {"containerPort": {"type": "integer"}}},
        "io.k8s.api.core.v1.VolumeMount": {"properties": {"mountPath": {"type": "string"}}},
        "io.k8s.api.core.v1.Volume": {"properties": {"name": {"type": "string"}, "emptyDir": {"type": "object"}, "hostPath": {"type": "object"}}},
        "io.k8s.api.core.v1.Toleration": {"properties": {"key": {"type": "string"}}},
        "io.k8s.api.core.v1.PodTemplateSpec": {"properties": {
            "metadata": {"allOf": [meta], "default": {}},
            "spec": {"allOf": [r("core.v1.PodSpec")], "default": {}}
        }},
        "io.k8s.api.apps.v1.Deployment": {"properties": {
            "metadata": {"allOf": [meta], "default": {}},
            "spec": {"allOf": [r("apps.v1.DeploymentSpec")], "default": {}}
        }},
        "io.k8s.api.apps.v1.DeploymentSpec": {"properties": {
            "replicas": {"type": "integer"},
            "template": {"allOf": [r("core.v1.PodTemplateSpec")], "default": {}},
            "strategy": {"allOf": [r("apps.v1.DeploymentStrategy")], "default": {}}
        }},
        "io.k8s.api.apps.v1.DeploymentStrategy": {"properties": {"type": {"type": "string"}, "rollingUpdate": {"type": "object"}}}
    });
    let mut s = s.as_object_mut().map(std::mem::take).unwrap();
    annotate_openapi_schemas(&mut s);
    s
}

fn apply(kind: &str, original: Value, patch: Value) -> Result<Value, PatchError> {
    let schemas = schemas();
    let meta = SchemaPatchMeta::new(&schemas, kind).unwrap();
    strategic_merge_patch(&original, &patch, &meta)
}

fn pod(original: Value, patch: Value) -> Value {
    apply("io.k8s.api.core.v1.Pod", original, patch).unwrap()
}

fn three_containers() -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "a:1"},
        {"name": "b", "image": "b:1"},
        {"name": "c", "image": "c:1"}
    ]}})
}

fn names(v: &Value, list: &str) -> Vec<String> {
    v.pointer(list).unwrap().as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn containers_merge_by_name_and_keep_the_others() {
    let out = pod(three_containers(), json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}));
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}])
    );
}

#[test]
fn new_containers_are_placed_after_the_patched_ones_as_upstream_orders_them() {
    let out = pod(
        three_containers(),
        json!({"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "d", "image": "d:1"}]}}),
    );
    assert_eq!(names(&out, "/spec/containers"), ["a", "b", "d", "c"]);
    let out = pod(three_containers(), json!({"spec": {"containers": [{"name": "z", "image": "z:1"}]}}));
    assert_eq!(names(&out, "/spec/containers"), ["z", "a", "b", "c"]);
}

#[test]
fn patch_delete_removes_a_container_by_name() {
    let out = pod(three_containers(), json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}));
    assert_eq!(names(&out, "/spec/containers"), ["a", "c"]);
}

#[test]
fn patch_replace_in_a_list_replaces_the_whole_list() {
    let out = pod(
        three_containers(),
        json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "x", "image": "x:1"}]}}),
    );
    assert_eq!(out["spec"]["containers"], json!([{"name": "x", "image": "x:1"}]));
}

#[test]
fn env_vars_merge_by_name_inside_a_merged_container() {
    let original = json!({"spec": {"containers": [{"name": "a", "env": [
        {"name": "X", "value": "1"}, {"name": "Y", "value": "1"}, {"name": "Z", "value": "1"}
    ]}]}});
    let patch = json!({"spec": {"containers": [{"name": "a", "env": [
        {"name": "X", "value": "2"}, {"name": "Z", "$patch": "delete"}, {"name": "W", "value": "new"}
    ]}]}});
    let out = pod(original, patch);
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        json!([{"name": "X", "value": "2"}, {"name": "W", "value": "new"}, {"name": "Y", "value": "1"}])
    );
}

#[test]
fn ports_merge_by_numeric_container_port() {
    let original = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}]}});
    let patch = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 443}]}]}});
    let out = pod(original, patch);
    assert_eq!(
        out["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "name": "web"}, {"containerPort": 443}])
    );
}

#[test]
fn finalizers_are_unioned_and_pruned_with_the_parallel_deletion_list() {
    let original = json!({"metadata": {"finalizers": ["a", "b"]}});
    let out = pod(original.clone(), json!({"metadata": {"finalizers": ["b", "c"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let out = pod(original, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["d"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["d", "b"]));
}

#[test]
fn set_element_order_reorders_containers() {
    let out = pod(
        three_containers(),
        json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}),
    );
    assert_eq!(names(&out, "/spec/containers"), ["c", "a", "b"]);
    assert!(out["spec"].get("$setElementOrder/containers").is_none());
}

#[test]
fn set_element_order_places_changed_and_new_containers() {
    let out = pod(
        three_containers(),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "d"}, {"name": "c"}, {"name": "a"}],
            "containers": [{"name": "d", "image": "d:1"}, {"name": "c", "image": "c:2"}, {"name": "b", "$patch": "delete"}]
        }}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "d", "image": "d:1"}, {"name": "c", "image": "c:2"}, {"name": "a", "image": "a:1"}])
    );
}

#[test]
fn set_element_order_that_contradicts_the_patch_is_rejected() {
    let err = apply(
        "io.k8s.api.core.v1.Pod",
        three_containers(),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "b:2"}, {"name": "a", "image": "a:2"}]
        }}),
    )
    .unwrap_err();
    assert!(matches!(err, PatchError::SetElementOrderMismatch { .. }), "{err:?}");
}

#[test]
fn set_element_order_for_primitive_lists_orders_and_deletes() {
    let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let out = pod(
        original,
        json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "x", "a"],
            "finalizers": ["x"],
            "$deleteFromPrimitiveList/finalizers": ["b"]
        }}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "x", "a"]));
}

#[test]
fn lists_without_a_strategy_are_replaced() {
    let original = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}], "containers": [{"name": "a", "args": ["x", "y"]}]}});
    let patch = json!({"spec": {"tolerations": [{"key": "c"}], "containers": [{"name": "a", "args": ["z"]}]}});
    let out = pod(original, patch);
    assert_eq!(out["spec"]["tolerations"], json!([{"key": "c"}]));
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
}

#[test]
fn maps_merge_recursively_and_null_deletes() {
    let original = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}});
    let out = pod(original, json!({"metadata": {"labels": {"a": null, "c": "3", "gone": null}}}));
    assert_eq!(out["metadata"], json!({"name": "p", "labels": {"b": "2", "c": "3"}}));
}

#[test]
fn patch_replace_on_a_map_replaces_it() {
    let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
    let out = pod(original, json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}));
    assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
}

#[test]
fn patch_delete_on_a_map_empties_it_and_merge_is_a_no_op() {
    let original = json!({"spec": {"securityContext": {"runAsUser": 1}}, "metadata": {"labels": {"a": "1"}}});
    let out = pod(
        original,
        json!({"spec": {"securityContext": {"$patch": "delete"}}, "metadata": {"labels": {"$patch": "merge", "b": "2"}}}),
    );
    assert_eq!(out["spec"]["securityContext"], json!({}));
    assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
}

#[test]
fn retain_keys_clears_fields_the_patch_does_not_keep() {
    let original =
        json!({"spec": {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let out = apply(
        "io.k8s.api.apps.v1.Deployment",
        original,
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
    )
    .unwrap();
    assert_eq!(out["spec"], json!({"replicas": 1, "strategy": {"type": "Recreate"}}));
}

#[test]
fn retain_keys_inside_volumes_switches_the_volume_source() {
    let original = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}});
    let out = pod(
        original,
        json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}),
    );
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}])
    );
}

#[test]
fn retain_keys_must_cover_the_patched_fields() {
    let err = apply(
        "io.k8s.api.apps.v1.Deployment",
        json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
    )
    .unwrap_err();
    assert_eq!(err, PatchError::RetainKeysMismatch);
    assert_eq!(err.status_code(), 422);
}

#[test]
fn deployment_patches_reach_the_pod_template() {
    let original = json!({"spec": {"replicas": 1, "template": {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}]}, {"name": "sidecar", "image": "s:1"}]}
    }}});
    let patch = json!({"spec": {"replicas": 3, "template": {
        "metadata": {"annotations": {"restartedAt": "now"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:2", "env": [{"name": "B", "value": "2"}]}]}
    }}});
    let out = apply("io.k8s.api.apps.v1.Deployment", original, patch).unwrap();
    assert_eq!(
        out,
        json!({"spec": {"replicas": 3, "template": {
            "metadata": {"labels": {"app": "web"}, "annotations": {"restartedAt": "now"}},
            "spec": {"containers": [
                {"name": "web", "image": "nginx:2", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]},
                {"name": "sidecar", "image": "s:1"}
            ]}
        }}})
    );
}

#[test]
fn directives_do_not_leak_into_fields_the_original_lacks() {
    let original = json!({"metadata": {"name": "p"}, "spec": {}});
    let patch = json!({
        "metadata": {"labels": {"$patch": "replace", "a": "1", "drop": null}},
        "spec": {
            "initContainers": [
                {"name": "i", "$setElementOrder/env": [{"name": "A"}], "env": [{"name": "A", "value": "1"}]},
                {"name": "gone", "$patch": "delete"}
            ],
            "securityContext": {"$patch": "delete"},
            "volumes": [{"name": "v", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}]
        }
    });
    let out = pod(original, patch);
    assert_eq!(
        out,
        json!({
            "metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {
                "initContainers": [{"name": "i", "env": [{"name": "A", "value": "1"}]}],
                "volumes": [{"name": "v", "emptyDir": {}}]
            }
        })
    );
}

#[test]
fn replacing_a_value_of_another_type_cleans_the_patch() {
    let out = pod(json!({"spec": "oops"}), json!({"spec": {"containers": [{"name": "a", "env": null}]}}));
    assert_eq!(out, json!({"spec": {"containers": [{"name": "a"}]}}));
}

#[test]
fn owner_references_merge_by_uid() {
    let original = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}});
    let out = pod(original, json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}));
    assert_eq!(out["metadata"]["ownerReferences"], json!([{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}]));
}

#[test]
fn elements_without_the_merge_key_are_rejected() {
    let err = apply("io.k8s.api.core.v1.Pod", three_containers(), json!({"spec": {"containers": [{"image": "x"}]}}))
        .unwrap_err();
    assert!(matches!(err, PatchError::NoMergeKey { ref key, .. } if key == "name"), "{err:?}");
    assert!(err.to_string().ends_with("does not contain declared merge key: name"), "{err}");
    let err =
        apply("io.k8s.api.core.v1.Pod", three_containers(), json!({"spec": {"containers": [{"$patch": "delete"}]}}))
            .unwrap_err();
    assert!(matches!(err, PatchError::NoMergeKey { .. }), "{err:?}");
}

#[test]
fn bad_directives_are_rejected() {
    let err = pod_err(json!({"metadata": {"labels": {"$patch": "explode"}}}));
    assert_eq!(err.to_string(), "unknown patch type: explode in map: {\"$patch\":\"explode\"}");
    let err = pod_err(json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}));
    assert_eq!(err, PatchError::MergeDirectiveInList);
    let err = pod_err(json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}));
    assert_eq!(err, PatchError::BadPrimitiveListFormat);
    let err = pod_err(json!({"spec": {"$setElementOrder": []}}));
    assert_eq!(err, PatchError::BadSetElementOrderFormat);
    let err = pod_err(json!({"spec": {"$retainKeys": "containers"}}));
    assert_eq!(err, PatchError::BadRetainKeysFormat);
    assert_eq!(err.status_code(), 400);
}

fn pod_err(patch: Value) -> PatchError {
    apply("io.k8s.api.core.v1.Pod", three_containers(), patch).unwrap_err()
}

#[test]
fn malformed_merging_lists_are_rejected() {
    let original = json!({"metadata": {"finalizers": ["a"]}});
    let err =
        apply("io.k8s.api.core.v1.Pod", original.clone(), json!({"metadata": {"finalizers": [["b"]]}})).unwrap_err();
    assert_eq!(err, PatchError::ListOfLists);
    let err = apply("io.k8s.api.core.v1.Pod", original, json!({"metadata": {"finalizers": [1]}})).unwrap_err();
    assert!(matches!(err, PatchError::MixedListElements(_)), "{err:?}");
}

#[test]
fn non_object_documents_are_bad_json() {
    let schemas = schemas();
    let meta = SchemaPatchMeta::new(&schemas, "io.k8s.api.core.v1.Pod").unwrap();
    assert_eq!(strategic_merge_patch(&json!({}), &json!([1]), &meta), Err(PatchError::BadJsonDoc));
    assert_eq!(strategic_merge_patch(&json!(1), &json!({}), &meta), Err(PatchError::BadJsonDoc));
    assert_eq!(strategic_merge_patch(&Value::Null, &json!({"a": 1}), &meta), Ok(json!({"a": 1})));
}

#[test]
fn without_a_schema_maps_merge_and_lists_are_replaced() {
    let original = json!({"spec": {"a": {"b": 1}, "list": [{"name": "x"}, {"name": "y"}]}});
    let patch = json!({"spec": {"a": {"c": 2}, "list": [{"name": "y", "$patch": "delete"}, {"name": "z"}]}});
    let out = strategic_merge_patch(&original, &patch, &NoPatchMeta).unwrap();
    assert_eq!(out, json!({"spec": {"a": {"b": 1, "c": 2}, "list": [{"name": "z"}]}}));
}
