//! Readiness (`GET /readyz`, the Open Inference Protocol's `GET /v2/health/ready`): the node is
//! ready when its bus connection is up, the cluster's KV buckets answer, it is a member of the
//! cluster, and it takes online inference requests (its queue subscription is up). `/healthz` (alive) stays a plain "ok" as long as the process serves HTTP.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bus_schemas::subjects;
use idunno_membership::MembershipHandle;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long a check's answer is reused (a flood of probes costs JetStream one check a second).
const REUSE: Duration = Duration::from_secs(1);
/// How long each part of a check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What a readiness check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Ready to serve: every part below holds.
    pub ready: bool,
    /// Connected to NATS.
    pub bus: bool,
    /// The job, SDFS, settings and lease buckets answer.
    pub buckets: bool,
    /// This node is a member of the cluster (joined, not left).
    pub member: bool,
    /// This node takes online inference requests (`idunno.v1.infer`).
    pub serving: bool,
    /// What is missing, in words.
    pub why: Vec<String>,
}

/// Checks readiness, reusing an answer for a second.
#[derive(Clone)]
pub struct Readiness {
    client: async_nats::Client,
    membership: MembershipHandle,
    metrics: Arc<idunno_metrics::Metrics>,
    last: Arc<Mutex<Option<(Instant, Report)>>>,
}

impl Readiness {
    /// Checks `client`'s connection, `membership`, and the online-inference subscription that
    /// `metrics` records.
    pub fn new(
        client: async_nats::Client,
        membership: MembershipHandle,
        metrics: Arc<idunno_metrics::Metrics>,
    ) -> Readiness {
        Readiness {
            client,
            membership,
            metrics,
            last: Arc::default(),
        }
    }

    /// The readiness now (or as checked less than a second ago).
    pub async fn check(&self) -> Report {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < REUSE {
                return report.clone();
            }
        }
        let report = self.check_now().await;
        *last = Some((Instant::now(), report.clone()));
        report
    }

    async fn check_now(&self) -> Report {
        let mut why = Vec::new();
        let bus = self.client.connection_state() == async_nats::connection::State::Connected;
        if !bus {
            why.push("not connected to NATS".to_string());
        }
        let buckets = bus && self.buckets(&mut why).await;
        let member = match tokio::time::timeout(CHECK_TIMEOUT, self.membership.identity()).await {
            Ok(Ok(identity)) => identity.member,
            _ => false,
        };
        if !member {
            why.push("not a member of the cluster (joining, or left)".to_string());
        }
        let serving = self.metrics.online.subscribed();
        if !serving {
            why.push("not yet taking online inference requests".to_string());
        }
        Report {
            ready: bus && buckets && member && serving,
            bus,
            buckets,
            member,
            serving,
            why,
        }
    }

    async fn buckets(&self, why: &mut Vec<String>) -> bool {
        let js = async_nats::jetstream::new(self.client.clone());
        let names = [
            subjects::JOBS_BUCKET,
            subjects::SDFS_BUCKET,
            subjects::SETTINGS_BUCKET,
            subjects::LEASE_BUCKET,
            subjects::MODELS_BUCKET,
        ];
        let mut ok = true;
        for name in names {
            match tokio::time::timeout(CHECK_TIMEOUT, js.get_key_value(name)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    why.push(format!("bucket {name}: {e}"));
                    ok = false;
                }
                Err(_) => {
                    why.push(format!("bucket {name}: no answer within {CHECK_TIMEOUT:?}"));
                    ok = false;
                }
            }
        }
        ok
    }
}

/// `GET /readyz`: 200 with the report when ready, 503 with it when not.
pub async fn readyz(State(ready): State<Readiness>) -> Response {
    let report = ready.check().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}
