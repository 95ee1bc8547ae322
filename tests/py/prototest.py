"""Confluent-framed Protobuf for weir's end-to-end tests, produced and read back independently.

Clicks are produced with confluent-kafka's own ProtobufSerializer, which registers each schema
version in the registry (examples/protobuf/click-v1.proto, then click-v2.proto mid-stream),
and with malformed messages of every kind weir must dead-letter. The .proto files are compiled
when this runs, with grpcio-tools' protoc, each version's classes in a descriptor pool of its
own (both define `shop.Click`). What weir wrote is read back with DuckDB and compared field by
field with what was produced.

    prototest.py produce --bootstrap HOST:PORT --topic T --registry URL --user U
                         --password-file F --expected FILE [--first N] [--versions 1,2]
    prototest.py register --topic T --registry URL --user U --password-file F [--versions 1,2]
    prototest.py verify --expected FILE --out DIR
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import types

from framedtest import Deliveries, client_of, command_line, files_lacking, verify_dead_letters
from weirtest import duck, expect_equal, records

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "protobuf")

# A `shop.Click` no reader of clicks can take: its `id` is an int64.
CLASHING = """syntax = "proto3";
package shop;
message Click {
  int64 id = 1;
}
"""

# The columns weir writes for a click (reader: version 2), in order, as DuckDB types them.
COLUMNS = [
    ("id", "VARCHAR"),
    ("ts", "TIMESTAMP WITH TIME ZONE"),
    ("user", 'STRUCT(id BIGINT, "name" VARCHAR)'),
    ("kind", "VARCHAR"),
    ("quantity", "BIGINT"),
    ("score", "DOUBLE"),
    ("ratio", "FLOAT"),
    ("flagged", "BOOLEAN"),
    ("big", "UBIGINT"),
    ("tags", "VARCHAR[]"),
    ("attrs", "MAP(VARCHAR, VARCHAR)"),
    ("raw", "BLOB"),
    ("items", 'STRUCT(sku VARCHAR, count UINTEGER, sizes INTEGER[])[]'),
    ("note", "VARCHAR"),
    ("amount_cents", "BIGINT"),
    ("seen_at", "TIMESTAMP WITH TIME ZONE"),
    ("web", "VARCHAR"),
    ("app", "INTEGER"),
    ("referrer", "VARCHAR"),
]


def schema_text(version):
    with open(os.path.join(EXAMPLE, f"click-v{version}.proto")) as f:
        return f.read()


def compile_proto(directory, name):
    """The messages of the .proto file `name` in `directory`, compiled with protoc and built in
    a descriptor pool of their own: a namespace of message classes by their short names."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "descriptors.pb")
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{directory}", "--include_imports",
                        f"--descriptor_set_out={out}", os.path.join(directory, name)], check=True)
        with open(out, "rb") as f:
            files = descriptor_pb2.FileDescriptorSet.FromString(f.read()).file
    pool = descriptor_pool.DescriptorPool()
    for file in files:  # imports come before the files importing them
        pool.Add(file)
    messages = pool.FindFileByName(name).message_types_by_name
    return types.SimpleNamespace(**{n: message_factory.GetMessageClass(d) for n, d in messages.items()})


