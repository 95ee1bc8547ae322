//! Exactly once under fire: weir killed at random moments, and a zombie instance woken after
//! its partitions moved on. Each run reads the datasets back with DuckDB (every generated
//! event exactly once, as a row or a dead letter) and checks them with `weir verify`.

mod common;

use std::time::{Duration, Instant};

use common::cli::generate;
use common::datasets::{Format, Writers, check_exactly_once_as, committed_in_logs, owners_in_log};
use common::fixtures::{QUICKSTART_DATASETS, as_delta, quickstart_config};
use common::net::wait_until;
use common::process::{Process, signal, weir};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::mocking::MockCluster;

const TOPIC: &str = "clickstream";
const PARTITIONS: i32 = 4;

/// SIGKILLs weir at 24 random moments (a seeded random delay after it starts consuming, so
/// across polling, writing, closing files, committing and publishing) while events arrive,
/// restarting it each time; then lets a last instance finish.
///
/// Every restart joins a fresh consumer group: where to resume comes from the commit logs,
/// never from the group's offsets, and a fresh group spares each restart the wait for the
/// killed member's session to expire.
#[test]
fn killed_at_random_moments_it_writes_every_event_exactly_once() {
    killed_at_random_moments(Format::Parquet, 24);
}

/// The same with Delta tables: each commit also a Delta commit, published again by the next
/// instance when a kill came between the two; Python's deltalake reads every event once.
#[test]
fn delta_tables_killed_at_random_moments_hold_every_event_exactly_once() {
    killed_at_random_moments(Format::Delta, 10);
}

fn killed_at_random_moments(format: Format, kills: u64) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(3).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, PARTITIONS, 3).unwrap();
    let config = quickstart_config(dir.path(), "max_batch_messages = 100", &[], "150ms");
    as_format(&config, format);
    let out = dir.path().join("out");
    let out_text = out.display().to_string();
    // Events keep arriving through all the kills (about 80 s for 24).
    let events = 1_000 * kills;
    let generated = dir.path().join("generated.json");
    let mut generator = generate(&bootstrap, TOPIC, events, 300, 3, &generated);

    let mut rng = StdRng::seed_from_u64(20_261_125);
    let mut at_kill = Vec::new();
    for kill in 0..kills {
        let group = format!("crash-{kill}");
        let env = [
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
            ("WEIR_OUT", out_text.as_str()),
            ("GROUP", group.as_str()),
        ];
        let mut command = weir();
        command.args(["run", "--config"]).arg(&config).envs(env);
        let mut weir = Process::start("weir", command, dir.path().join(format!("run-{kill}.log")));
        wait_until("partitions to be assigned", Duration::from_secs(60), || {
            weir.assert_running();
            weir.log_text().contains("partitions assigned")
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1_200)));
        weir.child.kill().unwrap();
        weir.child.wait().unwrap();
        at_kill.push(committed_in_logs(&out, &QUICKSTART_DATASETS)[0]);
    }
    eprintln!("offsets committed to clicks at each of the {kills} kills: {at_kill:?}");
    assert!(generator.wait().unwrap().success(), "weir generate failed");
    assert!(
        at_kill.first() < at_kill.last(),
        "the killed instances made progress: {at_kill:?}"
    );

    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("WEIR_OUT", out_text.as_str()),
        ("GROUP", "crash-final"),
    ];
    let mut command = weir();
    command.args(["run", "--config"]).arg(&config).envs(env);
    let mut last = Process::start("weir", command, dir.path().join("final.log"));
    wait_until("partitions to be assigned", Duration::from_secs(60), || {
        last.assert_running();
        last.log_text().contains("partitions assigned")
    });
    let started = Instant::now();
    wait_until(
        "every dataset to commit every offset",
        Duration::from_secs(180),
        || {
            last.assert_running();
            committed_in_logs(&out, &QUICKSTART_DATASETS)
                .iter()
                .all(|&c| c == events as i64)
        },
    );
    eprintln!("the last instance caught up in {:?}", started.elapsed());
    let status = last.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", last.log_text());

    check_exactly_once_as(
        &config,
        &env,
        &out_text,
        &generated,
        Writers::OneAtATime,
        format,
    );
}

