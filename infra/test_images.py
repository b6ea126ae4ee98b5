#!/usr/bin/env python3
"""Writes the first N Fashion-MNIST test images as PNG files (standard library only).

Usage: test_images.py <out_dir> [N]; prints each file with its true class.
"""
import gzip
import os
import struct
import sys
import zlib

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SRC = "/usr/share/datasets/fashion-mnist"


def png(width, height, gray):
    """A greyscale 8-bit PNG of `gray` (height rows of width bytes)."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    rows = b"".join(b"\x00" + gray[y * width:(y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def main():
    out, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
    os.makedirs(out, exist_ok=True)
    with gzip.open(f"{SRC}/t10k-images-idx3-ubyte.gz") as f:
        _, count, h, w = struct.unpack(">IIII", f.read(16))
        images = f.read(n * h * w)
    with gzip.open(f"{SRC}/t10k-labels-idx1-ubyte.gz") as f:
        f.read(8)
        labels = f.read(n)
    for i in range(min(n, count)):
        path = os.path.join(out, f"test{i}.png")
        with open(path, "wb") as f:
            f.write(png(w, h, images[i * h * w:(i + 1) * h * w]))
        print(f"{path}: {CLASSES[labels[i]]}")


if __name__ == "__main__":
    main()
