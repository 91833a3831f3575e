//! client-go's work-queue metrics (`workqueue_*`) as controller-runtime 0.23 exposes them for
//! ARC 0.14.2's controllers, measured at the boundary of kube-runtime's scheduler.
//!
//! controller-runtime 0.23 gives every controller its priority queue: one entry per object,
//! ready at once or after a delay (the earlier delay wins), an object being reconciled held
//! until its reconcile ends. kube-runtime's scheduler behaves the same way (one entry per
//! object, the earlier run time wins, an object held while it runs) but exposes nothing, so each
//! controller's [`WorkQueue`] keeps a model of it from what passes our boundary:
//!
//! * every trigger kube-runtime receives from a watch, recorded as the watch stream yields it,
//!   through the same relation kube applies ([`WorkQueue::watch_self`],
//!   [`WorkQueue::watch_owners`], [`WorkQueue::mapped`]), is an add that is ready at once;
//! * every requeue (the reconcile's `Action`, or the error policy's) is an add ready after its
//!   delay ([`WorkQueue::requeue`]);
//! * a reconcile's start takes the object's entry out ([`WorkQueue::start`]), and so does a
//!   request for an object no longer in the cache ([`WorkQueue::dropped`]).
//!
//! The metrics then follow the priority queue's rules: `workqueue_adds_total` counts an entry
//! when it becomes ready (an add for an object already waiting counts once); `workqueue_depth`
//! is the number of ready entries, distinct objects waiting (priority `0`: kube has no
//! priorities); `workqueue_queue_duration_seconds` runs from becoming ready to the reconcile's
//! start; `workqueue_work_duration_seconds` is the reconcile; `workqueue_retries_total` counts
//! every add with a delay (controller-runtime counts `RequeueAfter` and rate-limited requeues
//! alike); `workqueue_unfinished_work_seconds` and
//! `workqueue_longest_running_processor_seconds` are computed from the reconciles under way
//! when the metrics are scraped. Labels `name` and `controller` both carry the controller name.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Labels of the work-queue metrics: the queue's name, which controller-runtime sets to the
/// controller's name, and the controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Queue name (= controller name).
    pub name: String,
    /// Controller name.
    pub controller: String,
}

/// Labels of `workqueue_depth`, which controller-runtime's priority queue splits by priority.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepthLabels {
    /// Queue name (= controller name).
    pub name: String,
    /// Controller name.
    pub controller: String,
    /// Item priority; always `0` here (kube-runtime has no priorities).
    pub priority: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// controller-runtime's buckets for both work-queue histograms: 10 ns to 1000 s by tens.
fn buckets() -> Histogram {
    Histogram::new(exponential_buckets(10e-9, 10.0, 12))
}

/// Every controller's [`WorkQueue`]; registered as one collector, which brings the queues up to
/// date on each scrape.
#[derive(Debug)]
pub struct WorkQueues {
    queues: Mutex<BTreeMap<&'static str, Arc<WorkQueue>>>,
    depth: Family<DepthLabels, Gauge>,
    adds: Family<QueueLabels, Counter>,
    queue_duration: Family<QueueLabels, Histogram>,
    work_duration: Family<QueueLabels, Histogram>,
    unfinished: Family<QueueLabels, FloatGauge>,
    longest: Family<QueueLabels, FloatGauge>,
    retries: Family<QueueLabels, Counter>,
}

impl Default for WorkQueues {
    fn default() -> Self {
        Self {
            queues: Mutex::default(),
            depth: Family::default(),
            adds: Family::default(),
            queue_duration: Family::new_with_constructor(buckets),
            work_duration: Family::new_with_constructor(buckets),
            unfinished: Family::default(),
            longest: Family::default(),
            retries: Family::default(),
        }
    }
}

