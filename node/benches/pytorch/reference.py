#!/usr/bin/env python3
"""PyTorch itself, for the benchmarks that compare IDunno with it (`make bench`).

Run with the full PyTorch of infra/pytorch.sh (the same version as IDunno's libtorch). Each
command prints one JSON object on stdout. Data: the Fashion-MNIST files of the Debian package
`dataset-fashion-mnist`, read with gzip + numpy, held in memory as uint8 like IDunno's split,
scaled and normalised per batch (x / 255 - mean) / std as IDunno's model convention says.

  reference.py version
        {"torch": "<version>"}.
  reference.py script ARCH OUT [--seed S]
        writes ARCH (resnet | cnn, the same layers as IDunno's built-ins) with seeded weights,
        scripted by torch.jit.script, to OUT: the "TorchScript from PyTorch" to import.
  reference.py serve MODEL|ARCH --mode eager|script|frozen --threads T --batch B --queries Q
        queries/s over the test images (wrapping), timed from the end of the first batch as
        IDunno's job is timed from its first result; softmax and argmax per batch, classes to
        Python ints. MODEL: a TorchScript file (script / frozen = freeze + optimize_for_inference);
        ARCH: the eager twin of a built-in (eager) or it scripted (script / frozen), with the
        weights of an IDunno model file of that architecture if --weights FILE is given.
        --predictions FILE also writes every test image's class (one pass, batch B).
  reference.py infer MODEL|ARCH --mode M --threads T --batch B --count N
        latency of N calls of B test images each: p50 and p99 in milliseconds.
  reference.py train ARCH --threads T --batch B --steps N
        training images/s of ARCH (eager, SGD lr 0.05, Nesterov momentum 0.9, weight decay
        5e-4, cross entropy) over N steps after 5 warm-up steps, on shuffled training images.
  reference.py ddp ARCH --workers W --batch B --steps N
        the same with DistributedDataParallel: W processes (gloo, CPU, one thread each), each
        on B / W images of every step's batch of B; images/s of the whole batch.
"""

