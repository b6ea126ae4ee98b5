//! The node's control subject (`idunno.v1.nodes.<id>.ctl`): members, stat, droprate,
//! clear-log, leave and join.

use crate::logging::LogFiles;
use crate::membership::MembershipHandle;
use crate::metrics::{Counters, Metrics, Traffic};
use crate::tasks::Tasks;
use async_nats::{Client, Message};
use bus_schemas::control::{
    ControlErrorKind, ControlReply, ControlRequest, NodeResources, NodeStats,
};
use bus_schemas::{decode, encode, subjects};
use futures::StreamExt;
use idunno_metrics::host::CpuWindow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the control task needs from the rest of the node.
pub struct ControlDeps {
    /// The bus.
    pub client: Client,
    /// This node's id.
    pub id: String,
    /// The membership task.
    pub membership: MembershipHandle,
    /// Traffic counters.
    pub metrics: Arc<Metrics>,
    /// The node's log files.
    pub logs: LogFiles,
    /// When the process started.
    pub started: Instant,
    /// The figures of the rollouts' arms this node answered.
    pub tally: Arc<crate::serving::tally::Tally>,
}

/// Subscribes to the node's control subject, then answers it (a task of `tasks`) until they
/// stop.
pub async fn spawn(deps: ControlDeps, tasks: &mut Tasks) -> Result<(), async_nats::SubscribeError> {
    let sub = deps
        .client
        .subscribe(subjects::node_control_all(&deps.id))
        .await?;
    tasks.service("control", crate::tasks::ok(run(deps, sub, tasks.token())));
    Ok(())
}

async fn run(deps: ControlDeps, mut sub: async_nats::Subscriber, shutdown: CancellationToken) {
    let mut rates = Rates::default();
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sample.tick() => {
                rates.sample(deps.metrics.counters());
                if let Some(p) = idunno_metrics::process::read() {
                    rates.cpu.sample(Instant::now(), p.cpu_seconds);
                }
            }
            Some(msg) = sub.next() => handle(&deps, &rates, msg).await,
        }
    }
}

async fn handle(deps: &ControlDeps, rates: &Rates, msg: Message) {
    deps.metrics.received(Traffic::Other, msg.payload.len());
    let id = deps.id.as_str();
    let reply = match decode::<ControlRequest>(&msg.payload) {
        Ok(req) => {
            match subjects::check_op(&msg.subject, req.op(), |op| subjects::node_control(id, op)) {
                Ok(()) => answer(deps, rates, req).await,
                Err(why) => {
                    deps.metrics.garbage();
                    tracing::warn!("dropped a control request: {why}");
                    error(deps, ControlErrorKind::BadRequest, why)
                }
            }
        }
        Err(e) => {
            deps.metrics.garbage();
            tracing::warn!(subject = %msg.subject, "dropped a malformed control request: {e}");
            error(
                deps,
                ControlErrorKind::BadRequest,
                format!("malformed request: {e}"),
            )
        }
    };
    let Some(to) = msg.reply else { return };
    match encode(&reply) {
        Ok(bytes) => {
            deps.metrics.sent(Traffic::Other, bytes.len());
            if let Err(e) = deps.client.publish(to, bytes.into()).await {
                tracing::warn!("could not answer a control request: {e}");
            }
        }
        Err(e) => tracing::error!("{e}"),
    }
}

fn error(deps: &ControlDeps, kind: ControlErrorKind, message: String) -> ControlReply {
    ControlReply::Error {
        node: deps.id.clone(),
        kind,
        message,
    }
}

fn done(deps: &ControlDeps, message: impl Into<String>) -> ControlReply {
    ControlReply::Done {
        node: deps.id.clone(),
        message: message.into(),
    }
}

async fn answer(deps: &ControlDeps, rates: &Rates, req: ControlRequest) -> ControlReply {
    match req {
        ControlRequest::Ping => done(deps, "pong"),
        ControlRequest::Members => match deps.membership.view().await {
            Ok(v) => ControlReply::Members {
                node: v.node,
                coordinator: v.coordinator,
                members: v.members,
            },
            Err(_) => stopping(deps),
        },
        ControlRequest::Stat => match stats(deps, rates).await {
            Ok(stats) => ControlReply::Stats { stats },
            Err(_) => stopping(deps),
        },
        ControlRequest::DropRate { rate } => drop_rate(deps, rate).await,
        ControlRequest::ClearLog => match deps.logs.clear() {
            Ok(n) => done(deps, format!("cleared {n} log file(s)")),
            Err(e) => error(
                deps,
                ControlErrorKind::Internal,
                format!("cannot clear the log: {e}"),
            ),
        },
        ControlRequest::Leave | ControlRequest::Join => leave_or_join(deps, req).await,
        ControlRequest::Rollout { model } => ControlReply::Rollout {
            node: deps.id.clone(),
            figures: deps.tally.figures(&model),
        },
    }
}

