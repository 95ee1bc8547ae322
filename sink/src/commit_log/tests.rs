//! The commit log's tests, in one file longer than a module: most follow several writers
//! through one log across claims, commits, snapshots and pruning, so each tests several of
//! the modules at once and none belongs to one of them.

use super::*;
use crate::testing::{Fault, FaultyStore};
use object_store::PutPayload;
use object_store::local::LocalFileSystem;
use weir_schemas::{
    EmittedWatermark, OffsetRange, PartitionWatermark, RecordedWatermark, TimeGranularity,
};

/// Commits whose watermarks speak for every partition of the topics.
const COVERED: WatermarkCoverage = WatermarkCoverage::Complete;

/// The schema of files that none of these tests reads.
const NO_COLUMNS: RecordedSchema = RecordedSchema {
    columns: Vec::new(),
    source: String::new(),
};

fn p(n: i32) -> PartitionKey {
    PartitionKey::new("t", n)
}

/// Commits offsets `from..to` of partition `n` and nothing else.
async fn commit_range(log: &mut CommitLog, n: i32, from: i64, to: i64) -> Result<u64, LogError> {
    let ranges = vec![range(n, from, to)];
    log.commit(ranges, vec![], vec![], None, &NO_COLUMNS, &COVERED)
        .await
}

fn range(n: i32, from: i64, to: i64) -> OffsetRange {
    OffsetRange {
        partition: p(n),
        from,
        to,
    }
}

fn local(dir: &tempfile::TempDir) -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap())
}

/// Opens the log of dataset `t` at the root of `store` for `writer`.
async fn open_with(
    store: &Arc<dyn ObjectStore>,
    writer: &str,
    time_partitions: Option<TimeGranularity>,
    retention: Option<Duration>,
) -> Result<CommitLog, LogError> {
    let root = Path::default();
    let options = LogOptions {
        time_partitions,
        retention,
        path_limits: Some(crate::PathLimits::for_url("/local")),
        ..LogOptions::default()
    };
    CommitLog::open("t", store.clone(), root, writer, options).await
}

async fn open(store: &Arc<dyn ObjectStore>, writer: &str) -> CommitLog {
    open_with(store, writer, None, None).await.unwrap()
}

async fn open_pruning(store: &Arc<dyn ObjectStore>, writer: &str) -> CommitLog {
    let retention = Some(Duration::ZERO);
    open_with(store, writer, None, retention).await.unwrap()
}

/// Asserts that a commit was refused because another writer claimed one of its partitions,
/// and returns the refusal.
#[track_caller]
fn assert_fenced(commit: Result<u64, LogError>) -> LogError {
    match commit {
        Err(refused @ LogError::Fenced { .. }) => refused,
        other => panic!("not fenced: {other:?}"),
    }
}

#[tokio::test]
async fn a_claim_fences_the_previous_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let mut zombie = open(&store, "zombie").await;
    assert_eq!(zombie.claim(&[p(0), p(1)]).await.unwrap(), vec![None, None]);
    commit_range(&mut zombie, 0, 0, 10).await.unwrap();
    // The group moved partition 0 to another instance while the zombie was paused.
    let mut owner = open(&store, "owner").await;
    assert_eq!(owner.claim(&[p(0)]).await.unwrap(), vec![Some(10)]);
    let refused = assert_fenced(
        zombie
            .commit(
                vec![range(0, 10, 20), range(1, 0, 5)],
                vec![],
                vec![],
                None,
                &NO_COLUMNS,
                &COVERED,
            )
            .await,
    );
    assert!(
        refused
            .to_string()
            .contains("t/0 was claimed by owner at entry 2"),
        "{refused}"
    );
    commit_range(&mut owner, 0, 10, 20).await.unwrap();
    // Partition 1 is still the zombie's; a commit for it alone goes through.
    commit_range(&mut zombie, 1, 0, 5).await.unwrap();
    let fresh = open(&store, "reader").await;
    assert_eq!(fresh.next_offset(&p(0)), Some(20));
    assert_eq!(fresh.next_offset(&p(1)), Some(5));
    assert_eq!(fresh.state().next_seq, 5);
}

