//! Delta Lake tables: each commit of a dataset's own log published as one Delta commit.
//!
//! A Delta dataset is a Parquet dataset whose table root is also a Delta table. weir's commit
//! log under `_weir/` stays the source of truth for what it needs and Delta has no place
//! for: claims that fence zombies, offset ranges checked for gaps and overlaps, window state,
//! watermarks. Publishing a commit (after its log entry exists) moves its files to their
//! final names, as for every dataset, then appends one Delta commit holding:
//!
//! - an `add` action per file, with its partition values and statistics;
//! - one application transaction per Kafka partition of the commit
//!   (`appId = <pipeline>-<topic>-<partition>`, `version` = the end of its offset range), as
//!   kafka-delta-ingest writes them;
//! - the committed watermark and the commit log entry in `commitInfo`.
//!
//! Readers of the Delta log see whole checkpoints or nothing. A publication is idempotent: a
//! commit whose partitions' transaction versions already reach the ends of its ranges was
//! published, by this writer before a crash or by another one finishing its work. Two
//! writers publishing the same entry at once (an instance recovering a stopped one's commit)
//! cannot both succeed: Delta's conflict check refuses a commit whose application
//! transactions a concurrent commit also carries, and the loser finds the entry published.
//! Delta's own optimistic concurrency orders commits of different partitions.
//!
//! `_weir/` starts with an underscore, so Delta's VACUUM leaves it alone.

mod stats;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::transaction::{
    CommitBuilder, CommitConflictError, CommitProperties, TableReference, TransactionError,
};
use deltalake_core::kernel::{Action, Add, MetadataExt, StructField, StructType, Transaction};
use deltalake_core::logstore::{StorageConfig, default_logstore};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};
use object_store::ObjectStore;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use tokio::sync::Mutex;
use weir_schemas::OffsetRange;

use crate::commit_log::{TablePublication, WrittenFile, under};

pub use stats::file_stats;

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("dataset `{dataset}`: Delta table at {url}: {source}")]
    Table {
        dataset: String,
        url: String,
        #[source]
        source: Box<DeltaTableError>,
    },
    #[error("dataset `{dataset}`: the columns cannot be a Delta table's schema: {reason}")]
    Schema { dataset: String, reason: String },
    #[error(
        "dataset `{dataset}`: there is no Delta table at {url}, and weir's log of the dataset \
         already holds commits, which a new table would not: Delta readers would miss their \
         rows. Point the dataset at a new URL, or make the existing files a Delta table first \
         (Delta's CONVERT TO DELTA); weir then publishes its next commits to it"
    )]
    NotConverted { dataset: String, url: String },
    #[error("dataset `{dataset}`: reading the statistics of {path}: {reason}")]
    Stats {
        dataset: String,
        path: String,
        reason: String,
    },
}

/// The Delta table a dataset's commits are published to.
pub struct DeltaPublisher {
    dataset: String,
    url: String,
    /// The dataset's store and root, to read the footers of the files published.
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// Names the application transactions: `<app>-<topic>-<partition>`.
    app: String,
    partition_columns: Vec<String>,
    table: Mutex<DeltaTable>,
}

