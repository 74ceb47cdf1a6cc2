#!/usr/bin/env python3
"""Fans one sampling request out over Spark tasks and checks the result against one process.

Usage: spark_fanout.py SAMPLER WORKDIR [--rows N] [--shards K] [--seed S] [--model DIR]

A local Spark (local[2]) runs K tasks; task k runs `SAMPLER -n N --shard k/K -o
WORKDIR/dataset/part-0000k.parquet` (the sampler writes under a hidden temporary name and
renames, so Spark never reads a half-written part). The driver then writes `_SUCCESS`, reads the
folder back with `spark.read.parquet` and checks it holds exactly the rows of one
`SAMPLER -n N` run: same schema and count, every patient_id once, the same cells in every row.
The wide layout is written with `--spark-safe-names` and the renamed columns are checked against
the `medgan.column_codes` mapping in the footers (with pyarrow). `--wrong-seed-shard K` makes
task K sample another seed, to see the check fail.

Called by `tests/integration/spark.rs`; exits 1 naming every failed check, 3 if pyspark,
pyarrow or Java is missing (./scripts/setup.sh installs them).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

try:
    import pyarrow.parquet as pq
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
except ImportError as error:
    print(f"missing Python package: {error.name} (run ./scripts/setup.sh)", file=sys.stderr)
    sys.exit(3)

# What --spark-safe-names promises: lower case, letters, digits and `_`, no leading digit.
SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

failures = []


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, expected {want!r}")


def sampler_command(args, *extra):
    command = [args.sampler, "-n", str(args.rows), "--seed", str(args.seed), "--threads", "1",
               "--spark-safe-names", "-q", *extra]
    if args.model:
        command += ["--model", args.model]
    return command


def run_shard_task(args, dataset):
    """The function each Spark task runs: its shard of the request into its own part file."""
    def run(shard):
        part = os.path.join(dataset, f"part-{shard:05}.parquet")
        command = sampler_command(args, "--shard", f"{shard}/{args.shards}", "-o", part)
        if shard == args.wrong_seed_shard:
            command[command.index("--seed") + 1] = str(args.seed + 1)
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True)
        return shard, done.returncode, done.stderr.strip(), time.monotonic() - started
    return run


def check_footers(args, dataset, columns):
    """Each part's footer: its rows tile 0..N in shard order, and the renamed columns map back
    to the model's codes."""
    parts = sorted(name for name in os.listdir(dataset) if name.endswith(".parquet"))
    check("part files", len(parts), args.shards)
    if not parts:
        return {}
    expected_start = 0
    for name in parts:
        meta = pq.read_metadata(os.path.join(dataset, name)).metadata
        start, end = int(meta[b"medgan.row_start"]), int(meta[b"medgan.row_end"])
        check(f"{name} medgan.row_start", start, expected_start)
        expected_start = end
    check("rows covered by the parts", expected_start, args.rows)
    mapping = json.loads(meta[b"medgan.column_codes"])
    code_columns = columns[1:]
    check("columns named in medgan.column_codes", sorted(mapping), sorted(code_columns))
    unsafe = [c for c in columns if not SAFE_NAME.match(c)]
    check("columns Spark cannot name without back-ticks", unsafe, [])
    check("columns equal but for case", len({c.lower() for c in columns}), len(columns))
    return mapping


def differing_patients(fanned, reference):
    """Patients missing from either table or whose cells differ, as two hashes of each row's
    cells (64 + 32 bits) joined on patient_id. (exceptAll both ways over 900-odd columns took
    Spark 25-50 s on 2 cores; this takes a few.)"""
    cells = fanned.columns[1:]

    def hashed(table, prefix):
        return table.select("patient_id", F.xxhash64(*cells).alias(f"{prefix}64"),
                            F.hash(*cells).alias(f"{prefix}32"))
    joined = hashed(fanned, "f").join(hashed(reference, "r"), "patient_id", "full_outer")
    return joined.where("f64 IS NULL OR r64 IS NULL OR f64 != r64 OR f32 != r32")


def first_difference(fanned, reference, differing):
    """The first differing patient and the columns that differ, for the failure message."""
    patient = differing.agg(F.min("patient_id")).first()[0]
    mine = fanned.where(F.col("patient_id") == patient).collect()
    theirs = reference.where(F.col("patient_id") == patient).collect()
    if len(mine) != 1 or len(theirs) != 1:
        return f"patient {patient}: {len(mine)} rows in the dataset, {len(theirs)} in one run"
    columns = [c for c in fanned.columns if mine[0][c] != theirs[0][c]]
    return f"patient {patient} differs in {len(columns)} columns, first {columns[:5]}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sampler")
    parser.add_argument("workdir")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--model", help="bundle folder (default: the sampler's embedded model)")
    parser.add_argument("--wrong-seed-shard", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        print("Spark needs Java 17 or newer: no `java` on PATH and no $JAVA_HOME "
              "(run ./scripts/setup.sh)", file=sys.stderr)
        sys.exit(3)

    dataset = os.path.join(args.workdir, "dataset")
    single = os.path.join(args.workdir, "single.parquet")
    os.makedirs(dataset)
    started = time.monotonic()
    subprocess.run(sampler_command(args, "-o", single), check=True)
    single_seconds = time.monotonic() - started

    # The tasks run the same interpreter as the driver, which has pyspark; a local run needs no
    # network address (Spark warns when the host name resolves to a loopback one).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (SparkSession.builder.master("local[2]").appName("medgan-fanout")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", "1g")
             .config("spark.sql.shuffle.partitions", "4")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        started = time.monotonic()
        shards = spark.sparkContext.parallelize(range(args.shards), args.shards)
        results = shards.map(run_shard_task(args, dataset)).collect()
        fanout_seconds = time.monotonic() - started
        for shard, code, stderr, _ in results:
            check(f"shard {shard}/{args.shards} exit status ({stderr})", code, 0)
        if failures:
            raise SystemExit(report())
        # Every task succeeded: mark the dataset complete, as Spark's own writers do.
        open(os.path.join(dataset, "_SUCCESS"), "w").close()

        fanned = spark.read.parquet(dataset)
        reference = spark.read.parquet(single)
        check("schema of the fanned-out dataset", fanned.schema, reference.schema)
        mapping = check_footers(args, dataset, fanned.columns)
        dotted = sum("." in code for code in mapping.values())
        ids = fanned.agg(F.count("*"), F.countDistinct("patient_id"), F.min("patient_id"),
                         F.max("patient_id")).first()
        check("rows, distinct, first and last patient_id", tuple(ids),
              (args.rows, args.rows, 0, args.rows - 1))
        check("rows of one run", reference.count(), args.rows)
        differing = differing_patients(fanned, reference)
        check("patients missing from either, or differing", differing.count(), 0)
        if failures:
            failures.append(first_difference(fanned, reference, differing))
        version, width = spark.version, len(fanned.columns)
    finally:
        spark.stop()
    if failures:
        raise SystemExit(report())
    print(f"spark {version}: {args.shards} tasks wrote {args.rows} rows x {width} "
          f"columns ({dotted} codes with dots renamed) in {fanout_seconds:.1f} s, one process "
          f"in {single_seconds:.1f} s; the dataset equals one run")


def report():
    print("\n".join(failures), file=sys.stderr)
    return 1


if __name__ == "__main__":
    main()
