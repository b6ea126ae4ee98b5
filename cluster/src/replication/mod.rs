//! How many copies the NATS cluster keeps of IDunno's buckets and streams: one cluster-wide
//! setting ([`bus_schemas::jobs::Settings::replicas`]), automatic unless an operator set it.
//! Automatic is min(3, the NATS cluster's servers), counted from the client addresses the
//! server advertises; it only ever raises copies (a server briefly missing must not drop
//! them), while a number an operator set is applied both ways.
//!
//! Every node checks every bucket and stream when it starts and every [`PERIOD`] after, and
//! changes the ones whose copies differ (JetStream moves the data itself); it also answers
//! `idunno.v1.cluster.rpc` (status, and setting the number).

pub mod leaders;

use crate::settings::SettingsStore;
use async_nats::jetstream::{Context, ErrorCode};
use bus_schemas::cluster::{
    Asset, ClusterReply, ClusterRequest, ClusterStatus, Copy, MAX_REPLICAS,
};
use bus_schemas::{decode, encode, subjects};
use futures::StreamExt;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long JetStream may take to move one stream off a server being removed.
const PEER_REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a node checks the copies of every bucket and stream.
pub const PERIOD: Duration = Duration::from_secs(15);

/// IDunno's JetStream buckets (KV, stream `KV_<name>`) and streams.
const ASSETS: &[(&str, Kind)] = &[
    (subjects::SDFS_BUCKET, Kind::Kv),
    (subjects::JOBS_BUCKET, Kind::Kv),
    (subjects::SETTINGS_BUCKET, Kind::Kv),
    (subjects::MODELS_BUCKET, Kind::Kv),
    (subjects::LEASE_BUCKET, Kind::Kv),
    (subjects::RESULTS_STREAM, Kind::Stream),
    (subjects::ACCEPTED_STREAM, Kind::Stream),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kv,
    Stream,
}

