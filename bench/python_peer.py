#!/usr/bin/env python3
"""The benchmark's peer: what a user might write instead of weir for its simplest job.

A plain confluent-kafka consumer that parses each JSON click event, keeps those with the
required fields, buckets them by the hour of their event time, writes each hour's rows as a
zstd Parquet file under `dt=YYYY-MM-DD/hour=HH/` and commits the offsets after every flush.
It is written the way a careful engineer would write it in an afternoon: batched polling,
columns built per flush, no per-row Parquet calls. `weir bench --python` runs it beside weir
on the same topic and measures its CPU the same way.

Progress goes to stdout for the benchmark, one line each: `first` when the first messages
arrive, `done EVENTS ROWS` once everything is flushed and committed.
"""

import argparse
import datetime
import json
import os
import sys
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError, KafkaException

SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.int64()),
        ("session_id", pa.string()),
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("page", pa.string()),
        ("referrer", pa.string()),
        (
            "device",
            pa.struct([("os", pa.string()), ("browser", pa.string()), ("mobile", pa.bool_())]),
        ),
        ("tags", pa.list_(pa.string())),
        ("duration_ms", pa.float64()),
        ("country", pa.string()),
    ]
)
REQUIRED = ("event_id", "user_id", "ts", "page")
UTC = datetime.timezone.utc


def event_time_ms(value):
    """RFC 3339 text or epoch milliseconds, as the events carry it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return int(parsed.timestamp() * 1000)
    raise ValueError("ts is neither text nor a number")


def parse(payload):
    """The event as a row, or None when it does not fit the schema."""
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or any(event.get(k) is None for k in REQUIRED):
        return None
    if not isinstance(event["user_id"], int) or isinstance(event["user_id"], bool):
        return None
    try:
        event["ts"] = event_time_ms(event["ts"])
    except (ValueError, OverflowError):
        return None
    duration = event.get("duration_ms")
    if duration is not None and not isinstance(duration, (int, float)):
        return None
    return event


class HourlyWriter:
    """Rows by hour of event time, written as one zstd Parquet file per hour and flush."""

    def __init__(self, out):
        self.out = out
        self.hours = {}
        self.rows = 0

    def add(self, event):
        hour = event["ts"] // 3_600_000
        columns = self.hours.get(hour)
        if columns is None:
            columns = self.hours[hour] = {name: [] for name in SCHEMA.names}
        for name, values in columns.items():
            values.append(event.get(name))
        self.rows += 1

    def flush(self):
        for hour, columns in self.hours.items():
            start = datetime.datetime.fromtimestamp(hour * 3600, UTC)
            directory = os.path.join(
                self.out, f"dt={start:%Y-%m-%d}", f"hour={start:%H}"
            )
            os.makedirs(directory, exist_ok=True)
            table = pa.Table.from_pydict(columns, schema=SCHEMA)
            name = os.path.join(directory, f"part-{uuid.uuid4().hex}.parquet")
            pq.write_table(table, name + ".tmp", compression="zstd")
            os.rename(name + ".tmp", name)
        self.hours.clear()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--events", type=int, required=True, help="stop after this many messages")
    parser.add_argument("--out", required=True)
    parser.add_argument("--flush-seconds", type=float, default=5.0)
    args = parser.parse_args()

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap_servers,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    writer = HourlyWriter(args.out)
    consumed = 0
    last_flush = time.monotonic()
    while consumed < args.events:
        messages = consumer.consume(num_messages=10_000, timeout=0.5)
        if messages and consumed == 0:
            print("first", flush=True)
        for message in messages:
            if message.error():
                raise KafkaException(message.error())
            consumed += 1
            event = parse(message.value())
            if event is not None:
                writer.add(event)
        if time.monotonic() - last_flush >= args.flush_seconds:
            writer.flush()
            commit(consumer)
            last_flush = time.monotonic()
    writer.flush()
    commit(consumer)
    consumer.close()
    print(f"done {consumed} {writer.rows}", flush=True)


def commit(consumer):
    """Commits the positions consumed so far; nothing new since the last commit is fine."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as e:
        if e.args[0].code() != KafkaError._NO_OFFSET:
            raise


if __name__ == "__main__":
    sys.exit(main())