impl WorkQueues {
    /// The queue of `controller`, created (with all its series at zero) on first use.
    pub fn queue(&self, controller: &'static str) -> Arc<WorkQueue> {
        let mut queues = crate::lock(&self.queues);
        queues
            .entry(controller)
            .or_insert_with(|| {
                let labels = QueueLabels {
                    name: controller.to_owned(),
                    controller: controller.to_owned(),
                };
                let depth = DepthLabels {
                    name: controller.to_owned(),
                    controller: controller.to_owned(),
                    priority: "0".to_owned(),
                };
                Arc::new(WorkQueue {
                    name: controller,
                    depth: self.depth.get_or_create(&depth).clone(),
                    adds: self.adds.get_or_create(&labels).clone(),
                    queue_duration: self.queue_duration.get_or_create(&labels).clone(),
                    work_duration: self.work_duration.get_or_create(&labels).clone(),
                    unfinished: self.unfinished.get_or_create(&labels).clone(),
                    longest: self.longest.get_or_create(&labels).clone(),
                    retries: self.retries.get_or_create(&labels).clone(),
                    state: Mutex::default(),
                })
            })
            .clone()
    }
}

impl Collector for WorkQueues {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let queues: Vec<_> = crate::lock(&self.queues).values().cloned().collect();
        for queue in queues {
            queue.refresh(Instant::now());
        }
        let unfinished_help = "How many seconds of work has been done that is in progress and \
            hasn't been observed by work_duration. Large values indicate stuck threads. One can \
            deduce the number of stuck threads by observing the rate at which this increases.";
        let families: [(&str, &str, &dyn EncodeMetric); 7] = [
            (
                "workqueue_depth",
                "Current depth of workqueue by workqueue and priority",
                &self.depth,
            ),
            (
                "workqueue_adds",
                "Total number of adds handled by workqueue",
                &self.adds,
            ),
            (
                "workqueue_queue_duration_seconds",
                "How long in seconds an item stays in workqueue before being requested",
                &self.queue_duration,
            ),
            (
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes.",
                &self.work_duration,
            ),
            (
                "workqueue_unfinished_work_seconds",
                unfinished_help,
                &self.unfinished,
            ),
            (
                "workqueue_longest_running_processor_seconds",
                "How many seconds has the longest running processor for workqueue been running.",
                &self.longest,
            ),
            (
                "workqueue_retries",
                "Total number of retries handled by workqueue",
                &self.retries,
            ),
        ];
        for (name, help, metric) in families {
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        Ok(())
    }
}

/// One object's entry: when it is (or becomes) ready, and whether it has been counted as added.
#[derive(Debug)]
struct Entry {
    ready_at: Instant,
    ready: bool,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Reconciles under way and when each started.
    processing: HashMap<u64, Instant>,
    next_worker: u64,
}

/// The model of one controller's queue (see the module docs).
#[derive(Debug)]
pub struct WorkQueue {
    name: &'static str,
    depth: Gauge,
    adds: Counter,
    queue_duration: Histogram,
    work_duration: Histogram,
    unfinished: FloatGauge,
    longest: FloatGauge,
    retries: Counter,
    state: Mutex<State>,
}

impl WorkQueue {
    /// The controller this queue belongs to.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Records an add of `key`, ready after `after`.
    pub fn add(&self, key: &str, after: Duration) {
        let now = Instant::now();
        if !after.is_zero() {
            self.retries.inc();
        }
        let ready_at = now.checked_add(after).unwrap_or(now);
        let mut state = crate::lock(&self.state);
        let entry = state.entries.entry(key.to_owned()).or_insert(Entry {
            ready_at,
            ready: false,
        });
        if !entry.ready && ready_at < entry.ready_at {
            entry.ready_at = ready_at;
        }
        self.promote(entry, now);
        self.depth.set(ready_count(&state));
    }

    /// Records the requeue a reconcile or the error policy asked for with `action`, if any.
    pub fn requeue(&self, key: &str, action: &Action) {
        if let Some(after) = requeue_after(action) {
            self.add(key, after);
        }
    }

    /// Records that `key`'s reconcile starts; the returned guard records its end when dropped.
    pub fn start(self: &Arc<Self>, key: &str) -> Processing {
        let now = Instant::now();
        let mut state = crate::lock(&self.state);
        self.take(&mut state, key, now);
        let worker = state.next_worker;
        state.next_worker = state.next_worker.wrapping_add(1);
        state.processing.insert(worker, now);
        Processing {
            queue: self.clone(),
            worker,
            started: now,
        }
    }

    /// Records that `key` left the queue without a reconcile (the object was no longer in the
    /// cache when its turn came).
    pub fn dropped(&self, key: &str) {
        let now = Instant::now();
        let mut state = crate::lock(&self.state);
        self.take(&mut state, key, now);
    }

