//! Reading and writing IDX files (the MNIST container format), plain or gzipped.
//!
//! Header: two zero bytes, a type byte, the number of dimensions, then each dimension as a
//! big-endian u32; the payload follows, row-major, big-endian.

use crate::limits::{product, Limit, Limits};
use crate::DatasetError;
use flate2::bufread::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Element type of an IDX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxType {
    /// Unsigned byte (0x08).
    U8,
    /// Signed byte (0x09).
    I8,
    /// Big-endian i16 (0x0B).
    I16,
    /// Big-endian i32 (0x0C).
    I32,
    /// Big-endian f32 (0x0D).
    F32,
    /// Big-endian f64 (0x0E).
    F64,
}

impl IdxType {
    /// The type byte of the header.
    pub fn code(self) -> u8 {
        match self {
            IdxType::U8 => 0x08,
            IdxType::I8 => 0x09,
            IdxType::I16 => 0x0B,
            IdxType::I32 => 0x0C,
            IdxType::F32 => 0x0D,
            IdxType::F64 => 0x0E,
        }
    }

    /// The type for a header byte, if it is a known one.
    pub fn from_code(code: u8) -> Option<IdxType> {
        [
            Self::U8,
            Self::I8,
            Self::I16,
            Self::I32,
            Self::F32,
            Self::F64,
        ]
        .into_iter()
        .find(|t| t.code() == code)
    }

    /// Size of one element in bytes.
    pub fn elem_size(self) -> usize {
        match self {
            IdxType::U8 | IdxType::I8 => 1,
            IdxType::I16 => 2,
            IdxType::I32 | IdxType::F32 => 4,
            IdxType::F64 => 8,
        }
    }
}

/// A whole IDX file in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Idx {
    /// Element type.
    pub kind: IdxType,
    /// Dimensions, outermost first (for images: N, H, W[, C]).
    pub dims: Vec<usize>,
    /// Raw big-endian payload, `product(dims) * kind.elem_size()` bytes.
    pub data: Vec<u8>,
}

/// The header of an IDX file: element type and dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxHeader {
    /// Element type.
    pub kind: IdxType,
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
}

impl IdxHeader {
    /// Bytes of payload the header announces (`u64::MAX` when the product overflows).
    pub fn payload_len(&self) -> u64 {
        let elem = self.kind.elem_size() as u64;
        product(std::iter::once(elem).chain(self.dims.iter().map(|&d| d as u64)))
    }
}

/// Reads an IDX file, gunzipping it when it starts with the gzip magic `1f 8b`; its payload
/// may be at most [`Limits::default`]'s `max_file_bytes`.
pub fn read(path: &Path) -> Result<Idx, DatasetError> {
    let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    read_from(BufReader::new(file), path)
}

/// Reads an IDX file from `reader` (gzip auto-detected); `path` only names it in errors. Its
/// payload may be at most [`Limits::default`]'s `max_file_bytes`.
pub fn read_from<R: BufRead>(reader: R, path: &Path) -> Result<Idx, DatasetError> {
    read_from_limited(reader, path, Limits::default().max_file_bytes)
}

/// Like [`read_from`], with a payload of at most `max_payload` bytes: a header announcing
/// more is refused before any payload is read ([`DatasetError::TooLarge`]).
pub fn read_from_limited<R: BufRead>(
    reader: R,
    path: &Path,
    max_payload: u64,
) -> Result<Idx, DatasetError> {
    read_checked(reader, path, max_payload, |h| {
        DatasetError::check(path, Limit::FileBytes, max_payload, h.payload_len())
    })
}

/// Reads an IDX file from `reader` (gzip auto-detected): the header first, then `check` on
/// it, then at most `max_payload` bytes of payload (a header announcing more is
/// [`DatasetError::TooLarge`]). The payload is read through `take(len + 1)` into a buffer of
/// exactly that size, so a stream holding (or decompressing to) more than its header announces
/// costs at most one byte more than the announced size before it is refused with
/// [`DatasetError::ExceedsDeclared`].
pub fn read_checked<R, F>(
    mut reader: R,
    path: &Path,
    max_payload: u64,
    check: F,
) -> Result<Idx, DatasetError>
where
    R: BufRead,
    F: FnOnce(&IdxHeader) -> Result<(), DatasetError>,
{
    let head = reader.fill_buf().map_err(|e| DatasetError::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut gz = BufReader::new(MultiGzDecoder::new(reader));
        read_plain(&mut gz, path, true, max_payload, check)
    } else {
        read_plain(&mut reader, path, false, max_payload, check)
    }
}