#[tokio::test]
async fn a_claim_belongs_to_its_entry_not_only_to_the_writer_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let mut first = open(&store, "a").await;
    first.claim(&[p(0)]).await.unwrap();
    // Another log object under the same name claims again: the first one's claim is gone.
    let mut second = open(&store, "a").await;
    second.claim(&[p(0)]).await.unwrap();
    assert_fenced(commit_range(&mut first, 0, 0, 1).await);
    commit_range(&mut second, 0, 0, 1).await.unwrap();
}

fn watermark(n: i32, watermark_ms: i64) -> RecordedWatermark {
    RecordedWatermark {
        partition: p(n),
        watermark: PartitionWatermark {
            watermark_ms,
            max_event_ms: watermark_ms + 30_000,
        },
    }
}

#[tokio::test]
async fn the_dataset_watermark_is_the_lowest_partition_one_and_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let mut log = open(&store, "w").await;
    log.claim(&[p(0), p(1)]).await.unwrap();
    let both = vec![watermark(0, 5_000), watermark(1, 2_000)];
    log.commit(
        vec![range(0, 0, 1)],
        vec![],
        both,
        None,
        &NO_COLUMNS,
        &COVERED,
    )
    .await
    .unwrap();
    assert_eq!(log.state().watermark_ms(), Some(2_000));
    // A lower value (an instance with a larger out-of-orderness) does not move it back.
    let lower = vec![watermark(0, 9_000), watermark(1, 1_000)];
    log.commit(
        vec![range(0, 1, 2)],
        vec![],
        lower,
        None,
        &NO_COLUMNS,
        &COVERED,
    )
    .await
    .unwrap();
    let state = open(&store, "reader").await.state().clone();
    assert_eq!(state.watermark_ms(), Some(2_000));
    assert_eq!(state.partitions[&p(0)].watermark_ms, Some(9_000));
    assert_eq!(state.partitions[&p(0)].max_event_ms, Some(39_000));
    // Only the owner may move a partition's watermark.
    let mut other = open(&store, "other").await;
    other.claim(&[p(2)]).await.unwrap();
    assert_fenced(
        other
            .commit(
                vec![range(2, 0, 1)],
                vec![],
                vec![watermark(1, 50_000)],
                None,
                &NO_COLUMNS,
                &COVERED,
            )
            .await,
    );
}

#[tokio::test]
async fn time_partitions_are_marked_complete_once_the_watermark_passes_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let hour = Some(TimeGranularity::Hour);
    let mut log = open_with(&store, "w", hour, None).await.unwrap();
    log.claim(&[p(0)]).await.unwrap();
    let file = |n: u32, partition: &str| {
        let staging = format!("_weir/staging/w-{n:06}.parquet.pending");
        std::fs::create_dir_all(dir.path().join("_weir/staging")).unwrap();
        std::fs::write(dir.path().join(&staging), b"x").unwrap();
        WrittenFile {
            path: format!("{partition}/part-w-{n:06}.parquet"),
            staging,
            partition: partition.into(),
            rows: 1,
            bytes: 1,
        }
    };
    let ten = "dt=2026-11-25/hour=10";
    let eleven = "dt=2026-11-25/hour=11";
    let at = |h: i64, m: i64| 1_795_564_800_000 + (h * 60 + m) * 60_000; // 2026-11-25
    let marker = |bucket: &str| dir.path().join(bucket).join("_SUCCESS").exists();
    let files = vec![file(1, ten), file(2, &format!("{eleven}/country=NL"))];
    let wm = vec![watermark(0, at(10, 59))];
    log.commit(vec![range(0, 0, 2)], files, wm, None, &NO_COLUMNS, &COVERED)
        .await
        .unwrap();
    assert!(!marker(ten) && !marker(eleven));
    // The watermark reaches the end of hour 10 exactly: hour 10 is complete.
    let wm = vec![watermark(0, at(11, 0))];
    log.commit(
        vec![range(0, 2, 3)],
        vec![],
        wm,
        None,
        &NO_COLUMNS,
        &COVERED,
    )
    .await
    .unwrap();
    assert!(marker(ten) && !marker(eleven));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("_weir/watermark.json")).unwrap())
            .unwrap();
    assert_eq!(record["watermark_ms"], at(11, 0));
    assert_eq!(record["watermark"], "2026-11-25T11:00:00.000Z");
    // A new writer finds hour 11 still to be marked in the log and marks it when due.
    let mut next = open_with(&store, "next", hour, None).await.unwrap();
    next.claim(&[p(0)]).await.unwrap();
    assert!(!marker(eleven));
    let wm = vec![watermark(0, at(12, 5))];
    next.commit(
        vec![range(0, 3, 4)],
        vec![],
        wm,
        None,
        &NO_COLUMNS,
        &COVERED,
    )
    .await
    .unwrap();
    assert!(marker(eleven));
}

