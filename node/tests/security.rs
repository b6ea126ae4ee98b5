//! Roles on the bus, enforced by the nats-server itself (the config `idunno secure init`
//! generates): what a viewer, an operator and a node identity may and may not do, and that a
//! client without TLS, or with another CA's certificate, cannot connect at all.

use bus_client::denials::{self, Action};
use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_client::RequestError;
use bus_schemas::membership::{ViewRequest, ViewSnapshot};
use bus_schemas::subjects as s;
use futures::StreamExt;
use std::path::Path;
use std::time::Duration;
use testkit::Cluster;

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
const WAIT: Duration = Duration::from_secs(5);
/// What every forged message carries, so that a subscriber can tell one got through.
const FORGED: &[u8] = b"forged-by-a-test";

/// Waits for the server to refuse `action` on `subject` for `client`; panics if it does not.
async fn expect_refused(
    client: &async_nats::Client,
    action: Action,
    subject: &str,
    d: &mut tokio::sync::broadcast::Receiver<denials::Denial>,
) {
    let prefix = denials::prefix_of(client);
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match d.recv().await {
                Ok(x) if x.prefix == prefix && x.action == action && x.subject == subject => return,
                Ok(_) => {}
                Err(e) => panic!("denials: {e}"),
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "the server did not refuse {action:?} on {subject}"
    );
}

/// Publishes a forgery on each subject and subscribes to each pattern (plain, or in a queue
/// group as `"<subject> <queue>"`): the server must refuse every one.
async fn refused_all(client: &async_nats::Client, publish: &[String], subscribe: &[String]) {
    let mut d = denials::watch();
    for subject in publish {
        client
            .publish(subject.clone(), FORGED.into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        expect_refused(client, Action::Publish, subject, &mut d).await;
    }
    for pattern in subscribe {
        let (subject, queue) = match pattern.split_once(' ') {
            Some((s, q)) => (s.to_string(), Some(q.to_string())),
            None => (pattern.clone(), None),
        };
        let _sub = match queue {
            Some(q) => client.queue_subscribe(subject.clone(), q).await.unwrap(),
            None => client.subscribe(subject.clone()).await.unwrap(),
        };
        client.flush().await.unwrap();
        expect_refused(client, Action::Subscribe, &subject, &mut d).await;
    }
}

/// Whatever the cluster's own identities say on every IDunno subject and inbox, to check
/// afterwards that no forgery reached a subscriber.
async fn listen_everywhere(c: &Cluster) -> async_nats::Subscriber {
    let sub = c.client.subscribe("idunno.v1.>").await.unwrap();
    registered(&c.client).await;
    sub
}

/// Returns once the server has processed everything `client` sent so far (its subscriptions
/// included): a flush only writes to the socket, a request's answer comes back after the
/// server read what came before it on the connection.
async fn registered(client: &async_nats::Client) {
    members(client).await;
}

async fn no_forgery_delivered(mut everything: async_nats::Subscriber) {
    let end = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(msg)) = tokio::time::timeout_at(end, everything.next()).await {
        assert_ne!(
            &msg.payload[..],
            FORGED,
            "a forgery reached {}",
            msg.subject
        );
    }
}

fn queue_groups() -> Vec<String> {
    vec![
        format!("{} {}", s::members_list(), s::MEMBERS_QUEUE),
        format!("{} {}", s::sdfs_rpc_all(), s::SDFS_QUEUE),
        format!("{} {}", s::jobs_rpc_all(), s::JOBS_QUEUE),
        format!("{} {}", s::cluster_rpc_all(), s::CLUSTER_QUEUE),
        format!("{} {}", s::infer(), s::INFER_QUEUE),
    ]
}