import argparse
import gzip
import io
import json
import os
import re
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = "/usr/share/datasets/fashion-mnist"
# IDunno's import of Fashion-MNIST computes these from the training images.
MEAN = 0.2860
STD = 0.3530


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def split(prefix):
    images = read_idx(os.path.join(DATA_DIR, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def conv3(i, o, stride=1):
    return nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False)


class Cnn(nn.Module):
    """IDunno's `cnn`: two conv + batch-norm blocks with max pooling, dropout, two linear."""

    def __init__(self, c=1, h=28, w=28, classes=10):
        super().__init__()
        self.conv1, self.bn1 = conv3(c, 32), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = conv3(32, 64), nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * (h // 4) * (w // 4), 128)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = torch.flatten(F.dropout(x, 0.25, self.training), 1)
        x = F.dropout(F.relu(self.fc1(x)), 0.4, self.training)
        return self.fc2(x)


class Block(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.conv1, self.bn1 = conv3(i, o, stride), nn.BatchNorm2d(o)
        self.conv2, self.bn2 = conv3(o, o), nn.BatchNorm2d(o)
        self.down = None
        if stride != 1 or i != o:
            self.down = nn.Sequential(nn.Conv2d(i, o, 1, stride=stride, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        skip = x if self.down is None else self.down(x)
        return F.relu(y + skip)


class Resnet(nn.Module):
    """IDunno's `resnet`: ResNet-20 for small images, 3 stages of 3 basic blocks."""

    def __init__(self, c=1, classes=10):
        super().__init__()
        self.stem, self.stem_bn = conv3(c, 16), nn.BatchNorm2d(16)
        blocks, channels = [], 16
        for stage, width in enumerate([16, 32, 64]):
            for block in range(3):
                blocks.append(Block(channels, width, 2 if stage > 0 and block == 0 else 1))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem_bn(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


ARCHS = {"cnn": Cnn, "resnet": Resnet}


def seeded(arch, seed):
    torch.manual_seed(seed)
    model = ARCHS[arch]()
    # Batch-norm statistics that are not the identity, as after training.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


def idunno_weights(model, path):
    """Loads the weights of an IDunno model file of the same architecture into `model`: the
    file is a magic, a little-endian u32 header length, a JSON header and libtorch named
    tensors, which torch.jit.load reads as a module whose names use '|' for '.'."""
    data = open(path, "rb").read()
    if data[:8] != b"IDUNNOM1":
        sys.exit(f"{path} is not an IDunno model file")
    n = struct.unpack("<I", data[8:12])[0]
    header = json.loads(data[12: 12 + n])
    archive = torch.jit.load(io.BytesIO(data[12 + n:]), map_location="cpu")
    named = dict(archive.named_parameters())
    named.update(dict(archive.named_buffers()))
    state = {}
    for name, t in named.items():
        name = name.replace("|", ".")
        m = re.match(r"s(\d)b(\d)\.(.*)", name)
        if m:  # resnet: stage s, block b -> blocks[3s + b]
            name = f"blocks.{3 * int(m[1]) + int(m[2])}.{m[3]}"
        name = name.replace(".down_bn.", ".down.1.").replace(".down.weight", ".down.0.weight")
        state[name] = t.detach().clone()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"{path} ({header['arch']}) does not fit: missing {missing}, unexpected {unexpected}")
    return model.eval()


def model_for(what, mode, weights=None):
    """The model to run: a TorchScript file or an eager twin (with an IDunno model file's
    weights if given), prepared as `mode` says."""
    if what in ARCHS:
        model = seeded(what, 0)
        if weights:
            model = idunno_weights(model, weights)
        if mode == "eager":
            return model
        model = torch.jit.script(model)
    else:
        if mode == "eager":
            sys.exit("a TorchScript file has no eager mode")
        model = torch.jit.load(what, map_location="cpu").eval()
    if mode == "frozen":
        model = torch.jit.optimize_for_inference(torch.jit.freeze(model.eval()))
    return model


def prepare(u8):
    return (u8.float() / 255.0 - MEAN) / STD


def classify(model, u8):
    probs = torch.softmax(model(prepare(u8)), dim=-1)
    score, pred = probs.max(dim=-1)
    return pred.tolist(), score.tolist()


def cmd_script(a):
    torch.jit.script(seeded(a.arch, a.seed)).save(a.out)
    print(json.dumps({"wrote": a.out, "bytes": os.path.getsize(a.out)}))


def cmd_serve(a):
    images, labels = split("t10k")
    model = model_for(a.model, a.mode, a.weights)
    n = images.shape[0]
    with torch.inference_mode():
        for _ in range(3):  # warm-up: the profiling executor specialises on the first calls
            classify(model, images[: a.batch])
        started, done, first, correct = None, 0, 0, 0
        while first < a.queries:
            if first == a.batch:
                started, done = time.perf_counter(), 0
            length = min(a.batch, a.queries - first)
            idx = torch.arange(first, first + length) % n
            pred, _ = classify(model, images.index_select(0, idx))
            correct += sum(int(p == l) for p, l in zip(pred, labels[idx].tolist()))
            first += length
            done += length
        rate = done / (time.perf_counter() - started)
        out = {"queries_per_s": rate, "accuracy": correct / a.queries}
        if a.predictions:
            classes = []
            for s in range(0, n, a.batch):
                classes += classify(model, images[s: s + a.batch])[0]
            with open(a.predictions, "w") as f:
                json.dump(classes, f)
    print(json.dumps(out))


def cmd_infer(a):
    images, _ = split("t10k")
    model = model_for(a.model, a.mode, a.weights)
    ms = []
    with torch.inference_mode():
        for i in range(a.count + 5):
            at = (i * a.batch) % (images.shape[0] - a.batch)
            t = time.perf_counter()
            classify(model, images[at: at + a.batch])
            if i >= 5:
                ms.append((time.perf_counter() - t) * 1000.0)
    ms.sort()
    pick = lambda p: ms[round((len(ms) - 1) * p)]
    print(json.dumps({"p50_ms": pick(0.5), "p99_ms": pick(0.99)}))


def cmd_train(a):
    images, labels = split("train")
    model = seeded(a.arch, 0).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(images.shape[0], generator=gen)
    started, n = None, 0
    for step in range(a.steps + 5):
        if step == 5:
            started, n = time.perf_counter(), 0
        at = (step * a.batch) % (images.shape[0] - a.batch)
        idx = perm[at: at + a.batch]
        x, y = prepare(images.index_select(0, idx)), labels.index_select(0, idx)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        n += a.batch
    print(json.dumps({"images_per_s": n / (time.perf_counter() - started)}))


def ddp_worker(rank, a, port, out):
    import torch.distributed as dist
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=a.workers)
    images, labels = split("train")
    model = torch.nn.parallel.DistributedDataParallel(seeded(a.arch, 0).train())
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
    per = a.batch // a.workers
    started, n = None, 0
    for step in range(a.steps + 5):
        if step == 5:
            dist.barrier()
            started, n = time.perf_counter(), 0
        at = (step * a.batch) % (images.shape[0] - a.batch) + rank * per
        idx = perm[at: at + per]
        x, y = prepare(images.index_select(0, idx)), labels.index_select(0, idx)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        n += per * a.workers
    dist.barrier()
    if rank == 0:
        out.put(n / (time.perf_counter() - started))
    dist.destroy_process_group()


def cmd_ddp(a):
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=ddp_worker, args=(r, a, port, out)) for r in range(a.workers)]
    for p in procs:
        p.start()
    rate = out.get()
    for p in procs:
        p.join()
    print(json.dumps({"images_per_s": rate}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("version")
    s = sub.add_parser("script")
    s.add_argument("arch", choices=ARCHS)
    s.add_argument("out")
    s.add_argument("--seed", type=int, default=0)
    for name in ("serve", "infer"):
        s = sub.add_parser(name)
        s.add_argument("model")
        s.add_argument("--mode", choices=["eager", "script", "frozen"], default="script")
        s.add_argument("--threads", type=int, default=2)
        s.add_argument("--batch", type=int, default=64)
        s.add_argument("--weights", help="an IDunno model file of ARCH whose weights to use")
        if name == "serve":
            s.add_argument("--queries", type=int, default=20000)
            s.add_argument("--predictions")
        else:
            s.add_argument("--count", type=int, default=200)
    s = sub.add_parser("train")
    s.add_argument("arch", choices=ARCHS)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--batch", type=int, default=128)
    s.add_argument("--steps", type=int, default=100)
    s = sub.add_parser("ddp")
    s.add_argument("arch", choices=ARCHS)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--batch", type=int, default=128)
    s.add_argument("--steps", type=int, default=100)
    a = p.parse_args()
    torch.set_num_threads(getattr(a, "threads", 1))
    torch.set_num_interop_threads(1)
    {"version": lambda a: print(json.dumps({"torch": torch.__version__})), "script": cmd_script, "serve": cmd_serve, "infer": cmd_infer, "train": cmd_train, "ddp": cmd_ddp}[a.cmd](a)


if __name__ == "__main__":
    main()