    /// Takes `key`'s entry out: a ready entry's wait is observed, as the priority queue
    /// observes it when it hands the item out.
    fn take(&self, state: &mut State, key: &str, now: Instant) {
        if let Some(mut entry) = state.entries.remove(key) {
            self.promote(&mut entry, now);
            if entry.ready {
                self.queue_duration
                    .observe(now.saturating_duration_since(entry.ready_at).as_secs_f64());
            }
        }
        self.depth.set(ready_count(state));
    }

    /// Counts `entry` as added once its delay has passed.
    fn promote(&self, entry: &mut Entry, now: Instant) {
        if !entry.ready && entry.ready_at <= now {
            entry.ready = true;
            self.adds.inc();
        }
    }

    /// Brings the gauges up to `now`: delayed entries that became ready, the work under way.
    fn refresh(&self, now: Instant) {
        let mut state = crate::lock(&self.state);
        for entry in state.entries.values_mut() {
            self.promote(entry, now);
        }
        self.depth.set(ready_count(&state));
        let running = state
            .processing
            .values()
            .map(|started| now.saturating_duration_since(*started).as_secs_f64());
        let (sum, longest) = running.fold((0.0, 0.0_f64), |(s, l), d| (s + d, l.max(d)));
        self.unfinished.set(sum);
        self.longest.set(longest);
    }

    /// Records each object of a controller's own watch as a trigger of itself.
    pub fn watch_self<K, E, S>(
        self: &Arc<Self>,
        stream: S,
    ) -> impl Stream<Item = Result<K, E>> + use<K, E, S>
    where
        K: Resource,
        S: Stream<Item = Result<K, E>>,
    {
        let queue = self.clone();
        stream.inspect(move |item| {
            if let Ok(object) = item {
                let meta = object.meta();
                queue.add(
                    &key(
                        meta.namespace.as_deref(),
                        meta.name.as_deref().unwrap_or(""),
                    ),
                    Duration::ZERO,
                );
            }
        })
    }

    /// Records each object of an owned kind's watch as a trigger of its owners of kind `Owner`,
    /// the owner references kube-runtime's `owns` follows.
    pub fn watch_owners<Owner, C, E, S>(
        self: &Arc<Self>,
        stream: S,
    ) -> impl Stream<Item = Result<C, E>> + use<Owner, C, E, S>
    where
        Owner: Resource<DynamicType = ()>,
        C: Resource,
        S: Stream<Item = Result<C, E>>,
    {
        let queue = self.clone();
        stream.inspect(move |item| {
            if let Ok(child) = item {
                let meta = child.meta();
                let ns = meta.namespace.as_deref();
                for owner in meta.owner_references.iter().flatten() {
                    if let Some(owner) = ObjectRef::<Owner>::from_owner_ref(ns, owner, ()) {
                        queue.add(&object_key(&owner), Duration::ZERO);
                    }
                }
            }
        })
    }

    /// A `watches` mapper that records the objects `mapper` maps to as triggers.
    pub fn mapped<Other, K, I, F>(
        self: &Arc<Self>,
        mapper: F,
    ) -> impl Fn(Other) -> Vec<ObjectRef<K>> + Send + Sync + 'static + use<Other, K, I, F>
    where
        K: Resource,
        I: IntoIterator<Item = ObjectRef<K>>,
        F: Fn(Other) -> I + Send + Sync + 'static,
    {
        let queue = self.clone();
        move |other| {
            let refs: Vec<_> = mapper(other).into_iter().collect();
            for r in &refs {
                queue.add(&object_key(r), Duration::ZERO);
            }
            refs
        }
    }
}

/// A reconcile under way; dropping it observes its duration.
#[derive(Debug)]
pub struct Processing {
    queue: Arc<WorkQueue>,
    worker: u64,
    started: Instant,
}

impl Drop for Processing {
    fn drop(&mut self) {
        self.queue
            .work_duration
            .observe(self.started.elapsed().as_secs_f64());
        crate::lock(&self.queue.state)
            .processing
            .remove(&self.worker);
    }
}

fn ready_count(state: &State) -> i64 {
    let n = state.entries.values().filter(|e| e.ready).count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The queue key of an object: `namespace/name`.
pub fn key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or(""))
}

/// The queue key of an object reference.
pub fn object_key<K: Resource>(r: &ObjectRef<K>) -> String {
    key(r.namespace.as_deref(), &r.name)
}

