//! Built-in mutating admission run before the strategy: ServiceAccount
//! defaulting for pods and IP/port allocation for services.

use apimachinery::status::ApiError;
use serde_json::{json, Value};

use crate::endpoints::ApiServer;
use crate::registry::ResourceDescriptor;

/// Mutations applied to a new object before it is validated and stored.
pub async fn mutate_on_create(server: &ApiServer, d: &ResourceDescriptor, mut obj: Value) -> Result<Value, ApiError> {
    match (d.group, d.plural) {
        ("", "pods") => {
            let spec = &mut obj["spec"];
            if spec.is_object() && spec["serviceAccountName"].as_str().unwrap_or_default().is_empty() {
                spec["serviceAccountName"] = json!("default");
                spec["serviceAccount"] = json!("default");
            }
        }
        ("", "services") => {
            if let Some(alloc) = &server.allocator {
                alloc.allocate_for(&mut obj).await?;
            }
        }
        _ => {}
    }
    Ok(obj)
}

/// Frees what admission allocated for an object that is gone or was never stored.
pub async fn release(server: &ApiServer, d: &ResourceDescriptor, obj: &Value) {
    if let (("", "services"), Some(alloc)) = ((d.group, d.plural), &server.allocator) {
        alloc.release(obj).await;
    }
}
