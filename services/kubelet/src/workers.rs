//! Pod workers: one task per pod, fed the newest version of its pod and woken
//! by runtime events (the PLEG relist) and probe results, so that each pod is
//! synced serially and pods never wait for each other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{watch, Notify};

use crate::containers::pod_uid;
use crate::pods::{Kubelet, Outcome, PodState};

struct Worker {
    pod: watch::Sender<(Arc<Pod>, bool)>,
    wake: Arc<Notify>,
}

pub struct PodWorkers {
    kubelet: Arc<Kubelet>,
    workers: Mutex<HashMap<String, Worker>>,
}

impl PodWorkers {
    pub fn new(kubelet: Arc<Kubelet>) -> Arc<PodWorkers> {
        Arc::new(PodWorkers { kubelet, workers: Mutex::new(HashMap::new()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new or changed pod for this node.
    pub fn update(self: &Arc<Self>, pod: Pod) {
        let uid = pod_uid(&pod);
        let pod = Arc::new(pod);
        let mut workers = self.lock();
        if let Some(w) = workers.get(&uid) {
            let _ = w.pod.send((pod, false));
            return;
        }
        let (tx, rx) = watch::channel((pod, false));
        let wake = Arc::new(Notify::new());
        workers.insert(uid.clone(), Worker { pod: tx, wake: wake.clone() });
        drop(workers);
        let this = self.clone();
        tokio::spawn(async move { this.run(uid, rx, wake).await });
    }

    /// The pod is gone from the API (deleted without the kubelet): stop it.
    pub fn remove(&self, uid: &str) {
        if let Some(w) = self.lock().get(uid) {
            let pod = w.pod.borrow().0.clone();
            let _ = w.pod.send((pod, true));
        }
    }

    pub fn wake(&self, uid: &str) {
        if let Some(w) = self.lock().get(uid) {
            w.wake.notify_one();
        }
    }

    pub fn uids(&self) -> HashSet<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.lock().values().map(|w| w.pod.borrow().0.clone()).collect()
    }

    async fn run(self: Arc<Self>, uid: String, mut rx: watch::Receiver<(Arc<Pod>, bool)>, wake: Arc<Notify>) {
        let mut state = PodState::default();
        loop {
            let (pod, removed) = rx.borrow_and_update().clone();
            match self.kubelet.sync_pod(&pod, &mut state, removed).await {
                Outcome::Finished => break,
                Outcome::Again(after) => {
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { break },
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(after.max(Duration::from_millis(100))) => {}
                    }
                }
            }
        }
        self.lock().remove(&uid);
    }
}
