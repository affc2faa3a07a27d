//! The scheduling queue, as upstream's: an active queue ordered by priority
//! then arrival, a backoff queue for pods whose last attempt failed (1 s
//! doubling to 10 s by default), and an unschedulable set whose pods go back
//! to work when a cluster event could make them fit, or after five minutes.
//! A move event that happens while a pod is being scheduled sends that pod to
//! backoff rather than to the unschedulable set, so no event is lost.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;

/// How long a pod may stay unschedulable before it is retried anyway (upstream's
/// `--pod-max-in-unschedulable-pods-duration` default).
pub const MAX_UNSCHEDULABLE_DURATION: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

struct Entry {
    pod: Arc<Pod>,
    place: Place,
    priority: i32,
    /// When the pod (re-)entered the queue: ties in priority go first come, first served.
    since: Instant,
    attempts: u32,
    backoff_until: Instant,
    /// Bumped on every change so that stale heap entries are skipped.
    generation: u64,
    /// The move-event counter when the pod was popped.
    popped_at_move: u64,
    /// The assigned-pod event counter when the pod was popped.
    popped_at_pod_move: u64,
    /// The last attempt failed on pod (anti-)affinity or topology spreading,
    /// which a pod bound or relabelled elsewhere can change.
    waits_for_pods: bool,
}

#[derive(PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    since: Instant,
    key: String,
    generation: u64,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.since.cmp(&self.since))
            .then_with(|| other.key.cmp(&self.key))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, String, u64)>>,
    moves: u64,
    /// Assigned pods added or relabelled (each may make a pod waiting for pods fit).
    pod_moves: u64,
    next_generation: u64,
    /// At least as many unschedulable pods as wait for pods (see [`Entry::waits_for_pods`]);
    /// zero lets a bound pod skip the scan.
    waiting_for_pods: usize,
}

/// Counts of pods in each part of the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depths {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
}

pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_unschedulable: Duration,
}

pub fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

