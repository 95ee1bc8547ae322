//! Authenticated Kafka: SASL/SCRAM-SHA-512 against Tansu, with the password taken from the
//! environment through `${KAFKA_PASSWORD}` and kept out of the logs.

mod common;

use common::cli::{Committed, run_until_committed};
use common::datasets::verify_orders;
use common::fixtures::{orders_config_with, orders_env};
use common::kafka::{produce_orders_with, start_tansu};
use common::net::free_port;
use common::process::weir;
use common::tool;

const PASSWORD: &str = "weir-sasl-s3cret";

#[test]
fn consumes_with_scram_credentials_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    // Users are created while the broker still accepts anyone, then it restarts requiring
    // authentication on the same storage.
    let mut open = start_tansu(dir.path(), port, false, "tansu-open.log");
    let created = std::process::Command::new(tool("WEIR_TEST_TANSU"))
        .args(["user", "create", "--broker", &format!("tcp://{bootstrap}")])
        .args(["--mechanism", "scram512", "weir", PASSWORD])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    open.child.kill().unwrap();
    open.child.wait().unwrap();
    let mut broker = start_tansu(dir.path(), port, true, "tansu.log");

    let topic = "orders-sasl";
    let (expected, messages) = produce_orders_with(
        dir.path(),
        &bootstrap,
        topic,
        2,
        true,
        &["--sasl-user", "weir", "--sasl-password", PASSWORD],
    );

    let config = orders_config_with(
        dir.path(),
        "max_batch_wait = \"50ms\"\n",
        "max_batch_wait = \"50ms\"\n\n[source.properties]\n\
         \"security.protocol\" = \"SASL_PLAINTEXT\"\n\
         \"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\
         \"sasl.username\" = \"weir\"\n\
         \"sasl.password\" = \"${KAFKA_PASSWORD}\"\n",
    );
    let out = dir.path().join("out");
    let orders = out.join("orders");
    let mut cmd = weir();
    cmd.args(["run", "--config"])
        .arg(&config)
        .envs(orders_env(
            &bootstrap,
            topic,
            &out,
            orders.to_str().unwrap(),
        ))
        .env("KAFKA_PASSWORD", PASSWORD)
        .env("WEIR_LOG", "debug");
    let sasl = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", "weir"),
        ("sasl.password", PASSWORD),
    ];
    let log = run_until_committed(
        cmd,
        dir.path().join("weir.log"),
        Committed {
            bootstrap: &bootstrap,
            topic,
            partitions: 2,
            messages,
            properties: &sasl,
        },
    );
    broker.assert_running();
    assert!(!log.contains(PASSWORD), "the password leaked into the log");

    verify_orders(&expected, &orders, &out);
}
