//! The series the prometheus crate does not keep for us: the node's histograms (online
//! inference, served batches) and counters of online requests, kept by `idunno-metrics`, and
//! the `process_*` series, written as metric families for the text encoder.

use idunno_metrics::histogram::Snapshot;
use idunno_metrics::Metrics;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn histogram(labels: Vec<LabelPair>, s: &Snapshot) -> Metric {
    let mut h = Histogram::default();
    h.set_sample_count(s.count);
    h.set_sample_sum(s.sum);
    // The text encoder writes the `+Inf` bucket itself, from the count.
    let buckets = s.buckets.iter().filter(|(bound, _)| bound.is_finite());
    h.set_bucket(
        buckets
            .map(|(bound, n)| {
                let mut b = Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(*n);
                b
            })
            .collect(),
    );
    let mut m = Metric::from_label(labels);
    m.set_histogram(h);
    m
}

fn by_model(snapshots: Vec<(String, Snapshot)>) -> Vec<Metric> {
    snapshots
        .iter()
        .map(|(model, s)| histogram(vec![label("model", model)], s))
        .collect()
}

fn counter(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(value);
    let mut m = Metric::from_label(labels);
    m.set_counter(c);
    m
}

fn gauge(value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    Metric::from_gauge(g)
}

/// This node's online-inference and served-batch series.
pub fn families(metrics: &Metrics) -> Vec<MetricFamily> {
    let online = &metrics.online;
    let requests = online
        .requests()
        .into_iter()
        .map(|(model, outcome, n)| {
            counter(
                vec![label("model", &model), label("outcome", outcome)],
                n as f64,
            )
        })
        .collect();
    let [duration, queued, batch] = online.histograms();
    use MetricType::{COUNTER, HISTOGRAM};
    vec![
        family(
            "idunno_infer_requests_total",
            "Online inference requests this node answered, by model and outcome (model \"\" when the request named no model this node has answered for).",
            COUNTER,
            requests,
        ),
        family(
            "idunno_infer_request_duration_seconds",
            "Online inference requests answered with predictions: seconds from arrival to answer.",
            HISTOGRAM,
            by_model(duration),
        ),
        family(
            "idunno_infer_queue_duration_seconds",
            "Online inference requests answered with predictions: seconds waiting to be batched.",
            HISTOGRAM,
            by_model(queued),
        ),
        family(
            "idunno_infer_batch_size",
            "Images in each online inference batch this node ran.",
            HISTOGRAM,
            by_model(batch),
        ),
        family(
            "idunno_serve_batch_duration_seconds",
            "Seconds each batch of an inference job this node served took in the model.",
            HISTOGRAM,
            by_model(metrics.serve_batches.0.snapshot()),
        ),
    ]
}

/// The standard `process_*` series of this process (none where `/proc` cannot be read).
pub fn process() -> Vec<MetricFamily> {
    let Some(p) = idunno_metrics::process::read() else {
        return Vec::new();
    };
    use MetricType::{COUNTER, GAUGE};
    let one = |name: &str, help: &str, kind: MetricType, v: f64| {
        let m = if kind == COUNTER {
            counter(Vec::new(), v)
        } else {
            gauge(v)
        };
        family(name, help, kind, vec![m])
    };
    vec![
        one(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            COUNTER,
            p.cpu_seconds,
        ),
        one(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            GAUGE,
            p.resident_bytes as f64,
        ),
        one(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            GAUGE,
            p.virtual_bytes as f64,
        ),
        one(
            "process_open_fds",
            "Number of open file descriptors.",
            GAUGE,
            p.open_fds as f64,
        ),
        one(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            GAUGE,
            p.max_fds as f64,
        ),
        one(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            GAUGE,
            p.start_time_seconds,
        ),
        one(
            "process_threads",
            "Number of OS threads in the process.",
            GAUGE,
            p.threads as f64,
        ),
    ]
}
