"""The real Triton HTTP client (tritonclient[http] from PyPI, untouched) against one IDunno
node: readiness, model metadata, and infer with an FP32 tensor and with BYTES PNG files.

Usage: triton_client.py <host:port> <model> <dir>
<dir> holds pixels.u8 (N x C x H x W bytes) and 0.png ... (N-1).png. Prints one JSON object.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient


def main():
    url, model, folder = sys.argv[1], sys.argv[2], sys.argv[3]
    client = httpclient.InferenceServerClient(url=url, network_timeout=120.0)
    out = {
        "server_live": client.is_server_live(),
        "server_ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "unknown_model_ready": client.is_model_ready(model + "-missing"),
        "server": client.get_server_metadata(),
    }
    meta = client.get_model_metadata(model)
    out["metadata"] = meta
    shape = next(i["shape"] for i in meta["inputs"] if i["name"] == "input")
    c, h, w = shape[1:]
    params = meta["parameters"]
    mean = np.array(params["mean"] or [0.0] * c, dtype=np.float32).reshape(1, c, 1, 1)
    std = np.array(params["std"] or [1.0] * c, dtype=np.float32).reshape(1, c, 1, 1)
    pixels = np.fromfile(f"{folder}/pixels.u8", dtype=np.uint8).reshape(-1, c, h, w)
    n = pixels.shape[0]

    # FP32: the model's input, scaled as its metadata says; outputs as binary data.
    x = ((pixels.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer(model, [tensor], request_id="fp32")
    out["tensor_classes"] = result.as_numpy("class").tolist()
    out["tensor_names"] = [b.decode() for b in result.as_numpy("class_name").tolist()]
    out["tensor_scores"] = result.as_numpy("score").tolist()
    out["tensor_probabilities_shape"] = list(result.as_numpy("probabilities").shape)
    out["tensor_id"] = result.get_response()["id"]

    # BYTES: the PNG files; outputs asked by name, one in JSON, one binary, one top-3.
    pngs = [open(f"{folder}/{i}.png", "rb").read() for i in range(n)]
    images = httpclient.InferInput("image", [n], "BYTES")
    images.set_data_from_numpy(np.array(pngs, dtype=np.object_))
    outputs = [
        httpclient.InferRequestedOutput("class", binary_data=False),
        httpclient.InferRequestedOutput("class_name", binary_data=True),
        httpclient.InferRequestedOutput("probabilities", class_count=3),
    ]
    result = client.infer(model, [images], outputs=outputs, model_version=params["version"])
    out["png_classes"] = result.as_numpy("class").tolist()
    out["png_names"] = [b.decode() for b in result.as_numpy("class_name").tolist()]
    out["png_top3_first"] = [b.decode() for b in result.as_numpy("probabilities")[0].tolist()]

    # A refusal comes back as the client's exception, with the server's message.
    try:
        bad = httpclient.InferInput("input", [1, c, h + 1, w], "FP32")
        bad.set_data_from_numpy(np.zeros((1, c, h + 1, w), dtype=np.float32))
        client.infer(model, [bad])
        out["bad_shape_error"] = None
    except httpclient.InferenceServerException as e:
        out["bad_shape_error"] = {"status": e.status(), "message": e.message()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
