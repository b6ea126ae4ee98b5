//! A runnable model: a built-in architecture with its weights, or a TorchScript module, plus
//! the input convention of DESIGN.md (u8 pixels → [0, 1] → minus mean, over std).

use super::arch::Arch;
use super::modelfile::{self, FileError, Header, Payload};
use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::Arc;
use tch::{nn, nn::ModuleT, CModule, Device, Kind, Tensor};
use torch_prepare::Prepared;

/// Why a model could not be built, loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file is not a usable model file.
    #[error(transparent)]
    File(#[from] FileError),
    /// libtorch refused the weights or the module.
    #[error("{what}: {reason}")]
    Torch {
        /// The model.
        what: String,
        /// libtorch's reason, first line.
        reason: String,
    },
    /// The model does not fit the dataset.
    #[error("{0}")]
    Mismatch(String),
}

/// Most bytes of weights a built-in architecture may need (checked from its input shape and
/// classes before it is built, for training and for loading).
pub const MAX_BUILTIN_WEIGHT_BYTES: u64 = 1 << 30;

fn torch(what: &str, e: impl std::fmt::Display) -> ModelError {
    let reason = e.to_string();
    let first = reason.lines().next().unwrap_or("").trim().to_string();
    ModelError::Torch {
        what: what.into(),
        reason: first,
    }
}

enum Net {
    Builtin {
        vs: nn::VarStore,
        seq: nn::SequentialT,
    },
    Script(CModule),
    /// Prepared for inference only (see [`Model::prepare`]).
    Prepared(Arc<Prepared>),
}

/// A prepared model's forward pass, which any number of threads may run at once (see
/// [`Model::runner`]).
#[derive(Clone)]
pub struct Runner {
    module: Arc<Prepared>,
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Runner {
    /// Logits for a batch of u8 pixels N×C×H×W on the CPU, as [`Model::forward`] gives them.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor, ModelError> {
        self.run(&self.normalize(pixels))
    }

    /// The model's input for a batch of u8 pixels: scaled to [0, 1], minus mean, over std.
    pub fn normalize(&self, pixels: &Tensor) -> Tensor {
        let c = self.mean.len() as i64;
        let mean = Tensor::from_slice(&self.mean).view([1, c, 1, 1]);
        let std = Tensor::from_slice(&self.std).view([1, c, 1, 1]);
        (pixels.to_kind(Kind::Float) / 255.0 - mean) / std
    }

    /// Logits for an input already normalised ([`Runner::normalize`]).
    pub fn run(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        self.module
            .forward(x)
            .map_err(|e| torch("the model failed", e))
    }
}

/// A model ready to run on one device.
pub struct Model {
    /// What it is (`payload_sha256` is filled in only when written).
    pub header: Header,
    net: Net,
    mean: Tensor,
    std: Tensor,
    /// The same, per channel, as values.
    norm: (Vec<f32>, Vec<f32>),
    device: Device,
}

