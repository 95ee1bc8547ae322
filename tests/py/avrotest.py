"""Confluent-framed Avro for weir's end-to-end tests, produced and read back independently.

Clicks are produced with confluent-kafka's own AvroSerializer, which registers each schema
version in the registry (examples/avro/click-v1.avsc, then click-v2.avsc mid-stream), and
with malformed messages of every kind weir must dead-letter. What weir wrote is read back
with DuckDB and compared field by field with what was produced.

    avrotest.py produce --bootstrap HOST:PORT --topic T --registry URL --user U
                        --password-file F --expected FILE [--first N] [--versions 1,2]
    avrotest.py register --topic T --registry URL --user U --password-file F [--versions 1,2]
    avrotest.py verify --expected FILE --out DIR
"""

import datetime as dt
import decimal
import json
import os
import struct
import uuid

from framedtest import Deliveries, client_of, command_line, files_lacking, verify_dead_letters
from weirtest import duck, expect_equal, records

UTC = dt.timezone.utc
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "avro")


def schema_text(version):
    with open(os.path.join(EXAMPLE, f"click-v{version}.avsc")) as f:
        return f.read()


def click(n, version):
    """The n-th click as the serializer takes it, and the row weir must write for it."""
    base = dt.datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)
    ts = base + dt.timedelta(seconds=37 * n, milliseconds=n % 1000)
    seen = None if n % 4 == 0 else ts + dt.timedelta(microseconds=123 + n)
    value = {
        "id": f"c-{version}-{n:04d}",
        "ts": ts,
        "user": {"id": 10_000 + n % 13, "name": None if n % 5 == 0 else f"user-{n % 13}"},
        "kind": ["VIEW", "CART", "BUY"][n % 3],
        "session": uuid.UUID(int=(n * 0x9E3779B97F4A7C15) % (1 << 128)),
        "amount": decimal.Decimal(n * 137 % 100_000 - 50_000) / 100,
        "quantity": n % 9 if version == 1 else 3_000_000_000 + n,
        "score": [0.5, 1.25, -2.0, 1e-3][n % 4],
        "day": (ts - dt.timedelta(days=n % 3)).date(),
        "seen_at": seen,
        "tags": [f"t{j}" for j in range(n % 4)],
        "attrs": {} if n % 6 == 0 else {"page": f"/p/{n % 17}", "ab": "b" if n % 2 else "a"},
        "raw": bytes([n % 256, 0, 255]) * (n % 3),
    }
    if version == 2:
        value["referrer"] = None if n % 3 == 0 else f"https://ref.example/{n % 5}"
    row = {
        "id": value["id"],
        "ts": int(ts.timestamp() * 1000),
        "user_id": value["user"]["id"],
        "user_name": value["user"]["name"],
        "kind": value["kind"],
        "session": str(value["session"]),
        "amount": str(value["amount"].quantize(decimal.Decimal("0.01"))),
        "quantity": value["quantity"],
        "score": struct.unpack("f", struct.pack("f", value["score"]))[0],
        "day": value["day"].isoformat(),
        "seen_at": None if seen is None else int(seen.timestamp()) * 1_000_000 + seen.microsecond,
        "tags": value["tags"],
        "attr_keys": sorted(value["attrs"]),
        "attr_values": [value["attrs"][k] for k in sorted(value["attrs"])],
        "raw": value["raw"].hex(),
        # Version 1 had no referrer: the reader schema's default.
        "referrer": value.get("referrer"),
    }
    return value, row


