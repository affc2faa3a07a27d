//! LimitRanger: container requests/limits default from the namespace's
//! LimitRanges (mutating), and must stay within their min/max (validating).

use apimachinery::quantity::parse_milli;
use apimachinery::status::ApiError;
use serde_json::Value;

use super::{done, AdmissionPlugin, Attributes, Hook, Operation};
use crate::endpoints::ApiServer;

pub struct LimitRanger;

impl AdmissionPlugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    fn admit<'a>(&'a self, server: &'a ApiServer, a: &'a mut Attributes<'_>) -> Hook<'a> {
        if applies(a) {
            let ranges = container_limits(server, a.namespace);
            if let Some(pod) = a.object_mut() {
                for limit in &ranges {
                    set_defaults(limit, pod);
                }
            }
        }
        done(Ok(()))
    }

    fn validate<'a>(&'a self, server: &'a ApiServer, a: &'a mut Attributes<'_>) -> Hook<'a> {
        if !applies(a) {
            return done(Ok(()));
        }
        let ranges = container_limits(server, a.namespace);
        let result = match a.object() {
            Some(pod) => ranges.iter().try_for_each(|limit| check_bounds(limit, pod)),
            None => Ok(()),
        };
        done(result)
    }
}

fn applies(a: &Attributes<'_>) -> bool {
    a.operation == Operation::Create && a.is_main("", "pods") && !a.namespace.is_empty()
}

/// The `Container` limits of the namespace's LimitRanges.
fn container_limits(server: &ApiServer, ns: &str) -> Vec<Value> {
    let Some(lrd) = server.resources.lookup("", "v1", "limitranges") else { return Vec::new() };
    let (ranges, _) = server.store.cache(lrd).snapshot(&lrd.key_prefix(&server.store.root, Some(ns)));
    ranges
        .iter()
        .flat_map(|lr| lr.value()["spec"]["limits"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["type"] == "Container")
        .collect()
}

fn set_defaults(limit: &Value, pod: &mut Value) {
    for list in ["containers", "initContainers"] {
        let Some(containers) = pod["spec"][list].as_array_mut() else { continue };
        for c in containers {
            for (field, source) in [("limits", "default"), ("requests", "defaultRequest")] {
                for (res, q) in limit[source].as_object().into_iter().flatten() {
                    if c["resources"][field][res].is_null() {
                        c["resources"][field][res] = q.clone();
                    }
                }
            }
            // A default limit below an explicit request would be invalid; upstream
            // defaults requests from limits when only limits are set.
            for (res, q) in c["resources"]["limits"].as_object().cloned().unwrap_or_default() {
                if c["resources"]["requests"][&res].is_null() {
                    c["resources"]["requests"][&res] = q;
                }
            }
        }
    }
}

fn check_bounds(limit: &Value, pod: &Value) -> Result<(), ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            for (bound, field, word) in [("max", "limits", "maximum"), ("min", "requests", "minimum")] {
                for (res, q) in limit[bound].as_object().into_iter().flatten() {
                    let (Some(b), Some(v)) = (
                        q.as_str().and_then(|q| parse_milli(q).ok()),
                        c["resources"][field][res].as_str().and_then(|q| parse_milli(q).ok()),
                    ) else {
                        continue;
                    };
                    let over = if bound == "max" { v > b } else { v < b };
                    if over {
                        let what = if field == "limits" { "limit" } else { "request" };
                        return Err(ApiError::forbidden(format!(
                            "pods \"{name}\" is forbidden: {word} {res} usage per Container is {}, but {what} is {}",
                            q.as_str().unwrap_or_default(),
                            c["resources"][field][res].as_str().unwrap_or_default()
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}