async fn members(client: &async_nats::Client) -> ViewSnapshot {
    let req = ViewRequest {
        from: "test".into(),
    };
    bus_client::request(client, s::members_list(), &req, WAIT)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_viewer_reads_everything_public_and_changes_nothing() {
    let c = Cluster::start(Path::new(NODE), 3).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"kept\n").unwrap();
    let operator = SdfsClient::new(c.nats.connect_as("operator").await, WAIT);
    operator.put(&file, "docs/a.txt", None).await.unwrap();

    let viewer = c.nats.connect_as("viewer").await;
    // What a viewer may do.
    assert_eq!(members(&viewer).await.members.len(), 3);
    let files = SdfsClient::new(viewer.clone(), WAIT);
    assert_eq!(files.ls("").await.unwrap().len(), 1);
    let copy = dir.path().join("copy.txt");
    files.get("docs/a.txt", None, &copy, None).await.unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), b"kept\n");
    JobsClient::new(viewer.clone(), WAIT).list().await.unwrap();
    let mut progress = viewer.subscribe(s::job_progress("j1")).await.unwrap();
    let mut results = viewer.subscribe(s::job_results("j1")).await.unwrap();
    registered(&viewer).await;
    c.client
        .publish(s::job_progress("j1"), "p".into())
        .await
        .unwrap();
    c.client
        .publish(s::job_results("j1"), "r".into())
        .await
        .unwrap();
    c.client.flush().await.unwrap();
    assert!(tokio::time::timeout(WAIT, progress.next())
        .await
        .unwrap()
        .is_some());
    assert!(tokio::time::timeout(WAIT, results.next())
        .await
        .unwrap()
        .is_some());
    let ask = bus_schemas::infer::InferRequest {
        labels: Vec::new(),
        model: "no-such-model".into(),
        version: None,
        images: Vec::new(),
        timeout_ms: 2000,
        tensor: None,
    };
    let answer = bus_client::infer(&viewer, &ask, WAIT).await;
    assert!(answer.is_ok(), "infer is a viewer's to call: {answer:?}");

    // What it may not: refused by the server, and nobody receives the forgery.
    let everything = listen_everywhere(&c).await;
    let publish = [
        s::member_events(),
        s::member_fd("n1"),
        s::node_control("n1", "stat"),
        s::node_control("n1", "leave"),
        s::sdfs_rpc("delete"),
        s::sdfs_rpc("del_dir"),
        s::sdfs_rpc("commit"),
        s::sdfs_rpc("write"),
        s::sdfs_store("n1"),
        s::jobs_rpc("submit"),
        s::jobs_rpc("cancel"),
        s::job_results("j1"),
        s::job_work("j1", "n1"),
        // A work reply: the coordinator's inbox.
        "_INBOX.node-n1.x.1".to_string(),
    ];
    let subscribe = [
        vec![
            "_INBOX.operator.>".to_string(),
            "_INBOX.node-n1.>".to_string(),
        ],
        queue_groups(),
    ]
    .concat();
    refused_all(&viewer, &publish, &subscribe).await;
    no_forgery_delivered(everything).await;
    // A refused request fails at once, saying why.
    let err = files.delete("docs/a.txt").await.unwrap_err();
    assert!(
        matches!(
            err,
            bus_client::sdfs::SdfsError::Request(RequestError::Denied { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(
        operator.ls("").await.unwrap().len(),
        1,
        "the file is still there"
    );
    assert!(c.everyone_alive().await);
}

#[tokio::test]
async fn an_operator_changes_state_but_never_speaks_for_a_node() {
    let c = Cluster::start(Path::new(NODE), 3).await;
    let operator = c.nats.connect_as("operator").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.txt");
    std::fs::write(&file, b"operator\n").unwrap();
    let files = SdfsClient::new(operator.clone(), WAIT);
    files.put(&file, "b.txt", None).await.unwrap();
    files.delete("b.txt").await.unwrap();
    let stat = bus_schemas::control::ControlRequest::Stat;
    let reply: bus_schemas::control::ControlReply =
        bus_client::request(&operator, s::node_control("n2", stat.op()), &stat, WAIT)
            .await
            .unwrap();
    assert!(matches!(
        reply,
        bus_schemas::control::ControlReply::Stats { .. }
    ));
    // A submission is the operator's to make: the cluster answers it (here: no such dataset).
    let spec = testkit::serve_spec("no-such-model", Some(1));
    let submitted = JobsClient::new(operator.clone(), WAIT).submit(spec).await;
    assert!(
        matches!(submitted, Err(bus_client::jobs::JobsError::Refused { .. })),
        "{submitted:?}"
    );

    let everything = listen_everywhere(&c).await;
    let publish = [
        s::member_events(),
        s::member_fd("n1"),
        s::sdfs_rpc("commit"),
        s::sdfs_store("n1"),
        s::job_results("j1"),
        s::job_progress("j1"),
        s::job_events(),
        s::job_work("j1", "n1"),
        s::node_assign("n1"),
        "_INBOX.node-n1.x.1".to_string(),
        "$JS.API.STREAM.LIST".to_string(),
    ];
    let subscribe = [
        vec!["_INBOX.viewer.>".to_string(), s::node_control_all("n1")],
        queue_groups(),
    ]
    .concat();
    refused_all(&operator, &publish, &subscribe).await;
    no_forgery_delivered(everything).await;
    assert!(c.everyone_alive().await);
}

#[tokio::test]
async fn a_node_identity_reads_only_its_own_subjects() {
    let c = Cluster::start(Path::new(NODE), 2).await;
    let n1 = c.nats.connect_as("node-n1").await;
    let others = [
        s::node_control_all("n2"),
        s::node_control("n2", "leave"),
        s::job_work("*", "n2"),
        s::job_work("j1", "n2"),
        s::member_fd("n2"),
        s::sdfs_store("n2"),
        "_INBOX.node-n2.>".to_string(),
        "_INBOX.operator.>".to_string(),
        "idunno.v1.>".to_string(),
    ];
    refused_all(&n1, &[], &others).await;
    // Its own subjects are its to read (this second connection of n1 is refused nothing).
    let mut d = denials::watch();
    let _own = n1.subscribe(s::node_control_all("n1")).await.unwrap();
    let _work = n1.subscribe(s::job_work("*", "n1")).await.unwrap();
    registered(&n1).await;
    let prefix = denials::prefix_of(&n1);
    let late = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Ok(x) = d.recv().await {
                if x.prefix == prefix {
                    return x;
                }
            }
        }
    })
    .await;
    assert!(late.is_err(), "refused its own subject: {late:?}");
}

