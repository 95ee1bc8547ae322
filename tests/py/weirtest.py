"""Independent producer and reader for weir's end-to-end tests.

Produces known events (good and malformed) with confluent-kafka, and reads what weir wrote
back with DuckDB or pyarrow, comparing it row for row with what was produced. Nothing here
uses weir's code: it is the second opinion.

    weirtest.py produce --bootstrap HOST:PORT --topic T --partitions N --expected FILE
    weirtest.py create-topic --bootstrap HOST:PORT --topic T --partitions N
    weirtest.py verify --expected FILE --orders DIR --big-orders DIR --dead-letters DIR
    weirtest.py verify-store --expected FILE --endpoint URL --bucket B --prefix P [--store azure]
    weirtest.py create-bucket --endpoint URL --bucket B
    weirtest.py check-quickstart --out DIR --report FILE
"""

import argparse
import datetime as dt
import json
import math
import os
import sys

UTC = dt.timezone.utc


def events():
    """(key, value, expected) triples; expected is a row dict or a dead-letter reason."""
    out = []
    base = dt.datetime(2026, 11, 25, 9, 58, 0, tzinfo=UTC)
    for i in range(60):
        ts = base + dt.timedelta(seconds=7 * i, milliseconds=i)
        event = {
            "id": f"o-{i:03d}",
            "user": {"id": 1000 + i % 7, "name": None if i % 5 == 0 else f"name-{i % 7}"},
            "amount": round(12.5 * i, 2),
            "tags": [] if i % 3 == 0 else [f"t{j}" for j in range(i % 3)],
            "unknown_extra": {"ignored": [1, 2, 3]},
        }
        # Event times as RFC 3339 (with and without offsets) and as epoch milliseconds.
        if i % 4 == 0:
            event["ts"] = int(ts.timestamp() * 1000)
        elif i % 4 == 1:
            event["ts"] = ts.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat(timespec="milliseconds")
        else:
            event["ts"] = ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if i % 6 == 0:
            del event["tags"]
        key = f"user-{event['user']['id']}".encode()
        expected = {
            "id": event["id"],
            "user_id": event["user"]["id"],
            "user_name": event["user"]["name"],
            "amount": event["amount"],
            "tags": event.get("tags"),
            "ts": ts.replace(microsecond=(ts.microsecond // 1000) * 1000),
            "kafka_key": key.decode(),
        }
        out.append((key, json.dumps(event).encode(), expected))
    good = {"id": "x", "user": {"id": 1}, "amount": 1.0, "ts": "2026-11-25T10:00:00Z"}
    bad = [
        (b"not json at all", "invalid_json"),
        (json.dumps(good).encode()[:-7], "invalid_json"),
        (b'{"id":"\xff\xfe","user":{"id":1},"ts":1}', "not_utf8"),
        (b"[1, 2, 3]", "not_an_object"),
        (b"", "empty_message"),
        (None, "empty_message"),
        (json.dumps({**good, "amount": "12.5"}).encode(), "wrong_type"),
        (json.dumps({**good, "user": {"id": "seven"}}).encode(), "wrong_type"),
        (json.dumps({**good, "ts": "yesterday"}).encode(), "wrong_type"),
        (json.dumps({k: v for k, v in good.items() if k != "id"}).encode(), "missing_field"),
        (json.dumps({**good, "id": None}).encode(), "missing_field"),
        (json.dumps({**good, "amount": -5.0}).encode(), "rule:non_negative_amount"),
        # Deep nesting under an undeclared key is skipped, not recursed into; without an
        # amount the row then fails the rule.
        (b'{"id":"deep","ts":1,"user":{"id":1},"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
         "rule:non_negative_amount"),
        (json.dumps({**good, "tags": [[["x"]]]}).encode(), "wrong_type"),
        (json.dumps({**good, "id": "y" * 500_000}).encode()[:-1], "invalid_json"),
    ]
    for n, (value, reason) in enumerate(bad):
        out.insert(7 * n + 3, (f"bad-{n}".encode(), value, reason))
    return out


def make_topic(conf, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(conf)  # kept alive until the futures resolve
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for f in futures.values():
        f.result(timeout=30)


def create_topic(args):
    make_topic({"bootstrap.servers": args.bootstrap}, args.topic, args.partitions)


def produce(args):
    from confluent_kafka import Producer

    conf = {"bootstrap.servers": args.bootstrap}
    if args.sasl_user:
        conf.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
                     "sasl.username": args.sasl_user, "sasl.password": args.sasl_password})
    if args.ssl_ca:
        protocol = "SASL_SSL" if args.sasl_user else "SSL"
        conf.update({"security.protocol": protocol, "ssl.ca.location": args.ssl_ca})
    if not args.topic_exists:
        make_topic(conf, args.topic, args.partitions)
    producer = Producer({**conf, "acks": "all", "linger.ms": 5})
    delivered = []
    failures = []

    def on_delivery(err, msg, expected):
        if err is not None:
            failures.append(str(err))
        else:
            delivered.append((msg.partition(), msg.offset(), expected))

    for key, value, expected in events():
        producer.produce(args.topic, key=key, value=value,
                         on_delivery=lambda err, msg, e=(expected, value): on_delivery(err, msg, e))
    producer.flush(30)
    if failures or len(delivered) != len(events()):
        sys.exit(f"produce failed: {failures}, delivered {len(delivered)}")
    rows, dead = [], []
    for partition, offset, (expected, value) in delivered:
        if isinstance(expected, dict):
            row = dict(expected, kafka_partition=partition, kafka_offset=offset)
            row["ts"] = row["ts"].isoformat()
            rows.append(row)
        else:
            dead.append({"partition": partition, "offset": offset, "reason": expected,
                         "payload": None if value is None else value.hex()})
    with open(args.expected, "w") as f:
        json.dump({"rows": rows, "dead_letters": dead, "messages": len(delivered)}, f)


def short(value):
    text = repr(value)
    return text if len(text) < 300 else text[:150] + " ... " + text[-100:]


def expect_equal(what, got, want):
    if got != want:
        missing = [short(w) for w in want if w not in got]
        extra = [short(g) for g in got if g not in want]
        sys.exit(f"{what} differ:\n  missing {missing[:5]}\n  unexpected {extra[:5]}\n  ({len(got)} read, {len(want)} expected)")


def duck():
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def records(con, sql):
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def hive(path):
    return f"read_parquet('{path}/**/*.parquet', hive_partitioning = true, hive_types_autocast = false)"


def verify(args):
    with open(args.expected) as f:
        expected = json.load(f)
    con = duck()
    orders = records(con, f"""
        SELECT id, user_id, user_name, amount, tags, epoch_ms(ts) AS ts, kafka_key, kafka_partition,
               kafka_offset, dt, hour,
               strftime(ts::TIMESTAMP, '%Y-%m-%d') AS ts_day, strftime(ts::TIMESTAMP, '%H') AS ts_hour
        FROM {hive(args.orders)} ORDER BY id""")
    got = []
    for row in orders:
        # The partition path must agree with the event time in the row.
        if (row.pop("dt"), row.pop("hour")) != (row.pop("ts_day"), row.pop("ts_hour")):
            sys.exit(f"row in the wrong partition: {row}")
        got.append(row)
    want = []
    for r in sorted(expected["rows"], key=lambda r: r["id"]):
        r = dict(r)
        r["ts"] = int(dt.datetime.fromisoformat(r["ts"]).timestamp() * 1000)
        want.append(r)
    expect_equal("orders rows", got, want)

    big = con.execute(
        f"SELECT id, amount FROM read_parquet('{args.big_orders}/**/*.parquet') ORDER BY id"
    ).fetchall()
    expect_equal("big_orders rows", [(i, a) for i, a in big],
                 [(r["id"], r["amount"]) for r in want if r["amount"] > 500])

    dead = con.execute(
        f"SELECT partition, \"offset\", reason, payload FROM read_parquet('{args.dead_letters}/**/*.parquet') "
        "ORDER BY partition, \"offset\""
    ).fetchall()
    got_dead = [{"partition": p, "offset": o, "reason": r, "payload": None if v is None else bytes(v).hex()}
                for p, o, r, v in dead]
    want_dead = sorted(expected["dead_letters"], key=lambda d: (d["partition"], d["offset"]))
    expect_equal("dead letters", got_dead, want_dead)
    print(f"verified {len(got)} rows, {len(big)} big orders, {len(got_dead)} dead letters")


# Azurite's well-known development account (public, the same in every installation).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def object_store(args):
    """The pyarrow filesystem of the test server at --endpoint: S3 (moto) or Azure Blob
    Storage (Azurite)."""
    from pyarrow import fs
    from urllib.parse import urlparse

    if args.store == "azure":
        # Azurite serves the Data Lake (dfs) endpoint pyarrow probes on the blob one.
        authority = urlparse(args.endpoint).netloc
        return fs.AzureFileSystem(account_name=AZURITE_ACCOUNT, account_key=AZURITE_KEY,
                                  blob_storage_authority=authority, blob_storage_scheme="http",
                                  dfs_storage_authority=authority, dfs_storage_scheme="http")
    return fs.S3FileSystem(endpoint_override=args.endpoint, scheme="http", region="us-east-1",
                           access_key="weir-test", secret_key="weir-test-secret")


def create_bucket(args):
    if args.store == "azure":
        object_store(args).create_dir(args.bucket)
        return
    if args.store == "gcs":
        import urllib.request

        body = json.dumps({"name": args.bucket}).encode()
        request = urllib.request.Request(f"{args.endpoint}/storage/v1/b?project=weir-test", data=body,
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).read()
        return
    import boto3

    s3 = boto3.client("s3", endpoint_url=args.endpoint, region_name="us-east-1",
                      aws_access_key_id="weir-test", aws_secret_access_key="weir-test-secret")
    s3.create_bucket(Bucket=args.bucket)


def verify_store(args):
    """The dataset under --prefix of --bucket (an S3 bucket or an Azure container) holds
    exactly the expected rows, in finished objects only."""
    import pyarrow.dataset as ds
    from pyarrow import fs

    with open(args.expected) as f:
        expected = json.load(f)
    s3 = object_store(args)
    files = [i.path for i in s3.get_file_info(fs.FileSelector(f"{args.bucket}/{args.prefix}", recursive=True))
             if i.type == fs.FileType.File]
    weir_dir = f"{args.bucket}/{args.prefix}/_weir/"
    delta_log = f"{args.bucket}/{args.prefix}/_delta_log/"
    data = [f for f in files if not f.startswith(weir_dir) and not f.startswith(delta_log)]
    if not data or any(not f.endswith(".parquet") for f in data):
        sys.exit(f"unexpected objects under the prefix: {data}")
    # After a clean stop everything staged was committed and moved; the log remains. A
    # killed writer's uncommitted files stay staged until the orphan grace has passed.
    staged = [f for f in files if f.startswith(weir_dir + "staging/")]
    log = [f for f in files if f.startswith(weir_dir + "log/")]
    if (staged and not args.crashed) or not log:
        sys.exit(f"expected a commit log and no staged objects: log {log}, staged {staged}")
    table = ds.dataset(f"{args.bucket}/{args.prefix}", filesystem=s3, format="parquet",
                       partitioning="hive").to_table()
    got = sorted((r["id"], r["kafka_offset"], r["kafka_partition"]) for r in table.to_pylist())
    want = sorted((r["id"], r["kafka_offset"], r["kafka_partition"]) for r in expected["rows"])
    expect_equal(f"{args.store} rows", got, want)
    print(f"verified {len(got)} rows in {len(data)} {args.store} objects, {len(log)} commit log entries, "
          f"{len(staged)} staged objects")


def verify_delta(args):
    """The Delta table under --prefix of the S3 --bucket, read by Python's deltalake straight
    from the S3 server, holds exactly the expected rows. (A process of its own: pyarrow's S3
    client and deltalake's in one process can abort at exit.)"""
    from deltalake import DeltaTable

    with open(args.expected) as f:
        expected = json.load(f)
    options = {"AWS_ENDPOINT_URL": args.endpoint, "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
               "AWS_ACCESS_KEY_ID": "weir-test", "AWS_SECRET_ACCESS_KEY": "weir-test-secret"}
    table = DeltaTable(f"s3://{args.bucket}/{args.prefix}", storage_options=options)
    got = sorted((r["id"], r["kafka_offset"], r["kafka_partition"]) for r in table.to_pyarrow_table().to_pylist())
    want = sorted((r["id"], r["kafka_offset"], r["kafka_partition"]) for r in expected["rows"])
    expect_equal("rows of the Delta table", got, want)
    print(f"verified {len(got)} rows in the Delta table at version {table.version()}")


def hive_values(args):
    """Prints, as JSON, every (id, partition value) a Hive-partitioned dataset holds, as each
    independent reader sees it: DuckDB and pyarrow for a local directory, pyarrow for S3."""
    import pyarrow.dataset as ds
    from pyarrow import fs

    def rows(table):
        return sorted([r["id"], r[args.column]] for r in table.to_pylist())

    seen = {}
    if args.endpoint:
        s3 = fs.S3FileSystem(endpoint_override=args.endpoint, scheme="http", region="us-east-1",
                             access_key="weir-test", secret_key="weir-test-secret")
        base = f"{args.bucket}/{args.dataset}"
        files = [i.path for i in s3.get_file_info(fs.FileSelector(base, recursive=True))
                 if i.type == fs.FileType.File and i.path.endswith(".parquet")
                 and "/_weir/" not in i.path]
        table = ds.dataset(files, filesystem=s3, format="parquet",
                           partitioning=ds.partitioning(flavor="hive"),
                           partition_base_dir=base).to_table()
        seen["pyarrow"] = rows(table)
    else:
        con = duck()
        seen["duckdb"] = sorted([list(r) for r in con.execute(
            f"SELECT id, {args.column} FROM {hive(args.dataset)}").fetchall()])
        table = ds.dataset(args.dataset, format="parquet", partitioning="hive").to_table()
        seen["pyarrow"] = rows(table)
    print(json.dumps(seen, ensure_ascii=False))


def check_quickstart(args):
    import glob
    with open(args.report) as f:
        report = json.load(f)
    con = duck()
    out = args.out
    clicks = hive(f"{out}/clicks")
    total, distinct, bad_paths = con.execute(
        f"SELECT count(*), count(DISTINCT event_id), "
        f"count(*) FILTER (WHERE dt <> strftime(ts::TIMESTAMP, '%Y-%m-%d') OR hour <> strftime(ts::TIMESTAMP, '%H')) "
        f"FROM {clicks}"
    ).fetchone()
    generated = report["generated"]
    if not args.interrupted:
        assert total == generated["valid"], (total, generated)
    assert distinct == total, ("duplicate event ids", distinct, total)
    assert bad_paths == 0, f"{bad_paths} rows in the wrong partition"
    views = con.execute(
        f"SELECT count(*) FROM {hive(out + '/product_views')}"
    ).fetchone()[0]
    product_clicks = con.execute(f"SELECT count(*) FROM {clicks} WHERE page LIKE '/product/%'").fetchone()[0]
    assert views == product_clicks, (views, product_clicks)
    dead = dict(con.execute(
        f"SELECT reason, count(*) FROM read_parquet('{out}/dead_letters/**/*.parquet') GROUP BY reason"
    ).fetchall())
    assert dead == report["dead_letters"], (dead, report["dead_letters"])
    # Late events are clicks too: too late only for the windows.
    late = dead.pop("late", 0)
    late_in_clicks = late_letters(con, out) and con.execute(
        f"SELECT count(*) FROM {clicks} WHERE (kafka_partition, kafka_offset) IN (SELECT partition, \"offset\" FROM late)"
    ).fetchone()[0]
    assert late_in_clicks == late, (late_in_clicks, late)
    if not args.interrupted:
        assert dead == generated["malformed"], (dead, generated["malformed"])
    # Every committed event is a row or a dead letter: nothing lost, nothing twice.
    assert total + sum(dead.values()) == report["events_in"], (total, dead, report["events_in"])
    windows, emitted = check_windows(con, out, clicks, single_writer=True)
    payloads = con.execute(
        f"SELECT count(*) FROM read_parquet('{out}/dead_letters/**/*.parquet') WHERE payload IS NULL"
    ).fetchone()[0]
    assert payloads == 0, "dead letters lost their payload"
    # The watermark: the slowest partition's latest event time minus the example's 30 s
    # out-of-orderness, committed to every dataset.
    watermark = con.execute(
        f"SELECT min(latest) - 30000 FROM (SELECT max(epoch_ms(ts)) AS latest FROM {clicks} GROUP BY kafka_partition)"
    ).fetchone()[0]
    expect_equal("pipeline watermark", report["watermark_ms"], watermark)
    # The last checkpoint emitted the windows at the final watermark. The windowed dataset is
    # complete up to the start of the first window still open.
    expect_equal("watermark the windows were emitted at", emitted, watermark)
    complete = {name: watermark for name in report["datasets"]}
    complete[WINDOWED] = watermark - WINDOW_MS - LATENESS_MS
    for name, dataset in report["datasets"].items():
        expect_equal(f"committed watermark of {name}", dataset["watermark_ms"], complete[name])
        with open(os.path.join(out, name, "_weir", "watermark.json")) as f:
            expect_equal(f"watermark record of {name}", json.load(f)["watermark_ms"], complete[name])
    # Exactly the hours (clicks, windows) and days (product views) that end at or before the
    # dataset's watermark are marked complete.
    marked = {}
    for name, depth, span in (("clicks", 2, 3600_000), ("product_views", 1, 86400_000), (WINDOWED, 2, 3600_000)):
        watermark = complete[name]
        if not glob.glob(f"{out}/{name}/**/*.parquet", recursive=True):
            continue
        for bucket in sorted(set(con.execute(
            f"SELECT DISTINCT {'dt, hour' if depth == 2 else 'dt'} FROM {hive(out + '/' + name)}"
        ).fetchall())):
            start = dt.datetime.strptime(bucket[0], "%Y-%m-%d").replace(tzinfo=UTC)
            if depth == 2:
                start += dt.timedelta(hours=int(bucket[1]))
            end_ms = int(start.timestamp() * 1000) + span
            path = os.path.join(out, name, f"dt={bucket[0]}", *([f"hour={bucket[1]}"] if depth == 2 else []), "_SUCCESS")
            expect_equal(f"completeness marker {path}", os.path.exists(path), end_ms <= watermark)
            marked[name] = marked.get(name, 0) + (end_ms <= watermark)
    print(f"quickstart verified: {total} rows, {views} product views, {windows} page-minutes, "
          f"{sum(dead.values())} dead letters, {late} late, complete time partitions {marked}")


def check_exactly_once(args):
    """Every generated event landed exactly once: as one row or as one dead letter."""
    with open(args.generated) as f:
        generated = json.load(f)
    con = duck()
    clicks = hive(args.out + "/clicks")
    rows, distinct, positions = con.execute(
        f"SELECT count(*), count(DISTINCT event_id), count(DISTINCT (kafka_partition, kafka_offset)) FROM {clicks}"
    ).fetchone()
    expect_equal("distinct clicks", distinct, generated["valid"])
    expect_equal("clicks rows (duplicates are extra rows)", rows, generated["valid"])
    expect_equal("distinct Kafka positions of clicks", positions, rows)
    views, distinct_views = con.execute(
        f"SELECT count(*), count(DISTINCT event_id) FROM {hive(args.out + '/product_views')}"
    ).fetchone()
    product_clicks = con.execute(f"SELECT count(*) FROM {clicks} WHERE page LIKE '/product/%'").fetchone()[0]
    expect_equal("product views", (views, distinct_views), (product_clicks, product_clicks))
    dead = dict(con.execute(
        f"SELECT reason, count(*) FROM read_parquet('{args.out}/dead_letters/**/*.parquet') GROUP BY reason"
    ).fetchall())
    late = dead.pop("late", 0)
    expect_equal("dead letters by reason", dead, generated["malformed"])
    distinct_dead = con.execute(
        f"SELECT count(DISTINCT (partition, \"offset\")) FROM read_parquet('{args.out}/dead_letters/**/*.parquet') "
        f"WHERE reason <> 'late'"
    ).fetchone()[0]
    expect_equal("distinct dead letters", distinct_dead, sum(dead.values()))
    expect_equal("late events, once each", late_letters(con, args.out),
                 con.execute("SELECT count(DISTINCT (partition, \"offset\")) FROM late").fetchone()[0])
    windows, _ = check_windows(con, args.out, clicks, single_writer=not args.several_writers)
    # The committed watermark, read from each dataset's commit log as plain JSON: the lowest
    # over partitions of the highest watermark committed for each. All events were consumed,
    # so it is the slowest partition's latest valid event time minus the 30 s out-of-orderness.
    expected_watermark = con.execute(
        f"SELECT min(latest) - 30000 FROM (SELECT max(epoch_ms(ts)) AS latest FROM {clicks} GROUP BY kafka_partition)"
    ).fetchone()[0]
    for name in ("clicks", "product_views", "dead_letters"):
        expect_equal(f"committed watermark of {name}", logged_watermark(f"{args.out}/{name}"), expected_watermark)
    if args.delta_app:
        for name in ("clicks", "product_views", WINDOWED):
            check_delta(f"{args.out}/{name}", args.delta_app)
    print(f"exactly once: {rows} clicks, {views} product views, {windows} page-minutes, "
          f"{distinct_dead} dead letters, {late} late, no duplicates; watermark {expected_watermark}")


WINDOWED = "page_views_per_minute"
WINDOW_MS = 60_000
LATENESS_MS = 10_000


def logged_emitted(dataset):
    """Per Kafka partition, the watermark up to which the windowed dataset's commits emitted
    its windows, read from the commit log as plain JSON."""
    import glob
    emitted = {}
    for path in sorted(glob.glob(os.path.join(dataset, "_weir", "log", "*.json"))):
        with open(path) as f:
            entry = json.load(f)
        for p in (entry.get("window_state") or {}).get("partitions", []):
            if p.get("emitted_ms") is not None:
                emitted[p["partition"]] = max(emitted.get(p["partition"], p["emitted_ms"]), p["emitted_ms"])
    return emitted


def late_letters(con, out):
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE late AS SELECT partition, \"offset\" "
        f"FROM read_parquet('{out}/dead_letters/**/*.parquet') WHERE reason = 'late'"
    )
    return con.execute("SELECT count(*) FROM late").fetchone()[0]


