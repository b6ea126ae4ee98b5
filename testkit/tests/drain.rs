//! The patched async-nats (third_party/async-nats/PATCHED.md): a member of a queue group that
//! drains its subscription in the middle of a stream of requests still gets every request the
//! server sent it before the `UNSUB`, so each request is answered, by the member or by NATS's
//! "no responders" once the group is empty. Unpatched 0.51 drops the ones in flight.

use futures::StreamExt;
use std::time::Duration;
use testkit::NatsServer;

const REQUESTS: u64 = 20_000;

#[tokio::test]
async fn a_drained_queue_member_answers_every_request_already_sent_to_it() {
    let nats = NatsServer::start();
    // On the secure test server, as its admin identity (which may use any IDunno subject).
    let member = nats.connect().await;
    let mut sub = member
        .queue_subscribe("idunno.v1.test.work", "workers".into())
        .await
        .unwrap();
    member.flush().await.unwrap();
    let responder = tokio::spawn(async move {
        let mut answered = 0u64;
        while let Some(msg) = sub.next().await {
            if let Some(to) = msg.reply {
                member.publish(to, "done".into()).await.unwrap();
            }
            answered += 1;
            // Leave the group while requests are still pouring in.
            if answered == 200 {
                sub.drain().await.unwrap();
            }
        }
        member.flush().await.unwrap();
        answered
    });

    let sender = nats.connect().await;
    let inbox = sender.new_inbox();
    let mut replies = sender.subscribe(format!("{inbox}.*")).await.unwrap();
    sender.flush().await.unwrap();
    for i in 0..REQUESTS {
        let reply = format!("{inbox}.{i}");
        sender
            .publish_with_reply("idunno.v1.test.work", reply, "job".into())
            .await
            .unwrap();
    }
    sender.flush().await.unwrap();
    let (mut done, mut no_responders) = (0u64, 0u64);
    let count = async {
        while done + no_responders < REQUESTS {
            let msg = replies.next().await.expect("the inbox is open");
            if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                no_responders += 1;
            } else {
                done += 1;
            }
        }
    };
    let all = tokio::time::timeout(Duration::from_secs(60), count).await;
    let answered = responder.await.unwrap();
    assert!(
        all.is_ok(),
        "{done} answered, {no_responders} no responders, {} never answered",
        REQUESTS - done - no_responders
    );
    assert_eq!(done, answered, "each answer came from the member");
    assert!(answered >= 200, "the member drained after 200");
    assert!(
        no_responders > 0,
        "the group was empty for the last requests"
    );
}
