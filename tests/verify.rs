//! `weir verify` on damaged datasets: each kind of damage it claims to find (a committed file
//! deleted or truncated, a visible file no commit lists, ranges that overlap or leave a gap,
//! a commit from a writer that does not own the partition, a missing log entry) makes it
//! fail, naming the problem. The same dataset undamaged passes.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use common::process::weir;
use weir_schemas::hive::PartitionPaths;
use weir_schemas::{Checkpoint, OffsetRange, PartitionKey, WatermarkCoverage};
use weir_sink::{
    Compression, DatasetOptions, DatasetWriter, ParquetDataset, PathLimits, RollPolicy,
};

/// A dataset of two Kafka partitions in `dir`: writer `w` claims both (entry 0), then
/// commits offsets 0..10 and 10..20 of each (entries 1 and 2), rows split over `p=a` and
/// `p=b`.
fn write_dataset(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let (store, root) =
            weir_sink::open_store(dir.to_str().unwrap(), &Default::default()).unwrap();
        let options = DatasetOptions {
            compression: Compression::Zstd,
            row_group_rows: 1000,
            roll: RollPolicy {
                target_file_bytes: 64 << 20,
                max_file_rows: 1_000_000,
                max_file_age: Duration::from_secs(3600),
            },
            upload_buffer_bytes: 1 << 20,
            max_open_files: 16,
            max_partitions_per_checkpoint: 1000,
            time_partitions: None,
            log_retention: None,
            path_limits: PathLimits::for_url(dir.to_str().unwrap()),
            snapshot_every: None,
            schema_source: "a test".into(),
            delta: None,
        };
        let mut writer = ParquetDataset::new("damaged", store, root, &schema, options)
            .open_writer("w", Duration::from_secs(3600))
            .await
            .unwrap();
        let partitions = [PartitionKey::new("t", 0), PartitionKey::new("t", 1)];
        writer.claim(&partitions).await.unwrap();
        for from in [0, 10] {
            let ids = Int64Array::from_iter_values(from..from + 10);
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)]).unwrap();
            let paths: PartitionPaths = (0..10)
                .map(|n| if n % 2 == 0 { "p=a" } else { "p=b" })
                .collect();
            writer.write(&batch, Some(&paths)).await.unwrap();
            let ranges = partitions
                .iter()
                .map(|partition| OffsetRange {
                    partition: partition.clone(),
                    from,
                    to: from + 10,
                })
                .collect();
            let checkpoint = Checkpoint {
                ranges,
                coverage: WatermarkCoverage::Complete,
                ..Checkpoint::default()
            };
            writer.commit(checkpoint).await.unwrap();
        }
    });
}

/// `weir verify <dataset>`: whether it passed, and what it printed.
fn verify(dataset: &Path) -> (bool, String) {
    let output = weir().arg("verify").arg(dataset).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The data files of partition `p=a`, in name order.
fn files_of_a(dataset: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dataset.join("p=a"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn entry_path(dataset: &Path, seq: u64) -> std::path::PathBuf {
    dataset.join(format!("_weir/log/{seq:020}.json"))
}

/// Rewrites log entry `seq` of `dataset` with `edit` applied to its JSON.
fn edit_entry(dataset: &Path, seq: u64, edit: impl Fn(&mut serde_json::Value)) {
    let path = entry_path(dataset, seq);
    let mut entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut entry);
    std::fs::write(&path, serde_json::to_vec(&entry).unwrap()).unwrap();
}

#[test]
fn every_kind_of_damage_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let sound = dir.path().join("sound");
    write_dataset(&sound);
    let (ok, report) = verify(&sound);
    assert!(ok, "{report}");
    assert!(
        report.contains("dataset") && report.contains(": OK"),
        "{report}"
    );

    type Damage = Box<dyn Fn(&Path)>;
    let damages: Vec<(&str, Damage, &str)> = vec![
        (
            "deleted",
            Box::new(|d| std::fs::remove_file(&files_of_a(d)[0]).unwrap()),
            "is committed but missing",
        ),
        (
            "truncated",
            Box::new(|d| {
                let file = &files_of_a(d)[0];
                let bytes = std::fs::read(file).unwrap();
                std::fs::write(file, &bytes[..bytes.len() / 2]).unwrap();
            }),
            "bytes, the commit says",
        ),
        (
            "uncommitted visible file",
            Box::new(|d| {
                let file = &files_of_a(d)[0];
                std::fs::copy(file, d.join("p=a/part-rogue-000001.parquet")).unwrap();
            }),
            "p=a/part-rogue-000001.parquet is visible to readers but no commit lists it",
        ),
        (
            "overlapping ranges",
            Box::new(|d| {
                edit_entry(d, 2, |e| e["ranges"][0]["from"] = 5.into());
            }),
            "range starts at offset 5 but the previous one ended at 10 (overlap)",
        ),
        (
            "a gap between ranges",
            Box::new(|d| {
                edit_entry(d, 2, |e| e["ranges"][1]["from"] = 12.into());
            }),
            "range starts at offset 12 but the previous one ended at 10 (gap)",
        ),
        (
            "a commit from a writer that owns no partition",
            Box::new(|d| edit_entry(d, 2, |e| e["writer"] = "intruder".into())),
            "log entry 2: t/0 was claimed by w at entry 0",
        ),
        (
            "a missing log entry",
            Box::new(|d| std::fs::remove_file(entry_path(d, 1)).unwrap()),
            "log entry 1 is missing",
        ),
    ];
    for (what, damage, expected) in damages {
        let damaged = dir.path().join(what.replace(' ', "-"));
        copy_dir(&sound, &damaged);
        damage(&damaged);
        let (ok, report) = verify(&damaged);
        assert!(!ok, "{what}: weir verify passed:\n{report}");
        assert!(
            report.contains("FAILED") && report.contains(expected),
            "{what}: expected `{expected}` in:\n{report}"
        );
    }
}
