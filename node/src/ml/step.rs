//! One SGD step split in two, so that several workers can take it together: each computes its
//! **contribution** on its shard of the step's batch, the contributions are summed (in rank
//! order, by every worker alike), and each worker **applies** the sum. One worker alone takes
//! the same path with one shard, so training on one worker and on several is the same code.
//!
//! A contribution holds the shard's gradients weighted by its share of the batch (their sum is
//! the gradient of the batch's mean loss), the batch-norm statistics over the number of
//! workers (their sum is the mean), and the shard's loss sum and correct predictions.
//!
//! The trainer's **state** as one vector (what a worker that joins or fell behind adopts):
//! weights, buffers, momentum, then four values per step applied (loss, accuracy, samples,
//! workers) — the history every worker keeps alike, written as the job's steps file.

use super::arch::with_rows;
use super::history::StepRecord;
use super::model::ModelError;
use super::train::Trainer;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

/// Values per step in the history.
const PER_STEP: usize = StepRecord::ROW;

/// Where rank `rank` of `workers` starts in a batch of `len` samples, and how many it takes:
/// contiguous shards, the first `len % workers` one sample longer.
pub fn shard(len: usize, rank: usize, workers: usize) -> (usize, usize) {
    let workers = workers.max(1);
    let (base, extra) = (len / workers, len % workers);
    (
        rank * base + rank.min(extra),
        base + usize::from(rank < extra),
    )
}

/// The seed of step `step`'s random draws (dropout): the same on every worker.
fn step_seed(seed: u64, step: u64) -> u64 {
    (seed ^ 0x5851_F42D_4C95_7F2D)
        .wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .rotate_left(17)
}

/// Copies `t` (any shape, any device) into `out`, times `scale`.
fn write_into(t: &Tensor, scale: f64, out: &mut [f32]) {
    let flat = t
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .view([-1]);
    let flat = if scale == 1.0 { flat } else { flat * scale };
    flat.copy_data(out, out.len());
}

/// A tensor shaped like `like`, on its device, from `values`.
fn tensor_like(values: &[f32], like: &Tensor) -> Tensor {
    Tensor::from_slice(values)
        .view(like.size().as_slice())
        .to_device(like.device())
}

