//! An Open Inference Protocol infer response, written from an IDunno online reply: the outputs
//! asked for, each in the JSON or as binary data after it. Pure: no I/O, unit-tested.

use super::request::Wanted;
use bus_schemas::infer::Prediction;
use serde_json::{json, Map, Value};

/// A response body and, when binary data follows the JSON, the JSON's length (the
/// `Inference-Header-Content-Length` header).
#[derive(Debug)]
pub struct Body {
    /// The JSON, then the binary data.
    pub bytes: Vec<u8>,
    /// The JSON's length, when binary data follows.
    pub header_len: Option<usize>,
}

/// What the response says besides the outputs.
pub struct Meta<'a> {
    /// The model.
    pub model: &'a str,
    /// The version that ran.
    pub version: u64,
    /// The request's id.
    pub id: Option<&'a str>,
    /// IDunno's figures (node, queue and run milliseconds, batch size).
    pub parameters: Map<String, Value>,
    /// The model's class names (for the classification extension's labels; may be empty).
    pub classes: &'a [String],
}

/// One output's values.
enum Data {
    Int64(Vec<i64>),
    Fp32(Vec<f32>),
    Bytes(Vec<String>),
}

impl Data {
    fn datatype(&self) -> &'static str {
        match self {
            Data::Int64(_) => "INT64",
            Data::Fp32(_) => "FP32",
            Data::Bytes(_) => "BYTES",
        }
    }

    fn json(&self) -> Value {
        match self {
            Data::Int64(v) => json!(v),
            Data::Fp32(v) => json!(v),
            Data::Bytes(v) => json!(v),
        }
    }

    /// Little-endian values; BYTES elements each after a 4-byte length.
    fn binary(&self) -> Vec<u8> {
        match self {
            Data::Int64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Fp32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Bytes(v) => v
                .iter()
                .flat_map(|s| (s.len() as u32).to_le_bytes().into_iter().chain(s.bytes()))
                .collect(),
        }
    }
}

/// One output's values and shape, for `predictions`.
fn output(w: &Wanted, predictions: &[Prediction], names: &[String]) -> (Vec<usize>, Data) {
    let n = predictions.len();
    let classes = predictions.first().map_or(0, |p| p.scores.len());
    match (w.name.as_str(), w.class_count) {
        ("class", _) => (
            vec![n],
            Data::Int64(predictions.iter().map(|p| p.class).collect()),
        ),
        ("class_name", _) => (
            vec![n],
            Data::Bytes(predictions.iter().map(|p| p.class_name.clone()).collect()),
        ),
        ("score", _) => (
            vec![n],
            Data::Fp32(predictions.iter().map(|p| p.score).collect()),
        ),
        (_, Some(k)) => {
            let k = k.min(classes);
            (vec![n, k], Data::Bytes(top_classes(predictions, k, names)))
        }
        _ => (
            vec![n, classes],
            Data::Fp32(
                predictions
                    .iter()
                    .flat_map(|p| p.scores.iter().copied())
                    .collect(),
            ),
        ),
    }
}

/// The classification extension's strings, `score:index:label`, the `k` most likely classes
/// of each prediction, most likely first.
fn top_classes(predictions: &[Prediction], k: usize, names: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(predictions.len() * k);
    for p in predictions {
        let mut order: Vec<usize> = (0..p.scores.len()).collect();
        order.sort_by(|a, b| p.scores[*b].total_cmp(&p.scores[*a]));
        for i in order.into_iter().take(k) {
            let label = match names.get(i) {
                Some(name) => name.clone(),
                None if i as i64 == p.class => p.class_name.clone(),
                None => i.to_string(),
            };
            out.push(format!("{}:{i}:{label}", p.scores[i]));
        }
    }
    out
}

