//! (c) A whole machine `kill -9`ed (its nats-server and both nodes) while a continuous
//! `serve fixture 64` runs on 3 machines: detection time, worker and coordinator recovery.
//! Everything is observed through a machine that stays; the lost machine is started again on
//! its data (and every copy is current again) before the next kill.

use bus_client::jobs::JobsClient;
use bus_schemas::control::{ControlReply, ControlRequest};
use bus_schemas::membership::{MemberEvent, MemberEventKind, MemberState};
use bus_schemas::serve::ServeState;
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use testkit::views::{control, wait_all_see};
use testkit::{serve_spec, wait_until, Seen};

use crate::setup::{led_by, wait_copies, Setup};

/// Which machine (0, 1, 2) node `id` is on.
fn machine_of(id: &str) -> usize {
    usize::from(id.as_bytes()[0] - b'a')
}

/// The coordinator as node `observer` sees it.
async fn coordinator(client: &async_nats::Client, observer: &str) -> Option<String> {
    match control(client, observer, ControlRequest::Members).await? {
        ControlReply::Members { coordinator, .. } => coordinator,
        _ => None,
    }
}

/// The port of every machine's nats-server monitoring (as `testkit::Machines` configures it).
const MONITOR_PORT: u16 = 8222;

/// Whether machine `m`'s nats-server leads the JetStream meta group (its `/jsz`).
fn meta_leader(m: &testkit::Machine) -> bool {
    let addr = format!("{}:{MONITOR_PORT}", m.ip);
    let jsz = tokio::task::block_in_place(|| testkit::http::get(&addr, "/jsz", &[]).json());
    jsz["meta_cluster"]["leader"].as_str() == Some(&format!("m-{}", m.name))
}

/// The job's progress, once it can be read.
async fn serve_state(jobs: &JobsClient, id: &str) -> ServeState {
    wait_until("the job's record", Duration::from_secs(60), || async {
        jobs.get(id).await.ok()?.serve
    })
    .await
}

/// Seconds from `killed` until a `fail` event for every one of `lost` reached `events`, and
/// until every one of `kept` sees them failed in its own view.
async fn detection(
    mut events: async_nats::Subscriber,
    client: &async_nats::Client,
    (lost, kept): (&[String], &[String]),
    killed: Instant,
) -> (f64, f64) {
    let mut left: BTreeSet<&String> = lost.iter().collect();
    while !left.is_empty() {
        let msg = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("no fail event within 20 s")
            .expect("subscription closed");
        if let Ok(ev) = decode::<MemberEvent>(&msg.payload) {
            if ev.kind == MemberEventKind::Fail {
                left.remove(&ev.node);
            }
        }
    }
    let event = killed.elapsed().as_secs_f64();
    let limit = Duration::from_secs(20);
    wait_all_see(client, kept, lost, MemberState::Failed, limit).await;
    (event, killed.elapsed().as_secs_f64())
}

/// Seconds from `killed` until every batch pending at the kill (in the record read just
/// before it, or first read after it) was answered.
async fn worker_recovery(jobs: &JobsClient, id: &str, before: &ServeState, killed: Instant) -> f64 {
    let mut was: BTreeSet<u64> = before.pending.iter().map(|p| p.batch_id).collect();
    was.extend(
        serve_state(jobs, id)
            .await
            .pending
            .iter()
            .map(|p| p.batch_id),
    );
    let resumed = wait_until(
        "pending batches answered",
        Duration::from_secs(60),
        || async {
            let s = jobs.get(id).await.ok()?.serve?;
            (!s.pending.iter().any(|p| was.contains(&p.batch_id))).then(Instant::now)
        },
    )
    .await;
    (resumed - killed).as_secs_f64()
}

/// Seconds from `killed` until a node of `kept` names a new coordinator, and until the first
/// result of a batch that coordinator cut (an id at or past the record's next batch, read
/// after the kill, when the old coordinator could no longer write).
async fn coordinator_recovery(
    (client, jobs): (&async_nats::Client, &JobsClient),
    (id, old): (&str, &str),
    (observer, seen): (&str, &Seen),
    killed: Instant,
) -> (f64, f64) {
    let named = async {
        wait_until("a new coordinator", Duration::from_secs(60), || async {
            let c = coordinator(client, observer).await?;
            (c != old).then(Instant::now)
        })
        .await
    };
    let resumed = async {
        let next = serve_state(jobs, id).await.next_batch;
        wait_until(
            "a batch cut after the kill",
            Duration::from_secs(60),
            || async {
                let seen = seen.lock().unwrap();
                let after = seen
                    .iter()
                    .filter(|r| r.0 > killed && r.1 == id && r.2 >= next);
                after.map(|r| r.0).next()
            },
        )
        .await
    };
    let (named, resumed) = tokio::join!(named, resumed);
    let secs = |t: Instant| (t - killed).as_secs_f64();
    (secs(named), secs(resumed))
}

/// What one kill measured, in seconds from the kill.
pub struct Kill {
    /// Until the `fail` events of the lost nodes arrived.
    pub detect_event: f64,
    /// Until every staying node's view showed them failed.
    pub detect_views: f64,
    /// Until a new coordinator was named (a kill of the coordinator's machine).
    pub named: Option<f64>,
    /// Until the job resumed.
    pub resumed: f64,
    /// The longest silence in the job's results until it resumed.
    pub stall: f64,
    /// The machine killed.
    pub machine: String,
    /// The buckets and streams its server led.
    pub leaders: Vec<String>,
}