impl Kind {
    fn stream(self, name: &str) -> String {
        match self {
            Kind::Kv => format!("KV_{name}"),
            Kind::Stream => name.to_string(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Kv => "kv",
            Kind::Stream => "stream",
        }
    }
}

/// The servers of the NATS cluster, counted from the client addresses the server advertises
/// (1 for a server on its own, or one that advertises none).
fn servers(client: &async_nats::Client) -> usize {
    let info = client.server_info();
    if info.cluster.is_none() {
        return 1;
    }
    let mut urls = info.connect_urls.clone();
    urls.sort();
    urls.dedup();
    urls.len().max(1)
}

/// The automatic replication: min(3, servers).
pub fn automatic(client: &async_nats::Client) -> usize {
    servers(client).min(3)
}

/// The copies in force: the operator's number, else [`automatic`].
fn wanted(client: &async_nats::Client, set: Option<u8>) -> usize {
    set.map_or_else(|| automatic(client), usize::from)
}

/// Brings every existing bucket and stream to `wanted` copies (only up, unless `both_ways`);
/// returns one line for each change or failure.
async fn reconcile(js: &Context, wanted: usize, both_ways: bool) -> Vec<String> {
    let mut said = Vec::new();
    for (name, kind) in ASSETS {
        // `get_stream` reads the stream's info already.
        let Ok(stream) = js.get_stream(kind.stream(name)).await else {
            continue; // not created yet (or JetStream is away): its creator uses `automatic`
        };
        let mut config = stream.cached_info().config.clone();
        let has = config.num_replicas.max(1);
        if has == wanted || (has > wanted && !both_ways) {
            continue;
        }
        config.num_replicas = wanted;
        match js.update_stream(&config).await {
            Ok(_) => said.push(format!("{name}: {has} -> {wanted} copies")),
            Err(e) => said.push(format!(
                "{name}: cannot change {has} -> {wanted} copies: {e}"
            )),
        }
    }
    said
}

/// What the cluster keeps, as this node sees it.
async fn status(
    client: &async_nats::Client,
    js: &Context,
    node: &str,
    set: Option<u8>,
) -> ClusterStatus {
    let info = client.server_info();
    let mut assets = Vec::new();
    for (name, kind) in ASSETS {
        let mut asset = Asset {
            name: name.to_string(),
            kind: kind.as_str().into(),
            replicas: 0,
            leader: None,
            copies: Vec::new(),
            error: None,
        };
        let stream = match js.get_stream(kind.stream(name)).await {
            Ok(stream) => stream,
            Err(e) => {
                asset.error = Some(e.to_string());
                assets.push(asset);
                continue;
            }
        };
        // `get_stream` reads the stream's info already.
        let info = stream.cached_info();
        asset.replicas = u8::try_from(info.config.num_replicas.max(1)).unwrap_or(u8::MAX);
        if let Some(c) = &info.cluster {
            asset.leader = c.leader.clone();
            let leader = c.leader.iter().map(|l| Copy {
                server: l.clone(),
                current: true,
                offline: false,
                lag: 0,
            });
            let others = c.replicas.iter().map(|p| Copy {
                server: p.name.clone(),
                current: p.current,
                offline: p.offline,
                lag: p.lag.unwrap_or(0),
            });
            asset.copies = leader.chain(others).collect();
        }
        assets.push(asset);
    }
    ClusterStatus {
        node: node.into(),
        server: info.server_name.clone(),
        cluster: info.cluster.clone(),
        servers: info.connect_urls.clone(),
        replicas_set: set,
        replicas: u8::try_from(wanted(client, set)).unwrap_or(u8::MAX),
        assets,
    }
}

/// Checks the copies every [`PERIOD`] and answers `idunno.v1.cluster.rpc.<op>`, until `shutdown`.
pub async fn run(
    client: async_nats::Client,
    js: Context,
    settings: SettingsStore,
    node: String,
    shutdown: CancellationToken,
) {
    let subscribed = crate::subscribe::retrying(
        &client,
        subjects::cluster_rpc_all(),
        Some(subjects::CLUSTER_QUEUE),
        "cluster requests",
        &shutdown,
    );
    let Some(mut sub) = subscribed.await else {
        return;
    };
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let set = settings.get().await.ok().and_then(|s| s.replicas);
                let want = wanted(&client, set);
                for line in reconcile(&js, want, set.is_some()).await {
                    tracing::warn!("JetStream replication: {line}");
                }
            }
            Some(msg) = sub.next() => {
                let reply = answer(&client, &js, &settings, &node, &msg).await;
                if let (Some(to), Ok(bytes)) = (msg.reply, encode(&reply)) {
                    let _ = client.publish(to, bytes.into()).await;
                }
            }
        }
    }
}

/// Asks JetStream to take `server` out of every bucket and stream that has a copy on it
/// (`$JS.API.STREAM.PEER.REMOVE`); returns one line per asset it refused.
async fn remove_server(client: &async_nats::Client, server: &str) -> Vec<String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
    if server.is_empty() || server.len() > 253 || !server.bytes().all(ok) {
        return vec![format!("{server:?} is not a server name")];
    }
    let body = serde_json::json!({ "peer": server }).to_string();
    let mut failed = Vec::new();
    for (name, kind) in ASSETS {
        let stream = kind.stream(name);
        let subject = format!("$JS.API.STREAM.PEER.REMOVE.{stream}");
        let reply = tokio::time::timeout(
            PEER_REMOVE_TIMEOUT,
            client.request(subject, body.clone().into()),
        )
        .await;
        let answer: serde_json::Value = match reply {
            Ok(Ok(msg)) => serde_json::from_slice(&msg.payload).unwrap_or_default(),
            Ok(Err(e)) => {
                failed.push(format!("{stream}: {e}"));
                continue;
            }
            Err(_) => {
                failed.push(format!("{stream}: no answer within 10 s"));
                continue;
            }
        };
        let error = answer["error"]["description"].as_str().unwrap_or_default();
        // A stream without a copy on that server (or not made yet) has nothing to move.
        let code = answer["error"]["err_code"].as_u64().map(ErrorCode);
        let nothing = matches!(
            code,
            Some(ErrorCode::CLUSTER_PEER_NOT_MEMBER | ErrorCode::STREAM_NOT_FOUND)
        );
        if answer["success"].as_bool() != Some(true) && !nothing {
            failed.push(format!("{stream}: {error}"));
        } else if !nothing {
            tracing::info!(%server, %stream, "took a server out of the stream's copies");
        }
    }
    failed
}