def check_windows(con, out, clicks, single_writer):
    """The windowed dataset holds exactly the per-minute aggregates DuckDB computes from the
    clicks: for each Kafka partition, of the minutes whose end plus the allowed lateness is at
    or before the watermark the partition's windows were emitted at, without late events.
    With one writer at a time each minute and page is one row; with several, each writer
    emitted its partitions' share, and the shares add up."""
    emitted = logged_emitted(f"{out}/{WINDOWED}")
    assert emitted, "the windowed dataset recorded no emitted watermark"
    con.execute("CREATE OR REPLACE TEMP TABLE emitted (kafka_partition INTEGER, emitted_ms BIGINT)")
    con.executemany("INSERT INTO emitted VALUES (?, ?)", list(emitted.items()))
    late_letters(con, out)
    kept = (
        f"SELECT epoch_ms(ts) // {WINDOW_MS} * {WINDOW_MS} AS ws, c.* FROM {clicks} c "
        f"JOIN emitted e USING (kafka_partition) "
        f"WHERE epoch_ms(ts) // {WINDOW_MS} * {WINDOW_MS} + {WINDOW_MS + LATENESS_MS} <= e.emitted_ms "
        f"AND (kafka_partition, kafka_offset) NOT IN (SELECT partition, \"offset\" FROM late)"
    )
    import glob
    if not glob.glob(f"{out}/{WINDOWED}/**/*.parquet", recursive=True):
        # No window closed yet (a short run with event times at the present): none is due.
        due = con.execute(f"SELECT count(*) FROM ({kept})").fetchone()[0]
        assert due == 0, f"{due} events in windows that should have been emitted"
        return 0, min(emitted.values())
    windows = hive(f"{out}/{WINDOWED}")
    bad = con.execute(
        f"SELECT count(*) FILTER (WHERE epoch_ms(window_end) - epoch_ms(window_start) <> {WINDOW_MS} "
        f"OR dt <> strftime(window_start::TIMESTAMP, '%Y-%m-%d') OR hour <> strftime(window_start::TIMESTAMP, '%H')) "
        f"FROM {windows}"
    ).fetchone()[0]
    assert bad == 0, f"{bad} windows with a wrong end or in the wrong partition"
    if single_writer:
        expected = con.execute(f"SELECT ws, page, count(*), count(DISTINCT user_id), avg(duration_ms) "
                               f"FROM ({kept}) GROUP BY ALL ORDER BY ALL").fetchall()
        actual = con.execute(f"SELECT epoch_ms(window_start), page, views, visitors, avg_duration_ms "
                             f"FROM {windows} ORDER BY ALL").fetchall()
    else:
        expected = con.execute(f"SELECT ws, page, count(*) FROM ({kept}) GROUP BY ALL ORDER BY ALL").fetchall()
        actual = con.execute(f"SELECT epoch_ms(window_start), page, sum(views)::BIGINT "
                             f"FROM {windows} GROUP BY ALL ORDER BY ALL").fetchall()
    def same(a, b):
        # Averages are summed in another order by each engine: equal up to rounding.
        return len(a) == len(b) and all(
            math.isclose(x, y, rel_tol=1e-12) if isinstance(x, float) else x == y for x, y in zip(a, b))
    if len(actual) != len(expected) or not all(same(a, e) for a, e in zip(actual, expected)):
        missing = [r for r in expected if r not in set(actual)][:5]
        extra = [r for r in actual if r not in set(expected)][:5]
        raise AssertionError(f"windowed rows differ from DuckDB: {len(actual)} vs {len(expected)} rows; "
                             f"missing {missing}, unexpected {extra}")
    return len(actual), min(emitted.values())


