//! The coordinator lease: key `coordinator` in the KV bucket `idunno-coord`, whose `max_age` is
//! the lease's time to live. The holder renews it with compare-and-swap every
//! [`RENEW`]; anyone may create it when it is absent. A standby that sees the holder failed
//! or left in the membership view, or whose process is gone from the bus (its control subject
//! has no responders twice in a row), deletes the lease (expecting its revision) and takes it
//! at once, so that it need not wait for the TTL.

use async_nats::jetstream::kv::{Operation, Store, UpdateErrorKind};
use bus_schemas::jobs::Lease;
use bus_schemas::membership::MemberState;
use bus_schemas::{decode, encode};
use idunno_membership::MembershipHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long a standby waits for the lease holder's answer to a ping.
pub const PING_TIMEOUT: Duration = Duration::from_millis(500);
/// The pause between the two pings that find a holder gone from the bus.
pub const VANISHED_AGAIN: Duration = Duration::from_millis(150);

/// The lease bucket.
pub const BUCKET: &str = bus_schemas::subjects::LEASE_BUCKET;
/// The lease key.
pub const KEY: &str = "coordinator";
/// How long a lease lives without renewal.
pub const TTL: Duration = Duration::from_secs(3);
/// How often the holder renews, and standbys look.
pub const RENEW: Duration = Duration::from_millis(400);

/// How long after its last renewal a holder whose renewal failed for want of an answer (the
/// bucket moving or electing its leader) still holds the lease: the entry it wrote lives [`TTL`]
/// and standbys delete it only when the holder failed or vanished, so nobody else can hold it
/// before this.
const GRACE: Duration = Duration::from_millis(1500);

/// The lease this node holds: the entry's revision, and when it was last written.
#[derive(Debug, Clone, Copy)]
struct Holding {
    rev: u64,
    renewed: Instant,
}

impl Holding {
    /// Held at revision `rev`, renewed now.
    fn at(rev: u64) -> Holding {
        Holding {
            rev,
            renewed: Instant::now(),
        }
    }
}

/// Who coordinates now, as this node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coordinator {
    /// The holder's id, if the lease is held.
    pub node: Option<String>,
    /// Whether this node holds it.
    pub me: bool,
}

/// Keeps trying to hold the lease until `shutdown`; publishes who holds it to `tx`. `kv`'s
/// requests should give up soon ([`super::RECORD_CALL`]): a standby stuck in a request to a
/// bucket electing a new leader would take over that much later than it could.
pub async fn run(
    kv: Store,
    client: async_nats::Client,
    me: String,
    membership: MembershipHandle,
    tx: watch::Sender<Coordinator>,
    shutdown: CancellationToken,
) {
    let mut held: Option<Holding> = None;
    let mut since_ms = 0;
    loop {
        let Ok(identity) = membership.identity().await else {
            return;
        };
        let lease = Lease {
            node: me.clone(),
            generation: identity.generation,
            since_ms,
        };
        let state = if !identity.member {
            // A node that left the cluster does not coordinate.
            if let Some(h) = held.take() {
                let _ = kv.delete_expect_revision(KEY, Some(h.rev)).await;
            }
            Coordinator::default()
        } else {
            let standby = Standby {
                kv: &kv,
                client: &client,
                me: &me,
                membership: &membership,
            };
            standby.step(lease, &mut held, &mut since_ms).await
        };
        tx.send_if_modified(|c| {
            let changed = *c != state;
            if changed {
                tracing::info!(coordinator = ?state.node, me = state.me, "coordinator");
            }
            *c = state;
            changed
        });
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(RENEW) => {}
        }
    }
    if let Some(h) = held {
        let _ = kv.delete_expect_revision(KEY, Some(h.rev)).await;
    }
}

/// What one round of holding or watching the lease needs.
struct Standby<'a> {
    kv: &'a Store,
    client: &'a async_nats::Client,
    me: &'a str,
    membership: &'a MembershipHandle,
}

