//! Records core/v1 Events (what `kubectl describe` and `kubectl get events`
//! show) without blocking the caller: events go through a bounded queue to a
//! writer task, and are dropped with a warning when the apiserver cannot keep
//! up, as client-go's broadcaster drops them.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;

const QUEUE: usize = 4096;
const CONCURRENT_WRITES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A handle that queues events for one reporting component.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    component: String,
    host: Option<String>,
}

impl Recorder {
    /// Starts the writer task. `component` is the event source (`default-scheduler`, `replicaset-controller`...).
    pub fn new(client: kube::Client, component: &str, host: Option<String>) -> Recorder {
        let (tx, rx) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(write_events(client, rx));
        Recorder { tx, component: component.to_string(), host }
    }

    /// The same writer under another component name.
    pub fn for_component(&self, component: &str) -> Recorder {
        Recorder { tx: self.tx.clone(), component: component.to_string(), host: self.host.clone() }
    }

    pub fn event(&self, regarding: ObjectReference, kind: EventType, reason: &str, message: &str) {
        let now = Time(jiff::Timestamp::now());
        let namespace = regarding.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or("unknown"),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        );
        let event = Event {
            metadata: ObjectMeta { name: Some(name), namespace: Some(namespace), ..Default::default() },
            involved_object: regarding,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(kind.as_str().to_string()),
            source: Some(EventSource { component: Some(self.component.clone()), host: self.host.clone() }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        if self.tx.try_send(event).is_err() {
            tracing::warn!(reason, "event queue full; dropping an event");
        }
    }
}

async fn write_events(client: kube::Client, rx: mpsc::Receiver<Event>) {
    use futures::StreamExt;
    tokio_stream::wrappers::ReceiverStream::new(rx)
        .for_each_concurrent(CONCURRENT_WRITES, |event| {
            let client = client.clone();
            async move {
                let ns = event.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Event> = Api::namespaced(client, &ns);
                if let Err(e) = api.create(&PostParams::default(), &event).await {
                    tracing::debug!("writing event {:?}: {e}", event.reason);
                }
            }
        })
        .await;
}

/// An ObjectReference to a typed object.
pub fn object_ref<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: obj.meta().name.clone(),
        namespace: obj.meta().namespace.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        field_path: None,
    }
}