/// `_SUCCESS` promises a reader every row of its time partition: it waits until the watermark
/// speaks for every partition of the topics, and until every committed file, whoever
/// committed it, is under its final name.
#[tokio::test]
async fn a_time_partition_is_marked_complete_only_once_every_partition_and_file_is_in() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStore::new(local(&dir)));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let hour = Some(TimeGranularity::Hour);
    let mut a = open_with(&store, "a", hour, None).await.unwrap();
    let mut b = open_with(&store, "b", hour, None).await.unwrap();
    a.claim(&[p(0)]).await.unwrap();
    b.claim(&[p(1)]).await.unwrap();
    let ten = "dt=2026-11-25/hour=10";
    let at = |h: i64, m: i64| 1_795_564_800_000 + (h * 60 + m) * 60_000; // 2026-11-25
    let staged = Path::from("_weir/staging/a-000001.parquet.pending");
    store
        .put(&staged, PutPayload::from_static(b"rows of ten"))
        .await
        .unwrap();
    let file = WrittenFile {
        path: format!("{ten}/part-a-000001.parquet"),
        staging: staged.to_string(),
        partition: ten.into(),
        rows: 1,
        bytes: 11,
    };
    // Writer a commits hour 10's file but every move of it fails: a dies there.
    faulty.inject(vec![Fault::Before("copy"); 4]);
    let moved = a
        .commit(
            vec![range(0, 0, 1)],
            vec![file.clone()],
            vec![watermark(0, at(11, 5))],
            None,
            &NO_COLUMNS,
            &COVERED,
        )
        .await;
    assert!(moved.is_err(), "{moved:?}");
    let published = dir.path().join(&file.path);
    let marker = dir.path().join(ten).join("_SUCCESS");
    assert!(!published.exists() && !marker.exists());
    // Writer b's watermark passes hour 10 too, but partition 2 holds messages no commit has
    // a watermark for: nothing is complete, nor is the watermark published.
    let partial = WatermarkCoverage::Missing(vec![p(2)]);
    let wm = vec![watermark(1, at(11, 10))];
    b.commit(
        vec![range(1, 0, 1)],
        vec![],
        wm,
        None,
        &NO_COLUMNS,
        &partial,
    )
    .await
    .unwrap();
    assert!(!marker.exists());
    assert!(!dir.path().join("_weir/watermark.json").exists());
    // Once every partition is accounted for, b moves a's file before it marks the hour.
    let wm = vec![watermark(1, at(11, 20))];
    b.commit(
        vec![range(1, 1, 2)],
        vec![],
        wm,
        None,
        &NO_COLUMNS,
        &COVERED,
    )
    .await
    .unwrap();
    assert!(marker.exists());
    assert_eq!(std::fs::read(&published).unwrap(), b"rows of ten");
    assert!(!dir.path().join(staged.as_ref()).exists());
}

