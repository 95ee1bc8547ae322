//! Broker failures on the embedded three-broker cluster while weir consumes a stream: every
//! partition's leader moved, a broker (the group's coordinator) taken down and brought back,
//! fetches and offset commits failing, a slow broker. weir rides them out; every event lands exactly once.

mod common;

use std::time::{Duration, Instant};

use common::cli::generate;
use common::datasets::{Writers, check_exactly_once, committed_in_logs};
use common::fixtures::{QUICKSTART_DATASETS, quickstart_config};
use common::net::wait_until;
use common::process::{Process, weir};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const TOPIC: &str = "clickstream";

#[test]
fn broker_failures_mid_stream_lose_nothing_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(3).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 4, 3).unwrap();
    // Broker 2, which goes down below, coordinates the group: offset commits fail meanwhile,
    // and must not stall the pipeline.
    cluster
        .coordinator(MockCoordinator::Group("broker-faults".into()), 2)
        .unwrap();
    let config = quickstart_config(dir.path(), "max_batch_messages = 200", &[], "300ms");
    let out = dir.path().join("out");
    let out_text = out.display().to_string();
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("WEIR_OUT", out_text.as_str()),
        ("GROUP", "broker-faults"),
    ];
    let events = 16_000;
    let generated = dir.path().join("generated.json");
    // About 27 seconds of events: the stream outlasts the faults below, so that each step
    // has new events to make progress with.
    let mut generator = generate(&bootstrap, TOPIC, events, 600, 23, &generated);
    let mut command = weir();
    command.args(["run", "--config"]).arg(&config).envs(env);
    let mut weir = Process::start("weir", command, dir.path().join("weir.log"));

    // Waits until the clicks dataset has committed more than it had.
    let mut progress = |what: &str| {
        let before = committed_in_logs(&out, &QUICKSTART_DATASETS)[0];
        assert!(
            before < events as i64,
            "the stream was all committed before {what}: lengthen it"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while committed_in_logs(&out, &QUICKSTART_DATASETS)[0] <= before {
            weir.assert_running();
            assert!(
                Instant::now() < deadline,
                "no {what} within 60 s; weir's log:\n{}",
                weir.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    progress("first commit");
    for partition in 0..4 {
        cluster
            .partition_leader(TOPIC, partition, Some(partition % 3 + 1))
            .unwrap();
    }
    progress("progress after every leader moved");
    cluster.broker_down(2).unwrap();
    progress("progress with broker 2 down");
    cluster.broker_up(2).unwrap();
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    );
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        ],
    );
    progress("progress through failing fetches and offset commits");
    cluster
        .broker_round_trip_time(1, Duration::from_millis(300))
        .unwrap();
    progress("progress with a slow broker");
    cluster
        .broker_round_trip_time(1, Duration::from_millis(0))
        .unwrap();

    assert!(generator.wait().unwrap().success(), "weir generate failed");
    wait_until(
        "every dataset to commit every offset",
        Duration::from_secs(180),
        || {
            weir.assert_running();
            committed_in_logs(&out, &QUICKSTART_DATASETS)
                .iter()
                .all(|&c| c == events as i64)
        },
    );
    let status = weir.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", weir.log_text());
    check_exactly_once(&config, &env, &out_text, &generated, Writers::OneAtATime);
}
