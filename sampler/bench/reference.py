#!/usr/bin/env python3
"""The Python baseline for `bench/run.sh`: the same bundle and threads through onnxruntime, numpy
Bernoulli draws and pyarrow's ParquetWriter (zstd level 3, 100,000-row row groups), the way a
data team would write it: the wide layout (one Boolean column per code) or the long one
(`patient_id`, `code` for each code present, found with `np.nonzero`). Prints one JSON object
per stage, like `--example bench -- --json`; run one stage per process so that each peak RSS is
that stage's own.

    python3 sampler/bench/reference.py --model DIR -n 1000000 --threads 2 --stage pipeline
"""

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("-n", "--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--row-group-size", type=int, default=100_000)
    parser.add_argument("--stage", choices=["inference", "pipeline", "long"], default="pipeline")
    args = parser.parse_args()

    manifest = json.loads((args.model / "manifest.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(args.model / manifest["graphs"]["sampler"]["file"]),
                                   options, providers=["CPUExecutionProvider"])
    noise_dim, codes = manifest["noise_dim"], manifest["features"]
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    written = 0
    if args.stage == "inference":
        noise = rng.standard_normal((args.batch_size, noise_dim), dtype=np.float32)
        done = 0
        while done < args.rows:
            rows = min(args.batch_size, args.rows - done)
            session.run(["records"], {"noise": noise[:rows]})
            done += rows
    elif args.stage == "long":
        schema = pa.schema([pa.field("patient_id", pa.int64(), nullable=False),
                            pa.field("code", pa.string(), nullable=False)])
        vocabulary = pa.array(codes, pa.string())
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "reference.parquet"
            with pq.ParquetWriter(path, schema, compression="zstd", compression_level=3) as out:
                pending, pending_rows, done = [], 0, 0
                while done < args.rows:
                    rows = min(args.batch_size, args.rows - done)
                    noise = rng.standard_normal((rows, noise_dim), dtype=np.float32)
                    p = session.run(["records"], {"noise": noise})[0]
                    present = rng.random(p.shape, dtype=np.float32) < p
                    patient, code = np.nonzero(present)
                    table = pa.Table.from_arrays(
                        [pa.array(patient.astype(np.int64) + done), vocabulary.take(code)],
                        schema=schema)
                    pending.append(table)
                    pending_rows += table.num_rows
                    done += rows
                    if pending_rows >= args.row_group_size or done == args.rows:
                        out.write_table(pa.concat_tables(pending),
                                        row_group_size=args.row_group_size)
                        pending, pending_rows = [], 0
            written = path.stat().st_size
    else:
        schema = pa.schema([pa.field("patient_id", pa.int64(), nullable=False)]
                           + [pa.field(code, pa.bool_(), nullable=False) for code in codes])
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "reference.parquet"
            with pq.ParquetWriter(path, schema, compression="zstd", compression_level=3) as out:
                pending, pending_rows, done = [], 0, 0
                while done < args.rows:
                    rows = min(args.batch_size, args.rows - done)
                    noise = rng.standard_normal((rows, noise_dim), dtype=np.float32)
                    p = session.run(["records"], {"noise": noise})[0]
                    present = rng.random(p.shape, dtype=np.float32) < p
                    ids = pa.array(np.arange(done, done + rows, dtype=np.int64))
                    columns = [ids] + [pa.array(present[:, j]) for j in range(len(codes))]
                    pending.append(pa.Table.from_arrays(columns, schema=schema))
                    pending_rows += rows
                    done += rows
                    if pending_rows >= args.row_group_size or done == args.rows:
                        out.write_table(pa.concat_tables(pending),
                                        row_group_size=args.row_group_size)
                        pending, pending_rows = [], 0
            written = path.stat().st_size
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    stage = {"inference": "inference", "pipeline": "wide-parquet-zstd:3",
             "long": "long-parquet-zstd:3"}[args.stage]
    print(json.dumps({"impl": "python", "stage": stage, "rows": args.rows, "seconds": seconds,
                      "rows_per_s": args.rows / seconds, "bytes": written,
                      "peak_rss_mib": peak, "threads": args.threads,
                      "batch_size": args.batch_size, "codes": len(codes)}))


if __name__ == "__main__":
    main()