impl DeltaPublisher {
    /// The Delta table at `url`, the dataset's root (`store` rooted at the bucket or, for
    /// local paths, the file system, and `root` the table's path in it), created with the
    /// files' `schema` and `partition_columns` if it does not exist, unless weir's log of
    /// the dataset holds commits already (`committed_before`).
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        dataset: &str,
        url: &url::Url,
        store: Arc<dyn ObjectStore>,
        root: Path,
        app: &str,
        schema: &SchemaRef,
        partition_columns: &[String],
        committed_before: bool,
    ) -> Result<Self, DeltaError> {
        let table_error = |source| DeltaError::Table {
            dataset: dataset.to_owned(),
            url: url.to_string(),
            source: Box::new(source),
        };
        let prefixed: Arc<dyn ObjectStore> =
            Arc::new(PrefixStore::new(store.clone(), root.clone()));
        let log_store = default_logstore(prefixed, store.clone(), url, &StorageConfig::default());
        let mut table = DeltaTable::new(log_store);
        let columns = table_schema(dataset, schema, partition_columns)?;
        match table.load().await {
            Ok(()) => add_columns(dataset, &mut table, &columns)
                .await
                .map_err(|e| match e {
                    AddColumns::Table(e) => table_error(e),
                    AddColumns::Schema(e) => e,
                })?,
            Err(DeltaTableError::NotATable(_)) if committed_before => {
                return Err(DeltaError::NotConverted {
                    dataset: dataset.to_owned(),
                    url: url.to_string(),
                });
            }
            Err(DeltaTableError::NotATable(_)) => {
                table = table
                    .create()
                    .with_table_name(dataset)
                    .with_columns(columns.fields().cloned())
                    .with_partition_columns(partition_columns.iter().cloned())
                    // Two instances creating it at once: the loser's create is refused,
                    // and it loads the winner's table.
                    .with_commit_properties(CommitProperties::default().with_max_retries(0))
                    .await
                    .or_else(|e| match e {
                        DeltaTableError::Transaction { .. } => {
                            Ok(DeltaTable::new(table.log_store()))
                        }
                        other => Err(other),
                    })
                    .map_err(table_error)?;
                if table.version().is_none() {
                    table.load().await.map_err(table_error)?;
                }
            }
            Err(e) => return Err(table_error(e)),
        }
        Ok(Self {
            dataset: dataset.to_owned(),
            url: url.to_string(),
            store,
            root,
            app: app.to_owned(),
            partition_columns: partition_columns.to_vec(),
            table: Mutex::new(table),
        })
    }

    fn app_id(&self, range: &OffsetRange) -> String {
        format!(
            "{}-{}-{}",
            self.app, range.partition.topic, range.partition.partition
        )
    }

    fn table_error(&self, source: DeltaTableError) -> DeltaError {
        DeltaError::Table {
            dataset: self.dataset.clone(),
            url: self.url.clone(),
            source: Box::new(source),
        }
    }

    /// Publishes log entry `seq` (its `ranges` and `files`) as one Delta commit, unless it
    /// was published already.
    async fn publish_once(
        &self,
        seq: u64,
        ranges: &[OffsetRange],
        files: &[WrittenFile],
        watermark_ms: Option<i64>,
    ) -> Result<(), DeltaError> {
        if ranges.is_empty() {
            return Ok(());
        }
        let mut adds = Vec::with_capacity(files.len());
        for file in files {
            adds.push(self.add(file).await?);
        }
        let mut table = self.table.lock().await;
        loop {
            table
                .update_incremental(None)
                .await
                .map_err(|e| self.table_error(e))?;
            if self.published(&table, ranges).await? {
                return Ok(());
            }
            let now = chrono::Utc::now().timestamp_millis();
            let mut actions: Vec<Action> = adds.iter().cloned().map(Action::Add).collect();
            actions.extend(ranges.iter().map(|range| {
                Action::Txn(Transaction::new_with_last_update(
                    self.app_id(range),
                    range.to,
                    Some(now),
                ))
            }));
            let mut info = vec![("weirEntry".to_owned(), serde_json::json!(seq))];
            if let Some(watermark) = watermark_ms {
                info.push(("weirWatermark".to_owned(), serde_json::json!(watermark)));
            }
            let properties = CommitProperties::default()
                .with_metadata(info)
                .with_max_retries(0)
                .with_cleanup_expired_logs(Some(false));
            let operation = DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: (!self.partition_columns.is_empty())
                    .then(|| self.partition_columns.clone()),
                predicate: None,
            };
            let snapshot = table.snapshot().map_err(|e| self.table_error(e))?;
            let committed = CommitBuilder::from(properties)
                .with_actions(actions)
                .build(
                    Some(snapshot as &dyn TableReference),
                    table.log_store(),
                    operation,
                )
                .await;
            match committed {
                Ok(_) => return Ok(()),
                // Another commit came first: another partition's (go again on top of it),
                // or this entry's, published by someone else (seen at the top).
                Err(DeltaTableError::Transaction {
                    source:
                        TransactionError::VersionAlreadyExists(_)
                        | TransactionError::MaxCommitAttempts(_)
                        | TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction),
                }) => continue,
                Err(e) => return Err(self.table_error(e)),
            }
        }
    }

    /// Whether a Delta commit carries `ranges` already: the application transactions of
    /// their partitions reach their ends (one commit holds them all, so one tells).
    async fn published(
        &self,
        table: &DeltaTable,
        ranges: &[OffsetRange],
    ) -> Result<bool, DeltaError> {
        let range = &ranges[0];
        let snapshot = table.snapshot().map_err(|e| self.table_error(e))?;
        let version = snapshot
            .transaction_version(table.log_store().as_ref(), self.app_id(range))
            .await
            .map_err(|e| self.table_error(e))?;
        Ok(version.is_some_and(|v| v >= range.to))
    }

    /// The `add` action of a committed file, with statistics from its footer.
    async fn add(&self, file: &WrittenFile) -> Result<Add, DeltaError> {
        let stats_error = |reason: String| DeltaError::Stats {
            dataset: self.dataset.clone(),
            path: file.path.clone(),
            reason,
        };
        let path = under(&self.root, &file.path).map_err(|e| stats_error(e.to_string()))?;
        let stats = file_stats(self.store.as_ref(), &path, file.bytes)
            .await
            .map_err(stats_error)?;
        Ok(Add {
            path: file.path.clone(),
            partition_values: partition_values(&file.partition),
            size: file.bytes as i64,
            modification_time: chrono::Utc::now().timestamp_millis(),
            data_change: true,
            stats: Some(stats),
            ..Default::default()
        })
    }
}