#[tokio::test]
async fn racing_writers_get_one_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let mut a = open(&store, "a").await;
    let mut b = open(&store, "b").await;
    a.claim(&[p(0)]).await.unwrap();
    b.claim(&[p(1)]).await.unwrap();
    let mut seqs = Vec::new();
    for round in 0..20 {
        let (x, y) = tokio::join!(
            commit_range(&mut a, 0, round, round + 1),
            commit_range(&mut b, 1, round, round + 1),
        );
        seqs.push(x.unwrap());
        seqs.push(y.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (2..42).collect::<Vec<u64>>());
    let report = crate::verify::verify("t", store, &Path::default())
        .await
        .unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.commits, 40);
}

#[tokio::test]
async fn a_put_whose_answer_was_lost_is_found_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStore::new(local(&dir)));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let mut log = open(&store, "w").await;
    // The claim lands but its writer hears an error; then a plain failure.
    faulty.inject(vec![Fault::After("put"), Fault::Before("put")]);
    log.claim(&[p(0)]).await.unwrap_or_else(|e| panic!("{e}"));
    commit_range(&mut log, 0, 0, 3).await.unwrap();
    let fresh = open(&store, "reader").await;
    assert_eq!(
        fresh.state().next_seq,
        2,
        "one claim and one commit, no repeat"
    );
    assert_eq!(fresh.next_offset(&p(0)), Some(3));
}

#[tokio::test]
async fn a_persistent_storage_failure_is_an_error_naming_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStore::new(local(&dir)));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let mut log = open(&store, "w").await;
    faulty.inject(vec![Fault::Before("put"); 10]);
    let error = log.claim(&[p(0)]).await.unwrap_err().to_string();
    assert!(
        error.contains("cannot create _weir/log/00000000000000000000.json"),
        "{error}"
    );
}

#[tokio::test]
async fn a_store_that_overwrites_on_create_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStore::new(local(&dir)));
    faulty.ignore_conditional_puts();
    let store: Arc<dyn ObjectStore> = faulty;
    let error = open_with(&store, "w", None, None)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(error, LogError::NoConditionalPut { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("If-None-Match"), "{error}");
}

#[tokio::test]
async fn snapshots_let_a_reader_start_late_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let mut log = open(&store, "w").await;
    log.claim(&[p(0)]).await.unwrap();
    for i in 0..SNAPSHOT_EVERY as i64 + 5 {
        commit_range(&mut log, 0, i, i + 1).await.unwrap();
    }
    // Without the early entries, the snapshot alone says where partition 0 continues.
    for seq in 0..SNAPSHOT_EVERY {
        store
            .delete(&entry_path(&Path::default(), seq))
            .await
            .unwrap();
    }
    let fresh = open(&store, "reader").await;
    assert_eq!(fresh.next_offset(&p(0)), Some(SNAPSHOT_EVERY as i64 + 5));
    assert_eq!(fresh.state().next_seq, SNAPSHOT_EVERY + 6);
}

#[tokio::test]
async fn a_dataset_sets_how_often_its_log_is_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let options = LogOptions {
        snapshot_every: std::num::NonZeroU64::new(3),
        ..LogOptions::default()
    };
    let mut log = CommitLog::open("t", store.clone(), Path::default(), "w", options)
        .await
        .unwrap();
    log.claim(&[p(0)]).await.unwrap();
    for i in 0..7 {
        commit_range(&mut log, 0, i, i + 1).await.unwrap();
    }
    let snapshots: Vec<u64> = log.snapshots().await.unwrap().into_keys().collect();
    assert_eq!(snapshots, [3, 6]);
}

