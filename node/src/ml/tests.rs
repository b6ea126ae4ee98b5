//! Training on a small synthetic task: the class is the image quadrant that is bright.

use super::arch::Arch;
use super::model::Model;
use super::modelfile::{Header, Payload};
use super::train::{evaluate, Samples, Schedule, Trainer};
use tch::{Device, Kind, Tensor};

fn quadrants(n: i64, seed: i64) -> Samples {
    tch::manual_seed(seed);
    let labels = Tensor::randint(4, [n], (Kind::Int64, Device::Cpu));
    let noise = Tensor::randint(60, [n, 1, 8, 8], (Kind::Int64, Device::Cpu));
    let images = noise;
    for i in 0..n {
        let q = labels.int64_value(&[i]);
        let (r, c) = ((q / 2) * 4, (q % 2) * 4);
        let _ = images
            .get(i)
            .narrow(1, r, 4)
            .narrow(2, c, 4)
            .g_add_scalar_(180);
    }
    Samples {
        images: images.to_kind(Kind::Uint8),
        labels: Some(labels),
    }
}

fn header() -> Header {
    Header {
        payload: Payload::Weights,
        arch: String::new(),
        dataset: "quadrants".into(),
        classes: ["tl", "tr", "bl", "br"].map(String::from).to_vec(),
        shape: [1, 8, 8],
        mean: vec![0.3],
        std: vec![0.3],
        params: 0,
        epochs: 0,
        test_accuracy: None,
        job: None,
        payload_sha256: String::new(),
    }
}

fn schedule() -> Schedule {
    Schedule {
        epochs: 3,
        batch: 32,
        lr: 0.05,
        seed: 1,
    }
}

#[test]
fn every_arch_learns_the_task_and_reports_progress() {
    let test = quadrants(200, 99);
    for arch in [Arch::Mlp, Arch::Cnn, Arch::Resnet] {
        tch::manual_seed(3);
        let model = Model::builtin(arch, header(), Device::Cpu);
        let mut trainer = Trainer::new(model, quadrants(640, 1), schedule()).unwrap();
        let mut reports = 0;
        for epoch in 0..3 {
            let last = trainer
                .run_epoch(epoch, &mut |r| {
                    reports += 1;
                    assert!(r.loss.is_finite() && r.step <= r.steps);
                    true
                })
                .unwrap();
            assert_eq!((last.epoch, last.step), (epoch, 20));
        }
        assert_eq!(reports, 60);
        let eval = evaluate(&trainer.model, &test, 64).unwrap();
        assert_eq!(eval.predicted.len(), 200);
        let acc = eval.accuracy().unwrap();
        assert!(acc > 0.9, "{arch:?} reached only {acc}");
    }
}

#[test]
fn a_checkpoint_restores_weights_and_momentum_and_can_stop_a_run() {
    tch::manual_seed(5);
    let model = Model::builtin(Arch::Cnn, header(), Device::Cpu);
    let mut a = Trainer::new(model, quadrants(256, 1), schedule()).unwrap();
    a.run_epoch(0, &mut |_| true).unwrap();
    let bytes = a.checkpoint(1);
    let fresh = Model::builtin(Arch::Cnn, header(), Device::Cpu);
    let mut b = Trainer::new(fresh, quadrants(256, 1), schedule()).unwrap();
    assert_eq!(b.restore("ckpt", &bytes).unwrap(), 1);
    assert_eq!(b.checkpoint(1), bytes, "restored state is identical");
    let x = quadrants(16, 7).images;
    let (ya, yb) = (
        a.model.forward(&x, false).unwrap(),
        b.model.forward(&x, false).unwrap(),
    );
    assert!(ya.equal(&yb));
    let mut steps = 0;
    assert!(b
        .run_epoch(1, &mut |_| {
            steps += 1;
            steps < 3
        })
        .is_err());
    assert_eq!(steps, 3);
    let mut bad = bytes.clone();
    *bad.last_mut().unwrap() ^= 0xff;
    assert!(b.restore("ckpt", &bad).is_err());
    let other = Model::builtin(Arch::Mlp, header(), Device::Cpu);
    let err = Trainer::new(other, quadrants(8, 1), schedule())
        .unwrap()
        .restore("ckpt", &bytes)
        .unwrap_err();
    assert!(err.to_string().contains("checkpoint of cnn"), "{err}");
}

/// A trainer of `arch` with the same seed each time.
fn seeded(arch: Arch) -> Trainer {
    tch::manual_seed(11);
    let model = Model::builtin(arch, header(), Device::Cpu);
    Trainer::new(model, quadrants(320, 1), schedule()).unwrap()
}

/// The sum of `workers` shards' contributions to `step`, in rank order.
fn sum_of(t: &mut Trainer, step: u64, workers: usize) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    for rank in 0..workers {
        let c = t.contribution(step, rank, workers).unwrap();
        if sum.is_empty() {
            sum = c;
        } else {
            sum.iter_mut().zip(c).for_each(|(s, v)| *s += v);
        }
    }
    sum
}

#[test]
fn shards_summed_take_the_step_one_worker_takes() {
    // mlp has no batch norm: the steps agree to float rounding, dropout included.
    let mut one = seeded(Arch::Mlp);
    let mut three = seeded(Arch::Mlp);
    // The same start whatever other tests drew from libtorch's generator meanwhile.
    three.load_state(0, &one.state()).unwrap();
    for step in 0..20 {
        let a = sum_of(&mut one, step, 1);
        let b = sum_of(&mut three, step, 3);
        let ra = one.apply(step, &a, 1);
        let rb = three.apply(step, &b, 3);
        assert!(
            (ra.loss - rb.loss).abs() < 1e-4,
            "step {step}: {ra:?} {rb:?}"
        );
        assert_eq!((ra.samples, rb.workers), (32, 3));
    }
    let (sa, sb) = (one.state(), three.state());
    assert_eq!(sa.len(), sb.len());
    // Weights, statistics and momentum (the history says 1 worker against 3).
    let n = sa.len() - 4 * 20;
    let worst = (sa[..n].iter().zip(&sb[..n]))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-4, "the states differ by {worst}");
}

#[test]
fn a_state_adopted_is_the_same_state_and_contributions_leave_it_alone() {
    let mut a = seeded(Arch::Cnn);
    for step in 0..5 {
        let sum = sum_of(&mut a, step, 2);
        a.apply(step, &sum, 2);
    }
    // A contribution's forward pass does not move the state (batch-norm statistics included).
    let before = a.state();
    a.contribution(5, 1, 2).unwrap();
    assert_eq!(a.state(), before);
    let mut b = seeded(Arch::Cnn);
    b.load_state(5, &before).unwrap();
    assert_eq!(b.state(), before);
    assert_eq!(b.history.len(), 5);
    assert!(
        b.load_state(4, &before).is_err(),
        "a state of another step count"
    );
    // Both go on alike.
    let (x, y) = (sum_of(&mut a, 5, 2), sum_of(&mut b, 5, 2));
    assert_eq!(x, y);
    // A checkpoint keeps the steps.
    let mut d = seeded(Arch::Cnn);
    d.run_epoch(0, &mut |_| true).unwrap();
    let mut c = seeded(Arch::Cnn);
    c.restore("ckpt", &d.checkpoint(1)).unwrap();
    assert_eq!(c.history.len(), 10);
    assert_eq!(c.history, d.history);
}