/// Kills machine `victim` whole, measures, and starts it again.
async fn kill_round(s: &mut Setup, id: &str, victim: usize, old: &str) -> Kill {
    let is_coordinator = machine_of(old) == victim;
    let stay = (victim + 1) % s.clients.len();
    let client = s.clients[stay].clone();
    let jobs = JobsClient::new(client.clone(), Duration::from_secs(2));
    let lost = s.m().ids_on(victim);
    let kept: Vec<String> = (s.m().ids().into_iter())
        .filter(|n| !lost.contains(n))
        .collect();
    let machine = s.m().machines[victim].name.clone();
    let mut leaders = led_by(&client, &format!("m-{machine}")).await;
    if meta_leader(&s.m().machines[victim]) {
        leaders.push("JetStream meta".into());
    }
    let before = serve_state(&jobs, id).await;
    let events = client.subscribe(subjects::member_events()).await.unwrap();
    client.flush().await.unwrap();
    let killed = Instant::now();
    tokio::task::block_in_place(|| s.m().kill(victim));
    let detect = detection(events, &client, (&lost, &kept), killed);
    let (detect, named, resumed) = if is_coordinator {
        let recover = coordinator_recovery(
            (&client, &jobs),
            (id, old),
            (&kept[0], &s.seen[stay]),
            killed,
        );
        let (d, (n, r)) = tokio::join!(detect, recover);
        (d, Some(n), r)
    } else {
        let recover = worker_recovery(&jobs, id, &before, killed);
        let (d, r) = tokio::join!(detect, recover);
        (d, None, r)
    };
    let stall = longest_gap(&s.seen[stay], id, killed, resumed);
    restart(s, victim, &client, id).await;
    Kill {
        detect_event: detect.0,
        detect_views: detect.1,
        named,
        resumed,
        stall,
        machine,
        leaders,
    }
}

/// The longest silence (seconds) in job `id`'s results seen from `killed` until `until`
/// seconds after it.
fn longest_gap(seen: &Seen, id: &str, killed: Instant, until: f64) -> f64 {
    let seen = seen.lock().unwrap();
    let after = seen.iter().filter(|r| r.1 == id && r.0 > killed);
    let times = after.map(|r| (r.0 - killed).as_secs_f64());
    let (mut last, mut gap) = (0.0, 0.0f64);
    for t in times.take_while(|&t| t <= until) {
        gap = gap.max(t - last);
        last = t;
    }
    gap.max(until - last)
}

/// Starts machine `victim` again on its data and waits until its nodes are alive and serve
/// job `id`, and every copy is current again.
async fn restart(s: &mut Setup, victim: usize, client: &async_nats::Client, id: &str) {
    let m = s.m();
    let lost = m.ids_on(victim);
    tokio::task::block_in_place(|| {
        m.start_nats(victim);
        m.wait_jetstream(Duration::from_secs(60));
        for n in &lost {
            m.spawn_node(victim, n);
        }
    });
    m.wait_all_alive(client, Duration::from_secs(60)).await;
    let jobs = JobsClient::new(client.clone(), Duration::from_secs(2));
    wait_until(
        "the restarted nodes serve",
        Duration::from_secs(60),
        || async {
            let w = jobs.get(id).await.ok()?.serve?.workers;
            lost.iter().all(|n| w.contains(n)).then_some(())
        },
    )
    .await;
    wait_copies(client, 3).await;
}

/// (c): `kills` kills of a machine holding workers only and as many of the coordinator's
/// machine, alternating, while a continuous job runs.
pub async fn machine_deaths(mut s: Setup, kills: usize) {
    let id = s.jobs.submit(serve_spec("fixture", None)).await.unwrap();
    wait_until("queries answered", Duration::from_secs(120), || async {
        (s.jobs.get(&id).await.ok()?.serve?.done >= 1000).then_some(())
    })
    .await;
    let (mut worker, mut coord) = (Vec::new(), Vec::new());
    for round in 0..2 * kills {
        let observer = s.m().ids()[0].clone();
        let old = wait_until("a coordinator", Duration::from_secs(30), || {
            coordinator(&s.clients[0], &observer)
        })
        .await;
        let victim = if round % 2 == 1 {
            machine_of(&old)
        } else {
            // A machine of workers only, in turn.
            let others: Vec<usize> = (0..3).filter(|&i| i != machine_of(&old)).collect();
            others[round / 2 % 2]
        };
        let k = kill_round(&mut s, &id, victim, &old).await;
        eprintln!(
            "kill of machine {} (coordinator {old}, its server led {:?}): fail events {:.2} s, views {:.2} s, named {:?}, resumed {:.2} s, results silent {:.2} s at most",
            k.machine, k.leaders, k.detect_event, k.detect_views, k.named, k.resumed, k.stall
        );
        let kind = if round % 2 == 1 {
            &mut coord
        } else {
            &mut worker
        };
        kind.push(k);
    }
    let _ = s.jobs.cancel(&id).await;
    crate::report::report(&worker, &coord);
}
