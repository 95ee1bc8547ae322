//! Datasets on Azure Blob Storage (Azurite) and Google Cloud Storage (fake-gcs-server), the
//! emulators on loopback; credentials come from the environment.

mod common;

use std::path::Path;
use std::time::Duration;

use common::blob_stores::{AZURITE_ACCOUNT, AZURITE_KEY, CONTAINER, start_azurite, start_fake_gcs};
use common::cli::{Committed, run_until_committed};
use common::fixtures::{orders_config_with, orders_env};
use common::kafka::{committed_total, orders_on_embedded_cluster};
use common::process::{Process, output_ok, weir, weirtest};
use weir_schemas::{OffsetRange, PartitionKey, WatermarkCoverage};
use weir_sink::{CommitLog, LogError, LogOptions};

/// The orders fixture's S3 storage options, replaced by a store's own.
const S3_STORAGE: &str = "aws_endpoint = \"${S3_ENDPOINT:-http://127.0.0.1:1}\"\n\
                          aws_allow_http = \"true\"\n\
                          aws_region = \"us-east-1\"\n";

#[test]
fn dataset_on_azure_holds_every_row_and_only_finished_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (_azurite, endpoint) = start_azurite(dir.path());
    let topic = "orders-azure";
    let (_cluster, bootstrap, expected, messages) = orders_on_embedded_cluster(dir.path(), topic);
    let url = format!("az://{CONTAINER}/datasets/orders");
    let log = run_until_committed(
        weir_on_azure("run", dir.path(), &bootstrap, topic, &url, &endpoint),
        dir.path().join("weir.log"),
        Committed {
            bootstrap: &bootstrap,
            topic,
            partitions: 2,
            messages,
            properties: &[],
        },
    );
    assert!(
        !log.contains(AZURITE_KEY),
        "the account key leaked into the log"
    );

    weirtest(&[
        "verify-store",
        "--store",
        "azure",
        "--expected",
        expected.to_str().unwrap(),
        "--endpoint",
        &endpoint,
        "--bucket",
        CONTAINER,
        "--prefix",
        "datasets/orders",
    ]);
    let report = output_ok(&mut weir_on_azure(
        "verify",
        dir.path(),
        &bootstrap,
        topic,
        &url,
        &endpoint,
    ));
    let report = String::from_utf8(report).unwrap();
    assert_eq!(report.matches(": OK").count(), 3, "{report}");
}

/// Two writers appending to one commit log on Azure at the same time, each for a partition
/// of its own: Azure's create-only put (`If-None-Match: *`) gives every entry exactly one
/// number, so none overwrites another and each partition's ranges follow one another. Then a
/// claim by the second writer fences the first out of its partition.
#[test]
fn two_writers_racing_on_one_azure_log_never_overwrite_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (_azurite, endpoint) = start_azurite(dir.path());
    let options = [
        ("azure_storage_account_name", AZURITE_ACCOUNT),
        ("azure_storage_account_key", AZURITE_KEY),
        (
            "azure_storage_endpoint",
            &format!("{endpoint}/{AZURITE_ACCOUNT}"),
        ),
        ("azure_allow_http", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let url = format!("az://{CONTAINER}/raced");
    let (store, root) = weir_sink::open_store(&url, &options).unwrap();
    const COMMITS: i64 = 15;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let writer = |name: &'static str, partition: i32| {
            let (store, root) = (store.clone(), root.clone());
            tokio::spawn(async move {
                let mut log = CommitLog::open("raced", store, root, name, LogOptions::default())
                    .await
                    .unwrap();
                let key = PartitionKey::new("t", partition);
                log.claim(std::slice::from_ref(&key)).await.unwrap();
                for offset in 0..COMMITS {
                    commit(&mut log, &key, offset).await.unwrap();
                }
                log
            })
        };
        let (a, b) = (writer("a", 0), writer("b", 1));
        let (mut a, mut b) = (a.await.unwrap(), b.await.unwrap());

        let state = CommitLog::read_state("raced", store.clone(), root.clone())
            .await
            .unwrap();
        assert_eq!(
            state.next_seq,
            2 * (COMMITS as u64 + 1),
            "two claims and every commit"
        );
        for partition in [0, 1] {
            let key = PartitionKey::new("t", partition);
            assert_eq!(state.partitions[&key].next_offset, Some(COMMITS));
        }

        // b takes partition 0 over; a, a zombie now, can no longer commit it.
        let zero = PartitionKey::new("t", 0);
        b.claim(std::slice::from_ref(&zero)).await.unwrap();
        let refused = commit(&mut a, &zero, COMMITS).await;
        assert!(
            matches!(refused, Err(LogError::Fenced { .. })),
            "{refused:?}"
        );
        commit(&mut b, &zero, COMMITS).await.unwrap();
    });
}

