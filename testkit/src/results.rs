//! Every job results message the bus carries, recorded as it arrives (for the benches).

use bus_schemas::serve::ResultsBatch;
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Every results message seen: when, job, batch id.
pub type Seen = Arc<Mutex<Vec<(Instant, String, u64)>>>;

/// Subscribes to every job's results and records each batch as it arrives, until the client
/// closes.
pub async fn collect_results(client: &async_nats::Client) -> Seen {
    let seen: Seen = Arc::default();
    let mut sub = client
        .subscribe(subjects::all_job_results())
        .await
        .expect("subscribe to the job results");
    let out = seen.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Ok(b) = decode::<ResultsBatch>(&msg.payload) {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                out.push((Instant::now(), b.job_id, b.batch_id));
            }
        }
    });
    seen
}
