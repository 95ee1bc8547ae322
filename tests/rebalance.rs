//! Instances share a consumer group: two start, a third joins mid-stream, then the first is
//! killed. The survivors take over its partitions, resume them from the commit logs, and
//! every event lands exactly once: each valid one as one row, each malformed one as one dead
//! letter. The group's offsets end where the datasets' commit logs do, and stay there.

mod common;

use std::time::Duration;

use common::cli::generate;
use common::datasets::committed_in_logs;
use common::fixtures::{QUICKSTART_DATASETS, quickstart_config};
use common::kafka::committed_total;
use common::net::wait_until;
use common::process::{Process, weir, weirtest};
use rdkafka::mocking::MockCluster;

#[test]
fn a_killed_instance_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(3).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("clickstream", 4, 3).unwrap();
    // The quickstart pipeline, with a short session timeout so the group notices the kill
    // quickly, and small batches so that the kill lands mid-stream.
    let properties = [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ];
    let config = quickstart_config(dir.path(), "max_batch_messages = 500", &properties, "300ms");
    let out = dir.path().join("out");
    let instance = |name: &str| {
        let mut cmd = weir();
        cmd.args(["run", "--config"])
            .arg(&config)
            .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env("WEIR_OUT", &out)
            .env("GROUP", "weir-clickstream");
        Process::start("weir", cmd, dir.path().join(format!("{name}.log")))
    };
    let committed = || committed_total(&bootstrap, "weir-clickstream", "clickstream", 4);

    let mut first = instance("first");
    let mut second = instance("second");
    wait_until(
        "both instances to join the group",
        Duration::from_secs(120),
        || {
            first.assert_running();
            second.assert_running();
            [first.log_text(), second.log_text()]
                .iter()
                .all(|l| l.contains("partitions assigned"))
        },
    );
    // Events keep arriving for about 25 seconds, while the third instance joins and the
    // first is killed.
    let generated_path = dir.path().join("generated.json");
    let mut generator = generate(&bootstrap, "clickstream", 20_000, 800, 11, &generated_path);
    wait_until("a first commit", Duration::from_secs(120), || {
        committed() > 0
    });
    // A third instance joins mid-stream and takes a share of the partitions.
    let mut third = instance("third");
    wait_until(
        "the third instance to join",
        Duration::from_secs(120),
        || {
            third.assert_running();
            third.log_text().contains("partitions assigned")
        },
    );
    let committed_at_kill = committed();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    eprintln!("killed the first instance with {committed_at_kill} of 20000 offsets committed");
    assert!(generator.wait().unwrap().success(), "weir generate failed");
    wait_until(
        "every offset committed to the datasets",
        Duration::from_secs(180),
        || {
            second.assert_running();
            third.assert_running();
            committed_in_logs(&out, &QUICKSTART_DATASETS)
                .iter()
                .all(|&n| n == 20000)
        },
    );
    // The group's offsets follow the datasets, then stay put for many commit intervals: an
    // instance that re-sent offsets of partitions it gave up would pull them back.
    wait_until(
        "the group's offsets to follow",
        Duration::from_secs(60),
        || committed() == 20000,
    );
    let steady_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < steady_until {
        assert_eq!(
            committed(),
            20000,
            "the group's offsets went back\nsecond:\n{}\nthird:\n{}",
            second.log_text(),
            third.log_text()
        );
    }
    for survivor in [&mut second, &mut third] {
        let status = survivor.terminate(Duration::from_secs(30));
        assert!(status.success(), "{}", survivor.log_text());
    }

    let report = weirtest(&[
        "check-exactly-once",
        "--out",
        out.to_str().unwrap(),
        "--generated",
        generated_path.to_str().unwrap(),
        "--several-writers",
    ]);
    eprintln!("{report}");
}