#[async_trait::async_trait]
impl TablePublication for DeltaPublisher {
    async fn publish(
        &self,
        seq: u64,
        ranges: &[OffsetRange],
        files: &[WrittenFile],
        watermark_ms: Option<i64>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.publish_once(seq, ranges, files, watermark_ms).await?)
    }
}

/// What `weir verify` found in a dataset's Delta table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeltaReport {
    /// The table's latest version.
    pub version: u64,
    /// Files the table holds.
    pub files: u64,
    /// Files weir committed that the table does not hold yet: those of a commit being
    /// published, or left unpublished by a writer that stopped (its next start publishes
    /// them).
    pub unpublished_files: u64,
}

/// Checks the Delta table of a dataset against what weir's commit log committed:
/// `committed`, every file it lists (`None` when its first entries were pruned), and
/// `ends`, per Kafka partition where the committed offsets end. Every file of the table
/// must be committed, and no partition's application transaction may pass its end.
/// Problems go to `problems`.
pub async fn check(
    dataset: &str,
    options: &crate::DeltaOptions,
    committed: Option<&std::collections::HashSet<String>>,
    ends: &[(weir_schemas::PartitionKey, i64)],
    problems: &mut Vec<String>,
) -> Option<DeltaReport> {
    let (url, store, root) = match crate::store::open_rooted_store(&options.url, &options.storage) {
        Ok(opened) => opened,
        Err(e) => {
            problems.push(format!("Delta table: {e}"));
            return None;
        }
    };
    let prefixed: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store.clone(), root));
    let mut table = DeltaTable::new(default_logstore(
        prefixed,
        store,
        &url,
        &StorageConfig::default(),
    ));
    if let Err(e) = table.load().await {
        problems.push(format!("the Delta table at {url} cannot be read: {e}"));
        return None;
    }
    let snapshot = match table.snapshot() {
        Ok(snapshot) => snapshot,
        Err(e) => {
            problems.push(format!("the Delta table at {url} cannot be read: {e}"));
            return None;
        }
    };
    let files: std::collections::HashSet<String> = snapshot
        .log_data()
        .iter()
        .map(|file| file.path().into_owned())
        .collect();
    let mut report = DeltaReport {
        version: snapshot.version(),
        files: files.len() as u64,
        unpublished_files: 0,
    };
    if let Some(committed) = committed {
        let mut outside: Vec<&String> = files.difference(committed).collect();
        outside.sort();
        for path in outside {
            problems.push(format!(
                "{path} is in the Delta table of `{dataset}` but no commit of its log lists it"
            ));
        }
        report.unpublished_files = committed.difference(&files).count() as u64;
    }
    for (partition, end) in ends {
        let app = format!(
            "{}-{}-{}",
            options.app, partition.topic, partition.partition
        );
        match snapshot
            .transaction_version(table.log_store().as_ref(), &app)
            .await
        {
            Ok(Some(version)) if version > *end => problems.push(format!(
                "the Delta table of `{dataset}` says {partition} is written up to offset \
                 {version}, its commit log up to {end}"
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!(
                "the Delta table's transaction `{app}` cannot be read: {e}"
            )),
        }
    }
    Some(report)
}

