#!/usr/bin/env python3
"""Reads the sampler's outputs with pyarrow and DuckDB and checks them against the figures the
Rust test computed (rows, sums, cells per code). Called by `tests/integration/engines.rs` with
one argument, a JSON file listing the outputs; exits 1 naming every check that failed, 3 if a
package is missing. Needs `pip install pyarrow duckdb`."""

import json
import sys

try:
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.feather as feather
    import pyarrow.parquet as pq
except ImportError as error:
    print(f"missing Python package: {error.name} (pip install pyarrow duckdb)", file=sys.stderr)
    sys.exit(3)

failures = []


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, expected {want!r}")


def arrow_table(spec):
    path, fmt = spec["path"], spec["format"]
    if spec.get("partitioned"):
        return ds.dataset(path, format="parquet").to_table()
    if fmt == "parquet":
        return pq.read_table(path)
    if fmt == "arrow":
        return feather.read_table(path)
    if fmt == "arrow-stream":
        with pa.ipc.open_stream(path) as reader:
            return reader.read_all()
    if fmt == "csv":
        import pyarrow.csv as pacsv
        return pacsv.read_csv(path)
    raise ValueError(fmt)


def duck_source(spec):
    path, fmt = spec["path"], spec["format"]
    if spec.get("partitioned"):
        return f"read_parquet('{path}/*.parquet')"
    if fmt == "parquet":
        return f"read_parquet('{path}')"
    if fmt == "csv":
        return f"read_csv('{path}', header = true)"
    return None


def main():
    specs = json.load(open(sys.argv[1]))
    for spec in specs:
        name = spec["name"]
        con = duckdb.connect()
        table = arrow_table(spec)
        check(f"{name} pyarrow rows", table.num_rows, spec["rows"])
        check(f"{name} pyarrow columns", table.column_names, spec["columns"])
        if spec["format"] == "parquet":
            nullable = [f.name for f in table.schema if f.nullable and f.name != "label"]
            check(f"{name} nullable columns", nullable, [])
        # Parquet keeps the provenance in its footer's key-value metadata, Arrow IPC in the schema.
        if spec["format"] == "parquet" and not spec.get("partitioned"):
            meta = pq.read_metadata(spec["path"]).metadata or {}
        else:
            meta = table.schema.metadata or {}
        if spec.get("seed") is not None:
            check(f"{name} medgan.seed", meta.get(b"medgan.seed"), str(spec["seed"]).encode())
        source = duck_source(spec)
        if source is None:
            # DuckDB scans an Arrow table in memory as well as a file.
            con.register("arrow_input", table)
            source = "arrow_input"
        rows, id_sum = con.execute(f"SELECT count(*), sum(patient_id) FROM {source}").fetchone()
        check(f"{name} duckdb rows", rows, spec["rows"])
        check(f"{name} duckdb sum(patient_id)", int(id_sum or 0), spec["id_sum"])
        code, want = spec["code"], spec["code_cells"]
        if spec["layout"] == "wide":
            column = spec["code_column"].replace('"', '""')
            got = con.execute(f'SELECT count(*) FROM {source} WHERE "{column}"').fetchone()[0]
        elif spec["layout"] == "long":
            got = con.execute(f"SELECT count(*) FROM {source} WHERE code = ?", [code]).fetchone()[0]
            if "label" in spec["columns"]:
                label = con.execute(f"SELECT any_value(label) FROM {source} WHERE code = ?",
                                    [code]).fetchone()[0]
                check(f"{name} label of {code}", label, spec["label"])
        else:
            got = con.execute(f"SELECT count(*) FROM {source} WHERE list_contains(codes, ?)",
                              [code]).fetchone()[0]
            cells = con.execute(f"SELECT sum(len(codes)) FROM {source}").fetchone()[0]
            check(f"{name} duckdb cells", int(cells), spec["cells"])
        check(f"{name} duckdb patients with {code}", got, want)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"{len(specs)} outputs agree with pyarrow {pa.__version__} "
          f"and duckdb {duckdb.__version__}")


if __name__ == "__main__":
    main()