#[tokio::test]
async fn window_state_follows_its_partitions_and_replaced_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let mut log = open(&store, "a").await;
    log.claim(&[p(0), p(1)]).await.unwrap();
    let state = |path: &str, emitted: i64| {
        let path = format!("_weir/state/{path}");
        let file = Path::from(path.as_str());
        (file, path, emitted)
    };
    let commit_state = async |log: &mut CommitLog, (file, path, emitted), from: i64| {
        store
            .put(&file, PutPayload::from_static(b"state"))
            .await
            .unwrap();
        let partitions = [p(0), p(1)]
            .into_iter()
            .map(|partition| EmittedWatermark {
                partition,
                emitted_ms: Some(emitted),
            })
            .collect();
        let window_state = WindowStateRef {
            path: Some(path),
            partitions,
        };
        log.commit(
            vec![range(0, from, from + 1)],
            vec![],
            vec![],
            Some(window_state),
            &NO_COLUMNS,
            &COVERED,
        )
        .await
        .unwrap();
    };
    let first = state("a-1.arrow", 1_000);
    let first_file = first.0.clone();
    commit_state(&mut log, first, 0).await;
    let second = state("a-2.arrow", 2_000);
    commit_state(&mut log, second, 1).await;
    // Partition 1 had no offsets in either commit, yet its state moved on with them.
    for partition in [p(0), p(1)] {
        let s = &log.state().partitions[&partition];
        assert_eq!(s.window_state.as_deref(), Some("_weir/state/a-2.arrow"));
        assert_eq!(s.emitted_ms, Some(2_000));
    }
    assert!(matches!(
        store.head(&first_file).await,
        Err(object_store::Error::NotFound { .. })
    ));
    // Another instance takes partition 1 over: the reference stays until it commits.
    let mut b = open(&store, "b").await;
    b.claim(&[p(1)]).await.unwrap();
    b.commit(
        vec![range(1, 0, 1)],
        vec![],
        vec![],
        Some(WindowStateRef {
            path: None,
            partitions: vec![EmittedWatermark {
                partition: p(1),
                emitted_ms: Some(3_000),
            }],
        }),
        &NO_COLUMNS,
        &COVERED,
    )
    .await
    .unwrap();
    let s = &b.state().partitions[&p(1)];
    assert_eq!(
        (s.window_state.as_deref(), s.emitted_ms),
        (None, Some(3_000))
    );
    assert_eq!(
        b.state()
            .window_state_files()
            .into_iter()
            .collect::<Vec<_>>(),
        ["_weir/state/a-2.arrow"],
        "partition 0 still needs it"
    );
    // The zombie's state commit for partition 1 is refused.
    assert_fenced(
        log.commit(
            vec![range(0, 2, 3)],
            vec![],
            vec![],
            Some(WindowStateRef {
                path: None,
                partitions: vec![EmittedWatermark {
                    partition: p(1),
                    emitted_ms: Some(4_000),
                }],
            }),
            &NO_COLUMNS,
            &COVERED,
        )
        .await,
    );
}

#[tokio::test]
async fn opening_the_log_publishes_files_a_dead_writer_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let file = staged_file(&store, "dead", "dt=2026-11-25").await;
    let staged = Path::from(file.staging.as_str());
    let faulty = Arc::new(FaultyStore::new(store.clone()));
    let mut dead = open(&(faulty.clone() as Arc<dyn ObjectStore>), "dead").await;
    dead.claim(&[p(0)]).await.unwrap();
    // The writer dies after its commit entry, before moving the file: every move fails.
    faulty.inject(vec![Fault::Before("copy"); 4]);
    let moved = dead
        .commit(
            vec![range(0, 0, 1)],
            vec![file.clone()],
            vec![],
            None,
            &NO_COLUMNS,
            &COVERED,
        )
        .await;
    assert!(moved.is_err(), "{moved:?}");
    assert!(dir.path().join(staged.as_ref()).exists());
    let orphan = Path::from("_weir/staging/dead-000002.parquet.pending");
    store
        .put(&orphan, PutPayload::from_static(b"uncommitted"))
        .await
        .unwrap();
    let mut next = open(&store, "next").await;
    let published = dir.path().join(&file.path);
    assert_eq!(std::fs::read(&published).unwrap(), b"data");
    assert!(!dir.path().join(staged.as_ref()).exists());
    // The uncommitted file stays invisible. It is kept while its writer owns a partition
    // (it may only be paused), and removed once the writer owns none and it is old.
    assert_eq!(next.remove_orphans(Duration::ZERO).await.unwrap(), 0);
    next.claim(&[p(0)]).await.unwrap();
    assert_eq!(
        next.remove_orphans(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(next.remove_orphans(Duration::ZERO).await.unwrap(), 1);
    assert!(!dir.path().join(orphan.as_ref()).exists());
}

/// On a store whose copies never overwrite (GCS through object_store 0.13), a move whose copy
/// was done but whose answer was lost is finished by the retry, not failed by it.
#[tokio::test]
async fn a_move_retried_after_its_copy_is_finished_where_copies_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let file = staged_file(&store, "w", "dt=2026-11-25").await;
    let staged = Path::from(file.staging.as_str());
    let faulty = Arc::new(FaultyStore::new(store.clone()));
    faulty.refuse_overwriting_copies();
    let mut log = open(&(faulty.clone() as Arc<dyn ObjectStore>), "w").await;
    log.claim(&[p(0)]).await.unwrap();
    faulty.inject(vec![Fault::After("copy")]);
    log.commit(
        vec![range(0, 0, 1)],
        vec![file.clone()],
        vec![],
        None,
        &NO_COLUMNS,
        &COVERED,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(dir.path().join(&file.path)).unwrap(), b"data");
    assert!(!dir.path().join(staged.as_ref()).exists());
}

