//! `GET /metrics`: Prometheus text format, built at each scrape. Every node exports its own
//! series (bus traffic, refusals, online inference and served batches, `process_*`,
//! `idunno_build_info`); the cluster-wide series (members, jobs, SDFS) come from the node
//! that coordinates only, so that summing a scrape of every node counts nothing twice.

mod histograms;

use super::live::Published;
use super::model::Snapshot;
use super::{model, Api};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bus_schemas::jobs::JobState;
use bus_schemas::sdfs::FileInfo;
use idunno_metrics::Counters;
use prometheus::core::Collector;
use prometheus::{CounterVec, Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, Opts, Registry};

/// `GET /metrics`.
pub async fn metrics(State(api): State<Api>) -> Response {
    let coordinating = {
        let latest = api.live.latest.borrow();
        latest.snapshot.coordinator.as_deref() == Some(api.id.as_str())
    };
    // SDFS figures are skipped (not invented) when the metadata cannot be read.
    let files = if coordinating {
        api.sdfs.ls("").await.ok()
    } else {
        None
    };
    match render(&api, coordinating, files) {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Registers `c` in `r` and hands it back.
fn add<C: Collector + Clone + 'static>(r: &Registry, c: C) -> prometheus::Result<C> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    add(r, GaugeVec::new(Opts::new(name, help), labels)?)
}

fn counters(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    add(r, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn render(
    api: &Api,
    coordinating: bool,
    files: Option<Vec<bus_schemas::sdfs::FileInfo>>,
) -> prometheus::Result<String> {
    let r = Registry::new();
    if coordinating {
        let latest = api.live.latest.borrow().clone();
        jobs(&r, &latest.snapshot.jobs)?;
        membership(&r, &latest)?;
        if let Some(files) = files {
            sdfs(&r, api, &latest.snapshot, files)?;
        }
    }
    node(&r, api)?;
    build_info(&r)?;
    let mut families = r.gather();
    families.extend(histograms::families(&api.metrics));
    families.extend(histograms::process());
    // A family without a series is an encoding error: leave out what has none yet.
    families.retain(|f| !f.get_metric().is_empty());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    prometheus::TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `idunno_build_info`: 1, labelled with the version and the libtorch it was built for.
fn build_info(r: &Registry) -> prometheus::Result<()> {
    let info = gauges(
        r,
        "idunno_build_info",
        "The IDunno build this node runs (always 1).",
        &["version"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1.0);
    Ok(())
}

/// Members by state and the membership events seen.
fn membership(r: &Registry, latest: &Published) -> prometheus::Result<()> {
    let members = gauges(
        r,
        "idunno_members",
        "Members in this node's view by state.",
        &["state"],
    )?;
    let c = &latest.snapshot.sample.members;
    for (state, n) in [
        ("alive", c.alive),
        ("suspect", c.suspect),
        ("failed", c.failed),
        ("left", c.left),
    ] {
        members.with_label_values(&[state]).set(n as f64);
    }
    let events = counters(
        r,
        "idunno_membership_events_total",
        "Membership events this node has seen.",
        &["kind"],
    )?;
    for kind in ["join", "alive", "suspect", "fail", "leave"] {
        let n = latest.counts.by_kind.get(kind).copied().unwrap_or(0);
        events.with_label_values(&[kind]).inc_by(n);
    }
    Ok(())
}

/// SDFS's bytes, files and files short of copies.
fn sdfs(
    r: &Registry,
    api: &Api,
    snap: &Snapshot,
    files: Vec<bus_schemas::sdfs::FileInfo>,
) -> prometheus::Result<()> {
    let bytes = FileInfo::newest_bytes(&files, "");
    let live = model::live_members(snap.workers.iter().map(|w| &w.member));
    let rows = model::file_rows(files, &live, api.replication);
    let under = rows.iter().filter(|f| f.under_replicated).count();
    add(
        r,
        Gauge::new(
            "idunno_sdfs_bytes",
            "Bytes of the newest version of every SDFS file (one copy).",
        )?,
    )?
    .set(bytes as f64);
    add(r, Gauge::new("idunno_sdfs_files", "SDFS files.")?)?.set(rows.len() as f64);
    add(
        r,
        Gauge::new(
            "idunno_sdfs_under_replicated_files",
            "SDFS files with fewer live replicas than wanted.",
        )?,
    )?
    .set(under as f64);
    Ok(())
}

/// The node's counters of dropped, refused and shed messages.
fn totals(r: &Registry, c: &Counters) -> prometheus::Result<()> {
    let totals = [
        ("idunno_garbage_dropped_total", "Malformed payloads this node dropped.", c.garbage),
        (
            "idunno_membership_refused_total",
            "Membership messages this node refused as implausible or beyond a limit.",
            c.membership_refused,
        ),
        (
            "idunno_shed_total",
            "Requests this node refused at once as overloaded (inference requests, assignments).",
            c.shed,
        ),
        (
            "idunno_infer_pauses_total",
            "Times this node left the online-inference queue group to shed load (it joins again when it has room).",
            c.infer_pauses,
        ),
    ];
    for (name, help, n) in totals {
        add(r, IntCounter::new(name, help)?)?.inc_by(n);
    }
    Ok(())
}

/// Per-job figures (labelled `job_id` and `model`: Prometheus keeps `job` for itself) and
/// jobs by state. A job's query rate is `rate(idunno_job_queries_total[1m])`.
fn jobs(r: &Registry, jobs: &[bus_schemas::jobs::JobRecord]) -> prometheus::Result<()> {
    let by_job = ["job_id", "model"];
    let done = counters(r, "idunno_job_queries_total", "Queries answered.", &by_job)?;
    let correct = counters(
        r,
        "idunno_job_correct_total",
        "Correct answers (labelled splits).",
        &by_job,
    )?;
    let pending = gauges(
        r,
        "idunno_job_pending_batches",
        "Batches sent and not yet answered.",
        &by_job,
    )?;
    for j in jobs.iter().filter(|j| j.state == JobState::Running) {
        let Some(s) = &j.serve else { continue };
        let labels = [j.id.as_str(), j.spec.model()];
        done.with_label_values(&labels).inc_by(s.done);
        if let Some(c) = s.correct {
            correct.with_label_values(&labels).inc_by(c);
        }
        pending
            .with_label_values(&labels)
            .set(s.pending.len() as f64);
    }
    let states = gauges(r, "idunno_jobs", "Jobs on record by state.", &["state"])?;
    for state in ["queued", "running", "succeeded", "failed", "cancelled"] {
        let n = jobs.iter().filter(|j| state_name(j.state) == state).count();
        states.with_label_values(&[state]).set(n as f64);
    }
    Ok(())
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// This node's own counters.
fn node(r: &Registry, api: &Api) -> prometheus::Result<()> {
    let c = api.metrics.counters();
    let bytes = counters(
        r,
        "idunno_bus_bytes_total",
        "This node's bus traffic in bytes.",
        &["direction"],
    )?;
    bytes.with_label_values(&["in"]).inc_by(c.bytes_in);
    bytes.with_label_values(&["out"]).inc_by(c.bytes_out);
    let msgs = counters(
        r,
        "idunno_bus_messages_total",
        "This node's bus messages.",
        &["direction"],
    )?;
    msgs.with_label_values(&["in"]).inc_by(c.msgs_in);
    msgs.with_label_values(&["out"]).inc_by(c.msgs_out);
    totals(r, &c)?;
    let cached = Gauge::new(
        "idunno_infer_cached_models",
        "Models this node's inference engine holds.",
    )?;
    add(r, cached)?.set(api.metrics.cached_models().len() as f64);
    let (stages, batches) = api.metrics.stages.totals();
    let secs = add(
        r,
        CounterVec::new(
            Opts::new(
                "idunno_serve_stage_seconds_total",
                "Time this node spent on each stage of served batches (queued for a lane, input, forward, classify, results, encode, publish, reply; coordinate on the coordinator).",
            ),
            &["stage"],
        )?,
    )?;
    for (stage, s) in stages {
        secs.with_label_values(&[stage.name()]).inc_by(s);
    }
    let served = IntCounter::new(
        "idunno_serve_batches_total",
        "Batches of inference jobs this node served (results stored).",
    )?;
    add(r, served)?.inc_by(batches);
    host(r, api)
}

/// What the node runs on: its data directory's disk, libtorch's threads and device, its CPUs
/// (CPU use and memory are the `process_*` series).
fn host(r: &Registry, api: &Api) -> prometheus::Result<()> {
    let Some(host) = api.metrics.host.get() else {
        return Ok(());
    };
    if let Some(disk) = idunno_metrics::host::disk(&host.data_dir) {
        let g = Gauge::new(
            "idunno_data_dir_free_bytes",
            "Free bytes on the file system of this node's data directory.",
        )?;
        add(r, g)?.set(disk.free_bytes as f64);
        let g = Gauge::new(
            "idunno_data_dir_size_bytes",
            "Size of the file system of this node's data directory.",
        )?;
        add(r, g)?.set(disk.total_bytes as f64);
    }
    let g = Gauge::new(
        "idunno_tch_threads",
        "Threads libtorch computes with on this node (--threads).",
    )?;
    add(r, g)?.set(f64::from(host.tch_threads));
    let g = Gauge::new("idunno_cpus", "CPUs this node's process may run on.")?;
    add(r, g)?.set(f64::from(host.cpus));
    let device = gauges(
        r,
        "idunno_device_info",
        "The device this node runs models on (always 1).",
        &["device"],
    )?;
    device.with_label_values(&[host.device.as_str()]).set(1.0);
    Ok(())
}