async fn answer(
    client: &async_nats::Client,
    js: &Context,
    settings: &SettingsStore,
    node: &str,
    msg: &async_nats::Message,
) -> ClusterReply {
    let error = |message: String| ClusterReply::Error { message };
    let req = match decode::<ClusterRequest>(&msg.payload) {
        Ok(req) => req,
        Err(e) => return error(format!("bad cluster request: {e}")),
    };
    if let Err(why) = subjects::check_op(&msg.subject, req.op(), subjects::cluster_rpc) {
        return error(why);
    }
    let set = match req {
        ClusterRequest::Status => current(settings).await,
        ClusterRequest::Replicas { replicas } => set_replicas(client, js, settings, replicas).await,
        ClusterRequest::RemoveServer { server } => {
            match take_out(client, js, node, &server).await {
                Ok(()) => current(settings).await,
                Err(message) => Err(message),
            }
        }
    };
    match set {
        Ok(set) => ClusterReply::Status {
            status: status(client, js, node, set).await,
        },
        Err(message) => error(message),
    }
}

/// The number of copies set (`None`: automatic).
async fn current(settings: &SettingsStore) -> Result<Option<u8>, String> {
    match settings.get().await {
        Ok(s) => Ok(s.replicas),
        Err(e) => Err(format!("cannot read the cluster settings: {e}")),
    }
}

/// Sets the number of copies (`None`: automatic) and applies it to every bucket and stream.
async fn set_replicas(
    client: &async_nats::Client,
    js: &Context,
    settings: &SettingsStore,
    replicas: Option<u8>,
) -> Result<Option<u8>, String> {
    if replicas.is_some_and(|n| !(1..=MAX_REPLICAS).contains(&n)) {
        let n = replicas.unwrap_or_default();
        return Err(format!(
            "replicas must be 1 to {MAX_REPLICAS}, or auto; not {n}"
        ));
    }
    let n = servers(client);
    if replicas.is_some_and(|r| usize::from(r) > n) {
        let r = replicas.unwrap_or_default();
        return Err(format!(
            "the NATS cluster has {n} server(s), so it cannot keep {r} copies"
        ));
    }
    if let Err(e) = settings.set_replicas(replicas).await {
        return Err(format!("cannot store the setting: {e}"));
    }
    let want = wanted(client, replicas);
    for line in reconcile(js, want, replicas.is_some()).await {
        tracing::warn!("JetStream replication: {line}");
    }
    Ok(replicas)
}

/// Takes `server` out of the copies of every bucket and stream that has one on it.
async fn take_out(
    client: &async_nats::Client,
    js: &Context,
    node: &str,
    server: &str,
) -> Result<(), String> {
    let before = status(client, js, node, None).await;
    let copies = before.assets.iter().flat_map(|a| &a.copies);
    let mut holders: Vec<&str> = copies.map(|c| c.server.as_str()).collect();
    holders.sort_unstable();
    holders.dedup();
    if !holders.contains(&server) {
        return Err(format!(
            "no bucket or stream has a copy on {server:?} (copies are on {})",
            holders.join(", ")
        ));
    }
    let failed = remove_server(client, server).await;
    match failed.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "cannot take {server} out of: {}",
            failed.join("; ")
        )),
    }
}