def check_delta(dataset, app):
    """The Delta table at `dataset`, read with Python's deltalake: it holds exactly the
    Parquet files weir committed and made visible, the same rows, and for each Kafka partition
    an application transaction at the end of the offsets weir's commit log committed."""
    import glob
    from deltalake import DeltaTable

    table = DeltaTable(dataset)
    in_delta = sorted(os.path.relpath(uri.removeprefix("file://"), dataset) for uri in table.file_uris())
    visible = sorted(os.path.relpath(p, dataset) for p in glob.glob(f"{dataset}/**/*.parquet", recursive=True)
                     if "/_weir/" not in p)
    expect_equal(f"files of the Delta table {dataset}", in_delta, visible)
    rows = table.to_pyarrow_table()
    con = duck()
    con.register("delta_rows", rows)
    expect_equal(f"rows of the Delta table {dataset}", con.execute("SELECT count(*) FROM delta_rows").fetchone()[0],
                 con.execute(f"SELECT count(*) FROM {hive(dataset)}").fetchone()[0])
    if "event_id" in rows.column_names:
        expect_equal(f"distinct events of the Delta table {dataset}",
                     con.execute("SELECT count(DISTINCT event_id) FROM delta_rows").fetchone()[0], rows.num_rows)
    committed = {}
    for path in sorted(glob.glob(os.path.join(dataset, "_weir", "log", "*.json"))):
        with open(path) as f:
            entry = json.load(f)
        for r in entry.get("ranges", []):
            key = f"{app}-{r['topic']}-{r['partition']}"
            committed[key] = max(committed.get(key, r["to"]), r["to"])
    versions = {key: table.transaction_version(key) for key in committed}
    expect_equal(f"application transactions of the Delta table {dataset}", versions, committed)


