//! TLS to Kafka: weir consumes over `security.protocol = "SSL"` and `"SASL_SSL"`, trusting a
//! CA the test makes (openssl), from a real broker (Tansu) behind a TLS endpoint (socat, since
//! Tansu 0.6 serves no TLS itself). Every row read back equals what was produced. With a CA
//! that did not sign the broker's certificate, weir gets no partitions and says why on
//! `/readyz` and in its log, once, not at every reconnection attempt.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cli::{Connection, orders_round_trip};
use common::fixtures::orders_env;
use common::kafka::{create_tansu_user, start_tansu_with};
use common::net::{free_ports, http_get, serving_port, wait_for_listener, wait_until};
use common::process::{Process, weir};
use common::tool;

/// Makes a CA (`<name>.pem`, `<name>.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=weir test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A certificate for 127.0.0.1 signed by the CA `ca` (`server.pem`, `server.key`).
fn make_server_certificate(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
            "-out",
            "server.pem",
        ],
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new(tool("WEIR_TEST_OPENSSL"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Tansu broker on a plain port of its own behind a TLS endpoint on another, which it
/// advertises: clients learn the TLS address from its metadata and only ever use that.
struct TlsBroker {
    broker: Process,
    _endpoint: Process,
    /// The TLS endpoint, `host:port`.
    bootstrap: String,
}

/// A CA `ca` (and another, `other`) in `dir`, and a [`TlsBroker`] with a certificate `ca`
/// signed, requiring SASL when `authentication`; `before` runs against the plain port before
/// the broker that clients see starts (to create users, say).
fn start_tls_broker(dir: &Path, authentication: bool, before: impl Fn(u16)) -> TlsBroker {
    make_ca(dir, "ca");
    make_ca(dir, "other");
    make_server_certificate(dir, "ca");
    let [plain, tls] = free_ports();
    let bootstrap = format!("127.0.0.1:{tls}");
    if authentication {
        let mut open = start_tansu_with(dir, plain, &bootstrap, false, "tansu-open.log");
        before(plain);
        open.child.kill().unwrap();
        open.child.wait().unwrap();
    }
    let broker = start_tansu_with(dir, plain, &bootstrap, authentication, "tansu.log");
    let mut socat = Command::new(tool("WEIR_TEST_SOCAT"));
    socat.args([
        &format!(
            "OPENSSL-LISTEN:{tls},bind=127.0.0.1,reuseaddr,fork,cert=server.pem,key=server.key,verify=0"
        ),
        &format!("TCP:127.0.0.1:{plain}"),
    ]);
    socat.current_dir(dir);
    let mut endpoint = Process::start("socat", socat, dir.join("socat.log"));
    wait_for_listener(&mut endpoint, tls);
    TlsBroker {
        broker,
        _endpoint: endpoint,
        bootstrap,
    }
}

#[test]
fn consumes_over_tls_and_a_wrong_ca_is_reported_once_and_on_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let TlsBroker {
        mut broker,
        _endpoint,
        bootstrap,
    } = start_tls_broker(dir.path(), false, |_| {});

    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let topic = "orders-tls";
    let (_, config) = orders_round_trip(
        dir.path(),
        topic,
        &Connection {
            bootstrap: &bootstrap,
            produce_args: &["--ssl-ca", ca],
            properties: &[
                ("security.protocol", "SSL"),
                ("ssl.ca.location", "${KAFKA_CA}"),
            ],
            vars: &[("KAFKA_CA", ca)],
        },
    );

    // A CA that did not sign the broker's certificate: no partitions, and the reason shown.
    let other = dir.path().join("other.pem");
    let out = dir.path().join("out");
    let orders = out.join("orders");
    let mut command = weir();
    command
        .args(["run", "--config"])
        .arg(&config)
        .envs(orders_env(
            &bootstrap,
            topic,
            &out,
            orders.to_str().unwrap(),
        ))
        .env("GROUP", "weir-test-wrong-ca")
        .env("KAFKA_CA", &other);
    let mut wrong = Process::start("weir", command, dir.path().join("wrong-ca.log"));
    let port = serving_port(&mut wrong);
    let mut said = String::new();
    wait_until(
        "/readyz to say why no partition is assigned",
        Duration::from_secs(60),
        || {
            wrong.assert_running();
            let (status, body) = http_get(port, "/readyz");
            said = body;
            status == 503 && said.contains("certificate verify failed")
        },
    );
    assert!(
        said.contains(
            "no Kafka partitions assigned to this instance; the Kafka client's latest error"
        ),
        "{said}"
    );
    // librdkafka retries many times a second; each error is logged once in 30 s.
    let log = wrong.log_text();
    let logged = log.matches("kafka client error").count();
    assert!(
        (1..=6).contains(&logged),
        "{logged} client error lines:\n{log}"
    );
    assert!(log.contains("certificate verify failed"), "{log}");
    assert!(wrong.terminate(Duration::from_secs(30)).success(), "{log}");
    broker.assert_running();
}

const PASSWORD: &str = "weir-tls-s3cret";

/// SASL/SCRAM over TLS (`SASL_SSL`), the password from the environment and kept out of the
/// log.
#[test]
fn consumes_with_scram_credentials_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let TlsBroker {
        mut broker,
        _endpoint,
        bootstrap,
    } = start_tls_broker(dir.path(), true, |plain| {
        create_tansu_user(plain, "weir", PASSWORD);
    });
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let (log, _) = orders_round_trip(
        dir.path(),
        "orders-sasl-ssl",
        &Connection {
            bootstrap: &bootstrap,
            produce_args: &[
                "--sasl-user",
                "weir",
                "--sasl-password",
                PASSWORD,
                "--ssl-ca",
                ca,
            ],
            properties: &[
                ("security.protocol", "SASL_SSL"),
                ("ssl.ca.location", "${KAFKA_CA}"),
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", "weir"),
                ("sasl.password", "${KAFKA_PASSWORD}"),
            ],
            vars: &[("KAFKA_CA", ca), ("KAFKA_PASSWORD", PASSWORD)],
        },
    );
    broker.assert_running();
    assert!(!log.contains(PASSWORD), "the password leaked into the log");
}