/// The delay of a requeue `action`, `None` for "await change".
///
/// kube-runtime 5 keeps `Action`'s delay private and offers no accessor; its `Debug` output
/// (`Action { requeue_after: Some(1.5s) }`) carries it, in `Duration`'s `Debug` form, which
/// prints every digit. The unit tests pin the round trip, so a change of either format fails
/// them rather than the metrics.
pub fn requeue_after(action: &Action) -> Option<Duration> {
    let text = format!("{action:?}");
    let inner = text.split_once("Some(")?.1.rsplit_once(')')?.0;
    let (number, scale) = [("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)]
        .into_iter()
        .find_map(|(unit, scale)| inner.strip_suffix(unit).map(|n| (n, scale)))?;
    let value: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(value * scale).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_delays_round_trip_through_action() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(7),
            Duration::from_micros(250),
            Duration::from_millis(5),
            Duration::from_millis(1500),
            Duration::from_secs(300),
            Duration::from_secs(1000),
            Duration::new(59, 999_000_000),
        ] {
            let got = requeue_after(&Action::requeue(d)).expect("a delay");
            let diff = got.abs_diff(d);
            assert!(diff <= Duration::from_nanos(1), "{d:?} read as {got:?}");
        }
        assert_eq!(requeue_after(&Action::await_change()), None);
    }

    fn text(queues: &Arc<WorkQueues>) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(queues.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        out
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
    }

    #[test]
    fn adds_depth_waits_and_retries_follow_the_priority_queue() {
        let queues = Arc::new(WorkQueues::default());
        let q = queues.queue("ephemeralrunner");
        let labels = r#"{name="ephemeralrunner",controller="ephemeralrunner"}"#;
        let depth =
            r#"workqueue_depth{name="ephemeralrunner",controller="ephemeralrunner",priority="0"}"#;
        // Two triggers of one object are one add; a second object is another.
        q.add("ns/a", Duration::ZERO);
        q.add("ns/a", Duration::ZERO);
        q.add("ns/b", Duration::ZERO);
        let t = text(&queues);
        assert_eq!(value(&t, depth), 2.0);
        assert_eq!(value(&t, &format!("workqueue_adds_total{labels}")), 2.0);
        // a starts: one wait observed, depth 1; a trigger while it runs waits again.
        let running = q.start("ns/a");
        q.add("ns/a", Duration::ZERO);
        let t = text(&queues);
        assert_eq!(value(&t, depth), 2.0);
        assert_eq!(value(&t, &format!("workqueue_adds_total{labels}")), 3.0);
        assert_eq!(
            value(
                &t,
                &format!("workqueue_queue_duration_seconds_count{labels}")
            ),
            1.0
        );
        assert!(
            value(
                &t,
                &format!("workqueue_longest_running_processor_seconds{labels}")
            ) >= 0.0
        );
        drop(running);
        let t = text(&queues);
        assert_eq!(
            value(
                &t,
                &format!("workqueue_work_duration_seconds_count{labels}")
            ),
            1.0
        );
        // A delayed requeue is a retry, not yet an add nor depth.
        q.requeue("ns/c", &Action::requeue(Duration::from_secs(3600)));
        q.requeue("ns/d", &Action::await_change());
        let t = text(&queues);
        assert_eq!(value(&t, &format!("workqueue_retries_total{labels}")), 1.0);
        assert_eq!(value(&t, depth), 2.0);
        assert_eq!(value(&t, &format!("workqueue_adds_total{labels}")), 3.0);
        // A trigger makes the waiting entry ready now: one add.
        q.add("ns/c", Duration::ZERO);
        let t = text(&queues);
        assert_eq!(value(&t, depth), 3.0);
        assert_eq!(value(&t, &format!("workqueue_adds_total{labels}")), 4.0);
        // An object gone from the cache leaves the queue without work.
        q.dropped("ns/b");
        let t = text(&queues);
        assert_eq!(value(&t, depth), 2.0);
        assert_eq!(
            value(
                &t,
                &format!("workqueue_work_duration_seconds_count{labels}")
            ),
            1.0
        );
        assert_eq!(
            value(&t, &format!("workqueue_unfinished_work_seconds{labels}")),
            0.0
        );
    }
}
