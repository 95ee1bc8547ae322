//! Authenticated Kafka: SASL/SCRAM-SHA-512 against Tansu, with the password taken from the
//! environment through `${KAFKA_PASSWORD}` and kept out of the logs.

mod common;

use common::cli::{Connection, orders_round_trip};
use common::kafka::{create_tansu_user, start_tansu};
use common::net::free_port;

const PASSWORD: &str = "weir-sasl-s3cret";

#[test]
fn consumes_with_scram_credentials_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    // Users are created while the broker still accepts anyone, then it restarts requiring
    // authentication on the same storage.
    let mut open = start_tansu(dir.path(), port, false, "tansu-open.log");
    create_tansu_user(port, "weir", PASSWORD);
    open.child.kill().unwrap();
    open.child.wait().unwrap();
    let mut broker = start_tansu(dir.path(), port, true, "tansu.log");

    let (log, _) = orders_round_trip(
        dir.path(),
        "orders-sasl",
        &Connection {
            bootstrap: &bootstrap,
            produce_args: &["--sasl-user", "weir", "--sasl-password", PASSWORD],
            properties: &[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", "weir"),
                ("sasl.password", "${KAFKA_PASSWORD}"),
            ],
            vars: &[("KAFKA_PASSWORD", PASSWORD)],
        },
    );
    broker.assert_running();
    assert!(!log.contains(PASSWORD), "the password leaked into the log");
}