enum AddColumns {
    Table(DeltaTableError),
    Schema(DeltaError),
}

/// Adds to the table's schema the columns of `wanted` it lacks (a transform whose reader
/// schema gained columns), as one metadata commit. A column whose type changed is refused:
/// Delta readers would need the table's type widening feature, which weir does not enable.
async fn add_columns(
    dataset: &str,
    table: &mut DeltaTable,
    wanted: &StructType,
) -> Result<(), AddColumns> {
    let snapshot = table.snapshot().map_err(AddColumns::Table)?;
    let current = snapshot.schema();
    let mut added = Vec::new();
    for field in wanted.fields() {
        match current.field(field.name()) {
            None => added.push(StructField::new(
                field.name(),
                field.data_type().clone(),
                true,
            )),
            Some(known) if known.data_type() != field.data_type() => {
                return Err(AddColumns::Schema(DeltaError::Schema {
                    dataset: dataset.to_owned(),
                    reason: format!(
                        "column `{}` is {:?} in the Delta table and {:?} in the dataset; Delta \
                         tables take added columns only",
                        field.name(),
                        known.data_type(),
                        field.data_type()
                    ),
                }));
            }
            Some(_) => {}
        }
    }
    if added.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = added.iter().map(|f| f.name().clone()).collect();
    let schema = current
        .add(added)
        .map_err(|e| AddColumns::Table(e.into()))?;
    let metadata = snapshot
        .metadata()
        .clone()
        .with_schema(&schema)
        .map_err(|e| AddColumns::Table(e.into()))?;
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    CommitBuilder::from(CommitProperties::default())
        .with_actions(vec![Action::Metadata(metadata)])
        .build(
            Some(snapshot as &dyn TableReference),
            table.log_store(),
            operation,
        )
        .await
        .map_err(AddColumns::Table)?;
    table
        .update_incremental(None)
        .await
        .map_err(AddColumns::Table)?;
    tracing::info!(dataset, columns = ?names, "columns added to the Delta table's schema");
    Ok(())
}

/// The Delta schema of a dataset: the files' columns, then the partition columns (strings,
/// since they live in the paths, not the files).
fn table_schema(
    dataset: &str,
    schema: &SchemaRef,
    partition_columns: &[String],
) -> Result<StructType, DeltaError> {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(
        partition_columns
            .iter()
            .map(|name| Field::new(name, DataType::Utf8, true)),
    );
    StructType::try_from_arrow(&Schema::new(fields)).map_err(|e| DeltaError::Schema {
        dataset: dataset.to_owned(),
        reason: e.to_string(),
    })
}

