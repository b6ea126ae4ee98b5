//! The online batcher: one task that groups queued requests by model and runs them in
//! batches on the inference thread, one batch at a time, and answers each request.

use crate::error::JobError;
use crate::metrics::Metrics;
use crate::ml::model::Model;
use crate::serving::args::InferConfig;
use crate::serving::engine::SharedModel;
use crate::serving::executor::Executor;
use crate::serving::output::{check_shape, predictions, split_by_request};
use bus_schemas::infer::Prediction;
use std::collections::VecDeque;
use std::sync::Arc;
use tch::{Kind, Tensor};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A request's queries, `n × C × H × W` values.
pub(super) enum Input {
    /// u8 pixels (decoded images), scaled by the model.
    Pixels(Vec<u8>),
    /// float32 values already scaled as the model's convention says.
    Scaled(Vec<f32>),
}

impl Input {
    /// The part of a batch's input these queries make, on the model's device.
    fn tensor(&self, model: &Model, dims: [i64; 4]) -> Tensor {
        match self {
            Input::Pixels(px) => model.normalize(&Tensor::from_slice(px).view(dims)),
            Input::Scaled(v) => Tensor::from_slice(v).view(dims),
        }
    }
}

/// A decoded request waiting in the batcher.
pub(super) struct Pending {
    pub(super) model: SharedModel,
    pub(super) key: (String, u64),
    pub(super) input: Input,
    pub(super) n: usize,
    pub(super) shape: [i64; 3],
    pub(super) deadline: Instant,
    pub(super) received: Instant,
    pub(super) reply: oneshot::Sender<Answer>,
}

/// The batcher's answer to one request.
pub(super) type Answer = Result<(Vec<Prediction>, f64, f64, u32), JobError>;

/// Groups queued requests by model and runs them in batches, one batch at a time.
pub(super) async fn batcher(
    mut rx: mpsc::Receiver<Pending>,
    cfg: InferConfig,
    exec: Executor,
    metrics: Arc<Metrics>,
) {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(p) => queue.push_back(p),
                None => return,
            }
        }
        // Wait for a full batch of the oldest request's model, or its maximum delay.
        let until = queue[0].received.max(Instant::now() - cfg.max_delay) + cfg.max_delay;
        loop {
            while let Ok(p) = rx.try_recv() {
                queue.push_back(p);
            }
            let key = &queue[0].key;
            let ready: usize = queue.iter().filter(|p| &p.key == key).map(|p| p.n).sum();
            if ready >= cfg.max_batch || Instant::now() >= until {
                break;
            }
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => queue.push_back(p),
                    None => break,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        let now = Instant::now();
        // Expired or abandoned requests are never run (their timeout was or will be answered).
        queue.retain(|p| p.deadline > now && !p.reply.is_closed());
        let Some(first) = queue.front() else { continue };
        let key = first.key.clone();
        let mut batch = Vec::new();
        let mut images = 0;
        let mut rest = VecDeque::with_capacity(queue.len());
        for p in queue.drain(..) {
            if p.key == key && (batch.is_empty() || images + p.n <= cfg.max_batch) {
                images += p.n;
                batch.push(p);
            } else {
                rest.push_back(p);
            }
        }
        queue = rest;
        let model = key.0.trim_start_matches("models/");
        metrics.online.batch.observe(model, images as f64);
        run(&exec, batch).await;
    }
}

/// Runs one batch of requests for one model and answers each. Everything that reads the
/// model's output runs on the inference thread, where a panic is caught and becomes an error.
async fn run(exec: &Executor, mut batch: Vec<Pending>) {
    let started = Instant::now();
    let model = batch[0].model.clone();
    let shape = batch[0].shape;
    let sizes: Vec<usize> = batch.iter().map(|p| p.n).collect();
    let total: usize = sizes.iter().sum();
    let input = batch_input(&mut batch, shape);
    let outcome = exec
        .run_urgent(move || {
            let model = model.lock();
            let _guard = tch::no_grad_guard();
            let x = match input {
                BatchInput::Pixels(pixels) => {
                    Input::Pixels(pixels).tensor(&model, dims(total, shape))
                }
                BatchInput::Parts(parts) => {
                    let parts: Vec<Tensor> = parts
                        .iter()
                        .map(|(n, input)| input.tensor(&model, dims(*n, shape)))
                        .collect();
                    Tensor::cat(&parts, 0)
                }
            };
            let logits = model.forward_input(&x, false)?;
            let names = &model.header.classes;
            let classes = check_shape(&logits.size(), total, names.len())?;
            let probs = logits.softmax(-1, Kind::Float).to_device(tch::Device::Cpu);
            let flat = Vec::<f32>::try_from(&probs.flatten(0, -1))
                .map_err(|e| JobError::Internal(e.to_string()))?;
            let values = flat.len();
            split_by_request(predictions(&flat, classes, names), &sizes).ok_or_else(|| {
                JobError::BadInput(format!(
                    "the model returned {values} values for {total} inputs"
                ))
            })
        })
        .await
        .and_then(|r| r);
    let run_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut outcome = outcome.map(Vec::into_iter);
    for p in batch {
        let queue_ms = started.duration_since(p.received).as_secs_f64() * 1000.0;
        let answer = match &mut outcome {
            Ok(parts) => match parts.next() {
                Some(mine) => Ok((mine, queue_ms, run_ms, total as u32)),
                None => Err(JobError::Internal(
                    "a request was left out of its batch".into(),
                )),
            },
            Err(JobError::Overloaded(why)) => Err(JobError::Overloaded(why.clone())),
            Err(e) => Err(JobError::Internal(format!("the model failed: {e}"))),
        };
        let _ = p.reply.send(answer);
    }
}

/// A batch's queries: the pixels of decoded images put together (the common case), or each
/// request's part as it came when some came as float tensors.
enum BatchInput {
    Pixels(Vec<u8>),
    Parts(Vec<(usize, Input)>),
}

/// Takes the queries out of `batch`'s requests.
fn batch_input(batch: &mut [Pending], shape: [i64; 3]) -> BatchInput {
    let take = |p: &mut Pending| std::mem::replace(&mut p.input, Input::Pixels(Vec::new()));
    if batch.iter().all(|p| matches!(p.input, Input::Pixels(_))) {
        let per_query = shape.iter().product::<i64>() as usize;
        let mut pixels = Vec::with_capacity(batch.iter().map(|p| p.n * per_query).sum());
        for p in batch.iter_mut() {
            if let Input::Pixels(px) = take(p) {
                pixels.extend_from_slice(&px);
            }
        }
        return BatchInput::Pixels(pixels);
    }
    BatchInput::Parts(batch.iter_mut().map(|p| (p.n, take(p))).collect())
}

fn dims(n: usize, shape: [i64; 3]) -> [i64; 4] {
    [n as i64, shape[0], shape[1], shape[2]]
}