impl SchedulingQueue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration, max_unschedulable: Duration) -> SchedulingQueue {
        SchedulingQueue {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            initial_backoff,
            max_backoff,
            max_unschedulable,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new or changed pending pod. New pods go to the active queue; an
    /// update of an unschedulable pod may have made it fit, so it moves too.
    pub fn add_or_update(&self, pod: Arc<Pod>) {
        let key = pod_key(&pod);
        let mut q = self.lock();
        let now = Instant::now();
        let generation = q.bump();
        match q.entries.get_mut(&key) {
            Some(e) => {
                let spec_changed = e.pod.spec != pod.spec || e.pod.metadata.labels != pod.metadata.labels;
                e.priority = priority(&pod);
                e.pod = pod;
                if e.place == Place::Unschedulable && spec_changed {
                    e.generation = generation;
                    if e.backoff_until > now {
                        e.place = Place::Backoff;
                        let until = e.backoff_until;
                        q.backoff.push(Reverse((until, key, generation)));
                    } else {
                        e.place = Place::Active;
                        let item = ActiveItem { priority: e.priority, since: e.since, key, generation };
                        q.active.push(item);
                        drop(q);
                        self.notify.notify_one();
                    }
                }
            }
            None => {
                let entry = Entry {
                    priority: priority(&pod),
                    pod,
                    place: Place::Active,
                    since: now,
                    attempts: 0,
                    backoff_until: now,
                    generation,
                    popped_at_move: 0,
                    popped_at_pod_move: 0,
                    waits_for_pods: false,
                };
                q.active.push(ActiveItem { priority: entry.priority, since: now, key: key.clone(), generation });
                q.entries.insert(key, entry);
                drop(q);
                self.notify.notify_one();
            }
        }
    }

    /// The pod is gone or was bound elsewhere.
    pub fn delete(&self, key: &str) {
        self.lock().entries.remove(key);
    }

    /// Waits for the highest-priority active pod and marks it in flight.
    pub async fn pop(&self) -> Arc<Pod> {
        loop {
            let notified = self.notify.notified();
            if let Some(pod) = self.try_pop() {
                return pod;
            }
            notified.await;
        }
    }

    fn try_pop(&self) -> Option<Arc<Pod>> {
        let mut q = self.lock();
        while let Some(item) = q.active.pop() {
            let moves = q.moves;
            let pod_moves = q.pod_moves;
            let Some(e) = q.entries.get_mut(&item.key) else { continue };
            if e.generation != item.generation || e.place != Place::Active {
                continue;
            }
            e.place = Place::InFlight;
            e.attempts += 1;
            e.popped_at_move = moves;
            e.popped_at_pod_move = pod_moves;
            return Some(e.pod.clone());
        }
        None
    }

    /// The pod was bound (or the binding showed it gone or bound elsewhere): it
    /// leaves the queue. While its binding is in flight it stays, so that a
    /// failed binding goes back with its attempts counted ([`Self::error`]).
    pub fn done(&self, key: &str) {
        let mut q = self.lock();
        if q.entries.get(key).is_some_and(|e| e.place == Place::InFlight) {
            q.entries.remove(key);
        }
    }

    fn backoff_for(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(16);
        (self.initial_backoff * (1u32 << shift)).min(self.max_backoff)
    }

    /// The attempt failed because no node fits: the pod waits for a cluster
    /// event, unless one already happened during the attempt.
    /// `waits_for_pods`: the failure involved pod (anti-)affinity or topology
    /// spreading, so an assigned pod added or relabelled may make it fit.
    pub fn unschedulable(&self, key: &str, waits_for_pods: bool) {
        self.requeue(key, false, waits_for_pods);
    }

    /// The attempt failed for another reason (a binding error): retry after backoff.
    pub fn error(&self, key: &str) {
        self.requeue(key, true, false);
    }

    fn requeue(&self, key: &str, force_backoff: bool, waits_for_pods: bool) {
        let backoff_for_attempts = {
            let q = self.lock();
            match q.entries.get(key) {
                Some(e) => self.backoff_for(e.attempts),
                None => return,
            }
        };
        let mut q = self.lock();
        let moves = q.moves;
        let pod_moves = q.pod_moves;
        let generation = q.bump();
        let now = Instant::now();
        let Some(e) = q.entries.get_mut(key) else { return };
        if e.place != Place::InFlight {
            return;
        }
        e.generation = generation;
        e.backoff_until = now + backoff_for_attempts;
        e.since = now;
        e.waits_for_pods = waits_for_pods;
        let missed = e.popped_at_move != moves || (waits_for_pods && e.popped_at_pod_move != pod_moves);
        if force_backoff || missed {
            e.place = Place::Backoff;
            let until = e.backoff_until;
            q.backoff.push(Reverse((until, key.to_string(), generation)));
        } else {
            e.place = Place::Unschedulable;
            if waits_for_pods {
                q.waiting_for_pods += 1;
            }
        }
    }

    /// An assigned pod was added or its labels changed (upstream's
    /// AssignedPodAdd/AssignedPodUpdate): only unschedulable pods whose
    /// failure involved pod affinity or spreading go back to work.
    pub fn move_pod_waiters_to_active(&self) {
        let mut q = self.lock();
        q.pod_moves += 1;
        if q.waiting_for_pods == 0 {
            return;
        }
        let keys: Vec<String> = q
            .entries
            .iter()
            .filter(|(_, e)| e.place == Place::Unschedulable && e.waits_for_pods)
            .map(|(k, _)| k.clone())
            .collect();
        q.waiting_for_pods = 0;
        let moved = !keys.is_empty();
        for key in keys {
            q.activate_or_backoff(&key);
        }
        drop(q);
        if moved {
            self.notify.notify_one();
        }
    }

    /// A cluster event that may make unschedulable pods fit (a node added or
    /// changed, a pod deleted): every unschedulable pod goes back to work.
    pub fn move_all_to_active(&self) {
        let mut q = self.lock();
        q.moves += 1;
        let keys: Vec<String> =
            q.entries.iter().filter(|(_, e)| e.place == Place::Unschedulable).map(|(k, _)| k.clone()).collect();
        let moved = !keys.is_empty();
        q.waiting_for_pods = 0;
        for key in keys {
            q.activate_or_backoff(&key);
        }
        drop(q);
        if moved {
            self.notify.notify_waiters();
            self.notify.notify_one();
        }
    }

    /// Moves pods whose backoff expired to the active queue, and pods
    /// unschedulable for too long back to work. Called periodically.
    pub fn flush(&self) {
        let mut q = self.lock();
        let now = Instant::now();
        let mut moved = false;
        while let Some(Reverse((until, key, generation))) = q.backoff.peek().cloned() {
            if until > now {
                break;
            }
            q.backoff.pop();
            let fresh = q.entries.get(&key).is_some_and(|e| e.generation == generation && e.place == Place::Backoff);
            if fresh {
                q.activate(&key);
                moved = true;
            }
        }
        let stale: Vec<String> = q
            .entries
            .iter()
            .filter(|(_, e)| e.place == Place::Unschedulable && now.duration_since(e.since) > self.max_unschedulable)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            q.activate_or_backoff(&key);
            moved = true;
        }
        drop(q);
        if moved {
            self.notify.notify_one();
        }
    }

    pub fn depths(&self) -> Depths {
        let q = self.lock();
        let mut d = Depths::default();
        for e in q.entries.values() {
            match e.place {
                Place::Active | Place::InFlight => d.active += 1,
                Place::Backoff => d.backoff += 1,
                Place::Unschedulable => d.unschedulable += 1,
            }
        }
        d
    }

    /// Drops pods a relist did not return.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.lock().entries.retain(|k, _| keep(k));
    }

    pub fn contains(&self, key: &str) -> bool {
        self.lock().entries.contains_key(key)
    }
}

