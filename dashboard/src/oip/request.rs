//! An Open Inference Protocol (KServe v2) infer request, read: its JSON header, the binary
//! tensor data after it (Triton's `binary_tensor_data` extension) and its one input, as the
//! queries of an IDunno online request. Pure: no I/O, unit-tested.

use super::{INPUT_IMAGES, INPUT_TENSOR};
use base64::Engine as _;
use bus_schemas::infer::FloatTensor;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The deadline of a request that gives none (`parameters.timeout`, microseconds).
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// The longest deadline a request may ask for (the node's own bound).
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// What an infer request asks.
#[derive(Debug, PartialEq)]
pub struct Infer {
    /// The request's `id`, echoed in the response.
    pub id: Option<String>,
    /// The queries.
    pub queries: Queries,
    /// The outputs asked for, in order (every output when the request names none).
    pub outputs: Vec<Wanted>,
    /// Milliseconds the node may take.
    pub timeout_ms: u64,
}

/// An infer request's queries.
#[derive(Debug, PartialEq)]
pub enum Queries {
    /// PNG or JPEG files (`image`, BYTES).
    Images(Vec<Vec<u8>>),
    /// The model's input itself (`input`, FP32 N×C×H×W).
    Tensor(FloatTensor),
}

/// One output asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// Its name ([`super::OUTPUTS`]).
    pub name: String,
    /// Whether its data goes after the JSON as binary (else in the JSON).
    pub binary: bool,
    /// The classification extension: the top `k` classes as `score:index:label` strings.
    pub class_count: Option<usize>,
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<Tensor>,
    #[serde(default)]
    outputs: Option<Vec<Requested>>,
}

#[derive(Deserialize)]
struct Tensor {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct Requested {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// Reads a request `body` whose JSON is its first `header_len` bytes (the
/// `Inference-Header-Content-Length` header; the whole body when absent).
pub fn parse(body: &[u8], header_len: Option<usize>) -> Result<Infer, String> {
    let len = header_len.unwrap_or(body.len());
    if len > body.len() {
        return Err(format!(
            "Inference-Header-Content-Length is {len}, but the body holds {} bytes",
            body.len()
        ));
    }
    let (json, mut binary) = body.split_at(len);
    let header: Header =
        serde_json::from_slice(json).map_err(|e| format!("bad inference request JSON: {e}"))?;
    refuse_unsupported(&header.parameters)?;
    let [input] = header.inputs.as_slice() else {
        return Err(format!(
            "give exactly one input, '{INPUT_TENSOR}' (FP32) or '{INPUT_IMAGES}' (BYTES), not {}",
            header.inputs.len()
        ));
    };
    let raw = take_binary(input, &mut binary)?;
    if !binary.is_empty() {
        return Err(format!(
            "{} bytes of binary data follow the inputs' binary_data_size",
            binary.len()
        ));
    }
    let queries = queries(input, raw)?;
    let default_binary = flag(&header.parameters, "binary_data_output")?.unwrap_or(false);
    Ok(Infer {
        id: header.id,
        queries,
        outputs: wanted(header.outputs, default_binary)?,
        timeout_ms: timeout_ms(&header.parameters)?,
    })
}

/// Parameters IDunno does not do are refused rather than ignored.
fn refuse_unsupported(params: &Map<String, Value>) -> Result<(), String> {
    for key in ["sequence_id", "shared_memory_region"] {
        if params.contains_key(key) {
            return Err(format!("parameter {key:?} is not supported"));
        }
    }
    Ok(())
}

/// The input's binary data, taken from the front of `binary`, if it says it has some.
fn take_binary<'a>(input: &Tensor, binary: &mut &'a [u8]) -> Result<Option<&'a [u8]>, String> {
    if input.parameters.contains_key("shared_memory_region") {
        return Err("shared memory inputs are not supported".into());
    }
    let Some(size) = input.parameters.get("binary_data_size") else {
        return Ok(None);
    };
    let size = size
        .as_u64()
        .and_then(|s| usize::try_from(s).ok())
        .ok_or("binary_data_size must be a non-negative integer")?;
    if size > binary.len() {
        return Err(format!(
            "input '{}' says {size} bytes of binary data, but {} follow the JSON",
            input.name,
            binary.len()
        ));
    }
    let (mine, rest) = binary.split_at(size);
    *binary = rest;
    Ok(Some(mine))
}

fn queries(input: &Tensor, raw: Option<&[u8]>) -> Result<Queries, String> {
    let count = element_count(&input.shape)?;
    match (input.name.as_str(), input.datatype.as_str()) {
        (INPUT_TENSOR, "FP32") => {
            let shape: [u64; 4] = input
                .shape
                .iter()
                .map(|d| *d as u64)
                .collect::<Vec<_>>()
                .try_into()
                .map_err(|_| format!("'{INPUT_TENSOR}' has shape [N, C, H, W], not {:?}", input.shape))?;
            let values = match raw {
                Some(bytes) => fp32_binary(bytes, count)?,
                None => fp32_json(input.data.as_ref(), count)?,
            };
            Ok(Queries::Tensor(FloatTensor::new(shape, &values)))
        }
        (INPUT_IMAGES, "BYTES") => {
            if !matches!(input.shape.as_slice(), [_] | [_, 1]) {
                return Err(format!(
                    "'{INPUT_IMAGES}' has shape [N] (or [N, 1]), not {:?}",
                    input.shape
                ));
            }
            let images = match raw {
                Some(bytes) => bytes_binary(bytes, count)?,
                None => bytes_json(input.data.as_ref(), count)?,
            };
            Ok(Queries::Images(images))
        }
        (INPUT_TENSOR | INPUT_IMAGES, other) => Err(format!(
            "input '{}' is {}, not {other}",
            input.name,
            if input.name == INPUT_TENSOR { "FP32" } else { "BYTES" }
        )),
        (name, _) => Err(format!(
            "unknown input '{name}': the model takes '{INPUT_TENSOR}' (FP32 N×C×H×W, scaled as its metadata says) or '{INPUT_IMAGES}' (BYTES, PNG or JPEG files)"
        )),
    }
}