impl Model {
    /// A freshly initialised built-in `arch` for `header`'s dataset.
    pub fn builtin(arch: Arch, mut header: Header, device: Device) -> Model {
        let vs = nn::VarStore::new(device);
        let [c, h, w] = header.shape.map(i64::from);
        let seq = arch.build(&vs.root(), [c, h, w], header.classes.len() as i64);
        header.arch = arch.name().into();
        header.params = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as u64)
            .sum();
        Self::assemble(header, Net::Builtin { vs, seq }, device)
    }

    /// Refuses a built-in `arch` for `header`'s input and classes whose weights alone would be
    /// over [`MAX_BUILTIN_WEIGHT_BYTES`], before anything is allocated.
    pub fn check_builtin_size(arch: Arch, header: &Header) -> Result<(), ModelError> {
        let need = arch.min_weight_bytes(header.shape, header.classes.len());
        if need > MAX_BUILTIN_WEIGHT_BYTES {
            let [c, h, w] = header.shape;
            return Err(ModelError::Mismatch(format!(
                "{} on {c}x{h}x{w} inputs and {} classes needs at least {need} bytes of weights; a built-in model holds at most {MAX_BUILTIN_WEIGHT_BYTES} (MAX_BUILTIN_WEIGHT_BYTES)",
                arch.name(),
                header.classes.len()
            )));
        }
        Ok(())
    }

    /// Loads a model file (`what` names it in errors). Its header is checked against the
    /// limits first ([`Header::validate`]); a built-in architecture whose header needs more
    /// weights than the file holds is refused before the network is built.
    pub fn load(what: &str, bytes: &[u8], device: Device) -> Result<Model, ModelError> {
        let (header, payload) =
            modelfile::decode_kind(what, bytes, &[Payload::Weights, Payload::Torchscript])?;
        match header.payload {
            Payload::Torchscript => Self::torchscript(what, header, payload, device),
            _ => {
                let arch = Arch::parse(&header.arch).ok_or_else(|| {
                    ModelError::Mismatch(format!(
                        "{what} has unknown architecture {:?}",
                        header.arch
                    ))
                })?;
                Self::check_builtin_size(arch, &header)?;
                let need = arch.min_weight_bytes(header.shape, header.classes.len());
                if need > payload.len() as u64 {
                    return Err(ModelError::Mismatch(format!(
                        "{what}: its header's input and classes need at least {need} bytes of {} weights, but it holds {}",
                        header.arch,
                        payload.len()
                    )));
                }
                let mut model = Self::builtin(arch, header.clone(), device);
                let tensors = read_tensors(what, payload, device)?;
                model.set_weights(what, &tensors, "")?;
                model.header = header;
                Ok(model)
            }
        }
    }

    /// A TorchScript module from its raw file bytes.
    pub fn torchscript(
        what: &str,
        mut header: Header,
        bytes: &[u8],
        device: Device,
    ) -> Result<Model, ModelError> {
        let mut module = CModule::load_data_on_device(&mut Cursor::new(bytes), device)
            .map_err(|e| torch(&format!("{what} is not a loadable TorchScript module"), e))?;
        module.set_eval();
        header.payload = Payload::Torchscript;
        header.arch = "torchscript".into();
        if let Ok(params) = module.named_parameters() {
            header.params = params.iter().map(|(_, t)| t.numel() as u64).sum();
        }
        Ok(Self::assemble(header, Net::Script(module), device))
    }

    fn assemble(header: Header, net: Net, device: Device) -> Model {
        let c = header.shape[0] as i64;
        let per_channel = |v: &[f32], default: f32| -> Vec<f32> {
            match v.len() {
                0 => vec![default; c as usize],
                1 => vec![v[0]; c as usize],
                _ => v.to_vec(),
            }
        };
        let norm = (
            per_channel(&header.mean, 0.0),
            per_channel(&header.std, 1.0),
        );
        let tensor = |v: &[f32]| Tensor::from_slice(v).view([1, -1, 1, 1]).to_device(device);
        Model {
            mean: tensor(&norm.0),
            std: tensor(&norm.1),
            header,
            net,
            norm,
            device,
        }
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Logits for a batch of u8 pixels N×C×H×W (any device).
    pub fn forward(&self, pixels: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        self.forward_input(&self.normalize(pixels), train)
    }

    /// The network's input for a batch of u8 pixels N×C×H×W (any device), on its device:
    /// scaled to [0, 1], minus mean, over std (DESIGN.md's convention).
    pub fn normalize(&self, pixels: &Tensor) -> Tensor {
        (pixels.to_device(self.device).to_kind(Kind::Float) / 255.0 - &self.mean) / &self.std
    }

    /// Logits for a batch already scaled as [`Model::normalize`] scales pixels (float32
    /// N×C×H×W, any device).
    pub fn forward_input(&self, x: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        let x = x.to_device(self.device);
        match &self.net {
            Net::Builtin { seq, .. } => Ok(seq.forward_t(&x, train)),
            Net::Script(m) => m.forward_ts(&[x]).map_err(|e| torch("the model failed", e)),
            Net::Prepared(m) => m.forward(&x).map_err(|e| torch("the model failed", e)),
        }
    }

    /// Loads a model file for inference only: [`Model::load`], then [`Model::prepare`]d when
    /// `prepare` is set and it runs on the CPU. A model that cannot be prepared (a TorchScript
    /// module freezing refuses) runs as loaded, with a warning.
    pub fn load_for_inference(
        what: &str,
        bytes: &[u8],
        device: Device,
        prepare: bool,
    ) -> Result<Model, ModelError> {
        let prepare = prepare && device == Device::Cpu;
        if prepare {
            // TorchScript: loaded once, by the shim that prepares it.
            let (mut header, payload) =
                modelfile::decode_kind(what, bytes, &[Payload::Weights, Payload::Torchscript])?;
            if header.payload == Payload::Torchscript {
                match Prepared::load(payload, true) {
                    Ok(prepared) => {
                        header.arch = "torchscript".into();
                        let net = Net::Prepared(Arc::new(prepared));
                        return Ok(Self::assemble(header, net, device));
                    }
                    Err(e) => tracing::warn!("{what} runs unprepared: {e}"),
                }
                return Self::load(what, bytes, device);
            }
        }
        let mut model = Self::load(what, bytes, device)?;
        if prepare {
            if let Err(e) = model.prepare(what, bytes) {
                tracing::warn!("{what} runs unprepared: {e}");
            }
        }
        Ok(model)
    }

    /// Prepares the model for inference as PyTorch's `torch.jit.freeze` followed by
    /// `torch.jit.optimize_for_inference` does (batch norm folded into the convolutions,
    /// convolution and ReLU fused, weights prepacked for oneDNN): a TorchScript module as its
    /// file holds it (`file`: the model file), a built-in network traced first in eval mode.
    /// Its outputs stay the model's up to float rounding; it can no longer be trained or
    /// saved.
    pub fn prepare(&mut self, what: &str, file: &[u8]) -> Result<(), ModelError> {
        let script = match &mut self.net {
            Net::Prepared(_) => return Ok(()),
            Net::Script(_) => modelfile::decode_kind(what, file, &[Payload::Torchscript])?
                .1
                .to_vec(),
            Net::Builtin { vs, seq } => trace(what, vs, seq, self.header.shape)?,
        };
        let prepared = Prepared::load(&script, true)
            .map_err(|e| torch(&format!("{what} cannot be prepared for inference"), e))?;
        self.net = Net::Prepared(Arc::new(prepared));
        Ok(())
    }

    /// The prepared model's forward pass as a handle threads share without a lock (`None`
    /// unless [`Model::prepare`]d).
    pub fn runner(&self) -> Option<Runner> {
        match &self.net {
            Net::Prepared(m) => Some(Runner {
                module: m.clone(),
                mean: self.norm.0.clone(),
                std: self.norm.1.clone(),
            }),
            _ => None,
        }
    }

    /// Whether the model was prepared for inference.
    pub fn is_prepared(&self) -> bool {
        matches!(self.net, Net::Prepared(_))
    }

    /// Another handle on the same prepared module (which threads share), if it is prepared.
    pub fn share_prepared(&self) -> Option<Model> {
        let Net::Prepared(module) = &self.net else {
            return None;
        };
        Some(Model {
            header: self.header.clone(),
            net: Net::Prepared(module.clone()),
            mean: self.mean.shallow_clone(),
            std: self.std.shallow_clone(),
            norm: self.norm.clone(),
            device: self.device,
        })
    }

    /// Checks that a batch of the dataset's shape gives one logit per class.
    pub fn check_fits(&self, dataset: &str) -> Result<(), ModelError> {
        let [c, h, w] = self.header.shape.map(i64::from);
        let x = Tensor::zeros([2, c, h, w], (Kind::Uint8, self.device));
        let out = tch::no_grad(|| self.forward(&x, false)).map_err(|e| {
            ModelError::Mismatch(format!(
                "the model does not accept {dataset}'s inputs (float32 2×{c}×{h}×{w}): {e}"
            ))
        })?;
        let classes = self.header.classes.len() as i64;
        if out.size() != [2, classes] {
            return Err(ModelError::Mismatch(format!(
                "the model outputs {:?} for a batch of 2, but {dataset} has {classes} classes (expected [2, {classes}])",
                out.size()
            )));
        }
        Ok(())
    }

    /// The built-in network's variables (weights and batch-norm statistics), by name.
    pub fn variables(&self) -> HashMap<String, Tensor> {
        match &self.net {
            Net::Builtin { vs, .. } => vs.variables(),
            Net::Script(_) | Net::Prepared(_) => HashMap::new(),
        }
    }

    /// The built-in network's var store (None for TorchScript).
    pub fn var_store(&self) -> Option<&nn::VarStore> {
        match &self.net {
            Net::Builtin { vs, .. } => Some(vs),
            Net::Script(_) | Net::Prepared(_) => None,
        }
    }

    /// Copies `tensors[prefix + name]` into every variable.
    pub fn set_weights(
        &mut self,
        what: &str,
        tensors: &BTreeMap<String, Tensor>,
        prefix: &str,
    ) -> Result<(), ModelError> {
        for (name, mut var) in self.variables() {
            let src = tensors
                .get(&format!("{prefix}{name}"))
                .ok_or_else(|| ModelError::Mismatch(format!("{what} has no weights for {name}")))?;
            if src.size() != var.size() {
                return Err(ModelError::Mismatch(format!(
                    "{what}: {name} has shape {:?}, the architecture needs {:?}",
                    src.size(),
                    var.size()
                )));
            }
            tch::no_grad(|| var.copy_(src));
        }
        Ok(())
    }

    /// The model as a file image, with `header` updates applied by the caller beforehand (not
    /// of a prepared model, which has no weights to write: it gives an empty weights file).
    pub fn to_file(&self, script_bytes: Option<&[u8]>) -> Vec<u8> {
        match (&self.net, script_bytes) {
            (Net::Script(_), Some(bytes)) => modelfile::encode(self.header.clone(), bytes),
            _ => {
                let mut header = self.header.clone();
                header.payload = Payload::Weights;
                let named: BTreeMap<String, Tensor> = self.variables().into_iter().collect();
                modelfile::encode(header, &write_tensors(&named))
            }
        }
    }
}

