//! The built-in architectures: `mlp`, `cnn` (batch norm, dropout) and `resnet` (CIFAR-style
//! ResNet-20), sized from the dataset's input shape and class count.
//!
//! Dropout draws each sample's mask from the step's seed and the sample's place in the step's
//! batch ([`with_rows`]): a worker training on a shard of the batch drops exactly what one
//! worker training on the whole batch would, so data-parallel training is the same SGD (and a
//! step's draws owe nothing to libtorch's global generator or to other threads).

use rand::{Rng, SeedableRng};
use std::cell::Cell;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Where the training forward pass on this thread draws its dropout masks from.
#[derive(Debug, Clone, Copy)]
struct Draw {
    /// The pass holds rows `first..` of a step's batch of `batch` rows.
    first: i64,
    batch: i64,
    /// The step's seed.
    seed: u64,
    /// Dropout layers met so far in the pass.
    layer: u64,
}

thread_local! {
    static DRAW: Cell<Option<Draw>> = const { Cell::new(None) };
}

/// Runs `f` (a training forward pass) on this thread with dropout masks drawn per row of the
/// step's batch of `batch` rows from `seed`, the pass holding the rows from `first` on: each
/// row's mask depends on the seed, the layer and its place in the batch only.
pub fn with_rows<R>(first: i64, batch: i64, seed: u64, f: impl FnOnce() -> R) -> R {
    let before = DRAW.replace(Some(Draw {
        first,
        batch,
        seed,
        layer: 0,
    }));
    let out = f();
    DRAW.set(before);
    out
}

/// Inverted dropout with probability `p`, its mask drawn as [`with_rows`] says (torch's own
/// outside of it); the identity when not training.
fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    let rows = x.size().first().copied().unwrap_or(0);
    let draw = DRAW
        .get()
        .filter(|d| d.first >= 0 && d.first + rows <= d.batch);
    let (Some(mut d), true) = (draw, rows > 0) else {
        return x.dropout(p, train);
    };
    d.layer += 1;
    DRAW.set(Some(d));
    let per = x.numel() / rows as usize;
    let scale = (1.0 / (1.0 - p)) as f32;
    let mut keep = Vec::with_capacity(per * rows as usize);
    for row in d.first..d.first + rows {
        let mixed = (d.seed ^ d.layer.wrapping_mul(0xD6E8_FEB8_6659_FD93))
            .wrapping_add((row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut rng = rand::rngs::StdRng::seed_from_u64(mixed);
        keep.extend((0..per).map(|_| if rng.random::<f64>() >= p { scale } else { 0.0 }));
    }
    let mask = Tensor::from_slice(&keep).view(x.size().as_slice());
    x * mask.to_device(x.device()).to_kind(x.kind())
}

/// A built-in architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Two hidden layers (256, 128) with dropout.
    Mlp,
    /// Two conv + batch-norm blocks with max pooling, dropout and two linear layers.
    Cnn,
    /// ResNet-20 for small images (He et al., CIFAR variant): 3 stages of 3 basic blocks.
    Resnet,
}

/// Every built-in architecture's name.
pub const ARCH_NAMES: [&str; 3] = ["mlp", "cnn", "resnet"];

impl Arch {
    /// The architecture called `name`, if built in.
    pub fn parse(name: &str) -> Option<Arch> {
        match name {
            "mlp" => Some(Arch::Mlp),
            "cnn" => Some(Arch::Cnn),
            "resnet" => Some(Arch::Resnet),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Mlp => "mlp",
            Arch::Cnn => "cnn",
            Arch::Resnet => "resnet",
        }
    }

    /// The peak learning rate it trains well with (SGD, Nesterov momentum, cosine decay).
    pub fn default_lr(self) -> f64 {
        match self {
            Arch::Mlp => 0.05,
            Arch::Cnn => 0.05,
            Arch::Resnet => 0.1,
        }
    }

    /// Bytes of float32 weights its largest layers need for inputs of `shape` (C, H, W) and
    /// `classes` outputs: a lower bound of the whole network's, computed without building it
    /// (saturating instead of overflowing).
    pub fn min_weight_bytes(self, shape: [u32; 3], classes: usize) -> u64 {
        let [c, h, w] = shape.map(u64::from);
        let classes = classes as u64;
        let floats = match self {
            Arch::Mlp => c
                .saturating_mul(h)
                .saturating_mul(w)
                .saturating_mul(256)
                .saturating_add(256 * 128 + 128 * classes),
            Arch::Cnn => (64 * (h / 4))
                .saturating_mul(w / 4)
                .saturating_mul(128)
                .saturating_add(128 * classes),
            Arch::Resnet => 64 * classes,
        };
        floats.saturating_mul(4)
    }

    /// Builds the network under `vs` for inputs of `shape` (C, H, W) and `classes` outputs.
    pub fn build(self, vs: &nn::Path, shape: [i64; 3], classes: i64) -> nn::SequentialT {
        match self {
            Arch::Mlp => mlp(vs, shape, classes),
            Arch::Cnn => cnn(vs, shape, classes),
            Arch::Resnet => resnet20(vs, shape[0], classes),
        }
    }
}

