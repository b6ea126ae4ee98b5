//! The request reader's tests: every way in, and malformed bodies refused with a reason.
use super::*;
use serde_json::json;

fn body(header: Value, binary: &[u8]) -> (Vec<u8>, Option<usize>) {
    let mut b = serde_json::to_vec(&header).unwrap();
    let len = b.len();
    b.extend_from_slice(binary);
    (b, (!binary.is_empty()).then_some(len))
}

#[test]
fn a_binary_fp32_input_reads_as_a_tensor_and_every_output_binary() {
    let values: Vec<u8> = [0.5f32, -1.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let header = json!({
        "id": "7",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 1, 2],
                    "parameters": {"binary_data_size": 8}}],
        "parameters": {"binary_data_output": true, "timeout": 2500},
    });
    let (b, len) = body(header, &values);
    let infer = parse(&b, len).unwrap();
    assert_eq!(infer.id.as_deref(), Some("7"));
    assert_eq!(
        infer.queries,
        Queries::Tensor(FloatTensor::new([1, 1, 1, 2], &[0.5, -1.0]))
    );
    assert_eq!(infer.outputs.len(), super::super::OUTPUTS.len());
    assert!(infer.outputs.iter().all(|o| o.binary));
    assert_eq!(infer.timeout_ms, 3);
}

#[test]
fn json_data_may_be_nested_or_flat() {
    for data in [json!([[[[0.5, -1.0]]]]), json!([0.5, -1.0])] {
        let header = json!({"inputs": [{"name": "input", "datatype": "FP32",
            "shape": [1, 1, 1, 2], "data": data}]});
        let (b, len) = body(header, &[]);
        let infer = parse(&b, len).unwrap();
        assert_eq!(
            infer.queries,
            Queries::Tensor(FloatTensor::new([1, 1, 1, 2], &[0.5, -1.0]))
        );
        assert_eq!(infer.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert!(infer.outputs.iter().all(|o| !o.binary));
    }
}

#[test]
fn binary_bytes_elements_are_length_prefixed() {
    let mut raw = Vec::new();
    for img in [&b"png1"[..], b"jpeg22"] {
        raw.extend_from_slice(&(img.len() as u32).to_le_bytes());
        raw.extend_from_slice(img);
    }
    let header = json!({
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "class_name", "parameters": {"binary_data": true}},
                    {"name": "probabilities", "parameters": {"classification": 2}}],
    });
    let (b, len) = body(header, &raw);
    let infer = parse(&b, len).unwrap();
    assert_eq!(
        infer.queries,
        Queries::Images(vec![b"png1".to_vec(), b"jpeg22".to_vec()])
    );
    let names: Vec<_> = infer.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["class_name", "probabilities"]);
    assert!(infer.outputs[0].binary && !infer.outputs[1].binary);
    assert_eq!(infer.outputs[1].class_count, Some(2));
}

#[test]
fn json_bytes_take_strings_and_b64() {
    let header = json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2, 1],
        "data": ["ab", {"b64": "AAE="}]}]});
    let (b, len) = body(header, &[]);
    let infer = parse(&b, len).unwrap();
    assert_eq!(
        infer.queries,
        Queries::Images(vec![b"ab".to_vec(), vec![0, 1]])
    );
}

#[test]
fn malformed_requests_are_refused_with_a_reason() {
    let cases: Vec<(Value, Vec<u8>, &str)> = vec![
        (json!({"inputs": []}), vec![], "exactly one input"),
        (
            json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}),
            vec![],
            "unknown input 'x'",
        ),
        (
            json!({"inputs": [{"name": "input", "datatype": "INT8", "shape": [1,1,1,1], "data": [1]}]}),
            vec![],
            "is FP32, not INT8",
        ),
        (
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}),
            vec![],
            "shape [N, C, H, W]",
        ),
        (
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1,1,1,3], "data": [1, 2]}]}),
            vec![],
            "holds 3 values, its data 2",
        ),
        (
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1,1,1,-1], "data": []}]}),
            vec![],
            "bad shape",
        ),
        (
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1,1,1,2],
                "parameters": {"binary_data_size": 8}}]}),
            vec![0; 4],
            "says 8 bytes",
        ),
        (
            json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                "parameters": {"binary_data_size": 6}}]}),
            vec![9, 0, 0, 0, 1, 2],
            "ends inside an element",
        ),
        (
            json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                "outputs": [{"name": "logits"}]}),
            vec![],
            "unknown output 'logits'",
        ),
        (
            json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                "parameters": {"sequence_id": 3}}),
            vec![],
            "not supported",
        ),
        (
            json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                "parameters": {"timeout": 0}}),
            vec![],
            "microseconds",
        ),
    ];
    for (header, binary, why) in cases {
        let (b, len) = body(header.clone(), &binary);
        let e = parse(&b, len).expect_err(&header.to_string());
        assert!(e.contains(why), "{header}: {e}");
    }
    let e = parse(b"{", None).unwrap_err();
    assert!(e.contains("bad inference request JSON"), "{e}");
    let e = parse(b"{}", Some(10)).unwrap_err();
    assert!(e.contains("Inference-Header-Content-Length"), "{e}");
}

proptest::proptest! {
    #[test]
    fn any_bytes_are_read_or_refused_never_a_panic(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        len in proptest::option::of(0usize..300),
    ) {
        let _ = parse(&body, len);
    }
}
