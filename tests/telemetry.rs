//! What SREs see of a running pipeline: `/metrics` (checked against the broker, the commit
//! logs and an independent reader of the datasets), the health probes, the status page in a
//! real browser, a real Prometheus scraping it with the dashboard's and the alert rules'
//! queries, and OTLP export to a real collector.
//!
//! One file past 600 lines: the first test follows one running pipeline through all of it
//! (starting one per aspect would multiply the slowest part), and its checks live here.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cli::{generate, weir_lag};
use common::datasets::committed_in_logs;
use common::fixtures::{QUICKSTART_DATASETS, quickstart_config};
use common::kafka::broker_log_end;
use common::net::{free_port, free_ports, http_get, serving_port, wait_for_listener, wait_until};
use common::process::{Process, weir, weirtest};
use common::{repo, tool};
use rdkafka::mocking::MockCluster;

const TOPIC: &str = "clickstream";
const PARTITIONS: i32 = 3;
const DATASETS: [&str; 4] = QUICKSTART_DATASETS;

/// One line of Prometheus text.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug)]
struct Scrape(Vec<Sample>);

impl Scrape {
    fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("`series value`");
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let labels = labels
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once("=\"").expect("key=\"value\"");
                        (key.to_owned(), value.trim_end_matches('"').to_owned())
                    })
                    .collect();
                Sample {
                    name: name.to_owned(),
                    labels,
                    value: value.parse().expect("a number"),
                }
            })
            .collect();
        Self(samples)
    }

    /// The samples of `name` whose labels include `labels`.
    fn select(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.0
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.select(name, labels).iter().map(|s| s.value).sum()
    }

    fn one(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.select(name, labels);
        assert_eq!(found.len(), 1, "one sample of {name} {labels:?}: {found:?}");
        found[0].value
    }

    /// Per partition number, the value of `name` for `labels`.
    fn by_partition(&self, name: &str, labels: &[(&str, &str)]) -> BTreeMap<i32, f64> {
        self.select(name, labels)
            .into_iter()
            .map(|s| (s.labels["partition"].parse().expect("a partition"), s.value))
            .collect()
    }

    fn names(&self) -> BTreeSet<&str> {
        self.0.iter().map(|s| s.name.as_str()).collect()
    }
}

fn scrape(port: u16) -> Scrape {
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(&body)
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs a PromQL instant query; the `result` array.
fn promql(port: u16, query: &str) -> Vec<serde_json::Value> {
    let (status, body) = http_get(port, &format!("/api/v1/query?query={}", encode(query)));
    assert_eq!(status, 200, "{query}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "success", "{query}: {body}");
    answer["data"]["result"].as_array().unwrap().clone()
}

fn produce(bootstrap: &str, events: u64, rate: u64, seed: u64, dir: &Path) {
    let generated = dir.join(format!("generated-{seed}.json"));
    let status = generate(bootstrap, TOPIC, events, rate, seed, &generated)
        .wait()
        .unwrap();
    assert!(status.success());
}

/// What DuckDB reads from the datasets.
fn counts(out: &Path) -> serde_json::Value {
    let out = out.display().to_string();
    let mut args = vec!["counts", "--out", &out];
    for dataset in DATASETS {
        args.extend(["--dataset", dataset]);
    }
    serde_json::from_str(&weirtest(&args)).unwrap()
}

/// Every exported metric agrees with the broker, the commit logs (through `weir lag`) and
/// DuckDB's reading of the datasets, once everything produced is committed.
/// Rows the service's log says it wrote to time partitions already marked complete, by
/// dataset (such rows are kept, and said).
fn late_rows_logged(log: &str, dataset: &str) -> f64 {
    log.lines()
        .filter(|l| l.contains("late rows written to a time partition already marked complete"))
        .filter(|l| l.contains(&format!("dataset={dataset} ")))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|word| word.strip_prefix("rows="))
                .and_then(|n| n.parse::<f64>().ok())
        })
        .sum()
}