def click(n, version, Click):
    """The n-th click as a message of version `version`, and the row weir must write for it."""
    m = Click()
    key = f"c-{version}-{n:04d}"
    if n % 11 != 5:  # else left out: proto3 reads it as ""
        m.id = key
    seconds = 1_796_634_000 + 37 * n  # from 2026-12-07T09:00:00Z
    m.ts.seconds, m.ts.nanos = seconds, (n * 7_654_321) % 1_000_000_000
    if n % 7 != 3:
        m.user.id = 10_000 + n % 13
        if n % 5 == 1:
            m.user.name.SetInParent()  # present, as ""
        elif n % 5 != 0:
            m.user.name.value = f"user-{n % 13}"
    # 0 is KIND_UNSPECIFIED, never on the wire; 9 is no value of the enum (proto3's are open).
    m.kind = 9 if n % 10 == 9 else n % 4
    m.quantity = n % 9 - 4 if version == 1 else (n % 9 - 4) * 3_000_000_007 + n
    m.score = [0.5, 1.25, -2.0, 1e-3, 0.1][n % 5]
    m.ratio = [0.1, 1 / 3, -2.7, 0.0, 16_777_217.0][n % 5]  # all but 0 inexact in a float
    m.flagged = n % 2 == 1
    m.big = [0, n, (1 << 63) + n * 1_000_000_007, (1 << 64) - 1 - n][n % 4]
    m.tags.extend(f"t{j}" for j in range(n % 4))
    if n % 6 != 0:
        m.attrs.update({"page": f"/p/{n % 17}", "ab": "b" if n % 2 else "a"})
    m.raw = bytes([n % 256, 0, 255]) * (n % 3)
    for j in range(n % 4):
        m.items.add(sku=f"sku-{n % 17}-{j}", count=[0, 1, 4_000_000_000 + n][(n + j) % 3],
                    sizes=[(k - 1) * (n + 1) for k in range(j)])
    if n % 3 == 1:
        m.note = ""
    elif n % 3 == 2:
        m.note = f"note {n}"
    if n % 5 != 2:
        m.amount_cents.SetInParent()  # present, 0 too
        m.amount_cents.value = {0: 0, 1: -101 * n - 1, 3: 137 * n, 4: n}[n % 5]
    if n % 4 != 0:
        m.seen_at.seconds, m.seen_at.nanos = seconds + n, (n * 123_457) % 1_000_000_000
    source = n % 6
    if source == 0:
        m.web = f"https://shop.example/{n % 7}"
    elif source == 1:
        m.web = ""
    elif source in (2, 3):
        m.app = n % 3  # 0 too: set, so present
    if version == 2 and n % 3 != 0:
        m.referrer = f"https://ref.example/{n % 5}"
    has = m.HasField
    row = {
        "id": m.id,
        "ts": m.ts.seconds * 1000 + m.ts.nanos // 1_000_000,
        "user": {"id": m.user.id, "name": m.user.name.value if m.user.HasField("name") else None}
        if has("user") else None,
        "kind": Click.Kind.Name(m.kind) if m.kind in Click.Kind.values() else str(m.kind),
        "quantity": m.quantity,
        "score": m.score,
        "ratio": struct.unpack("f", struct.pack("f", m.ratio))[0],
        "flagged": m.flagged,
        "big": m.big,
        "tags": list(m.tags),
        "attr_keys": sorted(m.attrs),
        "attr_values": [m.attrs[k] for k in sorted(m.attrs)],
        "raw": m.raw.hex(),
        "items": [{"sku": i.sku, "count": i.count, "sizes": list(i.sizes)} for i in m.items],
        "note": m.note if has("note") else None,
        "amount_cents": m.amount_cents.value if has("amount_cents") else None,
        "seen_at": m.seen_at.seconds * 1_000_000 + m.seen_at.nanos // 1000 if has("seen_at") else None,
        "web": m.web if m.WhichOneof("source") == "web" else None,
        "app": m.app if m.WhichOneof("source") == "app" else None,
        # Version 1 had no referrer.
        "referrer": m.referrer if version == 2 and has("referrer") else None,
    }
    return key, m, row


def varint(data, i):
    """The unsigned varint at data[i:] and the index after it."""
    value = shift = 0
    while True:
        value |= (data[i] & 0x7F) << shift
        shift += 7
        i += 1
        if data[i - 1] < 0x80:
            return value, i


def framing(message):
    """The Confluent framing of a serialized message: the magic byte, the 4-byte schema id and
    the message indexes (zigzag varints: their count, then each; [0] alone is a single 0)."""
    count, i = varint(message, 5)
    for _ in range((count >> 1) ^ -(count & 1)):
        _, i = varint(message, i)
    return message[:i]


