//! TorchScript modules prepared once for inference, as `torch.jit.freeze` followed by
//! `torch.jit.optimize_for_inference` prepare them in PyTorch: parameters become constants,
//! batch norm is folded into the convolution before it, convolution and ReLU are fused and the
//! weights prepacked for oneDNN. tch binds neither pass, so a small C++ shim
//! (`csrc/prepare.cpp`), built against the same libtorch as tch, does the loading, preparing
//! and running; inputs and outputs are tch tensors.
//!
//! ```no_run
//! # fn main() -> Result<(), torch_prepare::PrepareError> {
//! let bytes = std::fs::read("model.pt").expect("a TorchScript file");
//! let module = torch_prepare::Prepared::load(&bytes, true)?;
//! let logits = module.forward(&tch::Tensor::zeros([1, 1, 28, 28], tch::kind::FLOAT_CPU))?;
//! # Ok(()) }
//! ```

use std::ffi::{c_char, c_int, CStr};
use tch::Tensor;

/// What libtorch said when a module could not be loaded, prepared or run (its first line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PrepareError(pub String);

#[repr(C)]
struct RawModule {
    _private: [u8; 0],
}

extern "C" {
    fn prep_load(
        data: *const c_char,
        len: usize,
        optimize: c_int,
        err: *mut *mut c_char,
    ) -> *mut RawModule;
    fn prep_forward(
        module: *mut RawModule,
        input: *const torch_sys::C_tensor,
        err: *mut *mut c_char,
    ) -> *mut torch_sys::C_tensor;
    fn prep_free(module: *mut RawModule);
    fn prep_free_message(message: *mut c_char);
}

/// Takes the shim's error message (and frees it); the first line is kept, libtorch's
/// backtrace after it is not for users.
fn take_error(err: *mut c_char) -> PrepareError {
    if err.is_null() {
        return PrepareError("libtorch failed without a message".into());
    }
    // SAFETY: the shim returns a NUL-terminated string from malloc, freed here once.
    let text = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { prep_free_message(err) };
    let first = text.lines().next().unwrap_or("").trim();
    PrepareError(first.to_string())
}

/// A TorchScript module on the CPU, in eval mode, frozen and optimised for inference when
/// loaded with `optimize`.
pub struct Prepared {
    raw: *mut RawModule,
}

// SAFETY: the module is a libtorch object reached only through this handle; libtorch allows a
// module to be run from any thread, and `forward` takes `&self` only for one call at a time
// per caller (see `Sync` below).
unsafe impl Send for Prepared {}
// SAFETY: running a TorchScript module's `forward` from several threads at once is supported
// by libtorch (its graph executor locks what it compiles); a frozen module has no mutable
// state, and an unfrozen one in eval mode is not changed by `forward`.
unsafe impl Sync for Prepared {}

impl Prepared {
    /// Loads a TorchScript module from the bytes of its file (as `torch.jit.save` writes it),
    /// in eval mode; with `optimize`, freezes it and optimises it for inference.
    pub fn load(bytes: &[u8], optimize: bool) -> Result<Prepared, PrepareError> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the shim reads `len` bytes of `data` and copies them; `err` is set on failure.
        let raw = unsafe {
            prep_load(
                bytes.as_ptr().cast(),
                bytes.len(),
                c_int::from(optimize),
                &mut err,
            )
        };
        if raw.is_null() {
            return Err(take_error(err));
        }
        Ok(Prepared { raw })
    }

    /// Runs the module's `forward` on `input` (under inference mode) and returns its output,
    /// which must be one tensor.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, PrepareError> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `input` stays alive for the call; the shim returns a new tensor that we own.
        let out = unsafe { prep_forward(self.raw, input.as_ptr(), &mut err) };
        if out.is_null() {
            return Err(take_error(err));
        }
        // SAFETY: `out` is a heap `at::Tensor` from the shim; `Tensor` frees it on drop.
        Ok(unsafe { Tensor::from_ptr(out) })
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `prep_load` and is freed once.
        unsafe { prep_free(self.raw) }
    }
}

#[cfg(test)]
mod tests;
