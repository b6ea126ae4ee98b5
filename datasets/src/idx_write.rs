//! Writing IDX files (the canonical form's own files are plain, never gzipped).

use super::IdxType;
use crate::DatasetError;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes an uncompressed IDX file; `data` must be `product(dims) * kind.elem_size()` bytes.
pub fn write(path: &Path, kind: IdxType, dims: &[usize], data: &[u8]) -> Result<(), DatasetError> {
    let bytes = encode(kind, dims, data).map_err(|reason| DatasetError::bad_idx(path, reason))?;
    let file = File::create(path).map_err(|e| DatasetError::io(path, e))?;
    let mut w = BufWriter::new(file);
    w.write_all(&bytes)
        .and_then(|()| w.flush())
        .map_err(|e| DatasetError::io(path, e))
}

/// Encodes an IDX file in memory (header and payload).
pub fn encode(kind: IdxType, dims: &[usize], data: &[u8]) -> Result<Vec<u8>, String> {
    if dims.is_empty() || dims.len() > 255 {
        return Err(format!("{} dimensions cannot be written", dims.len()));
    }
    if let Some(d) = dims.iter().find(|&&d| d > u32::MAX as usize) {
        return Err(format!("dimension {d} does not fit in 32 bits"));
    }
    if payload_len(kind, dims) != Some(data.len()) {
        return Err(format!(
            "{} bytes of data do not match dimensions {dims:?}",
            data.len()
        ));
    }
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, kind.code(), dims.len() as u8]);
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

fn payload_len(kind: IdxType, dims: &[usize]) -> Option<usize> {
    dims.iter()
        .try_fold(kind.elem_size(), |acc, &d| acc.checked_mul(d))
}