/// A commit entry listing a file whose final name the store refuses (written before weir
/// checked partition paths) does not stop every later start: the file is quarantined, kept
/// from clean-up, and reported by `weir verify`.
#[tokio::test]
async fn a_committed_file_the_store_cannot_name_is_quarantined_not_retried_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let file = staged_file(&store, "w", &format!("c={}", "x".repeat(300))).await;
    let staged = Path::from(file.staging.as_str());
    let mut old = open(&store, "w").await;
    old.claim(&[p(0)]).await.unwrap();
    // The entry is written; moving the file to its final name fails (name too long).
    old.commit(
        vec![range(0, 0, 1)],
        vec![file],
        vec![],
        None,
        &NO_COLUMNS,
        &COVERED,
    )
    .await
    .unwrap_err();

    for _ in 0..2 {
        let next = open(&store, "next").await;
        assert_eq!(next.next_offset(&p(0)), Some(1));
        assert_eq!(next.remove_orphans(Duration::ZERO).await.unwrap(), 0);
    }
    assert_eq!(
        std::fs::read(dir.path().join("_weir/quarantine/w-000001.parquet.pending")).unwrap(),
        b"data"
    );
    assert!(!dir.path().join(staged.as_ref()).exists());
    let report = crate::verify::verify("t", store.clone(), &Path::default())
        .await
        .unwrap();
    assert!(!report.ok());
    assert!(
        report
            .to_string()
            .contains("quarantined as _weir/quarantine/w-000001.parquet.pending"),
        "{report}"
    );
}

/// `writer`'s first file of `partition` (`""`: the root), four bytes, staged in `store` and
/// not committed.
async fn staged_file(store: &Arc<dyn ObjectStore>, writer: &str, partition: &str) -> WrittenFile {
    let staged = Path::from(format!("_weir/staging/{writer}-000001.parquet.pending"));
    let name = format!("part-{writer}-000001.parquet");
    store
        .put(&staged, PutPayload::from_static(b"data"))
        .await
        .unwrap();
    WrittenFile {
        path: if partition.is_empty() {
            name
        } else {
            format!("{partition}/{name}")
        },
        staging: staged.to_string(),
        partition: partition.to_owned(),
        rows: 1,
        bytes: 4,
    }
}

