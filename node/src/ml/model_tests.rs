//! Tests of [`super::Model`]: saving, loading and refusing model files.

use super::*;

pub(crate) fn header(classes: usize) -> Header {
    Header {
        payload: Payload::Weights,
        arch: String::new(),
        dataset: "ds".into(),
        classes: (0..classes).map(|c| c.to_string()).collect(),
        shape: [1, 12, 12],
        mean: vec![0.5],
        std: vec![0.25],
        params: 0,
        epochs: 0,
        test_accuracy: None,
        job: None,
        payload_sha256: String::new(),
    }
}

#[test]
fn a_saved_model_loads_with_identical_outputs() {
    let model = Model::builtin(Arch::Cnn, header(4), Device::Cpu);
    let bytes = model.to_file(None);
    let loaded = Model::load("m", &bytes, Device::Cpu).unwrap();
    let x = Tensor::randint(255, [3, 1, 12, 12], (Kind::Uint8, Device::Cpu));
    let a = model.forward(&x, false).unwrap();
    let b = loaded.forward(&x, false).unwrap();
    assert!(a.equal(&b));
    assert_eq!(loaded.header.params, model.header.params);
    model.check_fits("ds").unwrap();
}

#[test]
fn bad_model_files_are_refused_with_a_reason() {
    let err = Model::load("m", b"not a model", Device::Cpu).err().unwrap();
    assert!(
        err.to_string().contains("not an IDunno model file"),
        "{err}"
    );
    let err = Model::torchscript("x.pt", header(4), b"garbage", Device::Cpu)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("not a loadable TorchScript"),
        "{err}"
    );
    let mut h = header(4);
    h.arch = "cnn".into();
    // Enough bytes for a cnn's weights, but under other names.
    let junk = [(
        "junk".to_string(),
        Tensor::zeros([80_000], (Kind::Float, Device::Cpu)),
    )];
    let wrong = modelfile::encode(h, &write_tensors(&junk.into_iter().collect()));
    let err = Model::load("m", &wrong, Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("has no weights"), "{err}");
}

#[test]
fn a_prepared_builtin_gives_the_outputs_of_the_plain_one() {
    for arch in [Arch::Mlp, Arch::Cnn, Arch::Resnet] {
        tch::manual_seed(3);
        let mut h = header(4);
        h.shape = [1, 16, 16];
        let model = Model::builtin(arch, h, Device::Cpu);
        // Batch-norm statistics that are not the identity, as after training.
        for (name, mut t) in model.variables() {
            if name.ends_with("running_var") {
                let _ = tch::no_grad(|| t.uniform_(0.5, 1.5));
            } else if name.ends_with("running_mean") {
                let _ = tch::no_grad(|| t.uniform_(-0.2, 0.2));
            }
        }
        let file = model.to_file(None);
        let plain = Model::load("m", &file, Device::Cpu).unwrap();
        let mut prepared = Model::load("m", &file, Device::Cpu).unwrap();
        prepared.prepare("m", &file).unwrap();
        assert!(prepared.is_prepared() && !plain.is_prepared(), "{arch:?}");
        prepared.check_fits("ds").unwrap();
        let x = Tensor::randint(255, [5, 1, 16, 16], (Kind::Uint8, Device::Cpu));
        let a = tch::no_grad(|| plain.forward(&x, false)).unwrap();
        let b = prepared.forward(&x, false).unwrap();
        let runner = prepared.runner().unwrap();
        assert!(runner.forward(&x).unwrap().equal(&b), "{arch:?}");
        let diff = (&a - &b).abs().max().double_value(&[]);
        assert!(diff < 1e-3, "{arch:?}: largest difference {diff}");
        assert_eq!(a.argmax(-1, false), b.argmax(-1, false), "{arch:?}");
        // Any batch size, after tracing with 2.
        let one = prepared.forward(&x.narrow(0, 0, 1), false).unwrap();
        assert_eq!(one.size(), [1, 4]);
    }
}

#[test]
fn unprepared_loading_stays_available() {
    let model = Model::builtin(Arch::Cnn, header(4), Device::Cpu);
    let file = model.to_file(None);
    let m = Model::load_for_inference("m", &file, Device::Cpu, false).unwrap();
    assert!(!m.is_prepared() && m.runner().is_none());
}

#[test]
fn a_prepared_torchscript_file_gives_the_outputs_of_the_plain_one() {
    // Run time, not compile time: a test binary may be reused from another checkout's build.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let path = format!("{dir}/tests/fixtures/torchscript/fashion_cnn.pt");
    let mut h = header(10);
    h.shape = [1, 28, 28];
    h.payload = Payload::Torchscript;
    let file = modelfile::encode(h, &std::fs::read(path).unwrap());
    let plain = Model::load_for_inference("m", &file, Device::Cpu, false).unwrap();
    let prepared = Model::load_for_inference("m", &file, Device::Cpu, true).unwrap();
    assert!(prepared.is_prepared() && !plain.is_prepared());
    assert_eq!(prepared.header.arch, "torchscript");
    let x = Tensor::randint(255, [4, 1, 28, 28], (Kind::Uint8, Device::Cpu));
    let a = tch::no_grad(|| plain.forward(&x, false)).unwrap();
    let b = prepared.forward(&x, false).unwrap();
    assert!((&a - &b).abs().max().double_value(&[]) < 1e-3);
    assert_eq!(a.argmax(-1, false), b.argmax(-1, false));
}