impl Standby<'_> {
    /// One round: renews the lease this node holds, or looks at who holds it and takes it
    /// when it is free or its holder is gone.
    async fn step(
        &self,
        mut lease: Lease,
        held: &mut Option<Holding>,
        since_ms: &mut u64,
    ) -> Coordinator {
        let Ok(bytes) = encode(&lease) else {
            return Coordinator::default();
        };
        if self.renew(&bytes, held).await {
            return self.mine();
        }
        if let Some(decided) = self.holder(&lease, &bytes, held).await {
            return decided;
        }
        *since_ms = now_ms();
        lease.since_ms = *since_ms;
        let Ok(bytes) = encode(&lease) else {
            return Coordinator::default();
        };
        match self.kv.create(KEY, bytes.into()).await {
            Ok(rev) => {
                *held = Some(Holding::at(rev));
                self.mine()
            }
            Err(_) => Coordinator::default(),
        }
    }

    fn mine(&self) -> Coordinator {
        Coordinator {
            node: Some(self.me.into()),
            me: true,
        }
    }

    /// Renews the lease this node holds, if any; whether it still holds it.
    async fn renew(&self, bytes: &[u8], held: &mut Option<Holding>) -> bool {
        let Some(h) = *held else {
            return false;
        };
        match self.kv.update(KEY, bytes.to_vec().into(), h.rev).await {
            Ok(rev) => {
                *held = Some(Holding::at(rev));
                true
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                // Taken, expired, or our last renewal applied without its answer: the entry
                // read next says which.
                tracing::debug!("coordinator lease renewal refused: {e}");
                *held = None;
                false
            }
            Err(e) if h.renewed.elapsed() < GRACE => {
                tracing::debug!("coordinator lease not renewed yet, still held: {e}");
                true
            }
            Err(e) => {
                tracing::warn!("lost the coordinator lease: no renewal within {GRACE:?}: {e}");
                *held = None;
                false
            }
        }
    }

    /// Who coordinates as the bucket says, or `None` when the lease is free to take (nobody
    /// holds it, or its holder is gone and its entry was deleted).
    async fn holder(
        &self,
        lease: &Lease,
        bytes: &[u8],
        held: &mut Option<Holding>,
    ) -> Option<Coordinator> {
        // Read from any copy (a direct get): a copy that lags may name a holder that has just
        // gone, which only delays a take-over (the delete below expects the revision read), and
        // reading from the leader would name nobody whenever the bucket elects one, which a
        // server that rejoins after a cut forces (its higher Raft term).
        let entry = match self.kv.entry(KEY).await {
            Ok(entry) => entry.filter(|e| e.operation == Operation::Put)?,
            Err(e) => {
                tracing::debug!("cannot read the coordinator lease: {e}");
                return Some(Coordinator::default());
            }
        };
        let rev = entry.revision;
        let holder = match decode::<Lease>(&entry.value) {
            Ok(holder) => holder,
            Err(e) => {
                tracing::warn!("corrupt coordinator lease, deleting it: {e}");
                let _ = self.kv.delete_expect_revision(KEY, Some(rev)).await;
                return Some(Coordinator::default());
            }
        };
        if holder.node != self.me && self.gone(&holder).await {
            tracing::info!(holder = %holder.node, "the coordinator is gone; taking over");
            let deleted = self.kv.delete_expect_revision(KEY, Some(rev)).await;
            return deleted.is_err().then(Coordinator::default);
        }
        if holder == *lease {
            // Our renewal was applied but its answer lost: carry on from it.
            if let Ok(rev) = self.kv.update(KEY, bytes.to_vec().into(), rev).await {
                *held = Some(Holding::at(rev));
                return Some(self.mine());
            }
        } else if holder.node == self.me {
            // Our own lease from an earlier generation: let it go.
            let _ = self.kv.delete_expect_revision(KEY, Some(rev)).await;
        }
        Some(Coordinator {
            node: Some(holder.node),
            me: false,
        })
    }

    /// Whether the holder is gone: membership no longer has it alive, or its process is gone
    /// from the bus.
    async fn gone(&self, holder: &Lease) -> bool {
        !holder_alive(self.membership, holder).await || self.vanished(&holder.node).await
    }

    /// Whether `holder`'s process is gone from the bus: its control subject has no responders,
    /// twice, [`VANISHED_AGAIN`] apart (a node reconnecting after a server restart answers again
    /// by then).
    async fn vanished(&self, holder: &str) -> bool {
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(VANISHED_AGAIN).await;
            }
            let reply: Result<bus_schemas::control::ControlReply, _> = bus_client::request(
                self.client,
                bus_schemas::subjects::node_control(holder, "ping"),
                &bus_schemas::control::ControlRequest::Ping,
                PING_TIMEOUT,
            )
            .await;
            if !matches!(reply, Err(bus_client::RequestError::NoResponders { .. })) {
                return false;
            }
        }
        true
    }
}

/// Whether the lease holder's generation is alive (or suspect) in this node's view.
async fn holder_alive(membership: &MembershipHandle, holder: &Lease) -> bool {
    let Ok(view) = membership.view().await else {
        return true;
    };
    match view.members.iter().find(|m| m.id == holder.node) {
        Some(m) if m.generation > holder.generation => false,
        Some(m) => matches!(m.state, MemberState::Alive | MemberState::Suspect),
        // Not known yet (this node just started): trust the lease until its TTL.
        None => true,
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