def logged_watermark(dataset):
    import glob
    import os
    latest = {}
    for path in sorted(glob.glob(os.path.join(dataset, "_weir", "log", "*.json"))):
        with open(path) as f:
            entry = json.load(f)
        for w in entry.get("watermarks", []):
            key = (w["topic"], w["partition"])
            latest[key] = max(latest.get(key, w["watermark_ms"]), w["watermark_ms"])
    return min(latest.values()) if latest else None


def fault_proxy(args):
    """An S3 proxy that injects faults: 503s before forwarding, 500s after forwarding (the
    request took effect but its answer is lost) and delays. Faults hit a seeded random share
    of requests; each one is logged as a line starting with `injected`.

    With --crash, it also kills the process in --pid-file with SIGKILL at one request: the
    --crash-nth one whose `METHOD /path` matches the regular expression (a copy is `COPY`, a
    bulk delete one `DELETE /bucket/key` per key),
    before forwarding it or after the server has acted on it (--crash-when). The request is
    never answered; the kill is logged as a line starting with `crashed`."""
    import http.client
    import os
    import random
    import re
    import signal
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlparse

    target = urlparse(args.target)
    rng = random.Random(args.seed)
    lock = threading.Lock()
    crash = {"seen": 0, "done": False}

    def crash_due(requests):
        with lock:
            if not args.crash or crash["done"]:
                return False
            if not any(re.search(args.crash, request) for request in requests):
                return False
            crash["seen"] += 1
            crash["done"] = crash["seen"] == args.crash_nth
            return crash["done"]

    def kill(when, request):
        deadline = time.monotonic() + 60
        while not os.path.exists(args.pid_file) and time.monotonic() < deadline:
            time.sleep(0.01)
        with open(args.pid_file) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGKILL)
        print(f"crashed {pid} {when} {request}", flush=True)

    def draw(method, path):
        with lock:
            if rng.random() >= args.rate:
                return None
            kinds = ["before", "delay"]
            # Losing the answer is safe to retry for object puts (the commit log's conditional
            # ones included), copies and deletes; completing a multipart upload twice is not
            # something S3 answers the same way, so it only fails before.
            if method in ("PUT", "DELETE") and "uploadId" not in path:
                kinds.append("after")
            kinds = [k for k in kinds if k in args.kinds.split(",")]
            return rng.choice(kinds) if kinds else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def handle_one(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            copy = self.command == "PUT" and "x-amz-copy-source" in self.headers
            request = f"{'COPY' if copy else self.command} {self.path}"
            requests = [request]
            if self.command == "POST" and self.path.endswith("?delete"):
                bucket = self.path.split("?")[0]
                keys = re.findall(r"<Key>([^<]*)</Key>", (body or b"").decode())
                requests = [f"DELETE {bucket}/{key}" for key in keys]
            crashing = crash_due(requests)
            if crashing and args.crash_when == "before":
                return kill("before", request)
            fault = None if crashing else draw(self.command, self.path)
            if fault:
                print(f"injected {fault} {self.command} {self.path}", flush=True)
            if fault == "before":
                return self.reply(503, b"<Error><Code>SlowDown</Code></Error>", {})
            if fault == "delay":
                time.sleep(args.delay)
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if crashing:
                return kill("after", request)
            if fault == "after":
                return self.reply(500, b"<Error><Code>InternalError</Code></Error>", {})
            self.reply(resp.status, data, {k: v for k, v in resp.getheaders()
                                           if k.lower() not in ("connection", "transfer-encoding", "content-length")})

        def reply(self, status, data, headers):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


def counts(args):
    """Rows of each dataset under --out, dead letters by reason, and the files and bytes of
    the Parquet files each holds, as one JSON object."""
    import glob
    import os

    con = duck()
    out = {"rows": {}, "files": {}, "bytes": {}, "dead_letters": {}, "max_event_ms": {}}
    for dataset in args.dataset:
        files = [f for f in glob.glob(f"{args.out}/{dataset}/**/*.parquet", recursive=True) if "/_weir/" not in f]
        out["files"][dataset] = len(files)
        out["bytes"][dataset] = sum(os.path.getsize(f) for f in files)
        out["rows"][dataset] = con.execute(f"SELECT count(*) FROM {hive(args.out + '/' + dataset)}").fetchone()[0] if files else 0
    out["dead_letters"] = dict(con.execute(
        f"SELECT reason, count(*) FROM read_parquet('{args.out}/dead_letters/**/*.parquet') GROUP BY reason"
    ).fetchall())
    out["max_event_ms"] = {str(p): t for p, t in con.execute(
        f"SELECT kafka_partition, epoch_ms(max(ts)) FROM {hive(args.out + '/clicks')} GROUP BY kafka_partition"
    ).fetchall()}
    print(json.dumps(out))


def distinct(args):
    """Rows of the Hive-partitioned dataset at --path and the distinct values of --column
    among them, as one JSON object."""
    rows, values = duck().execute(
        f"SELECT count(*), count(DISTINCT {args.column}) FROM {hive(args.path)}"
    ).fetchall()[0]
    print(json.dumps({"rows": rows, "distinct": values}))


def load_yaml(args):
    """Parses every YAML document of the files; prints [{file, kind, name}] as JSON."""
    import yaml

    found = []
    for path in args.files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                assert isinstance(doc, dict), f"{path}: a document that is not a mapping"
                found.append({"file": path, "kind": doc.get("kind"), "doc": doc})
    print(json.dumps(found))


def same_as_sample(args):
    """The rows the service wrote under --service equal the rows `weir sql run --format
    parquet` wrote under --sample, dataset by dataset, with the same partition paths; the dead
    letters have the same lines, reasons and details."""
    con = duck()
    for dataset in args.dataset:
        root = f"{args.service}/{dataset}"
        service = (f"SELECT * EXCLUDE (filename), regexp_extract(filename, '^{root}/(.*)/[^/]+$', 1) AS _partition_path "
                   f"FROM read_parquet('{root}/**/*.parquet', filename = true, hive_partitioning = false)")
        sample = f"SELECT * FROM read_parquet('{args.sample}/{dataset}.parquet')"
        counts = con.execute(f"SELECT (SELECT count(*) FROM ({service})), (SELECT count(*) FROM ({sample}))").fetchone()
        assert counts[0] == counts[1], f"{dataset}: the service wrote {counts[0]} rows, the sample run {counts[1]}"
        assert counts[0] > 0, f"{dataset}: no rows to compare"
        for a, b, what in ((service, sample, "only the service wrote"), (sample, service, "only the sample run wrote")):
            differ = con.execute(f"SELECT * FROM (({a}) EXCEPT ALL ({b})) LIMIT 3").fetchall()
            assert not differ, f"{dataset}: rows {what}: {differ}"
    letters = con.execute(
        f"SELECT \"offset\" + 1 AS line, reason, detail FROM read_parquet('{args.service}/dead_letters/**/*.parquet') "
        f"EXCEPT ALL SELECT line, reason, detail FROM read_parquet('{args.sample}/dead_letters.parquet')"
    ).fetchall()
    assert not letters, f"dead letters only the service wrote: {letters[:3]}"
    total = con.execute(f"SELECT count(*) FROM read_parquet('{args.sample}/dead_letters.parquet')").fetchone()[0]
    service_total = con.execute(f"SELECT count(*) FROM read_parquet('{args.service}/dead_letters/**/*.parquet')").fetchone()[0]
    assert total == service_total, (total, service_total)
    print(json.dumps({"datasets": args.dataset, "dead_letters": total}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("produce")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--partitions", type=int, default=3)
    s.add_argument("--topic-exists", action="store_true", help="the topic was created by the harness")
    s.add_argument("--sasl-user", help="authenticate with SASL/SCRAM-SHA-512")
    s.add_argument("--sasl-password")
    s.add_argument("--ssl-ca", help="connect over TLS, trusting this CA file")
    s.add_argument("--expected", required=True)
    s = sub.add_parser("create-topic")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--partitions", type=int, required=True)
    s = sub.add_parser("verify")
    s.add_argument("--expected", required=True)
    s.add_argument("--orders", required=True)
    s.add_argument("--big-orders", required=True)
    s.add_argument("--dead-letters", required=True)
    s = sub.add_parser("create-bucket")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--bucket", required=True)
    s.add_argument("--store", choices=["s3", "azure", "gcs"], default="s3")
    s = sub.add_parser("verify-store")
    s.add_argument("--expected", required=True)
    s.add_argument("--endpoint", required=True)
    s.add_argument("--bucket", required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--crashed", action="store_true", help="a writer was killed: staged objects may remain")
    s.add_argument("--store", choices=["s3", "azure"], default="s3")
    s = sub.add_parser("verify-delta")
    s.add_argument("--expected", required=True)
    s.add_argument("--endpoint", required=True)
    s.add_argument("--bucket", required=True)
    s.add_argument("--prefix", required=True)
    s = sub.add_parser("hive-values")
    s.add_argument("--dataset", required=True, help="a directory, or a prefix in --bucket")
    s.add_argument("--column", required=True, help="the partition column")
    s.add_argument("--endpoint", help="the S3 server holding --bucket")
    s.add_argument("--bucket")
    s = sub.add_parser("check-quickstart")
    s.add_argument("--out", required=True)
    s.add_argument("--report", required=True)
    s.add_argument("--interrupted", action="store_true", help="the run was stopped with Ctrl-C")
    s = sub.add_parser("fault-proxy")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--target", required=True)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--rate", type=float, default=0.2)
    s.add_argument("--kinds", default="before,delay,after", help="the faults to draw from")
    s.add_argument("--delay", type=float, default=1.5, help="seconds a delayed request waits")
    s.add_argument("--crash", help="kill --pid-file's process at a request matching this regex")
    s.add_argument("--crash-nth", type=int, default=1, help="at the nth matching request")
    s.add_argument("--crash-when", choices=["before", "after"], default="before",
                   help="before forwarding the request or after the server acted on it")
    s.add_argument("--pid-file", help="holds the pid of the process --crash kills")
    s = sub.add_parser("check-exactly-once")
    s.add_argument("--out", required=True)
    s.add_argument("--generated", required=True)
    s.add_argument("--several-writers", action="store_true",
                   help="instances ran side by side, each emitting its partitions' share of a window")
    s.add_argument("--delta-app", help="the output datasets are Delta tables whose application "
                   "transactions this pipeline name starts")
    s = sub.add_parser("counts")
    s.add_argument("--out", required=True)
    s.add_argument("--dataset", action="append", required=True)
    s = sub.add_parser("distinct")
    s.add_argument("--path", required=True)
    s.add_argument("--column", required=True)
    s = sub.add_parser("same-as-sample")
    s.add_argument("--service", required=True)
    s.add_argument("--sample", required=True)
    s.add_argument("--dataset", action="append", required=True)
    s = sub.add_parser("load-yaml")
    s.add_argument("files", nargs="+")
    args = p.parse_args()
    {"produce": produce, "create-topic": create_topic, "verify": verify, "create-bucket": create_bucket, "verify-store": verify_store, "verify-delta": verify_delta,
     "hive-values": hive_values,
     "check-quickstart": check_quickstart, "check-exactly-once": check_exactly_once,
     "fault-proxy": fault_proxy, "counts": counts, "distinct": distinct,
     "load-yaml": load_yaml, "same-as-sample": same_as_sample}[args.cmd](args)


if __name__ == "__main__":
    main()