/// Makes the outputs of the pipeline at `config` datasets of `format`.
fn as_format(config: &std::path::Path, format: Format) {
    if format == Format::Delta {
        as_delta(config);
    }
}

/// Two instances share a group. One is paused (SIGSTOP) past its session timeout, so the
/// group gives its partitions to the other, which claims them in the commit logs. Woken up,
/// the zombie tries to commit what it held: refused. Nothing is lost or written twice.
#[test]
fn a_zombie_woken_after_its_partitions_moved_has_its_commit_refused() {
    a_zombie_woken_after_its_partitions_moved(Format::Parquet);
}

/// The same with Delta tables: the zombie's commit is refused before it reaches Delta, and
/// the survivor's Delta commits carry every partition's offsets once.
#[test]
fn a_zombie_of_delta_tables_adds_nothing_to_them() {
    a_zombie_woken_after_its_partitions_moved(Format::Delta);
}

fn a_zombie_woken_after_its_partitions_moved(format: Format) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(3).expect("an embedded Kafka cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, PARTITIONS, 3).unwrap();
    let properties = [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ];
    let config = quickstart_config(dir.path(), "max_batch_messages = 200", &properties, "1s");
    as_format(&config, format);
    let out = dir.path().join("out");
    let out_text = out.display().to_string();
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("WEIR_OUT", out_text.as_str()),
        ("GROUP", "zombie-test"),
    ];
    let instance = |name: &str| {
        let mut command = weir();
        command.args(["run", "--config"]).arg(&config).envs(env);
        Process::start("weir", command, dir.path().join(format!("{name}.log")))
    };
    // Events keep arriving for about 40 s: past the pause, the takeover and the wake-up, so
    // that the paused instance holds uncommitted rows when it wakes.
    let events = 40_000;
    let generated = dir.path().join("generated.json");
    let mut generator = generate(&bootstrap, TOPIC, events, 1_000, 17, &generated);

    let mut zombie = instance("zombie");
    wait_until(
        "the first instance to commit",
        Duration::from_secs(60),
        || {
            zombie.assert_running();
            committed_in_logs(&out, &QUICKSTART_DATASETS)[0] > 0
        },
    );
    let mut survivor = instance("survivor");
    wait_until(
        "the group to share the partitions",
        Duration::from_secs(60),
        || {
            survivor.assert_running();
            survivor
                .log_text()
                .contains("partitions assigned partitions=clickstream")
        },
    );
    let zombie_writer = writer_id(&zombie.log_text());
    signal(&zombie, "STOP");
    // The survivor has taken over once it holds the latest claim of every partition.
    let clicks = out.join("clicks");
    wait_until(
        "the survivor to claim the paused instance's partitions",
        Duration::from_secs(60),
        || {
            survivor.assert_running();
            let owners = owners_in_log(&clicks);
            let first = owners.values().next().cloned().flatten();
            owners.len() == 4
                && first.is_some()
                && first != Some(zombie_writer.clone())
                && owners.values().all(|o| *o == first)
        },
    );
    signal(&zombie, "CONT");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !zombie.log_text().contains("commit refused") {
        zombie.assert_running();
        assert!(
            Instant::now() < deadline,
            "the woken instance's commit was not refused; its log:\n{}",
            zombie.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(generator.wait().unwrap().success(), "weir generate failed");
    wait_until(
        "every dataset to commit every offset",
        Duration::from_secs(180),
        || {
            zombie.assert_running();
            survivor.assert_running();
            committed_in_logs(&out, &QUICKSTART_DATASETS)
                .iter()
                .all(|&c| c == events as i64)
        },
    );
    for process in [&mut zombie, &mut survivor] {
        let status = process.terminate(Duration::from_secs(30));
        assert!(status.success(), "{}", process.log_text());
    }

    check_exactly_once_as(
        &config,
        &env,
        &out_text,
        &generated,
        Writers::SideBySide,
        format,
    );
}

/// The writer id a weir instance logged when it started.
fn writer_id(log: &str) -> String {
    let start = log
        .find("writer=")
        .expect("the start-up line names the writer")
        + "writer=".len();
    log[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}
