"""Spark as a reader of weir's datasets, against DuckDB.

    sparktest.py compare --dataset DIR [--dataset DIR ...]

For each dataset directory (plain Parquet with Hive partitions, or a Delta table's files:
Spark, like DuckDB here, skips `_weir/` and `_delta_log/`), Spark (pyspark, local, on
loopback) and DuckDB read every Parquet file with its partition values. The two must see
the same columns, the same rows (nested values included) and the same partition values, and
Spark must see weir's timestamps as TIMESTAMP (instants in UTC), not INT96 or nanoseconds.
Prints one JSON line per dataset: its rows and Spark's column types (a dataset without files,
such as a windowed one whose windows are all open, as 0 rows).
"""

import argparse
import glob
import json
import os
import sys

from weirtest import duck, expect_equal


def spark_session():
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master("local[2]")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.session.timeZone", "UTC")
            # Partition values as written (strings), as DuckDB reads them here.
            .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
            .getOrCreate())


def canonical(rows):
    """Rows as comparable Python values, in one order whatever the engine's."""
    return sorted(rows, key=lambda r: json.dumps(r, default=str, sort_keys=True))


def compare(args):
    from pyspark.sql.types import TimestampType

    spark = spark_session()
    con = duck()
    for dataset in args.dataset:
        if not glob.glob(f"{dataset}/**/*.parquet", recursive=True):
            # A windowed dataset whose windows are all still open has no file yet.
            print(json.dumps({"dataset": os.path.basename(dataset), "rows": 0}))
            continue
        frame = spark.read.option("basePath", dataset).parquet(dataset)
        spark_types = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
        duck_rows = con.sql(
            f"SELECT * FROM read_parquet('{dataset}/**/*.parquet', hive_partitioning = true, "
            f"hive_types_autocast = false)").to_arrow_table()
        expect_equal(f"columns of {dataset}", sorted(spark_types), sorted(duck_rows.column_names))
        for field in frame.schema.fields:
            duck_type = str(duck_rows.schema.field(field.name).type)
            if duck_type.startswith("timestamp"):
                if not isinstance(field.dataType, TimestampType):
                    raise SystemExit(f"{dataset}: Spark reads `{field.name}` as {field.dataType}, "
                                     f"not TIMESTAMP ({duck_type} to DuckDB)")
        spark_rows = frame.toArrow().select(duck_rows.column_names).to_pylist()
        expect_equal(f"rows of {dataset}", canonical(spark_rows), canonical(duck_rows.to_pylist()))
        print(json.dumps({"dataset": os.path.basename(dataset), "rows": len(spark_rows),
                          "spark_types": spark_types}))
    spark.stop()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("compare")
    s.add_argument("--dataset", action="append", required=True)
    args = p.parse_args()
    {"compare": compare}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
