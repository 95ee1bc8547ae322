//! Reading entries and appending them with a conditional put (create only if absent), and the
//! retries with backoff around the log's storage calls.

use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::entry::FORMAT_VERSION;
use super::paths::{WEIR_DIR, entry_path, snapshot_dir};
use super::{Action, CommitLog, Entry, LogError};

/// Attempts at one storage call of the log before its error is returned. HTTP stores retry
/// transient errors themselves first (object_store's retry with backoff and jitter).
const ATTEMPTS: u32 = 4;

impl CommitLog {
    /// Creates a probe object twice: a store that lets the second create overwrite the first
    /// (some S3-compatible servers ignore `If-None-Match`) cannot order or fence commits.
    pub(super) async fn check_conditional_put(&self) -> Result<(), LogError> {
        let probe = self
            .root
            .clone()
            .join(WEIR_DIR)
            .join("probes")
            .join(format!("{}.json", uuid::Uuid::new_v4().simple()));
        let create = || PutOptions::from(PutMode::Create);
        self.store
            .put_opts(&probe, PutPayload::from_static(b"{}"), create())
            .await
            .map_err(|source| self.store_error("create", &probe, source))?;
        let second = self
            .store
            .put_opts(&probe, PutPayload::from_static(b"{}"), create())
            .await;
        if let Err(e) = self.store.delete(&probe).await {
            tracing::debug!(path = %probe, error = %e, "could not delete the probe object");
        }
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Ok(_) | Err(object_store::Error::NotImplemented { .. }) => {
                Err(LogError::NoConditionalPut {
                    dataset: self.dataset.clone(),
                })
            }
            Err(source) => Err(self.store_error("create", &probe, source)),
        }
    }

    pub(super) async fn read_entry(&self, seq: u64) -> Result<Option<Entry>, LogError> {
        let path = entry_path(&self.root, seq);
        let Some(bytes) = self.get(&path).await? else {
            return Ok(None);
        };
        let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt {
            dataset: self.dataset.clone(),
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        if entry.seq != seq {
            return Err(LogError::Corrupt {
                dataset: self.dataset.clone(),
                path: path.to_string(),
                reason: format!("it says it is entry {}", entry.seq),
            });
        }
        Ok(Some(entry))
    }

    /// Appends an entry with `action` at the next free sequence number.
    pub(super) async fn append(&mut self, action: Action) -> Result<u64, LogError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut failures = 0;
        loop {
            // Read what others appended; a put of ours that failed ambiguously may be there.
            while let Some(entry) = self.read_entry(self.state.next_seq).await? {
                let ours = entry.id == id;
                let seq = entry.seq;
                self.take_in(entry);
                if ours {
                    return Ok(seq);
                }
            }
            if self.pruned_past(self.state.next_seq).await? {
                // The entries after what this writer read were pruned while it was not
                // looking: their numbers only look free.
                let behind = self.state.next_seq;
                self.load_snapshot().await?;
                if self.state.next_seq == behind {
                    return Err(LogError::Corrupt {
                        dataset: self.dataset.clone(),
                        path: snapshot_dir(&self.root).to_string(),
                        reason: format!(
                            "a snapshot after entry {behind} is listed but not the latest"
                        ),
                    });
                }
                continue;
            }
            let entry = Entry {
                version: FORMAT_VERSION,
                seq: self.state.next_seq,
                id: id.clone(),
                writer: self.writer.clone(),
                written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                action: action.clone(),
            };
            self.check_own(&entry)?;
            let path = entry_path(&self.root, entry.seq);
            let body = serde_json::to_vec_pretty(&entry).expect("entries serialize");
            let put = self
                .store
                .put_opts(
                    &path,
                    PutPayload::from(body),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match put {
                Ok(_) => {
                    self.state.apply(&entry);
                    return Ok(entry.seq);
                }
                // Another writer took this number: read it and try the next one.
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(source) => {
                    failures += 1;
                    if failures >= ATTEMPTS {
                        return Err(self.store_error("create", &path, source));
                    }
                    tracing::warn!(dataset = %self.dataset, %path, error = %source, "commit log write failed, retrying");
                    backoff(failures).await;
                }
            }
        }
    }

    /// Reads an object, retrying transient errors; `None` if it does not exist.
    pub(super) async fn get(&self, path: &Path) -> Result<Option<bytes::Bytes>, LogError> {
        self.retrying("read", path, || async {
            let read = match self.store.get(path).await {
                Ok(got) => got.bytes().await,
                Err(e) => Err(e),
            };
            match read {
                Ok(bytes) => Ok(Some(bytes)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Runs a storage call, again after a transient error, [`ATTEMPTS`] times at most.
    pub(super) async fn retrying<T, Call>(
        &self,
        action: &'static str,
        path: &Path,
        mut call: impl FnMut() -> Call,
    ) -> Result<T, LogError>
    where
        Call: std::future::Future<Output = Result<T, object_store::Error>>,
    {
        let mut failures = 0;
        loop {
            match call().await {
                Ok(done) => return Ok(done),
                Err(source) => {
                    failures += 1;
                    if failures >= ATTEMPTS {
                        return Err(self.store_error(action, path, source));
                    }
                    backoff(failures).await;
                }
            }
        }
    }

    pub(super) fn store_error(
        &self,
        action: &'static str,
        path: &Path,
        source: object_store::Error,
    ) -> LogError {
        LogError::Store {
            dataset: self.dataset.clone(),
            action,
            path: path.to_string(),
            source: Box::new(source),
        }
    }
}

/// Waits before retry number `failures`: exponential, with full jitter so that instances
/// failing together do not retry together.
async fn backoff(failures: u32) {
    let ceiling = Duration::from_millis(100 << failures.min(6));
    tokio::time::sleep(ceiling.mul_f64(rand::random::<f64>())).await;
}