/// A scrape taken once a scrape showed every message visible, with the clock (ms) before and
/// after it. Freshness is told last in a checkpoint, but a scrape reads gauges before
/// histograms: only the next scrape is sure to see all the rest of that checkpoint.
struct Settled {
    metrics: Scrape,
    began_ms: i64,
    ended_ms: i64,
}

fn settled_scrape(port: u16) -> Settled {
    let began_ms = chrono::Utc::now().timestamp_millis();
    let metrics = scrape(port);
    let ended_ms = chrono::Utc::now().timestamp_millis();
    Settled {
        metrics,
        began_ms,
        ended_ms,
    }
}

fn check_settled(
    settled: &Settled,
    out: &Path,
    bootstrap: &str,
    lag: &serde_json::Value,
    log: &str,
) {
    let metrics = &settled.metrics;
    let counted = counts(out);
    let log_end = broker_log_end(bootstrap, TOPIC, PARTITIONS);
    let total: i64 = log_end.iter().sum();
    let by_partition = |values: Vec<i64>| -> BTreeMap<i32, f64> {
        values
            .into_iter()
            .enumerate()
            .map(|(p, v)| (p as i32, v as f64))
            .collect()
    };
    let log_end = by_partition(log_end);

    // Consumption.
    assert_eq!(
        metrics.sum("weir_consumed_messages_total", &[]),
        total as f64
    );
    assert!(metrics.sum("weir_consumed_bytes_total", &[]) > total as f64 * 50.0);
    assert_eq!(metrics.by_partition("weir_log_end_offset", &[]), log_end);
    assert_eq!(metrics.by_partition("weir_consumer_offset", &[]), log_end);
    assert_eq!(metrics.sum("weir_consumer_lag", &[]), 0.0);
    assert_eq!(
        metrics.one("weir_assigned_partitions", &[]),
        PARTITIONS as f64
    );
    assert_eq!(metrics.one("weir_up", &[]), 1.0);
    assert_eq!(metrics.one("weir_buffered_bytes", &[]), 0.0);
    assert!(metrics.one("weir_rebalances_total", &[("event", "assigned")]) >= 1.0);
    assert!(metrics.select("weir_backpressure_pauses_total", &[]).len() == 1);
    // Freshness: one observation per message, when the checkpoint made it visible.
    assert_eq!(
        metrics.one("weir_freshness_seconds_count", &[]),
        total as f64
    );
    let freshness = metrics.one("weir_freshness_seconds_sum", &[]) / total as f64;
    assert!(freshness > 0.0 && freshness < 120.0, "{freshness}");
    let checkpoints = metrics.one("weir_checkpoints_total", &[]);
    assert!(checkpoints >= 1.0);

    let lag_datasets = lag["datasets"].as_array().unwrap();
    for dataset in DATASETS {
        let d = &[("dataset", dataset)];
        // Against the broker and the commit log.
        assert_eq!(
            metrics.by_partition("weir_committed_offset", d),
            log_end,
            "{dataset}"
        );
        assert_eq!(metrics.sum("weir_offset_lag", d), 0.0, "{dataset}");
        let logged = lag_datasets
            .iter()
            .find(|l| l["dataset"] == dataset)
            .unwrap_or_else(|| panic!("{dataset} in {lag}"));
        let logged_watermarks: BTreeMap<i32, f64> = logged["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let ms = p["committed_watermark_ms"].as_i64().expect("a watermark");
                (p["partition"].as_i64().unwrap() as i32, ms as f64 / 1000.0)
            })
            .collect();
        assert_eq!(
            metrics.by_partition("weir_committed_watermark_seconds", d),
            logged_watermarks,
            "{dataset}"
        );
        // The lag is measured against the clock while the scrape was answered.
        for (partition, lag) in metrics.by_partition("weir_watermark_lag_seconds", d) {
            let watermark_ms = (logged_watermarks[&partition] * 1000.0).round();
            let earliest = (settled.began_ms as f64 - watermark_ms) / 1000.0;
            let latest = (settled.ended_ms as f64 - watermark_ms) / 1000.0;
            assert!(
                (earliest..=latest).contains(&lag),
                "{dataset}/{partition}: {lag} outside {earliest}..={latest}"
            );
        }
        let age = metrics.one("weir_commit_age_seconds", d);
        assert!((0.0..600.0).contains(&age), "{dataset}: {age}");
        // Against DuckDB's reading of the files.
        assert_eq!(
            metrics.one("weir_rows_written_total", d),
            counted["rows"][dataset].as_f64().unwrap(),
            "{dataset}"
        );
        assert_eq!(
            metrics.one("weir_files_written_total", d),
            counted["files"][dataset].as_f64().unwrap(),
            "{dataset}"
        );
        assert_eq!(
            metrics.one("weir_written_bytes_total", d),
            counted["bytes"][dataset].as_f64().unwrap(),
            "{dataset}"
        );
        // Every checkpoint with data commits every dataset once.
        assert_eq!(
            metrics.one("weir_commit_duration_seconds_count", d),
            checkpoints,
            "{dataset}"
        );
        let buckets: Vec<f64> = metrics
            .select("weir_commit_duration_seconds_bucket", d)
            .iter()
            .map(|s| s.value)
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(buckets.last(), Some(&checkpoints));
        assert_eq!(
            metrics.one(
                "weir_late_records_total",
                &[("dataset", dataset), ("action", "written")]
            ),
            late_rows_logged(log, dataset),
            "{dataset}"
        );
    }
    // The pipeline's event-time watermark of each partition: its latest valid event time
    // less the 30 s out-of-orderness.
    let expected: BTreeMap<i32, f64> = counted["max_event_ms"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, t)| {
            (
                p.parse().unwrap(),
                (t.as_i64().unwrap() - 30_000) as f64 / 1000.0,
            )
        })
        .collect();
    assert_eq!(
        metrics.by_partition("weir_watermark_seconds", &[]),
        expected
    );
    // Dead letters by reason, as DuckDB reads them.
    let dead: BTreeMap<String, f64> = metrics
        .select("weir_dead_letters_total", &[])
        .iter()
        .map(|s| (s.labels["reason"].clone(), s.value))
        .collect();
    let read: BTreeMap<String, f64> = counted["dead_letters"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(r, n)| (r.clone(), n.as_f64().unwrap()))
        .collect();
    assert_eq!(dead, read);
    assert_eq!(
        metrics.one(
            "weir_late_records_total",
            &[
                ("dataset", "page_views_per_minute"),
                ("action", "dead_lettered")
            ]
        ),
        read.get("late").copied().unwrap_or(0.0)
    );
}