/// The response to an infer request that asked for `wanted`.
pub fn write(meta: Meta<'_>, wanted: &[Wanted], predictions: &[Prediction]) -> Body {
    let mut binary = Vec::new();
    let outputs: Vec<Value> = wanted
        .iter()
        .map(|w| {
            let (shape, data) = output(w, predictions, meta.classes);
            let mut out = json!({"name": w.name, "datatype": data.datatype(), "shape": shape});
            if w.binary {
                let bytes = data.binary();
                out["parameters"] = json!({"binary_data_size": bytes.len()});
                binary.extend_from_slice(&bytes);
            } else {
                out["data"] = data.json();
            }
            out
        })
        .collect();
    let mut header = json!({
        "model_name": meta.model,
        "model_version": meta.version.to_string(),
        "outputs": outputs,
        "parameters": meta.parameters,
    });
    if let Some(id) = meta.id {
        header["id"] = json!(id);
    }
    let mut bytes = header.to_string().into_bytes();
    let header_len = (!binary.is_empty() || wanted.iter().any(|w| w.binary)).then_some(bytes.len());
    bytes.extend_from_slice(&binary);
    Body { bytes, header_len }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn predictions() -> Vec<Prediction> {
        vec![
            Prediction {
                class: 1,
                class_name: "Trouser".into(),
                score: 0.7,
                scores: vec![0.1, 0.7, 0.2],
            },
            Prediction {
                class: 2,
                class_name: "Pullover".into(),
                score: 0.6,
                scores: vec![0.3, 0.1, 0.6],
            },
        ]
    }

    fn meta() -> Meta<'static> {
        Meta {
            model: "cnn",
            version: 3,
            id: Some("r1"),
            parameters: Map::new(),
            classes: &[],
        }
    }

    fn wanted(name: &str, binary: bool, class_count: Option<usize>) -> Wanted {
        Wanted {
            name: name.into(),
            binary,
            class_count,
        }
    }

    #[test]
    fn json_outputs_carry_their_data_and_shape() {
        let asked = [
            wanted("class", false, None),
            wanted("class_name", false, None),
            wanted("score", false, None),
            wanted("probabilities", false, None),
        ];
        let body = write(meta(), &asked, &predictions());
        assert_eq!(body.header_len, None);
        let v: Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(v["model_name"], "cnn");
        assert_eq!(v["model_version"], "3");
        assert_eq!(v["id"], "r1");
        let o = &v["outputs"];
        assert_eq!(o[0]["data"], json!([1, 2]));
        assert_eq!(o[0]["datatype"], "INT64");
        assert_eq!(o[1]["data"], json!(["Trouser", "Pullover"]));
        assert_eq!(o[2]["shape"], json!([2]));
        assert_eq!(o[3]["shape"], json!([2, 3]));
        assert_eq!(o[3]["data"].as_array().unwrap().len(), 6);
    }

    #[test]
    fn binary_outputs_follow_the_json_in_order() {
        let asked = [
            wanted("class", true, None),
            wanted("class_name", true, None),
        ];
        let body = write(meta(), &asked, &predictions());
        let len = body.header_len.expect("binary data follows");
        let v: Value = serde_json::from_slice(&body.bytes[..len]).unwrap();
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 16);
        let rest = &body.bytes[len..];
        assert_eq!(&rest[..8], &1i64.to_le_bytes());
        assert_eq!(&rest[8..16], &2i64.to_le_bytes());
        assert_eq!(&rest[16..20], &7u32.to_le_bytes());
        assert_eq!(&rest[20..27], b"Trouser");
        assert_eq!(rest.len(), 16 + 4 + 7 + 4 + 8);
    }

    #[test]
    fn classification_gives_the_top_classes() {
        let body = write(
            meta(),
            &[wanted("probabilities", false, Some(2))],
            &predictions(),
        );
        let v: Value = serde_json::from_slice(&body.bytes).unwrap();
        let o = &v["outputs"][0];
        assert_eq!(o["datatype"], "BYTES");
        assert_eq!(o["shape"], json!([2, 2]));
        assert_eq!(
            o["data"],
            json!(["0.7:1:Trouser", "0.2:2:2", "0.6:2:Pullover", "0.3:0:0"])
        );
    }
}