#[tokio::test]
async fn without_tls_or_with_another_cas_certificate_nobody_connects() {
    let nats = testkit::NatsServer::start();
    // Plain TCP, no credentials: the server wants TLS and a certificate of its CA.
    let plain = tokio::time::timeout(WAIT, async_nats::connect(nats.url())).await;
    assert!(!matches!(plain, Ok(Ok(_))), "a plain client connected");
    // Valid-looking identity of another cluster (another CA).
    let other = tempfile::tempdir().unwrap();
    let spec = bus_client::secure::Spec::local(other.path(), &["n1".to_string()]);
    let secure = bus_client::secure::Secure::init(&other.path().join("s"), &spec).unwrap();
    let foreign = bus_client::BusOptions::for_identity(nats.url(), secure.identity_dir("operator"));
    let err = foreign.connect_once("test").await.unwrap_err();
    assert!(matches!(err, bus_client::ConnectError::Tls { .. }), "{err}");
    // And the other way round: our CA, but a client certificate of the other CA.
    let mixed = bus_client::BusOptions {
        tls_cert: Some(secure.identity_dir("operator").join("cert.pem")),
        tls_key: Some(secure.identity_dir("operator").join("key.pem")),
        ..nats.bus("operator")
    };
    let err = mixed.connect_once("test").await.unwrap_err();
    assert!(matches!(err, bus_client::ConnectError::Tls { .. }), "{err}");
    // The right identity connects.
    nats.connect_as("operator").await;
}

#[tokio::test]
async fn a_rotated_identity_works_and_its_old_credentials_do_not() {
    let nats = testkit::NatsServer::start();
    let dir = nats.secure_dir().unwrap();
    let old = tempfile::tempdir().unwrap();
    for f in ["seed.nk", "cert.pem", "key.pem", "ca.pem", "identity.json"] {
        let from = dir.join("identities/operator").join(f);
        std::fs::copy(from, old.path().join(f)).unwrap();
    }
    let stale = bus_client::BusOptions::for_identity(nats.url(), old.path());
    stale.connect_once("test").await.unwrap();
    // `idunno secure rotate`, then a reload, as docs/security.md says.
    let mut secure = bus_client::secure::Secure::open(&dir).unwrap();
    secure.rotate("operator").unwrap();
    let added = secure
        .add(bus_schemas::roles::Role::Viewer, "grafana", None)
        .unwrap();
    nats.reload();
    testkit::wait_until("the old operator key is refused", WAIT, || async {
        stale.connect_once("test").await.is_err().then_some(())
    })
    .await;
    let err = stale.connect_once("test").await.unwrap_err();
    assert!(err.to_string().contains("authorization"), "{err}");
    nats.connect_as("operator").await;
    let grafana = bus_client::BusOptions::for_identity(nats.url(), added);
    let client = grafana.connect_once("test").await.unwrap();
    // The new viewer has its own inbox and a viewer's rights.
    assert!(denials::prefix_of(&client).starts_with("_INBOX.grafana"));
    refused_all(&client, &[s::sdfs_rpc("delete")], &[]).await;
}