/// A built-in network traced in eval mode (dropout off, batch norm on its running statistics)
/// into a TorchScript file image, its weights frozen as constants.
fn trace(
    what: &str,
    vs: &mut nn::VarStore,
    seq: &nn::SequentialT,
    shape: [u32; 3],
) -> Result<Vec<u8>, ModelError> {
    let failed = |e: &dyn std::fmt::Display| torch(&format!("{what} cannot be traced"), e);
    // The tracer records weights as constants, which must not require gradients.
    vs.freeze();
    let [c, h, w] = shape.map(i64::from);
    let example = Tensor::zeros([2, c, h, w], (Kind::Float, vs.device()));
    let module = tch::no_grad(|| {
        CModule::create_by_tracing("idunno", "forward", &[example], &mut |xs| {
            vec![seq.forward_t(&xs[0], false)]
        })
    })
    .map_err(|e| failed(&e))?;
    // libtorch names the archive's root folder after the file: no leading dot.
    let file = tempfile::Builder::new()
        .prefix("idunno-trace-")
        .suffix(".pt")
        .tempfile()
        .map_err(|e| failed(&e))?;
    module.save(file.path()).map_err(|e| failed(&e))?;
    std::fs::read(file.path()).map_err(|e| failed(&e))
}

/// Named tensors in libtorch's format.
pub fn write_tensors(named: &BTreeMap<String, Tensor>) -> Vec<u8> {
    let list: Vec<(&str, Tensor)> = named
        .iter()
        .map(|(n, t)| (n.as_str(), t.to_device(Device::Cpu)))
        .collect();
    let mut out = Vec::new();
    Tensor::save_multi_to_stream(&list, &mut out).expect("writing to memory cannot fail");
    out
}

/// Reads named tensors written by [`write_tensors`].
pub fn read_tensors(
    what: &str,
    bytes: &[u8],
    device: Device,
) -> Result<BTreeMap<String, Tensor>, ModelError> {
    let list = Tensor::load_multi_from_stream_with_device(Cursor::new(bytes), device)
        .map_err(|e| torch(&format!("{what}: unreadable weights"), e))?;
    Ok(list.into_iter().collect())
}

#[cfg(test)]
#[path = "model_tests.rs"]
pub(crate) mod tests;
