//! An online request's queries: checked (how many, labels), then decoded off the runtime to
//! the model's input, within a bound on the pixels one request may need.

use crate::error::JobError;
use crate::serving::batcher::{Answer, Input, Pending};
use crate::serving::engine::SharedModel;
use crate::serving::executor::Executor;
use bus_schemas::infer::{FloatTensor, InferRequest};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Most images in one request.
pub const MAX_IMAGES: usize = 1024;
/// Most bytes of decoded pixels one request may need (images × the model's C×H×W).
pub const MAX_REQUEST_PIXEL_BYTES: usize = 16 << 20;

/// A request's queries as they came.
pub(super) enum Queries {
    /// PNG or JPEG files.
    Images(Vec<bus_schemas::infer::ByteBuf>),
    /// The model's input itself.
    Tensor(FloatTensor),
}

/// A request holds its queries one way, and not too many of them.
pub(super) fn check_queries(req: &InferRequest) -> Result<(), String> {
    let n = match (&req.tensor, req.images.len()) {
        (Some(_), 1..) => {
            return Err("a request holds images or a tensor, not both".into());
        }
        (Some(t), _) => t.shape[0],
        (None, n) => n as u64,
    };
    if !req.labels.is_empty() && req.labels.len() as u64 != n {
        return Err(format!(
            "a request gives no labels or one per query: {} labels for {n} queries",
            req.labels.len()
        ));
    }
    if n == 0 || n > MAX_IMAGES as u64 {
        let what = if req.tensor.is_some() {
            "queries"
        } else {
            "images"
        };
        return Err(format!("a request holds 1 to {MAX_IMAGES} {what}, not {n}"));
    }
    Ok(())
}

/// Decodes the queries to the model's input (off the runtime).
pub(super) async fn prepare(
    exec: Executor,
    model: SharedModel,
    key: (String, u64),
    queries: Queries,
    deadline: Instant,
    received: Instant,
) -> Result<(Pending, oneshot::Receiver<Answer>), JobError> {
    let m = model.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let shape = m.lock().header.shape.map(|d| d as usize);
        let decoded = match queries {
            Queries::Images(images) => {
                decode_images(&images, shape).map(|px| (Input::Pixels(px), images.len()))
            }
            Queries::Tensor(t) => {
                read_tensor(&t, shape).map(|v| (Input::Scaled(v), t.shape[0] as usize))
            }
        };
        exec.charge_urgent(started.elapsed());
        decoded.map(|(input, n)| (input, n, shape.map(|d| d as i64)))
    })
    .await
    .map_err(|e| JobError::Internal(e.to_string()))??;
    let (input, n, shape) = decoded;
    let (reply, rx) = oneshot::channel();
    let pending = Pending {
        model,
        key,
        input,
        n,
        shape,
        deadline,
        received,
        reply,
    };
    Ok((pending, rx))
}

/// The images as `shape` (C×H×W) pixels, one after another.
fn decode_images(
    images: &[bus_schemas::infer::ByteBuf],
    shape: [usize; 3],
) -> Result<Vec<u8>, JobError> {
    let bytes = pixel_bytes(images.len(), shape)?;
    let mut pixels = Vec::with_capacity(bytes);
    for (i, bytes) in images.iter().enumerate() {
        let chw = idunno_datasets::image_to_chw(bytes, shape)
            .map_err(|e| JobError::BadInput(format!("image {}: {e}", i + 1)))?;
        pixels.extend_from_slice(&chw);
    }
    Ok(pixels)
}

/// The values of a float tensor of queries for a model of input `shape` (C×H×W): of that
/// shape, within [`MAX_REQUEST_PIXEL_BYTES`] values, all finite.
fn read_tensor(t: &FloatTensor, shape: [usize; 3]) -> Result<Vec<f32>, JobError> {
    let [n, c, h, w] = t.shape;
    let [mc, mh, mw] = shape;
    if [c, h, w] != [mc, mh, mw].map(|d| d as u64) {
        return Err(JobError::BadInput(format!(
            "the model takes N×{mc}×{mh}×{mw} inputs, not {n}×{c}×{h}×{w}"
        )));
    }
    let values = pixel_bytes(n as usize, shape)?;
    if t.data.len() != values * 4 {
        return Err(JobError::BadInput(format!(
            "a {n}×{c}×{h}×{w} float32 tensor holds {} bytes, not {}",
            values * 4,
            t.data.len()
        )));
    }
    let values: Vec<f32> = t
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(JobError::BadInput(format!(
            "value {} of the input is {}, not a finite number",
            i + 1,
            values[i]
        ))),
        None => Ok(values),
    }
}

/// Bytes of decoded pixels `n` images of `shape` need, refused beyond
/// [`MAX_REQUEST_PIXEL_BYTES`] (and on overflow) before anything is allocated.
fn pixel_bytes(n: usize, shape: [usize; 3]) -> Result<usize, JobError> {
    let bytes = shape
        .iter()
        .try_fold(n, |acc, d| acc.checked_mul(*d))
        .filter(|b| *b <= MAX_REQUEST_PIXEL_BYTES);
    bytes.ok_or_else(|| {
        let [c, h, w] = shape;
        JobError::BadInput(format!(
            "a request may need at most {MAX_REQUEST_PIXEL_BYTES} bytes of pixels, not {n} images of {c}×{h}×{w}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pixels_are_bounded_before_anything_is_allocated() {
        assert_eq!(pixel_bytes(1024, [1, 28, 28]).unwrap(), 1024 * 784);
        let e = pixel_bytes(2, [3, 4096, 4096]).unwrap_err();
        assert!(matches!(e, JobError::BadInput(_)));
        assert!(e.to_string().contains("at most 16777216 bytes"), "{e}");
        assert!(pixel_bytes(usize::MAX, [u32::MAX as usize; 3]).is_err());
    }

    proptest! {
        #[test]
        fn any_request_size_and_model_shape_is_bounded(
            n in any::<usize>(), shape in any::<[u32; 3]>(),
        ) {
            if let Ok(bytes) = pixel_bytes(n, shape.map(|d| d as usize)) {
                prop_assert!(bytes <= MAX_REQUEST_PIXEL_BYTES);
            }
        }
    }
}