/// The answer of a node whose membership task has stopped.
fn stopping(deps: &ControlDeps) -> ControlReply {
    error(
        deps,
        ControlErrorKind::Internal,
        "the node is shutting down".into(),
    )
}

async fn drop_rate(deps: &ControlDeps, rate: f64) -> ControlReply {
    if !(0.0..=1.0).contains(&rate) {
        return error(
            deps,
            ControlErrorKind::InvalidArgument,
            format!("drop rate {rate} is not between 0 and 1"),
        );
    }
    match deps.membership.set_drop_rate(rate).await {
        Ok(()) => done(
            deps,
            format!(
                "dropping {:.0}% of incoming failure-detector messages",
                rate * 100.0
            ),
        ),
        Err(_) => stopping(deps),
    }
}

async fn leave_or_join(deps: &ControlDeps, req: ControlRequest) -> ControlReply {
    let (changed, did, already) = match req {
        ControlRequest::Leave => (
            deps.membership.leave().await,
            "left the cluster",
            "the node is not a member",
        ),
        _ => (
            deps.membership.join().await,
            "joined the cluster with a new generation",
            "the node is a member already",
        ),
    };
    match changed {
        Ok(true) => done(deps, did),
        Ok(false) => error(deps, ControlErrorKind::WrongState, already.into()),
        Err(_) => stopping(deps),
    }
}

async fn stats(
    deps: &ControlDeps,
    rates: &Rates,
) -> Result<NodeStats, crate::membership::service::Stopped> {
    let id = deps.membership.identity().await?;
    let c = deps.metrics.counters();
    let r = rates.per_second();
    Ok(NodeStats {
        node: deps.id.clone(),
        generation: id.generation,
        incarnation: id.incarnation,
        member: id.member,
        uptime_ms: deps.started.elapsed().as_millis() as u64,
        bytes_in: c.bytes_in,
        bytes_out: c.bytes_out,
        msgs_in: c.msgs_in,
        msgs_out: c.msgs_out,
        bytes_in_per_s: r[0],
        bytes_out_per_s: r[1],
        msgs_in_per_s: r[2],
        msgs_out_per_s: r[3],
        member_msgs_in: c.member_msgs_in,
        member_msgs_out: c.member_msgs_out,
        probes_sent: id.stats.probes_sent,
        failures_detected: id.stats.failures_detected,
        garbage_dropped: c.garbage,
        fd_dropped: c.fd_dropped,
        membership_refused: c.membership_refused,
        drop_rate: id.drop_rate,
        cached_models: deps.metrics.cached_models(),
        resources: resources(&deps.metrics, &rates.cpu),
    })
}

/// The node's resources now: the CPU of the last seconds, the process's memory, the data
/// directory's disk, libtorch's threads and device.
fn resources(metrics: &Metrics, cpu: &CpuWindow) -> Option<NodeResources> {
    let host = metrics.host.get()?;
    let disk = idunno_metrics::host::disk(&host.data_dir).unwrap_or_default();
    Some(NodeResources {
        cpu_cores: cpu.cores(),
        cpus: host.cpus,
        rss_bytes: idunno_metrics::process::read().map_or(0, |p| p.resident_bytes),
        disk_free_bytes: disk.free_bytes,
        disk_total_bytes: disk.total_bytes,
        tch_threads: host.tch_threads,
        device: host.device.clone(),
    })
}

/// Samples of the counters over the last few seconds, for per-second rates.
#[derive(Default)]
struct Rates {
    samples: VecDeque<(Instant, Counters)>,
    /// The process's CPU seconds, sampled with the counters.
    cpu: CpuWindow,
}

impl Rates {
    const WINDOW: usize = 6;

    fn sample(&mut self, c: Counters) {
        self.samples.push_back((Instant::now(), c));
        if self.samples.len() > Self::WINDOW {
            self.samples.pop_front();
        }
    }

    /// Bytes in, bytes out, messages in, messages out per second.
    fn per_second(&self) -> [f64; 4] {
        let (Some((t0, a)), Some((t1, b))) = (self.samples.front(), self.samples.back()) else {
            return [0.0; 4];
        };
        let dt = t1.saturating_duration_since(*t0).as_secs_f64();
        if dt <= 0.0 {
            return [0.0; 4];
        }
        let rate = |x: u64, y: u64| y.saturating_sub(x) as f64 / dt;
        [
            rate(a.bytes_in, b.bytes_in),
            rate(a.bytes_out, b.bytes_out),
            rate(a.msgs_in, b.msgs_in),
            rate(a.msgs_out, b.msgs_out),
        ]
    }
}