fn read_plain<R: Read>(
    reader: &mut R,
    path: &Path,
    gz: bool,
    max_payload: u64,
    check: impl FnOnce(&IdxHeader) -> Result<(), DatasetError>,
) -> Result<Idx, DatasetError> {
    let header = read_idx_header(reader, path, gz)?;
    check(&header)?;
    let len = header.payload_len();
    DatasetError::check(path, Limit::FileBytes, max_payload, len)?;
    let data = read_payload(reader, len, path, gz)?;
    Ok(Idx {
        kind: header.kind,
        dims: header.dims,
        data,
    })
}

/// Reads and checks the magic, type and dimensions (at most 255 of them, 4 bytes each).
fn read_idx_header<R: Read>(
    reader: &mut R,
    path: &Path,
    gz: bool,
) -> Result<IdxHeader, DatasetError> {
    let mut magic = [0u8; 4];
    read_header(reader, &mut magic, path, gz)?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DatasetError::bad_idx(path, "it does not start with 00 00"));
    }
    let kind = IdxType::from_code(magic[2]).ok_or_else(|| {
        DatasetError::bad_idx(path, format!("unknown element type 0x{:02x}", magic[2]))
    })?;
    if magic[3] == 0 {
        return Err(DatasetError::bad_idx(path, "it declares no dimensions"));
    }
    let mut dims = Vec::with_capacity(usize::from(magic[3]));
    for _ in 0..magic[3] {
        let mut d = [0u8; 4];
        read_header(reader, &mut d, path, gz)?;
        dims.push(u32::from_be_bytes(d) as usize);
    }
    Ok(IdxHeader { kind, dims })
}

fn read_header<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    path: &Path,
    gz: bool,
) -> Result<(), DatasetError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            DatasetError::bad_idx(path, "its header is incomplete")
        }
        _ => stream_error(path, e, gz),
    })
}

/// Reads exactly `expected` bytes (already checked against a limit by the caller), refusing
/// a shorter or longer stream; at most `expected + 1` bytes are ever buffered.
fn read_payload<R: Read>(
    r: &mut R,
    expected: u64,
    path: &Path,
    gz: bool,
) -> Result<Vec<u8>, DatasetError> {
    let cap = usize::try_from(expected.saturating_add(1)).map_err(|_| {
        DatasetError::too_large(path, Limit::FileBytes, usize::MAX as u64, expected)
    })?;
    let mut data = Vec::new();
    data.try_reserve_exact(cap).map_err(|e| {
        DatasetError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::OutOfMemory, e),
        )
    })?;
    let mut limited = r.take(expected.saturating_add(1));
    if let Err(e) = limited.read_to_end(&mut data) {
        return Err(stream_error(path, e, gz));
    }
    let got = data.len() as u64;
    if got < expected {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            expected,
            actual: got,
        });
    }
    if got > expected {
        let detail = format!(
            "it {} more than the {expected} bytes of data its header announces",
            if gz { "decompresses to" } else { "holds" }
        );
        return Err(DatasetError::ExceedsDeclared {
            path: path.to_path_buf(),
            declared: expected,
            detail,
        });
    }
    Ok(data)
}

fn stream_error(path: &Path, e: std::io::Error, gz: bool) -> DatasetError {
    if gz {
        DatasetError::bad_idx(path, format!("its gzip stream is damaged ({e})"))
    } else {
        DatasetError::io(path, e)
    }
}

/// The elements of an integer IDX file (u8, i8, i16 or i32) as i64, in order.
///
/// `path` only names the file in errors; float files are refused.
pub fn labels_as_i64(idx: &Idx, path: &Path) -> Result<Vec<i64>, DatasetError> {
    let d = &idx.data;
    Ok(match idx.kind {
        IdxType::U8 => d.iter().map(|&b| b as i64).collect(),
        IdxType::I8 => d.iter().map(|&b| b as i8 as i64).collect(),
        IdxType::I16 => d
            .chunks_exact(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]) as i64)
            .collect(),
        IdxType::I32 => d
            .chunks_exact(4)
            .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        IdxType::F32 | IdxType::F64 => {
            return Err(DatasetError::bad_idx(
                path,
                "labels must be integers, not floats",
            ))
        }
    })
}

#[path = "idx_write.rs"]
mod idx_write;
pub use idx_write::{encode, write};

#[cfg(test)]
#[path = "idx_tests.rs"]
mod tests;
