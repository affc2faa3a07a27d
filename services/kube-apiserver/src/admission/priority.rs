//! Priority: `priorityClassName` resolves to `priority` and `preemptionPolicy`;
//! a pod without one gets the global default class, if any.

use apimachinery::status::ApiError;
use serde_json::{json, Value};

use super::{done, AdmissionPlugin, Attributes, Hook, Operation};
use crate::endpoints::ApiServer;

pub struct Priority;

impl AdmissionPlugin for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    fn admit<'a>(&'a self, server: &'a ApiServer, a: &'a mut Attributes<'_>) -> Hook<'a> {
        if a.operation != Operation::Create || !a.is_main("", "pods") {
            return done(Ok(()));
        }
        done(match a.object_mut() {
            Some(pod) => resolve(server, pod),
            None => Ok(()),
        })
    }
}

fn resolve(server: &ApiServer, pod: &mut Value) -> Result<(), ApiError> {
    let Some(pcd) = server.resources.lookup("scheduling.k8s.io", "v1", "priorityclasses") else {
        return Ok(());
    };
    let cache = server.store.cache(pcd);
    let wanted = pod["spec"]["priorityClassName"].as_str().unwrap_or_default().to_string();
    let class = if wanted.is_empty() {
        let (all, _) = cache.snapshot(&pcd.key_prefix(&server.store.root, None));
        all.iter().map(|c| c.value()).find(|c| c["globalDefault"] == true)
    } else {
        match cache.get(&pcd.key(&server.store.root, "", &wanted)) {
            Some(c) => Some(c.value()),
            None => {
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                return Err(ApiError::forbidden(format!(
                    "pods \"{name}\" is forbidden: no PriorityClass with name {wanted} was found"
                )));
            }
        }
    };
    if let Some(c) = class {
        let computed = c.get("preemptionPolicy").cloned().unwrap_or(json!("PreemptLowerPriority"));
        let given = &pod["spec"]["preemptionPolicy"];
        if given.is_string() && *given != computed {
            return Err(ApiError::forbidden(format!(
                "the string value of PreemptionPolicy ({}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
                given.as_str().unwrap_or_default(),
                computed.as_str().unwrap_or_default()
            )));
        }
        pod["spec"]["priorityClassName"] = c["metadata"]["name"].clone();
        pod["spec"]["priority"] = c["value"].clone();
        pod["spec"]["preemptionPolicy"] = computed;
    }
    Ok(())
}