/// The partition values of a Hive partition path (`dt=2026-12-07/hour=09`), unescaped;
/// Hive's NULL partition as `None`.
fn partition_values(path: &str) -> HashMap<String, Option<String>> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .filter_map(|segment| segment.split_once('='))
        .map(|(name, value)| {
            let value = (value != weir_schemas::hive::NULL_PARTITION)
                .then(|| weir_schemas::hive::unescape(value).unwrap_or_else(|| value.to_owned()));
            (name.to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use weir_schemas::PartitionKey;

    use super::*;
    use crate::dataset::DatasetWriter;
    use crate::testing::{checkpoint, dataset_options};
    use crate::{DatasetOptions, DeltaOptions, ParquetDataset};

    fn options(dir: &std::path::Path) -> DatasetOptions {
        DatasetOptions {
            delta: Some(DeltaOptions {
                url: dir.display().to_string(),
                storage: Default::default(),
                app: "p".into(),
                partition_columns: vec!["country".into()],
            }),
            ..dataset_options(1000)
        }
    }

    fn rows(ids: &[i64], names: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .unwrap()
    }

    /// Each commit is one Delta commit with its files, their statistics and the partition's
    /// application transaction. A commit its writer did not publish (it stopped after its
    /// log entry) is published by the next writer to open the dataset; publishing a commit
    /// again adds nothing.
    #[tokio::test]
    async fn each_commit_is_one_delta_commit_published_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = rows(&[3, 1, 2], &["c", "a", "b"]);
        let (store, root) =
            crate::open_store(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let dataset = ParquetDataset::new(
            "t",
            store.clone(),
            root.clone(),
            &first.schema(),
            options(dir.path()),
        );
        // A plain dataset with commits does not become a Delta table by a change of config:
        // the table would lack them. Here it has none yet: the first open creates the table.
        dataset
            .open_writer("w", Duration::from_secs(3600))
            .await
            .unwrap();
        // A writer that commits to the log only, as one killed before its Delta commit.
        let unpublishing = DatasetOptions {
            delta: None,
            ..options(dir.path())
        };
        let plain = ParquetDataset::new(
            "t",
            store.clone(),
            root.clone(),
            &first.schema(),
            unpublishing,
        );
        let mut stopped = plain
            .open_writer("w0", Duration::from_secs(3600))
            .await
            .unwrap();
        stopped.claim(&[PartitionKey::new("t", 0)]).await.unwrap();
        let paths = weir_schemas::hive::one_path("country=N%2FA", 3);
        stopped.write(&first, Some(&paths)).await.unwrap();
        let committed = stopped.commit(checkpoint(0, 3)).await.unwrap();

        let mut writer = dataset
            .open_writer("w1", Duration::from_secs(3600))
            .await
            .unwrap();
        writer.claim(&[PartitionKey::new("t", 0)]).await.unwrap();
        writer.write(&rows(&[4], &["d"]), None).await.unwrap();
        writer.commit(checkpoint(3, 4)).await.unwrap();

        let (url, root_store, table_root) =
            crate::open_rooted_store(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let publisher = DeltaPublisher::open(
            "t",
            &url,
            root_store,
            table_root,
            "p",
            &first.schema(),
            &[],
            true,
        )
        .await
        .unwrap();
        let version = || async { publisher.table.lock().await.version() };
        // Created, the stopped writer's commit published at the next open, then the next
        // writer's.
        assert_eq!(version().await, Some(2));
        publisher
            .publish_once(1, &checkpoint(0, 3).ranges, &committed.files, None)
            .await
            .unwrap();
        assert_eq!(version().await, Some(2), "published already: nothing added");
        let report = crate::Dataset::verify(&dataset).await.unwrap();
        assert!(report.ok(), "{report}");
        let delta = report.delta.as_ref().unwrap();
        assert_eq!(
            (delta.version, delta.files, delta.unpublished_files),
            (2, 2, 0)
        );

        let table = publisher.table.lock().await;
        let snapshot = table.snapshot().unwrap();
        let txn = snapshot
            .transaction_version(table.log_store().as_ref(), "p-t-0")
            .await
            .unwrap();
        assert_eq!(txn, Some(4));
        let mut files: Vec<String> = snapshot
            .log_data()
            .iter()
            .map(|f| f.path().into_owned())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2);
        assert!(files[0].starts_with("country=N%2FA/part-"), "{files:?}");
        drop(table);
        let stats = file_stats(
            dataset_store(dir.path()).as_ref(),
            &Path::parse(files[0].as_str()).unwrap(),
            std::fs::metadata(dir.path().join(&files[0])).unwrap().len(),
        )
        .await
        .unwrap();
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(
            stats,
            serde_json::json!({
                "numRecords": 3,
                "minValues": {"id": 1, "name": "a"},
                "maxValues": {"id": 3, "name": "c"},
                "nullCount": {"id": 0, "name": 0},
            })
        );
    }

    /// A dataset whose columns grew adds them to the table's schema; one whose column
    /// changed type is refused, naming it.
    #[tokio::test]
    async fn added_columns_reach_the_tables_schema_and_changed_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = |fields: Vec<Field>| {
            let dir = dir.path().to_owned();
            async move {
                let (url, store, root) =
                    crate::open_rooted_store(dir.to_str().unwrap(), &Default::default()).unwrap();
                let schema = Arc::new(Schema::new(fields));
                DeltaPublisher::open(
                    "t",
                    &url,
                    store,
                    root,
                    "p",
                    &schema,
                    &["country".into()],
                    false,
                )
                .await
            }
        };
        let id = Field::new("id", DataType::Int64, false);
        open(vec![id.clone()]).await.unwrap();
        let grown = open(vec![id.clone(), Field::new("extra", DataType::Utf8, true)])
            .await
            .unwrap();
        let table = grown.table.lock().await;
        assert_eq!(table.version(), Some(1));
        let schema = table.snapshot().unwrap().schema();
        let names: Vec<&String> = schema.fields().map(|f| f.name()).collect();
        assert_eq!(names, ["id", "country", "extra"]);
        drop(table);
        let Err(refused) = open(vec![Field::new("id", DataType::Utf8, false)]).await else {
            panic!("a changed type is refused");
        };
        assert!(refused.to_string().contains("column `id` is"), "{refused}");
    }

    /// A plain dataset with commits, configured as a Delta table, is refused: a new table
    /// would miss its rows.
    #[tokio::test]
    async fn a_plain_dataset_with_commits_is_not_made_an_incomplete_delta_table() {
        let dir = tempfile::tempdir().unwrap();
        let input = rows(&[1], &["a"]);
        let (store, root) =
            crate::open_store(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let plain = ParquetDataset::new(
            "t",
            store.clone(),
            root.clone(),
            &input.schema(),
            dataset_options(1000),
        );
        let mut writer = plain
            .open_writer("w0", Duration::from_secs(3600))
            .await
            .unwrap();
        writer.claim(&[PartitionKey::new("t", 0)]).await.unwrap();
        writer.write(&input, None).await.unwrap();
        writer.commit(checkpoint(0, 1)).await.unwrap();
        let delta = ParquetDataset::new("t", store, root, &input.schema(), options(dir.path()));
        let Err(refused) = delta.open_writer("w1", Duration::from_secs(3600)).await else {
            panic!("refused");
        };
        assert!(
            refused.to_string().contains("CONVERT TO DELTA"),
            "{refused}"
        );
        assert!(!dir.path().join("_delta_log").exists());
    }

    fn dataset_store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
        crate::open_store(dir.to_str().unwrap(), &Default::default())
            .unwrap()
            .0
    }

    #[test]
    fn partition_values_are_unescaped_and_hives_null_is_none() {
        let values =
            partition_values("dt=2026-12-07/country=N%2FA/city=__HIVE_DEFAULT_PARTITION__");
        assert_eq!(values["dt"].as_deref(), Some("2026-12-07"));
        assert_eq!(values["country"].as_deref(), Some("N/A"));
        assert_eq!(values["city"], None);
        assert!(partition_values("").is_empty());
    }
}
