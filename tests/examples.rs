//! Every pipeline under examples/ plans, passes its golden tests and runs its sample; the
//! orders example's pseudonyms are HMAC-SHA256 under the key from the environment, as an
//! independent implementation (Python's hmac) computes them.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::process::{output_ok, weir};
use common::registry::{Codec, Registry};
use common::{repo, tool};

/// The key the orders example's golden test was written for (a test's, not a secret).
const ORDERS_TEST_KEY: &str = "example-only-key-do-not-use-in-production";

/// weir with the orders example's key.
fn weir_keyed() -> Command {
    let mut command = weir();
    command.env("ORDERS_HASH_KEY", ORDERS_TEST_KEY);
    command
}

fn examples() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("pipeline.toml").exists())
        .collect();
    found.sort();
    assert!(found.len() >= 3, "{found:?}");
    found
}

#[test]
fn every_example_plans_passes_its_golden_tests_and_runs_its_sample() {
    let dir = tempfile::tempdir().unwrap();
    // The Avro and Protobuf examples read their schemas from a registry: one on loopback,
    // holding them.
    let registry = Registry::start(dir.path());
    for codec in [Codec::Avro, Codec::Protobuf] {
        registry.register(codec, codec.topic());
    }
    let weir_keyed = || {
        let mut command = weir_keyed();
        command.envs(registry.env());
        command
    };
    for example in examples() {
        let config = example.join("pipeline.toml");
        let checked =
            String::from_utf8(output_ok(weir_keyed().args(["sql", "check"]).arg(&config))).unwrap();
        assert!(checked.ends_with("ok\n"), "{checked}");
        let tested = String::from_utf8(output_ok(
            weir_keyed().args(["sql", "test", "--config"]).arg(&config),
        ))
        .unwrap();
        assert!(
            tested.ends_with(" passed, 0 failed\n") && !tested.starts_with("0 passed"),
            "{}: {tested}",
            example.display()
        );
        let sample = example.join("sample.jsonl");
        assert!(sample.exists(), "{} has no sample.jsonl", example.display());
        {
            let report: serde_json::Value = serde_json::from_slice(&output_ok(
                weir_keyed()
                    .args(["sql", "run", "--format", "json", "--config"])
                    .arg(&config)
                    .arg("--input")
                    .arg(&sample),
            ))
            .unwrap();
            let rows: usize = report["datasets"]
                .as_object()
                .unwrap()
                .values()
                .map(|rows| rows.as_array().unwrap().len())
                .sum();
            assert!(rows > 0, "{}: {report}", example.display());
        }
    }
}

#[test]
fn pseudonyms_are_hmac_sha256_under_the_key_from_the_environment() {
    let example = repo().join("examples/orders");
    let key = "a key only this test knows, 40 bytes long";
    let report: serde_json::Value = serde_json::from_slice(&output_ok(
        weir()
            .args(["sql", "run", "--format", "json", "--config"])
            .arg(example.join("pipeline.toml"))
            .arg("--input")
            .arg(example.join("sample.jsonl"))
            .env("ORDERS_HASH_KEY", key),
    ))
    .unwrap();
    let sample = std::fs::read_to_string(example.join("sample.jsonl")).unwrap();
    let email_of = |order: &str| -> String {
        sample
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["order_id"] == order)
            .and_then(|v| v["customer_email"].as_str().map(str::to_owned))
            .unwrap()
    };
    let orders = report["datasets"]["orders"].as_array().unwrap();
    assert!(!orders.is_empty());
    for order in orders {
        let email = email_of(order["order_id"].as_str().unwrap());
        let expected = Command::new(tool("WEIR_TEST_PYTHON"))
            .args([
                "-c",
                "import hmac, hashlib, sys; \
                 print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())",
                key,
                &email,
            ])
            .output()
            .unwrap();
        assert!(expected.status.success());
        assert_eq!(
            order["customer"].as_str().unwrap(),
            String::from_utf8_lossy(&expected.stdout).trim(),
            "{email}"
        );
        // The address itself is nowhere in the row.
        assert!(!order.to_string().contains(&email), "{order}");
    }
    // The key is nowhere in what weir printed.
    assert!(!report.to_string().contains(key));

    // A key too short to protect anything is refused when the file loads, without showing it.
    let output = weir()
        .args(["sql", "check"])
        .arg(example.join("pipeline.toml"))
        .env("ORDERS_HASH_KEY", "short-secret")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("sql.keys.customers") && error.contains("at least 16"),
        "{error}"
    );
    assert!(!error.contains("short-secret"), "{error}");

    // A wrong key name, or a value that is not text or an integer, fails when the SQL is
    // planned, not on every batch in production.
    let dir = tempfile::tempdir().unwrap();
    for file in ["pipeline.toml", "schema.toml", "sample.jsonl"] {
        std::fs::copy(example.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("sql")).unwrap();
    let sql = std::fs::read_to_string(example.join("sql/orders.sql")).unwrap();
    for (mistake, said) in [
        (
            "keyed_hash(customer_email, 'custmers')",
            "no key named 'custmers' in the pipeline's [sql.keys] (it has [\"customers\"])",
        ),
        (
            "keyed_hash(ts, 'customers')",
            "keyed_hash hashes text or integers",
        ),
    ] {
        let broken = sql.replace("keyed_hash(customer_email, 'customers')", mistake);
        assert_ne!(broken, sql);
        std::fs::write(dir.path().join("sql/orders.sql"), broken).unwrap();
        let output = weir_keyed()
            .args(["sql", "check"])
            .arg(dir.path().join("pipeline.toml"))
            .output()
            .unwrap();
        assert!(!output.status.success());
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains("sql/orders.sql:"), "{error}");
        assert!(error.contains(said), "{error}");
    }
}
