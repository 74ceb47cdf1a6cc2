#!/usr/bin/env python3
"""Writes an untrained bundle of medGAN's shape, for benchmarks when no trained model is at hand.

Noise 128, a generator of three 128-wide residual blocks (linear + ReLU/Tanh + skip), a decoder
128 -> CODES with a sigmoid, biases spreading prevalences from about 0.5% to 20% (a realistic
EHR density of a few percent), and ICD-9-like code names (`250.83`, `V45.81`, `E888`). The
network is random: the records mean nothing, but the work per row (graph, draws, encoding) is
the real model's. Needs numpy and onnx.

    python3 sampler/bench/make_bench_bundle.py OUT_DIR [--codes 915] [--seed 5]
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
NOISE = 128
BLOCKS = 3


def codes(count, rng):
    names, seen = [], set()
    while len(names) < count:
        kind = rng.random()
        if kind < 0.8:
            code = f"{rng.integers(1, 1000):03d}"
            if rng.random() < 0.5:
                code += f".{rng.integers(0, 100)}"
        elif kind < 0.95:
            code = f"V{rng.integers(1, 92):02d}.{rng.integers(0, 10)}"
        else:
            code = f"E{rng.integers(800, 1000)}"
        if code not in seen:
            seen.add(code)
            names.append(code)
    return names


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--codes", type=int, default=915)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    features = codes(args.codes, rng)
    inits, nodes, previous = [], [], "noise"
    for block in range(BLOCKS):
        weight = rng.normal(0, 0.8 / np.sqrt(NOISE), (NOISE, NOISE)).astype(np.float32)
        bias = rng.normal(0, 0.05, NOISE).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"g{block}.w"),
                  numpy_helper.from_array(bias, f"g{block}.b")]
        activation = "Relu" if block < BLOCKS - 1 else "Tanh"
        nodes += [
            helper.make_node("Gemm", [previous, f"g{block}.w", f"g{block}.b"], [f"g{block}.l"],
                             transB=1),
            helper.make_node(activation, [f"g{block}.l"], [f"g{block}.a"]),
            helper.make_node("Add", [f"g{block}.a", previous], [f"g{block}.o"]),
        ]
        previous = f"g{block}.o"
    decoder = rng.normal(0, 0.4 / np.sqrt(NOISE), (args.codes, NOISE)).astype(np.float32)
    prevalence = np.geomspace(0.005, 0.2, args.codes)
    logit_bias = np.log(prevalence / (1 - prevalence))
    inits += [numpy_helper.from_array(decoder, "d.w"),
              numpy_helper.from_array(logit_bias.astype(np.float32), "d.b")]
    nodes += [helper.make_node("Gemm", [previous, "d.w", "d.b"], ["d.l"], transB=1),
              helper.make_node("Sigmoid", ["d.l"], ["records"])]

    def info(name, width):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", width])

    graph = helper.make_graph(nodes, "bench_sampler", [info("noise", NOISE)],
                              [info("records", args.codes)], initializer=inits)
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="make_bench_bundle.py")
    built.ir_version = 8
    onnx.checker.check_model(built)
    graph_bytes = built.SerializeToString(deterministic=True)
    args.out.mkdir(parents=True, exist_ok=True)
    # The manifest contract wants three graphs; the benchmark only runs the fused one, so the
    # generator and decoder entries name the same file with their own shapes.
    (args.out / "sampler.onnx").write_bytes(graph_bytes)

    def entry(input_name, input_width, output_name, output_width):
        return {"file": "sampler.onnx", "opset": OPSET,
                "input": {"name": input_name, "shape": ["batch", input_width]},
                "output": {"name": output_name, "shape": ["batch", output_width]}}

    manifest = {
        "format_version": 1,
        "producer": {"name": "make_bench_bundle.py", "version": "1"},
        "data_type": "binary",
        "noise_dim": NOISE,
        "features": features,
        "graphs": {"sampler": entry("noise", NOISE, "records", args.codes),
                   "generator": entry("noise", NOISE, "embedding", NOISE),
                   "decoder": entry("embedding", NOISE, "records", args.codes)},
        "files": [{"path": "sampler.onnx", "bytes": len(graph_bytes),
                   "sha256": hashlib.sha256(graph_bytes).hexdigest()}],
        "training_data": {"patients": 0, "codes": args.codes, "density": 0.0,
                          "source": "untrained benchmark bundle"},
        "training_run": {"autoencoder_epochs": 0, "gan_epochs": 0, "seed": args.seed,
                         "config": {"benchmark": True}},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