impl Inner {
    fn bump(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    fn activate(&mut self, key: &str) {
        let generation = self.bump();
        let Some(e) = self.entries.get_mut(key) else { return };
        e.place = Place::Active;
        e.generation = generation;
        let item = ActiveItem { priority: e.priority, since: e.since, key: key.to_string(), generation };
        self.active.push(item);
    }

    fn activate_or_backoff(&mut self, key: &str) {
        let now = Instant::now();
        let Some(until) = self.entries.get(key).map(|e| e.backoff_until) else { return };
        if until > now {
            let generation = self.bump();
            if let Some(e) = self.entries.get_mut(key) {
                e.place = Place::Backoff;
                e.generation = generation;
            }
            self.backoff.push(Reverse((until, key.to_string(), generation)));
        } else {
            self.activate(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, prio: i32) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("ns".into()), ..Default::default() },
            spec: Some(PodSpec { priority: Some(prio), ..Default::default() }),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn pops_by_priority_then_arrival() {
        let q = SchedulingQueue::new(Duration::from_millis(10), Duration::from_millis(40), MAX_UNSCHEDULABLE_DURATION);
        q.add_or_update(pod("low", 0));
        q.add_or_update(pod("high", 100));
        q.add_or_update(pod("low2", 0));
        assert_eq!(q.pop().await.metadata.name.as_deref(), Some("high"));
        assert_eq!(q.pop().await.metadata.name.as_deref(), Some("low"));
        assert_eq!(q.pop().await.metadata.name.as_deref(), Some("low2"));
    }

    #[tokio::test]
    async fn unschedulable_pods_wait_for_an_event_then_back_off() {
        let q = SchedulingQueue::new(Duration::from_millis(50), Duration::from_millis(200), MAX_UNSCHEDULABLE_DURATION);
        q.add_or_update(pod("p", 0));
        let p = q.pop().await;
        q.unschedulable(&pod_key(&p), false);
        q.flush();
        assert_eq!(q.depths(), Depths { active: 0, backoff: 0, unschedulable: 1 });
        // A node appears: the pod moves, but still serves its backoff.
        q.move_all_to_active();
        assert_eq!(q.depths().backoff, 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        q.flush();
        assert_eq!(q.depths().active, 1);
        assert_eq!(q.pop().await.metadata.name.as_deref(), Some("p"));
    }

    #[tokio::test]
    async fn an_event_during_the_attempt_is_not_lost() {
        let q = SchedulingQueue::new(Duration::from_millis(1), Duration::from_millis(1), MAX_UNSCHEDULABLE_DURATION);
        q.add_or_update(pod("p", 0));
        let p = q.pop().await;
        q.move_all_to_active();
        q.unschedulable(&pod_key(&p), false);
        assert_eq!(q.depths().backoff, 1);
    }

    #[tokio::test]
    async fn a_failed_binding_backs_off_with_its_attempts() {
        let q = SchedulingQueue::new(Duration::from_millis(40), Duration::from_secs(1), MAX_UNSCHEDULABLE_DURATION);
        q.add_or_update(pod("p", 0));
        let p = q.pop().await;
        // Binding in flight: the pod stays in the queue, then goes to backoff, not straight back.
        assert!(q.contains(&pod_key(&p)));
        q.error(&pod_key(&p));
        q.flush();
        assert_eq!(q.depths(), Depths { active: 0, backoff: 1, unschedulable: 0 });
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.flush();
        let p = q.pop().await;
        q.error(&pod_key(&p));
        // The second failure waits twice as long.
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.flush();
        assert_eq!(q.depths().backoff, 1);
        tokio::time::sleep(Duration::from_millis(40)).await;
        q.flush();
        assert_eq!(q.depths().active, 1);
        let p = q.pop().await;
        q.done(&pod_key(&p));
        assert!(!q.contains(&pod_key(&p)));
    }

    #[tokio::test]
    async fn an_assigned_pod_wakes_only_pods_waiting_for_pods() {
        let q = SchedulingQueue::new(Duration::from_millis(1), Duration::from_millis(1), MAX_UNSCHEDULABLE_DURATION);
        q.add_or_update(pod("affinity", 0));
        q.add_or_update(pod("cpu", 0));
        let a = q.pop().await;
        let c = q.pop().await;
        q.unschedulable(&pod_key(&a), true);
        q.unschedulable(&pod_key(&c), false);
        tokio::time::sleep(Duration::from_millis(5)).await;
        q.move_pod_waiters_to_active();
        assert_eq!(q.depths(), Depths { active: 1, backoff: 0, unschedulable: 1 });
        assert_eq!(q.pop().await.metadata.name.as_deref(), Some("affinity"));
    }

    #[tokio::test]
    async fn unschedulable_pods_are_retried_after_the_configured_duration() {
        let q = SchedulingQueue::new(Duration::from_millis(1), Duration::from_millis(1), Duration::from_millis(30));
        q.add_or_update(pod("p", 0));
        let p = q.pop().await;
        q.unschedulable(&pod_key(&p), false);
        q.flush();
        assert_eq!(q.depths().unschedulable, 1);
        tokio::time::sleep(Duration::from_millis(40)).await;
        q.flush();
        assert_eq!(q.depths().active, 1);
    }
}
