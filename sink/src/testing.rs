//! For the sink's tests: an object store that fails on cue (tests of the commit protocol),
//! dataset options and checkpoints.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// A scripted failure of the next call of an operation (`put`, `get`, `copy`, `list`, ...).
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Fails without doing anything.
    Before(&'static str),
    /// Does the operation, then fails as if the answer was lost.
    After(&'static str),
}

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    script: Mutex<Vec<Fault>>,
    /// Treat "create only if absent" as a plain overwrite, like stores that ignore it.
    overwrite_creates: AtomicBool,
    /// Make every copy "create only if absent", as object_store 0.13's GCS client does.
    create_only_copies: AtomicBool,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            script: Mutex::new(Vec::new()),
            overwrite_creates: AtomicBool::new(false),
            create_only_copies: AtomicBool::new(false),
        }
    }

    /// Faults to inject from now on, used in order, each by the first call of its operation.
    pub fn inject(&self, faults: Vec<Fault>) {
        self.script.lock().unwrap().extend(faults);
    }

    pub fn ignore_conditional_puts(&self) {
        self.overwrite_creates.store(true, Ordering::Relaxed);
    }

    /// Copies (and so moves) refuse an existing destination, as object_store 0.13's GCS
    /// client makes them (apache/arrow-rs-object-store#712).
    pub fn refuse_overwriting_copies(&self) {
        self.create_only_copies.store(true, Ordering::Relaxed);
    }

    /// The fault for a call of `operation`, if it is next in the script.
    fn next(&self, operation: &str) -> Option<Fault> {
        let mut script = self.script.lock().unwrap();
        let position = script.iter().position(|f| match f {
            Fault::Before(op) | Fault::After(op) => *op == operation,
        })?;
        Some(script.remove(position))
    }

    fn error(operation: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "FaultyStore",
            source: format!("injected {operation} failure").into(),
        }
    }

    async fn around<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.next(operation) {
            None => call.await,
            Some(Fault::Before(_)) => Err(Self::error(operation)),
            Some(Fault::After(_)) => {
                call.await?;
                Err(Self::error(operation))
            }
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        if self.overwrite_creates.load(Ordering::Relaxed) && opts.mode == PutMode::Create {
            opts.mode = PutMode::Overwrite;
        }
        self.around("put", self.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.around("multipart", self.inner.put_multipart_opts(location, opts))
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.around("get", self.inner.get_opts(location, options))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.next("list") {
            Some(_) => Box::pin(futures::stream::once(async { Err(Self::error("list")) })),
            None => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.around("list", self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, mut options: CopyOptions) -> Result<()> {
        if self.create_only_copies.load(Ordering::Relaxed) {
            options.mode = object_store::CopyMode::Create;
        }
        self.around("copy", self.inner.copy_opts(from, to, options))
            .await
    }
}

/// The options of a test dataset: local, unpartitioned, files closed at `max_rows` rows.
pub fn dataset_options(max_rows: u64) -> crate::DatasetOptions {
    crate::DatasetOptions {
        max_open_files: 16,
        max_partitions_per_checkpoint: 1000,
        compression: crate::Compression::Zstd,
        row_group_rows: 1000,
        roll: crate::RollPolicy {
            target_file_bytes: 64 << 20,
            max_file_rows: max_rows,
            max_file_age: std::time::Duration::from_secs(3600),
        },
        upload_buffer_bytes: 1 << 20,
        time_partitions: None,
        log_retention: None,
        path_limits: crate::PathLimits::for_url("/local"),
        snapshot_every: None,
        schema_source: "a test".into(),
        delta: None,
    }
}

/// A checkpoint of offsets `from..to` of partition t/0.
pub fn checkpoint(from: i64, to: i64) -> weir_schemas::Checkpoint {
    weir_schemas::Checkpoint {
        ranges: vec![weir_schemas::OffsetRange {
            partition: weir_schemas::PartitionKey::new("t", 0),
            from,
            to,
        }],
        ..weir_schemas::Checkpoint::default()
    }
}