/// The metric names in the PromQL expressions of `text` (JSON or YAML).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("weir_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// The `expr:` values of alert rules (each may go on over more-indented lines).
fn rule_expressions(rules: &str) -> String {
    let mut found = String::new();
    let mut indent = None;
    for line in rules.lines() {
        let depth = line.len() - line.trim_start().len();
        match indent {
            Some(at) if depth > at => found.push_str(line),
            _ => indent = None,
        }
        if let Some(expr) = line.trim_start().strip_prefix("expr:") {
            found.push_str(expr);
            found.push('\n');
            indent = Some(depth);
        }
    }
    assert!(!found.is_empty());
    found
}

/// The PromQL of the Grafana dashboard, with its variables filled in.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/weir.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("an expression");
            queries.push(
                expr.replace("$pipeline", ".+")
                    .replace("$__rate_interval", "1m"),
            );
        }
    }
    assert!(queries.len() > 20, "{queries:?}");
    queries
}

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    Command::new(tool("WEIR_TEST_CHROMIUM"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("running chromium")
}

#[test]
fn metrics_probes_status_page_and_prometheus_follow_a_running_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let config = quickstart_config(dir.path(), "", &[], "300ms");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:9464\"",
        "listen = \"127.0.0.1:0\"\nlog_end_interval = \"200ms\"",
    );
    std::fs::write(&config, text).unwrap();
    let out = dir.path().join("out");
    let out_text = out.display().to_string();
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("WEIR_OUT", out_text.as_str()),
        ("GROUP", "telemetry"),
    ];
    let mut command = weir();
    // The file's address, not the harness's default.
    command
        .args(["run", "--config"])
        .arg(&config)
        .envs(env)
        .env_remove("WEIR_LISTEN");
    let mut service = Process::start("weir", command, dir.path().join("weir.log"));
    let port = serving_port(&mut service);
    let (status, body) = http_get(port, "/healthz");
    assert_eq!((status, body.lines().next()), (200, Some("ok")), "{body}");

    // Phase 1: a burst, then everything committed.
    produce(&bootstrap, 3_000, 50_000, 1, dir.path());
    let all_visible = |expected: f64| {
        move |m: &Scrape| {
            m.sum("weir_consumed_messages_total", &[]) == expected
                && m.sum("weir_log_end_offset", &[]) == expected
                && m.select("weir_freshness_seconds_count", &[])
                    .iter()
                    .any(|s| s.value == expected)
                && DATASETS
                    .iter()
                    .all(|d| m.sum("weir_committed_offset", &[("dataset", d)]) == expected)
        }
    };
    wait_until("every message committed", Duration::from_secs(120), || {
        service.assert_running();
        all_visible(3_000.0)(&scrape(port))
    });
    let settled = settled_scrape(port);
    let lag = |env| {
        let output = weir_lag(&config, env, &["--json"]);
        assert!(output.status.success());
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    check_settled(&settled, &out, &bootstrap, &lag(env), &service.log_text());
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("3 partitions assigned"), "{body}");
    let first = settled.metrics;

    // Phase 2: a steady stream for a few seconds; the values move with it.
    let streaming_from = chrono::Utc::now().timestamp_millis();
    produce(&bootstrap, 6_000, 1_500, 2, dir.path());
    wait_until("the stream committed", Duration::from_secs(120), || {
        service.assert_running();
        all_visible(9_000.0)(&scrape(port))
    });
    let settled = settled_scrape(port);
    check_settled(&settled, &out, &bootstrap, &lag(env), &service.log_text());
    let metrics = settled.metrics;
    for name in ["weir_checkpoints_total", "weir_freshness_seconds_count"] {
        assert!(metrics.sum(name, &[]) > first.sum(name, &[]), "{name}");
    }
    for dataset in DATASETS {
        let d = &[("dataset", dataset)];
        let name = "weir_commit_duration_seconds_count";
        assert!(
            metrics.sum(name, d) > first.sum(name, d),
            "{name} {dataset}"
        );
        // A windowed dataset writes rows only when a window closes.
        if dataset == "page_views_per_minute" {
            continue;
        }
        for name in ["weir_rows_written_total", "weir_files_written_total"] {
            assert!(
                metrics.sum(name, d) > first.sum(name, d),
                "{name} {dataset}"
            );
        }
    }
    let watermark = |m: &Scrape| m.by_partition("weir_watermark_seconds", &[]);
    for (partition, now) in watermark(&metrics) {
        assert!(now > watermark(&first)[&partition], "partition {partition}");
    }

    // The status page's data: the history saw the lag rise while the stream ran.
    let (status, body) = http_get(port, "/api/status");
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let history = page["history"].as_array().unwrap();
    let lag_seen = history.iter().any(|sample| {
        sample["at_ms"].as_i64().unwrap() > streaming_from
            && sample["lag"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["dataset"] == "clicks" && p["offset_lag"].as_i64() > Some(0))
    });
    assert!(lag_seen, "no offset lag in the history: {body}");

    // The page itself, rendered by a real browser.
    let profile = dir.path().join("chromium-profile");
    let url = format!("http://127.0.0.1:{port}/");
    let rendered = chromium(
        &["--virtual-time-budget=5000", "--dump-dom", url.as_str()],
        &profile,
    );
    let dom = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(
        dom.contains("data-refreshed"),
        "the page never refreshed:\n{dom}"
    );
    assert!(dom.contains(">clickstream</span>"), "{dom}");
    for dataset in DATASETS {
        assert!(dom.contains(&format!(
            "<section class=\"dataset\" data-dataset=\"{dataset}\""
        )));
        for field in ["offset_lag", "watermark_lag_seconds"] {
            let chart = format!("data-dataset=\"{dataset}\" data-field=\"{field}\"");
            let at = dom.find(&chart).unwrap_or_else(|| panic!("{chart}"));
            let end = at + dom[at..].find("</svg>").unwrap();
            let lines = dom[at..end].matches("<polyline").count();
            assert_eq!(lines, PARTITIONS as usize, "{dataset} {field}");
        }
    }
    for reason in page["dead_letters"].as_object().unwrap().keys() {
        assert!(
            dom.contains(&format!("data-reason=\"{reason}\"")),
            "{reason}"
        );
    }
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let shot = chromium(
        &[
            "--virtual-time-budget=5000",
            "--window-size=1400,2600",
            &format!("--screenshot={}", screenshot.display()),
            url.as_str(),
        ],
        &profile,
    );
    assert!(shot.status.success() && screenshot.metadata().unwrap().len() > 10_000);
    eprintln!("status page screenshot: {}", screenshot.display());

    // A real Prometheus scrapes the service; the dashboard's and the alerts' queries run.
    let prometheus_port = free_port();
    let prometheus_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prometheus_dir).unwrap();
    let prometheus_config = prometheus_dir.join("prometheus.yml");
    std::fs::write(
        &prometheus_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n",
            repo().join("deploy/prometheus/alerts.yml").display()
        ),
    )
    .unwrap();
    let mut command = Command::new(tool("WEIR_TEST_PROMETHEUS"));
    command
        .arg(format!("--config.file={}", prometheus_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            prometheus_dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"));
    let mut prometheus = Process::start("prometheus", command, dir.path().join("prometheus.log"));
    wait_for_listener(&mut prometheus, prometheus_port);
    // It listens before its storage is open, answering 503 until then.
    wait_until("Prometheus to be ready", Duration::from_secs(60), || {
        prometheus.assert_running();
        http_get(prometheus_port, "/-/ready").0 == 200
    });
    wait_until("three scrapes of weir", Duration::from_secs(60), || {
        prometheus.assert_running();
        promql(prometheus_port, "count_over_time(weir_up[1m])")
            .first()
            .is_some_and(|r| r["value"][1].as_str().unwrap().parse::<f64>().unwrap() >= 3.0)
    });
    let series = promql(prometheus_port, "sum by (dataset) (weir_committed_offset)");
    let committed: BTreeMap<String, f64> = series
        .iter()
        .map(|r| {
            (
                r["metric"]["dataset"].as_str().unwrap().to_owned(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<String, f64> =
        DATASETS.iter().map(|d| (d.to_string(), 9_000.0)).collect();
    assert_eq!(committed, expected);
    assert_eq!(
        promql(
            prometheus_port,
            "max by (dataset) (weir_watermark_lag_seconds)"
        )
        .len(),
        DATASETS.len()
    );
    assert_eq!(
        promql(prometheus_port, "weir_offset_lag == 0").len(),
        DATASETS.len() * PARTITIONS as usize
    );
    let exported: BTreeSet<String> = metrics.names().iter().map(|n| n.to_string()).collect();
    for query in dashboard_queries() {
        for name in metric_names(&query) {
            assert!(
                exported.contains(&name),
                "the dashboard queries {name}, which weir does not export"
            );
        }
        assert!(
            !promql(prometheus_port, &query).is_empty(),
            "the dashboard's query returns nothing: {query}"
        );
    }
    let scaler =
        std::fs::read_to_string(repo().join("deploy/kubernetes/scaledobject.yaml")).unwrap();
    let query = scaler
        .lines()
        .find_map(|l| l.trim().strip_prefix("query: "))
        .expect("the autoscaler's query");
    assert!(!promql(prometheus_port, query).is_empty(), "{query}");
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    for name in metric_names(&rule_expressions(&rules)) {
        assert!(
            exported.contains(&name),
            "an alert uses {name}, which weir does not export"
        );
    }
    // Prometheus loaded every rule and evaluates each without error.
    let evaluated = |rules: &serde_json::Value| -> Vec<(String, String)> {
        rules["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().iter())
            .filter(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            })
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_owned(),
                    r["health"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let mut loaded = serde_json::Value::Null;
    wait_until(
        "every alert rule evaluated",
        Duration::from_secs(60),
        || {
            let (status, body) = http_get(prometheus_port, "/api/v1/rules");
            assert_eq!(status, 200);
            loaded = serde_json::from_str(&body).unwrap();
            evaluated(&loaded).len() == rules.matches("- alert:").count()
        },
    );
    for (rule, health) in evaluated(&loaded) {
        assert_eq!(health, "ok", "{rule}: {loaded}");
    }

    prometheus.terminate(Duration::from_secs(30));
    assert!(service.terminate(Duration::from_secs(60)).success());
}

#[test]
fn metrics_and_spans_reach_an_otlp_collector() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(1).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let [http, grpc] = free_ports();
    let mut command = Command::new(tool("WEIR_TEST_ROTEL"));
    command
        .arg("start")
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--exporter", "blackhole"])
        .args(["--debug-log", "traces", "--debug-log", "metrics"])
        .args(["--debug-log-verbosity", "detailed"]);
    let mut collector = Process::start("rotel", command, dir.path().join("rotel.log"));
    wait_for_listener(&mut collector, http);

    let config = quickstart_config(dir.path(), "", &[], "300ms");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:9464\"",
        &format!(
            "listen = \"off\"\notlp_endpoint = \"http://127.0.0.1:{http}\"\notlp_interval = \"500ms\""
        ),
    );
    std::fs::write(&config, text).unwrap();
    let out = dir.path().join("out");
    let out_text = out.display().to_string();
    let mut command = weir();
    command
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("WEIR_LISTEN")
        .envs([
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
            ("WEIR_OUT", out_text.as_str()),
            ("GROUP", "otlp"),
        ]);
    let mut service = Process::start("weir", command, dir.path().join("weir.log"));
    produce(&bootstrap, 500, 50_000, 1, dir.path());
    wait_until("every dataset to commit", Duration::from_secs(120), || {
        service.assert_running();
        committed_in_logs(&out, &DATASETS).iter().all(|&c| c == 500)
    });
    // What the collector received: the metrics by their OpenTelemetry names, the spans
    // around each stage, and who sent them.
    let wanted = [
        "Name: weir.rows_written",
        "Name: weir.offset_lag",
        "Name: weir.watermark_lag",
        "Name: weir.commit.duration",
        "Name: weir.freshness",
        "Name           : batch",
        "Name           : transform",
        "Name           : write",
        "Name           : checkpoint",
        "service.name: Str(weir)",
        "weir.pipeline: Str(clickstream)",
    ];
    wait_until(
        "the collector to receive metrics and spans",
        Duration::from_secs(60),
        || {
            collector.assert_running();
            let received = collector.log_text();
            wanted.iter().all(|w| received.contains(w))
        },
    );
    assert!(service.terminate(Duration::from_secs(60)).success());
    collector.terminate(Duration::from_secs(30));
}
