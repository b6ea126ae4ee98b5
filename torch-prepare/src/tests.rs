use super::*;
use tch::{Kind, Tensor};

/// The node's TorchScript fixture: a small CNN traced by PyTorch 2.13 (float N×1×28×28 in,
/// N×10 logits out).
fn fixture() -> Vec<u8> {
    // Run time, not compile time: a test binary may be reused from another checkout's build.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let path = format!("{dir}/../node/tests/fixtures/torchscript/fashion_cnn.pt");
    std::fs::read(path).expect("the fixture is in the repository")
}

/// Sixteen images of smooth noise in the range of normalised pixels (no global random state,
/// so threads may make them at once).
fn inputs() -> Tensor {
    let n = 16 * 28 * 28;
    (Tensor::arange(n, (Kind::Float, tch::Device::Cpu)) * 0.37)
        .sin()
        .view([16, 1, 28, 28])
        * 2.0
}

#[test]
fn an_optimised_module_computes_what_the_plain_one_does() {
    let bytes = fixture();
    let plain = Prepared::load(&bytes, false).unwrap();
    let prepared = Prepared::load(&bytes, true).unwrap();
    let x = inputs();
    let a = plain.forward(&x).unwrap();
    let b = prepared.forward(&x).unwrap();
    assert_eq!(a.size(), [16, 10]);
    assert_eq!(b.size(), [16, 10]);
    let diff = (&a - &b).abs().max().double_value(&[]);
    assert!(diff < 1e-3, "largest difference {diff}");
    assert_eq!(
        Vec::<i64>::try_from(a.argmax(-1, false)).unwrap(),
        Vec::<i64>::try_from(b.argmax(-1, false)).unwrap()
    );
    // The same as tch's own loader gives.
    let cm = tch::CModule::load_data(&mut std::io::Cursor::new(&bytes)).unwrap();
    let c = tch::no_grad(|| cm.forward_ts(&[&x])).unwrap();
    assert!((&a - &c).abs().max().double_value(&[]) < 1e-5);
}

#[test]
fn garbage_and_wrong_inputs_are_errors_not_crashes() {
    let err = Prepared::load(b"not a zip archive", true).err().unwrap();
    assert!(!err.0.is_empty() && !err.0.contains('\n'), "{err}");
    let prepared = Prepared::load(&fixture(), true).unwrap();
    let wrong = Tensor::zeros([2, 3, 5, 5], (Kind::Float, tch::Device::Cpu));
    let err = prepared.forward(&wrong).err().unwrap();
    assert!(!err.0.contains('\n'), "{err}");
    // Still usable afterwards.
    assert_eq!(prepared.forward(&inputs()).unwrap().size(), [16, 10]);
}

#[test]
fn one_module_runs_from_several_threads_at_once() {
    let prepared = std::sync::Arc::new(Prepared::load(&fixture(), true).unwrap());
    let x = inputs();
    let want = prepared.forward(&x).unwrap();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let p = prepared.clone();
            std::thread::spawn(move || {
                let x = inputs();
                let mut out = p.forward(&x).unwrap();
                for _ in 0..20 {
                    out = p.forward(&x).unwrap();
                }
                out
            })
        })
        .collect();
    for h in handles {
        let got = h.join().unwrap();
        assert!((&got - &want).abs().max().double_value(&[]) < 1e-6);
    }
}