/// The names of the objects under `dir` (relative to the store's root), in order.
fn names(dir: &tempfile::TempDir, under: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join(under))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn entries_past_their_retention_go_and_the_log_still_reads_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let mut log = open_pruning(&store, "w").await;
    log.claim(&[p(0)]).await.unwrap();
    // A file committed by an entry that is pruned later.
    let file = staged_file(&store, "w", "").await;
    log.commit(
        vec![range(0, 0, 1)],
        vec![file],
        vec![],
        None,
        &NO_COLUMNS,
        &COVERED,
    )
    .await
    .unwrap();
    // Entries 2..=204; snapshots after 100 and 200 each prune up to themselves.
    let last = 2 * SNAPSHOT_EVERY + 4;
    for offset in 1..last as i64 {
        commit_range(&mut log, 0, offset, offset + 1).await.unwrap();
    }
    let kept: Vec<String> = (2 * SNAPSHOT_EVERY + 1..=last)
        .map(|seq| format!("{seq:020}.json"))
        .collect();
    assert_eq!(names(&dir, "_weir/log"), kept);
    assert_eq!(
        names(&dir, "_weir/snapshots"),
        [format!("{:020}.json", 2 * SNAPSHOT_EVERY)]
    );
    let reader = open(&store, "reader").await;
    assert_eq!(reader.next_offset(&p(0)), Some(last as i64));
    // The writer goes on.
    commit_range(&mut log, 0, last as i64, last as i64 + 1)
        .await
        .unwrap();

    let report = crate::verify::verify("t", store.clone(), &Path::default())
        .await
        .unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.pruned_entries, 2 * SNAPSHOT_EVERY + 1);
    assert_eq!(report.entries, 5);
    assert_eq!(report.files_of_pruned_entries, 1);
    assert_eq!(report.partitions[0].to, last as i64 + 1);

    // An entry an interrupted pruning left behind (older than the snapshot including it)
    // is skipped; a visible file newer than the snapshot the replay starts from is not
    // taken for a pruned entry's.
    let kept = entry_path(&Path::default(), last);
    let leftover = store.get(&kept).await.unwrap().bytes().await.unwrap();
    let leftover_path = entry_path(&Path::default(), 5);
    store.put(&leftover_path, leftover.into()).await.unwrap();
    std::fs::File::options()
        .write(true)
        .open(dir.path().join(leftover_path.as_ref()))
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    let stray = Path::from("part-stray.parquet");
    store
        .put(&stray, PutPayload::from_static(b"data"))
        .await
        .unwrap();
    let root = Path::default();
    let verified = || crate::verify::verify("t", store.clone(), &root);
    let report = verified().await.unwrap();
    assert_eq!(report.pruned_entries, 2 * SNAPSHOT_EVERY + 1);
    assert_eq!(
        report.problems,
        ["part-stray.parquet is visible to readers but no commit lists it"]
    );
    // One newer than that snapshot took a number pruning had freed.
    let leftover = store.get(&kept).await.unwrap().bytes().await.unwrap();
    store.put(&leftover_path, leftover.into()).await.unwrap();
    let report = verified().await.unwrap();
    assert!(
        report.problems[0].starts_with("log entry 5 was written after snapshot 200"),
        "{report}"
    );

    // Without its snapshots, the log's start is gone: nothing may open it as empty.
    std::fs::remove_dir_all(dir.path().join("_weir/snapshots")).unwrap();
    store.delete(&leftover_path).await.unwrap();
    let error = open_with(&store, "late", None, None).await.err().unwrap();
    assert!(
        error
            .to_string()
            .contains("the log's first entry and every snapshot are missing"),
        "{error}"
    );
}

#[tokio::test]
async fn a_writer_behind_a_pruned_log_starts_from_the_snapshot_and_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(&dir);
    let mut paused = open_pruning(&store, "paused").await;
    paused.claim(&[p(0)]).await.unwrap();
    commit_range(&mut paused, 0, 0, 1).await.unwrap();
    // Another writer takes the partition and commits past a snapshot, which prunes
    // every entry the paused writer has not read, entry 2 (the owner's claim) included.
    let mut owner = open_pruning(&store, "owner").await;
    owner.claim(&[p(0)]).await.unwrap();
    for offset in 1..SNAPSHOT_EVERY as i64 + 2 {
        commit_range(&mut owner, 0, offset, offset + 1)
            .await
            .unwrap();
    }
    assert!(
        !dir.path()
            .join("_weir/log")
            .join(format!("{:020}.json", 2))
            .exists()
    );
    // Entry 2 is free again, but the paused writer reads from the snapshot on.
    assert_fenced(commit_range(&mut paused, 0, 1, 2).await);
    assert!(
        !dir.path()
            .join("_weir/log")
            .join(format!("{:020}.json", 2))
            .exists()
    );
}
