//! SGD with Nesterov momentum and weight decay, whose state (the momentum buffers) can be
//! saved in a checkpoint and restored, and the learning-rate schedule (linear warm-up, then
//! cosine decay), a pure function of the global step so a resumed job continues it exactly.

use std::collections::BTreeMap;
use tch::{nn, Tensor};

/// The optimiser.
pub struct Sgd {
    params: Vec<(String, Tensor)>,
    momentum: BTreeMap<String, Tensor>,
    /// Momentum factor.
    pub mu: f64,
    /// Weight decay (L2) factor, applied to weights only (not to biases or batch norm).
    pub weight_decay: f64,
}

impl Sgd {
    /// An optimiser for the trainable variables of `vs`, with zero momentum.
    pub fn new(vs: &nn::VarStore) -> Sgd {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let momentum = params
            .iter()
            .map(|(n, t)| (n.clone(), t.zeros_like()))
            .collect();
        Sgd {
            params,
            momentum,
            mu: 0.9,
            weight_decay: 5e-4,
        }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// The trainable variables, by name, in the order of [`Sgd::step_with`]'s gradients.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// One update with learning rate `lr` from the current gradients.
    pub fn step(&mut self, lr: f64) {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
        self.step_with(lr, &grads);
    }

    /// One update with learning rate `lr` from `grads`, one per parameter in the order of
    /// [`Sgd::params`] (an undefined one leaves its parameter alone).
    pub fn step_with(&mut self, lr: f64, grads: &[Tensor]) {
        tch::no_grad(|| {
            for ((name, p), g) in self.params.iter_mut().zip(grads) {
                if !g.defined() {
                    continue;
                }
                let decayed = if p.dim() > 1 && self.weight_decay > 0.0 {
                    g + &*p * self.weight_decay
                } else {
                    g.shallow_clone()
                };
                let Some(buf) = self.momentum.get_mut(name) else {
                    continue; // every parameter has one (made in `new`)
                };
                let _ = buf.g_mul_scalar_(self.mu).g_add_(&decayed);
                let update = decayed + &*buf * self.mu;
                let _ = p.g_sub_(&(update * lr));
            }
        });
    }

    /// The momentum buffers, by parameter name.
    pub fn state(&self) -> &BTreeMap<String, Tensor> {
        &self.momentum
    }

    /// Restores momentum buffers saved by [`Sgd::state`]; every parameter must have one of the
    /// same shape.
    pub fn restore(&mut self, state: &BTreeMap<String, Tensor>) -> Result<(), String> {
        for (name, buf) in &mut self.momentum {
            let saved = state
                .get(name)
                .ok_or_else(|| format!("no momentum for {name}"))?;
            if saved.size() != buf.size() {
                return Err(format!("momentum for {name} has shape {:?}", saved.size()));
            }
            tch::no_grad(|| buf.copy_(saved));
        }
        Ok(())
    }
}

/// The learning rate at `step` of `total`: linear warm-up over the first 5% (at most 500
/// steps), then cosine decay to zero.
pub fn lr_at(peak: f64, step: u64, total: u64) -> f64 {
    let total = total.max(1) as f64;
    let warm = (total * 0.05).clamp(1.0, 500.0);
    let s = step as f64;
    if s < warm {
        peak * (s + 1.0) / warm
    } else {
        let t = ((s - warm) / (total - warm).max(1.0)).min(1.0);
        peak * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn schedule_warms_up_peaks_and_decays_to_zero() {
        let total = 1000;
        assert!(lr_at(0.1, 0, total) < 0.01);
        let peak = (0..total).map(|s| lr_at(0.1, s, total)).fold(0.0, f64::max);
        assert!((peak - 0.1).abs() < 1e-3, "{peak}");
        assert!(lr_at(0.1, total - 1, total) < 1e-3);
        assert!(lr_at(0.1, 600, total) < lr_at(0.1, 300, total));
    }

    #[test]
    fn sgd_minimises_a_quadratic_and_restores_its_momentum() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[4, 2], nn::Init::Const(3.0));
        let mut opt = Sgd::new(&vs);
        opt.weight_decay = 0.0;
        for _ in 0..200 {
            opt.zero_grad();
            let loss = w.pow_tensor_scalar(2).sum(Kind::Float);
            loss.backward();
            opt.step(0.05);
        }
        assert!(w.abs().max().double_value(&[]) < 1e-2);
        let saved: BTreeMap<_, _> = opt
            .state()
            .iter()
            .map(|(n, t)| (n.clone(), t.copy()))
            .collect();
        let mut fresh = Sgd::new(&vs);
        fresh.restore(&saved).unwrap();
        assert!(fresh.state()["w"].equal(&saved["w"]));
        let wrong = BTreeMap::from([(
            "w".to_string(),
            Tensor::zeros([3], (Kind::Float, Device::Cpu)),
        )]);
        assert!(fresh.restore(&wrong).is_err());
    }
}
