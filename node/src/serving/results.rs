//! Storing a batch's results in the results stream, under the worker's own message id, and
//! telling the coordinator which stream message holds them.

use super::engine::BatchOutput;
use super::{results_msg_id, results_stream, Worker};
use crate::stages::Stage;
use async_nats::jetstream;
use bus_schemas::serve::{ResultsBatch, WorkBatch, WorkReply};
use bus_schemas::{encode, subjects};
use std::time::Instant;

impl Worker {
    /// Stores a batch's results in the stream (once per batch id and worker) and says how it
    /// went, with the stream sequence of the message that holds exactly these results.
    pub(super) async fn store(
        &self,
        batch: &WorkBatch,
        out: BatchOutput,
        received: Instant,
    ) -> WorkReply {
        let worker = self.ctx.id.clone();
        let error = |message: String| self.error(batch, message);
        let results = ResultsBatch {
            job_id: batch.job_id.clone(),
            batch_id: batch.batch_id,
            results: out.results,
            worker: worker.clone(),
        };
        let encoding = Instant::now();
        let payload: bytes::Bytes = match encode(&results) {
            Ok(p) => p.into(),
            Err(e) => return error(e.to_string()),
        };
        let stages = &self.ctx.metrics.stages;
        let publishing = Instant::now();
        stages.add(Stage::Encode, publishing - encoding);
        let id = results_msg_id(&batch.job_id, batch.batch_id, &worker);
        let mut stored = self.publish(batch, payload.clone(), id.clone()).await;
        if let Ok(ack) = &stored {
            if ack.duplicate && !self.holds(ack.sequence, &payload).await {
                // Someone else stored different results under this worker's id first: store
                // ours under a fresh id, so that the sequence accepted is really ours.
                let fresh = format!("{id}.{:016x}", rand::random::<u64>());
                tracing::warn!(job = %batch.job_id, batch = batch.batch_id, "results pre-empted under this worker's id; stored again");
                stored = self.publish(batch, payload, fresh).await;
            }
        }
        stages.add(Stage::Publish, publishing.elapsed());
        if stored.is_ok() {
            stages.batch();
        }
        match stored {
            Ok(ack) => WorkReply::Done {
                batch_id: batch.batch_id,
                worker,
                queries: batch.len,
                correct: out.correct,
                proc_ms: received.elapsed().as_secs_f64() * 1000.0,
                infer_ms: out.infer_ms,
                duplicate: ack.duplicate,
                stream_seq: Some(ack.sequence),
            },
            Err(e) => error(e),
        }
    }

    /// Publishes a batch's results to the stream under message id `id`, waiting for the ack.
    async fn publish(
        &self,
        batch: &WorkBatch,
        payload: bytes::Bytes,
        id: String,
    ) -> Result<jetstream::publish::PublishAck, String> {
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .message_id(id);
        let subject = subjects::job_results(&batch.job_id);
        let ack = match self.js.send_publish(subject, publish).await {
            Ok(ack) => ack.await,
            Err(e) => return Err(format!("cannot store results: {e}")),
        };
        match ack {
            Ok(ack) => Ok(ack),
            Err(e) => {
                if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound {
                    // Deleted, or never created (no space when the node started): try again;
                    // the batch itself is sent again by the coordinator.
                    let _ = results_stream(&self.js, self.ctx.kv_replicas).await;
                }
                Err(format!("results not stored: {e}"))
            }
        }
    }

    /// Whether the results stream holds exactly `payload` at `seq`.
    async fn holds(&self, seq: u64, payload: &[u8]) -> bool {
        let Ok(stream) = self.js.get_stream(subjects::RESULTS_STREAM).await else {
            return false;
        };
        stream
            .get_raw_message(seq)
            .await
            .is_ok_and(|m| m.payload.as_ref() == payload)
    }
}