def produce(args):
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = client_of(args)
    context = SerializationContext(args.topic, MessageField.VALUE)
    out = Deliveries(args)

    versions = [int(v) for v in args.versions.split(",")]
    for version in versions:
        Click = compile_proto(EXAMPLE, f"click-v{version}.proto").Click
        serializer = ProtobufSerializer(Click, client)
        for n in range(args.first, args.first + args.count):
            key, message, row = click(n, version, Click)
            out.send(key.encode(), serializer(message, context), row)
        out.flush()
    if args.malformed:
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "click-clash.proto"), "w") as f:
                f.write(CLASHING)
            Clash = compile_proto(tmp, "click-clash.proto").Click
        incompatible = ProtobufSerializer(Clash, client)(Clash(id=7), SerializationContext("other", MessageField.VALUE))
        Click = compile_proto(EXAMPLE, f"click-v{versions[-1]}.proto").Click
        good = ProtobufSerializer(Click, client)(click(0, versions[-1], Click)[1], context)
        prefix = framing(good)
        body = good[len(prefix):]
        bad = [
            (b'{"id": "json"}', "not_confluent_framed"),
            (b"\x00\x00\x01", "not_confluent_framed"),
            # The magic byte and the schema id, and no message indexes.
            (prefix[:5], "not_confluent_framed"),
            (b"\x00" + (9999).to_bytes(4, "big") + good[5:], "unknown_schema_id"),
            # Field 1 claims 5 bytes and has 2.
            (prefix + b"\x0a\x05ab", "protobuf_decode_error"),
            # Field 1, the string `id`, as a varint.
            (prefix + b"\x08\x01", "protobuf_decode_error"),
            # `id` not UTF-8.
            (prefix + b"\x0a\x02\xff\xfe", "protobuf_decode_error"),
            # Message indexes [7]: the schema has no such message.
            (prefix[:5] + b"\x02\x0e" + body, "protobuf_decode_error"),
            (incompatible, "incompatible_schema"),
            (b"", "empty_message"),
        ]
        for i, (value, reason) in enumerate(bad):
            out.send(f"bad-{i}".encode(), value, reason)
    out.write_expected(args.expected)


def register(args):
    """Registers the click schema versions under `<topic>-value`, as .proto source text without
    references (a registry knows the well-known imports), without producing."""
    from confluent_kafka.schema_registry import Schema

    client = client_of(args)
    for version in args.versions.split(","):
        sid = client.register_schema(f"{args.topic}-value", Schema(schema_text(int(version)), "PROTOBUF"))
        print(f"version {version}: schema id {sid}")


def verify(args):
    with open(args.expected) as f:
        expected = json.load(f)
    con = duck()
    got = records(con, f"""
        SELECT id, epoch_ms(ts) AS ts, "user", kind, quantity, score, ratio, flagged, big, tags,
               list_sort(map_keys(attrs)) AS attr_keys,
               list_transform(list_sort(map_keys(attrs)), lambda k: attrs[k]) AS attr_values,
               lower(hex(raw)) AS raw, items, note, amount_cents, epoch_us(seen_at) AS seen_at,
               web, app, referrer, kafka_partition, kafka_offset,
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
    columns = {name: kind for name, kind in types.items() if name in dict(COLUMNS)}
    if columns != dict(COLUMNS):
        raise SystemExit(f"the click columns are not as expected:\n  got  {columns}\n  want {COLUMNS}")
    dead = verify_dead_letters(con, args.out, expected, ("magic byte", "message index"))
    print(json.dumps({"rows": len(got), "dead_letters": dead, "types": types,
                      "files_lacking": files_lacking(con, f"{args.out}/clicks", types)}))


def verify_file(args):
    """The columns of tests/fixtures/protobuf-file (a schema file cutting the clicks down),
    read back with DuckDB: the file's fields in its types, the rest left out."""
    with open(args.expected) as f:
        expected = json.load(f)
    con = duck()
    got = records(con, f"""
        SELECT id, epoch_ms(ts) AS ts, "user".id AS user_id, quantity, kind,
               list_transform(items, lambda i: i.sku) AS skus, referrer
        FROM read_parquet('{args.out}/clicks/**/*.parquet') ORDER BY id, ts, quantity""")
    # Clicks without an id read as "": the time and the quantity (per version) tell them apart.
    want = [{"id": r["id"], "ts": r["ts"], "user_id": r["user"]["id"] if r["user"] else None,
             "quantity": float(r["quantity"]), "kind": r["kind"],
             "skus": [i["sku"] for i in r["items"]], "referrer": r["referrer"]}
            for r in sorted(expected["rows"], key=lambda r: (r["id"], r["ts"], r["quantity"]))]
    expect_equal("clicks as the schema file has them", got, want)
    columns = [name for name, *_ in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet('{args.out}/clicks/**/*.parquet')").fetchall()]
    print(json.dumps({"rows": len(got), "columns": columns}))


if __name__ == "__main__":
    command_line({"produce": produce, "register": register, "verify": verify,
                  "verify-file": verify_file})