def produce(args):
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = client_of(args)
    context = SerializationContext(args.topic, MessageField.VALUE)
    out = Deliveries(args)

    versions = [int(v) for v in args.versions.split(",")]
    for version in versions:
        serializer = AvroSerializer(client, schema_text(version))
        for n in range(args.first, args.first + args.count):
            value, row = click(n, version)
            out.send(value["id"].encode(), serializer(value, context), row)
        out.flush()
    if args.malformed:
        # A schema no reader of clicks can resolve: `id` is a long.
        clashing = json.dumps({"type": "record", "name": "Click", "namespace": "shop",
                               "fields": [{"name": "id", "type": "long"}]})
        clash = AvroSerializer(client, clashing)
        incompatible = clash({"id": 7}, SerializationContext("other", MessageField.VALUE))
        good = AvroSerializer(client, schema_text(versions[-1]))(click(0, versions[-1])[0], context)
        bad = [
            (b'{"id": "json"}', "not_confluent_framed"),
            (b"\x00\x00\x01", "not_confluent_framed"),
            (b"\x00" + (9999).to_bytes(4, "big") + good[5:], "unknown_schema_id"),
            (good[: len(good) // 2], "avro_decode_error"),
            (good + b"\x07\x07", "avro_decode_error"),
            (incompatible, "incompatible_schema"),
            (b"", "empty_message"),
        ]
        for i, (value, reason) in enumerate(bad):
            out.send(f"bad-{i}".encode(), value, reason)
    out.write_expected(args.expected)


def register(args):
    """Registers the click schema versions under `<topic>-value` without producing."""
    from confluent_kafka.schema_registry import Schema

    client = client_of(args)
    for version in args.versions.split(","):
        sid = client.register_schema(f"{args.topic}-value", Schema(schema_text(int(version)), "AVRO"))
        print(f"version {version}: schema id {sid}")


def verify(args):
    with open(args.expected) as f:
        expected = json.load(f)
    con = duck()
    got = records(con, f"""
        SELECT id, epoch_ms(ts) AS ts, "user".id AS user_id, "user".name AS user_name, kind, session,
               amount::VARCHAR AS amount, quantity, score, day::VARCHAR AS day,
               epoch_us(seen_at) AS seen_at, tags,
               list_sort(map_keys(attrs)) AS attr_keys,
               list_transform(list_sort(map_keys(attrs)), lambda k: attrs[k]) AS attr_values,
               lower(hex(raw)) AS raw, referrer, kafka_partition, kafka_offset,
               strftime(ts, '%Y-%m-%d') = dt AND strftime(ts, '%H') = hour AS in_its_hour
        FROM read_parquet('{args.out}/clicks/**/*.parquet', hive_partitioning = true,
                          hive_types_autocast = false, union_by_name = true)
        ORDER BY kafka_partition, kafka_offset""")
    for row in got:
        if not row.pop("in_its_hour"):
            raise SystemExit(f"row in the wrong hour: {row}")
    want = sorted(expected["rows"], key=lambda r: (r["kafka_partition"], r["kafka_offset"]))
    expect_equal("clicks", got, want)
    types = {name: kind for name, kind, *_ in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet('{args.out}/clicks/**/*.parquet', "
        f"union_by_name = true)").fetchall()}
    dead = verify_dead_letters(con, args.out, expected, ("magic byte",))
    print(json.dumps({"rows": len(got), "dead_letters": dead, "types": types,
                      "files_lacking": files_lacking(con, f"{args.out}/clicks", types)}))


def verify_file(args):
    """The columns of tests/fixtures/avro-file (a schema file cutting the clicks down), read
    back with DuckDB: the file's fields in its types, the rest left out."""
    with open(args.expected) as f:
        expected = json.load(f)
    con = duck()
    got = records(con, f"""
        SELECT id, epoch_ms(ts) AS ts, "user".id AS user_id, amount, quantity, referrer
        FROM read_parquet('{args.out}/clicks/**/*.parquet') ORDER BY id""")
    want = [{"id": r["id"], "ts": r["ts"], "user_id": r["user_id"], "amount": float(r["amount"]),
             "quantity": r["quantity"], "referrer": r["referrer"]}
            for r in sorted(expected["rows"], key=lambda r: r["id"])]
    expect_equal("clicks as the schema file has them", got, want)
    columns = [name for name, *_ in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet('{args.out}/clicks/**/*.parquet')").fetchall()]
    print(json.dumps({"rows": len(got), "columns": columns}))


if __name__ == "__main__":
    command_line({"produce": produce, "register": register, "verify": verify,
                  "verify-file": verify_file})