impl Trainer {
    /// Values of the trainable parameters, of the buffers, and of a contribution.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let params: usize = self.opt.params().iter().map(|(_, p)| p.numel()).sum();
        let buffers: usize = self.buffers().iter().map(|(_, b)| b.numel()).sum();
        (params, buffers, params + buffers + 2)
    }

    /// The batch-norm statistics (variables that are not trained), by name.
    fn buffers(&self) -> Vec<(String, Tensor)> {
        let trained: std::collections::BTreeSet<&str> =
            self.opt.params().iter().map(|(n, _)| n.as_str()).collect();
        let mut out: Vec<(String, Tensor)> = self
            .model
            .variables()
            .into_iter()
            .filter(|(n, _)| !trained.contains(n.as_str()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The sample indices of global step `step`'s batch.
    pub fn batch_of(&mut self, step: u64) -> Vec<i64> {
        let steps = self.steps_per_epoch().max(1);
        let epoch = (step / steps) as u32;
        let k = (step % steps) as usize;
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<i64> = (0..self.data.len() as i64).collect();
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                self.schedule.seed ^ (u64::from(epoch) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            order.shuffle(&mut rng);
            self.order = Some((epoch, order));
        }
        let order = self.order.as_ref().map_or(&[][..], |(_, o)| o.as_slice());
        let from = (k * self.schedule.batch).min(order.len());
        let to = (from + self.schedule.batch).min(order.len());
        order[from..to].to_vec()
    }

    /// Rank `rank` of `workers`' contribution to global step `step`.
    pub fn contribution(
        &mut self,
        step: u64,
        rank: usize,
        workers: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let batch = self.batch_of(step);
        let (params, buffers, len) = self.sizes();
        let mut out = vec![0.0f32; len];
        let (first, n) = shard(batch.len(), rank, workers);
        // The forward pass moves the batch-norm statistics; the step's are the sum's, so the
        // state between steps stays the same on every worker.
        let buffers_before: Vec<Tensor> = self.buffers().iter().map(|(_, b)| b.copy()).collect();
        if n > 0 {
            let labels =
                self.data.labels.as_ref().ok_or_else(|| {
                    ModelError::Mismatch("the training split has no labels".into())
                })?;
            let idx = Tensor::from_slice(&batch[first..first + n]);
            let x = self.data.images.index_select(0, &idx);
            let y = labels.index_select(0, &idx).to_device(self.model.device());
            self.opt.zero_grad();
            let seed = step_seed(self.schedule.seed, step);
            let logits = with_rows(first as i64, batch.len() as i64, seed, || {
                self.model.forward(&x, true)
            })?;
            let loss = logits.cross_entropy_for_logits(&y);
            loss.backward();
            let share = n as f64 / batch.len() as f64;
            let mut at = 0;
            for (_, p) in self.opt.params() {
                let g = p.grad();
                let k = p.numel();
                if g.defined() {
                    write_into(&g, share, &mut out[at..at + k]);
                }
                at += k;
            }
            let correct = logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64);
            out[len - 2] = (loss.double_value(&[]) * n as f64) as f32;
            out[len - 1] = correct.int64_value(&[]) as f32;
        }
        let mut at = params;
        for ((_, mut b), before) in self.buffers().into_iter().zip(buffers_before) {
            let k = b.numel();
            write_into(&b, 1.0 / workers.max(1) as f64, &mut out[at..at + k]);
            tch::no_grad(|| b.copy_(&before));
            at += k;
        }
        debug_assert_eq!(at, params + buffers);
        Ok(out)
    }

    /// Applies the sum of every worker's contribution to global step `step`, taken by
    /// `workers` workers.
    pub fn apply(&mut self, step: u64, sum: &[f32], workers: usize) -> StepRecord {
        let (params, _, len) = self.sizes();
        let samples = self.batch_of(step).len();
        let mut at = 0;
        let grads: Vec<Tensor> = self
            .opt
            .params()
            .iter()
            .map(|(_, p)| {
                let k = p.numel();
                let g = tensor_like(&sum[at..at + k], p);
                at += k;
                g
            })
            .collect();
        let total = self.steps_per_epoch() * u64::from(self.schedule.epochs);
        self.opt
            .step_with(super::optim::lr_at(self.schedule.lr, step, total), &grads);
        let mut at = params;
        for (_, mut b) in self.buffers() {
            let k = b.numel();
            let v = tensor_like(&sum[at..at + k], &b);
            tch::no_grad(|| b.copy_(&v));
            at += k;
        }
        let record = StepRecord {
            loss: sum[len - 2] / samples.max(1) as f32,
            accuracy: sum[len - 1] / samples.max(1) as f32,
            samples: samples as u32,
            workers: workers as u32,
        };
        self.history.push(record);
        record
    }

    /// The whole state as one vector (see the module's doc).
    pub fn state(&self) -> Vec<f32> {
        let (params, buffers, _) = self.sizes();
        let mut out = vec![0.0f32; 2 * params + buffers + PER_STEP * self.history.len()];
        let mut at = 0;
        let momentum = self.opt.state();
        let tensors = (self.opt.params().iter().map(|(_, p)| p.shallow_clone()))
            .chain(self.buffers().into_iter().map(|(_, b)| b))
            .chain(momentum.values().map(Tensor::shallow_clone));
        for t in tensors {
            let k = t.numel();
            write_into(&t, 1.0, &mut out[at..at + k]);
            at += k;
        }
        for r in &self.history {
            out[at..at + PER_STEP].copy_from_slice(&r.row());
            at += PER_STEP;
        }
        out
    }

    /// Takes the state of another worker, `applied` steps in.
    pub fn load_state(&mut self, applied: u64, values: &[f32]) -> Result<(), ModelError> {
        let (params, buffers, _) = self.sizes();
        let want = 2 * params + buffers + PER_STEP * applied as usize;
        if values.len() != want {
            return Err(ModelError::Mismatch(format!(
                "a state of {} values, not the {want} of {applied} steps of this model",
                values.len()
            )));
        }
        let mut at = 0;
        let momentum: Vec<Tensor> = self
            .opt
            .state()
            .values()
            .map(|t| t.shallow_clone())
            .collect();
        let targets = (self.opt.params().iter().map(|(_, p)| p.shallow_clone()))
            .chain(self.buffers().into_iter().map(|(_, b)| b))
            .chain(momentum);
        for mut t in targets {
            let k = t.numel();
            let v = tensor_like(&values[at..at + k], &t);
            tch::no_grad(|| t.copy_(&v));
            at += k;
        }
        self.history = StepRecord::from_rows(&values[at..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::shard;

    #[test]
    fn shards_cover_the_batch_once() {
        for len in [0, 1, 2, 7, 128, 129] {
            for workers in 1..5 {
                let mut next = 0;
                for rank in 0..workers {
                    let (first, n) = shard(len, rank, workers);
                    assert_eq!(first, next, "{len} {workers} {rank}");
                    next += n;
                }
                assert_eq!(next, len);
            }
        }
    }
}