/// object_store writes to GCS through its XML API, which neither emulator installable here
/// serves (fake-gcs-server issue 331): weir refuses such a server at start, naming the
/// dataset and the store, as it refuses an S3 server without conditional puts, and commits
/// nothing.
#[test]
fn a_gcs_server_weir_cannot_write_to_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_gcs, endpoint) = start_fake_gcs(dir.path());
    let topic = "orders-gcs";
    let (_cluster, bootstrap, _, _) = orders_on_embedded_cluster(dir.path(), topic);
    let config = orders_config_with(
        dir.path(),
        S3_STORAGE,
        "google_service_account_key = \"${GOOGLE_SERVICE_ACCOUNT_KEY}\"\n",
    );
    // An emulator takes no credentials: the key only turns OAuth off and points at it.
    let key = serde_json::json!({
        "private_key": "unused",
        "private_key_id": "unused",
        "client_email": "weir@weir-test",
        "disable_oauth": true,
        "gcs_base_url": endpoint,
    });
    let mut command = weir();
    command
        .args(["run", "--config"])
        .arg(&config)
        .envs(orders_env(
            &bootstrap,
            topic,
            &dir.path().join("out"),
            &format!("gs://{CONTAINER}/datasets/orders"),
        ))
        .env("GOOGLE_SERVICE_ACCOUNT_KEY", key.to_string());
    let mut weir = Process::start("weir", command, dir.path().join("weir.log"));
    let status = weir.wait_for_exit("its start", Duration::from_secs(120));
    let log = weir.log_text();
    assert!(!status.success(), "weir must refuse the server:\n{log}");
    assert!(
        log.contains("dataset `orders`") && log.contains("GCS"),
        "the error names neither the dataset nor the store:\n{log}"
    );
    let committed = committed_total(&bootstrap, &format!("weir-test-{topic}"), topic, 2);
    assert!(committed <= 0, "offsets were committed: {committed}");
}

/// `weir <command>` of the orders pipeline writing its main dataset to `url` on Azurite at
/// `endpoint`, the account and its key in the environment as a deployment would have them.
fn weir_on_azure(
    command: &str,
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    url: &str,
    endpoint: &str,
) -> std::process::Command {
    let config = orders_config_with(
        dir,
        S3_STORAGE,
        "azure_storage_endpoint = \"${AZURE_ENDPOINT}\"\nazure_allow_http = \"true\"\n",
    );
    let mut cmd = weir();
    cmd.args([command, "--config"])
        .arg(config)
        .envs(orders_env(bootstrap, topic, &dir.join("out"), url))
        .env("AZURE_ENDPOINT", format!("{endpoint}/{AZURITE_ACCOUNT}"))
        .env("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT)
        .env("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY);
    cmd
}

/// Commits the one offset `offset` of `partition`, with no files.
async fn commit(
    log: &mut CommitLog,
    partition: &PartitionKey,
    offset: i64,
) -> Result<u64, LogError> {
    let range = OffsetRange {
        partition: partition.clone(),
        from: offset,
        to: offset + 1,
    };
    // Without files, no columns are recorded.
    let no_files = weir_sink::RecordedSchema {
        columns: Vec::new(),
        source: String::new(),
    };
    log.commit(
        vec![range],
        vec![],
        vec![],
        None,
        &no_files,
        &WatermarkCoverage::Complete,
    )
    .await
}
