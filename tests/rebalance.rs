//! Two instances share a consumer group; one is killed mid-stream. The survivor takes over
//! its partitions and, delivery being at least once, every event still lands: each valid one
//! as a row, each malformed one as a dead letter.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::mocking::MockCluster;

#[test]
fn a_killed_instance_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(3).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("clickstream", 4, 3).unwrap();
    // The quickstart pipeline, with a short session timeout so the group notices the kill
    // quickly, and small batches so that the kill lands mid-stream.
    let example = repo().join("examples/quickstart");
    let config = dir.path().join("pipeline.toml");
    let text = std::fs::read_to_string(example.join("pipeline.toml")).unwrap();
    let text = text.replace(
        "event_time = \"ts\"\n",
        "event_time = \"ts\"\nmax_batch_messages = 500\n\n[source.properties]\n\
         \"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n",
    );
    let text = text.replace("commit_interval = \"5s\"", "commit_interval = \"300ms\"");
    std::fs::write(&config, text).unwrap();
    for file in ["schema.toml", "sql/clicks.sql", "sql/product_views.sql"] {
        std::fs::create_dir_all(dir.path().join("sql")).unwrap();
        std::fs::copy(example.join(file), dir.path().join(file)).unwrap();
    }
    let out = dir.path().join("out");
    let instance = |name: &str| {
        let mut cmd = weir();
        cmd.args(["run", "--config"])
            .arg(&config)
            .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env("WEIR_OUT", &out);
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
    // Events keep arriving for about five seconds while the first instance is killed.
    let generated_path = dir.path().join("generated.json");
    let mut generate = weir();
    generate
        .args([
            "generate",
            "--bootstrap-servers",
            &bootstrap,
            "--topic",
            "clickstream",
        ])
        .args([
            "--events",
            "20000",
            "--rate",
            "4000",
            "--malformed-ratio",
            "0.05",
            "--seed",
            "11",
        ])
        .stdout(std::fs::File::create(&generated_path).unwrap());
    let mut generator = generate.spawn().unwrap();
    wait_until("a first commit", Duration::from_secs(120), || {
        committed() > 0
    });
    let committed_at_kill = committed();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    eprintln!("killed the first instance with {committed_at_kill} of 20000 offsets committed");
    assert!(generator.wait().unwrap().success(), "weir generate failed");
    wait_until(
        "the survivor to commit every offset",
        Duration::from_secs(180),
        || {
            second.assert_running();
            committed() == 20000
        },
    );
    let status = second.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", second.log_text());

    let report = weirtest(&[
        "check-at-least-once",
        "--out",
        out.to_str().unwrap(),
        "--generated",
        generated_path.to_str().unwrap(),
    ]);
    eprintln!("{report}");
}
