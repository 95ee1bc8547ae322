"""What avrotest.py and prototest.py share: the registry client, producing clicks and
malformed messages while recording where each landed, the expected-rows file, the dead-letter
check, and their command line."""

import argparse
import glob
import json
import os

from weirtest import expect_equal, make_topic


def client_of(args):
    """The schema-registry client of `--registry`, as `--user` with `--password-file`."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    with open(args.password_file) as f:
        password = f.read().strip()
    return SchemaRegistryClient({"url": args.registry, "basic.auth.user.info": f"{args.user}:{password}"})


class Deliveries:
    """A producer to `--topic` (created with `--partitions` if given) that remembers where
    each message landed and what weir must make of it: a row (a dict) or a dead letter (its
    reason)."""

    def __init__(self, args):
        from confluent_kafka import Producer

        conf = {"bootstrap.servers": args.bootstrap}
        if args.partitions:
            make_topic(conf, args.topic, args.partitions)
        self.topic = args.topic
        self.producer = Producer({**conf, "acks": "all", "linger.ms": 5})
        self.delivered, self.failures = [], []

    def send(self, key, value, expected):
        def on_delivery(err, msg):
            if err is not None:
                self.failures.append(str(err))
            else:
                self.delivered.append((msg.partition(), msg.offset(), expected, value))
        self.producer.produce(self.topic, key=key, value=value, on_delivery=on_delivery)

    def flush(self):
        self.producer.flush(30)

    def write_expected(self, path):
        """Appends what was delivered to the expected rows and dead letters in `path`."""
        self.flush()
        if self.failures:
            raise SystemExit(f"produce failed: {self.failures}")
        rows, dead = [], []
        for partition, offset, expected, value in self.delivered:
            if isinstance(expected, dict):
                rows.append(dict(expected, kafka_partition=partition, kafka_offset=offset))
            else:
                dead.append({"partition": partition, "offset": offset, "reason": expected,
                             "payload": value.hex()})
        previous = {"rows": [], "dead_letters": []}
        if os.path.exists(path):
            with open(path) as f:
                previous = json.load(f)
        with open(path, "w") as f:
            json.dump({"rows": previous["rows"] + rows, "dead_letters": previous["dead_letters"] + dead}, f)
        print(f"produced {len(rows)} clicks and {len(dead)} malformed messages")


def verify_dead_letters(con, out, expected, framing_words):
    """The dead letters under `out` against `expected`'s, exactly; each one's detail must name
    its schema id or, failing that, one of `framing_words`. Returns how many there are."""
    dead = []
    if glob.glob(f"{out}/dead_letters/**/*.parquet", recursive=True):
        dead = con.execute(
            f"SELECT partition, \"offset\", reason, payload, detail "
            f"FROM read_parquet('{out}/dead_letters/**/*.parquet') ORDER BY partition, \"offset\"").fetchall()
    got = [{"partition": p, "offset": o, "reason": r, "payload": bytes(v or b"").hex()} for p, o, r, v, _ in dead]
    want = sorted(expected["dead_letters"], key=lambda d: (d["partition"], d["offset"]))
    expect_equal("dead letters", got, want)
    for _, _, reason, _, detail in dead:
        if reason != "empty_message" and not any(w in detail for w in ("schema id", *framing_words)):
            raise SystemExit(f"a {reason} dead letter says neither its schema nor its framing problem: {detail}")
    return len(got)


def files_lacking(con, dataset, columns):
    """How many of the dataset's files lack each of `columns` (those that some file lacks;
    the partition columns aside)."""
    lacking = {}
    for path in sorted(glob.glob(f"{dataset}/**/*.parquet", recursive=True)):
        present = {name for name, *_ in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{path}', hive_partitioning = false)").fetchall()}
        for column in columns:
            if column not in present and column not in ("dt", "hour"):
                lacking[column] = lacking.get(column, 0) + 1
    return lacking


def command_line(commands):
    """Parses the command line of a codec's tool, whose `commands` (name to function) include
    produce, register and verify, and runs the one asked for."""
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("produce")
    s.add_argument("--bootstrap", required=True)
    registry_arguments(s)
    s.add_argument("--partitions", type=int, help="create the topic with this many partitions")
    s.add_argument("--expected", required=True, help="appended to if it exists")
    s.add_argument("--versions", default="1,2", help="schema versions to produce, in turn")
    s.add_argument("--first", type=int, default=0)
    s.add_argument("--count", type=int, default=40, help="clicks per version")
    s.add_argument("--malformed", action="store_true", help="also produce one message of each bad kind")
    s = sub.add_parser("register")
    registry_arguments(s)
    s.add_argument("--versions", default="1,2")
    for name in commands:
        if name.startswith("verify"):
            s = sub.add_parser(name)
            s.add_argument("--expected", required=True)
            s.add_argument("--out", required=True)
    args = p.parse_args()
    commands[args.cmd](args)


def registry_arguments(parser):
    parser.add_argument("--topic", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", required=True)