fn mlp(vs: &nn::Path, [c, h, w]: [i64; 3], classes: i64) -> nn::SequentialT {
    nn::seq_t()
        .add_fn(|x| x.flatten(1, -1))
        .add(nn::linear(vs / "fc1", c * h * w, 256, Default::default()))
        .add_fn(|x| x.relu())
        .add_fn_t(|x, train| dropout(x, 0.2, train))
        .add(nn::linear(vs / "fc2", 256, 128, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(vs / "fc3", 128, classes, Default::default()))
}

fn conv3(vs: nn::Path, i: i64, o: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: 1,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(vs, i, o, 3, cfg)
}

fn cnn(vs: &nn::Path, [c, h, w]: [i64; 3], classes: i64) -> nn::SequentialT {
    let flat = 64 * (h / 4) * (w / 4);
    nn::seq_t()
        .add(conv3(vs / "conv1", c, 32, 1))
        .add(nn::batch_norm2d(vs / "bn1", 32, Default::default()))
        .add_fn(|x| x.relu().max_pool2d_default(2))
        .add(conv3(vs / "conv2", 32, 64, 1))
        .add(nn::batch_norm2d(vs / "bn2", 64, Default::default()))
        .add_fn(|x| x.relu().max_pool2d_default(2))
        .add_fn_t(|x, train| dropout(x, 0.25, train).flatten(1, -1))
        .add(nn::linear(vs / "fc1", flat, 128, Default::default()))
        .add_fn_t(|x, train| dropout(&x.relu(), 0.4, train))
        .add(nn::linear(vs / "fc2", 128, classes, Default::default()))
}

/// A basic residual block: two 3×3 convolutions with batch norm, and a 1×1 projection on the
/// shortcut when the shape changes.
#[derive(Debug)]
struct Block {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Block {
    fn new(vs: nn::Path, i: i64, o: i64, stride: i64) -> Block {
        let shortcut = (stride != 1 || i != o).then(|| {
            let cfg = nn::ConvConfig {
                stride,
                bias: false,
                ..Default::default()
            };
            (
                nn::conv2d(&vs / "down", i, o, 1, cfg),
                nn::batch_norm2d(&vs / "down_bn", o, Default::default()),
            )
        });
        Block {
            conv1: conv3(&vs / "conv1", i, o, stride),
            bn1: nn::batch_norm2d(&vs / "bn1", o, Default::default()),
            conv2: conv3(&vs / "conv2", o, o, 1),
            bn2: nn::batch_norm2d(&vs / "bn2", o, Default::default()),
            shortcut,
        }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train);
        let skip = match &self.shortcut {
            Some((conv, bn)) => xs.apply(conv).apply_t(bn, train),
            None => xs.shallow_clone(),
        };
        (ys + skip).relu()
    }
}

fn resnet20(vs: &nn::Path, c: i64, classes: i64) -> nn::SequentialT {
    let mut net = nn::seq_t()
        .add(conv3(vs / "stem", c, 16, 1))
        .add(nn::batch_norm2d(vs / "stem_bn", 16, Default::default()))
        .add_fn(|x| x.relu());
    let mut channels = 16;
    for (stage, width) in [16, 32, 64].into_iter().enumerate() {
        for block in 0..3 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let path = vs / format!("s{stage}b{block}");
            net = net.add(Block::new(path, channels, width, stride));
            channels = width;
        }
    }
    net.add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(vs / "fc", 64, classes, Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn params(arch: Arch, shape: [i64; 3]) -> (i64, Vec<i64>) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = arch.build(&vs.root(), shape, 10);
        let n = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        let x = Tensor::zeros(
            [2, shape[0], shape[1], shape[2]],
            (Kind::Float, Device::Cpu),
        );
        (n, net.forward_t(&x, false).size())
    }

    #[test]
    fn every_arch_maps_a_batch_to_class_logits() {
        for arch in [Arch::Mlp, Arch::Cnn, Arch::Resnet] {
            for shape in [[1, 28, 28], [3, 32, 32], [1, 9, 13]] {
                let (_, out) = params(arch, shape);
                assert_eq!(out, vec![2, 10], "{arch:?} {shape:?}");
            }
        }
        assert_eq!(Arch::parse("resnet"), Some(Arch::Resnet));
        assert_eq!(Arch::parse("vgg"), None);
    }

    #[test]
    fn min_weight_bytes_is_a_lower_bound() {
        for arch in [Arch::Mlp, Arch::Cnn, Arch::Resnet] {
            let (n, _) = params(arch, [3, 32, 32]);
            let bound = arch.min_weight_bytes([3, 32, 32], 10);
            assert!(
                bound > 0 && bound <= 4 * n as u64,
                "{arch:?}: {bound} vs {n}"
            );
        }
        let huge = Arch::Mlp.min_weight_bytes([u32::MAX; 3], usize::MAX >> 8);
        assert_eq!(huge, u64::MAX);
    }

    #[test]
    fn resnet_is_resnet20_sized() {
        // ResNet-20 has about 0.27 M parameters (He et al. 2016, table 6).
        let (n, _) = params(Arch::Resnet, [3, 32, 32]);
        assert!((260_000..290_000).contains(&n), "{n}");
    }
}
