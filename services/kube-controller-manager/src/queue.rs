//! client-go's rate-limited work queue: a key is queued at most once, is
//! never handed to two workers at a time, and one added while it is being
//! processed is queued again when that worker is done.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

type Labels = Vec<(String, String)>;

/// Upstream's workqueue metrics, labelled by queue name.
#[derive(Clone, Default)]
pub struct QueueMetrics {
    adds: Family<Labels, Counter>,
    depth: Family<Labels, Gauge>,
    retries: Family<Labels, Counter>,
}

impl QueueMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("workqueue_adds", "Total number of adds handled by workqueue", self.adds.clone());
        registry.register("workqueue_depth", "Current depth of workqueue", self.depth.clone());
        registry.register("workqueue_retries", "Total number of retries handled by workqueue", self.retries.clone());
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
}

#[derive(Clone)]
pub struct WorkQueue {
    name: Labels,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    metrics: QueueMetrics,
}

impl WorkQueue {
    pub fn new(name: &str, metrics: &QueueMetrics) -> WorkQueue {
        WorkQueue {
            name: vec![("name".into(), name.into())],
            state: Default::default(),
            notify: Arc::new(Notify::new()),
            metrics: metrics.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.lock();
        if !s.dirty.insert(key.clone()) {
            return;
        }
        self.metrics.adds.get_or_create(&self.name).inc();
        if s.processing.contains(&key) {
            return;
        }
        s.queue.push_back(key);
        self.metrics.depth.get_or_create(&self.name).set(s.queue.len() as i64);
        drop(s);
        self.notify.notify_one();
    }

    pub fn add_after(&self, key: impl Into<String>, after: Duration) {
        let key = key.into();
        if after.is_zero() {
            return self.add(key);
        }
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            this.add(key);
        });
    }

    /// Requeues with per-key exponential back-off (5ms doubling, at most 60s).
    pub fn add_rate_limited(&self, key: impl Into<String>) {
        let key = key.into();
        let n = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        self.metrics.retries.get_or_create(&self.name).inc();
        let delay = Duration::from_millis(5u64.saturating_mul(1 << n.min(20))).min(Duration::from_secs(60));
        self.add_after(key, delay);
    }

    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    pub async fn get(&self) -> String {
        loop {
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    self.metrics.depth.get_or_create(&self.name).set(s.queue.len() as i64);
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            self.notify.notified().await;
        }
    }

    pub fn done(&self, key: &str) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.to_string());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Runs `workers` loops calling `sync(key)`; Ok(Some(d)) requeues after d.
    pub fn run_workers<F, Fut, E>(&self, workers: usize, sync: F)
    where
        F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Duration>, E>> + Send,
        E: std::fmt::Display,
    {
        for _ in 0..workers.max(1) {
            let queue = self.clone();
            let sync = sync.clone();
            tokio::spawn(async move {
                loop {
                    let key = queue.get().await;
                    match sync(key.clone()).await {
                        Ok(after) => {
                            queue.forget(&key);
                            if let Some(after) = after {
                                queue.add_after(key.clone(), after);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(queue = %queue.name[0].1, %key, "sync failed, requeuing: {e}");
                            queue.add_rate_limited(key.clone());
                        }
                    }
                    queue.done(&key);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_added_twice_is_handed_out_once() {
        let q = WorkQueue::new("t", &QueueMetrics::default());
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.get().await, "a");
        assert_eq!(q.get().await, "b");
        assert!(q.lock().queue.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_processing_comes_back_after_done() {
        let q = WorkQueue::new("t", &QueueMetrics::default());
        q.add("a");
        let k = q.get().await;
        q.add("a");
        assert!(q.lock().queue.is_empty());
        q.done(&k);
        assert_eq!(q.get().await, "a");
    }
}