/// The number of elements of `shape`, refused when negative or absurd.
fn element_count(shape: &[i64]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |acc, d| {
            usize::try_from(*d).ok().and_then(|d| acc.checked_mul(d))
        })
        .filter(|n| *n <= u32::MAX as usize)
        .ok_or_else(|| format!("bad shape {shape:?}"))
}

fn fp32_binary(bytes: &[u8], count: usize) -> Result<Vec<f32>, String> {
    if bytes.len() != count * 4 {
        return Err(format!(
            "an FP32 tensor of {count} values is {} bytes of binary data, not {}",
            count * 4,
            bytes.len()
        ));
    }
    let values = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    Ok(values.collect())
}

fn fp32_json(data: Option<&Value>, count: usize) -> Result<Vec<f32>, String> {
    let data = data.ok_or("the input has neither data nor binary_data_size")?;
    let mut values = Vec::with_capacity(count.min(1 << 20));
    flatten(data, &mut |v| {
        let x = v.as_f64().ok_or("FP32 data holds numbers only")?;
        values.push(x as f32);
        Ok(())
    })?;
    if values.len() != count {
        return Err(format!(
            "the input's shape holds {count} values, its data {}",
            values.len()
        ));
    }
    Ok(values)
}

/// Calls `each` on every leaf of `data`, arrays nested or flat (both are allowed).
fn flatten(data: &Value, each: &mut dyn FnMut(&Value) -> Result<(), String>) -> Result<(), String> {
    match data {
        Value::Array(items) => items.iter().try_for_each(|v| flatten(v, each)),
        leaf => each(leaf),
    }
}

/// BYTES elements as binary data: each a 4-byte little-endian length, then the bytes.
fn bytes_binary(mut bytes: &[u8], count: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::with_capacity(count.min(4096));
    while !bytes.is_empty() {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err("BYTES binary data ends inside an element's length".into());
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err("BYTES binary data ends inside an element".into());
        }
        let (element, rest) = rest.split_at(len);
        out.push(element.to_vec());
        bytes = rest;
    }
    if out.len() != count {
        return Err(format!(
            "the input's shape holds {count} elements, its data {}",
            out.len()
        ));
    }
    Ok(out)
}

/// BYTES elements in JSON: strings (their UTF-8 bytes) or `{"b64": "…"}`.
fn bytes_json(data: Option<&Value>, count: usize) -> Result<Vec<Vec<u8>>, String> {
    let data = data.ok_or("the input has neither data nor binary_data_size")?;
    let mut out = Vec::new();
    flatten(data, &mut |v| {
        let bytes = match v {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Object(o) => {
                let b64 = o.get("b64").and_then(Value::as_str);
                let b64 = b64.ok_or("a BYTES element is a string or {\"b64\": \"…\"}")?;
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("a b64 element is not base64: {e}"))?
            }
            _ => return Err("a BYTES element is a string or {\"b64\": \"…\"}".into()),
        };
        out.push(bytes);
        Ok(())
    })?;
    if out.len() != count {
        return Err(format!(
            "the input's shape holds {count} elements, its data {}",
            out.len()
        ));
    }
    Ok(out)
}

fn flag(params: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match params.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("parameter {key:?} must be true or false")),
    }
}

/// The outputs asked for: those named, or all of them.
fn wanted(asked: Option<Vec<Requested>>, default_binary: bool) -> Result<Vec<Wanted>, String> {
    let Some(asked) = asked.filter(|a| !a.is_empty()) else {
        let all = super::OUTPUTS.iter().map(|(name, _)| Wanted {
            name: (*name).into(),
            binary: default_binary,
            class_count: None,
        });
        return Ok(all.collect());
    };
    asked
        .into_iter()
        .map(|r| {
            if !super::OUTPUTS.iter().any(|(name, _)| *name == r.name) {
                let names: Vec<&str> = super::OUTPUTS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown output '{}': the outputs are {}",
                    r.name,
                    names.join(", ")
                ));
            }
            if r.parameters.contains_key("shared_memory_region") {
                return Err("shared memory outputs are not supported".into());
            }
            let class_count = match r.parameters.get("classification") {
                None => None,
                Some(v) => match v.as_u64() {
                    Some(k) if k > 0 => Some(k as usize),
                    _ => return Err("classification must be a positive integer".into()),
                },
            };
            Ok(Wanted {
                binary: flag(&r.parameters, "binary_data")?.unwrap_or(default_binary),
                name: r.name,
                class_count,
            })
        })
        .collect()
}

/// `parameters.timeout` (microseconds, as Triton has it) in milliseconds, rounded up.
fn timeout_ms(params: &Map<String, Value>) -> Result<u64, String> {
    let Some(v) = params.get("timeout") else {
        return Ok(DEFAULT_TIMEOUT_MS);
    };
    let us = v
        .as_u64()
        .ok_or("parameter \"timeout\" is a number of microseconds")?;
    let ms = us.div_ceil(1000);
    if !(1..=MAX_TIMEOUT_MS).contains(&ms) {
        return Err(format!(
            "parameter \"timeout\" is 1 to {} microseconds",
            MAX_TIMEOUT_MS * 1000
        ));
    }
    Ok(ms)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
