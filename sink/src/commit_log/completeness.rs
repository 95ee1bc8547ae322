//! Which time partitions are complete: `_SUCCESS` once the committed watermark passes a
//! partition's end, the watermark in `_weir/watermark.json`, and rows that came too late.

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use weir_schemas::WatermarkCoverage;

use super::paths::{WEIR_DIR, under};
use super::{CommitLog, WrittenFile};

impl CommitLog {
    /// Remembers the time partitions `files` went to, to mark them complete later. Files of
    /// this writer's commit that went to a partition already marked complete are late: that
    /// is said, not done silently.
    pub(super) fn note_time_partitions(&mut self, files: &[WrittenFile], own: bool) {
        let Some(granularity) = self.time_partitions else {
            return;
        };
        for file in files {
            let Some(bucket) = granularity.bucket(&file.partition) else {
                continue;
            };
            let end = granularity.end_ms(&bucket);
            if own && end.is_some() && end <= self.published_watermark {
                self.late_rows += file.rows;
                tracing::warn!(
                    dataset = %self.dataset,
                    partition = %bucket,
                    rows = file.rows,
                    "late rows written to a time partition already marked complete"
                );
            }
            self.incomplete.insert(bucket);
        }
    }

    /// Writes `_SUCCESS` into every time partition the committed watermark has passed the
    /// end of, and the watermark itself to `_weir/watermark.json`, for schedulers to wait on;
    /// only when the watermark speaks for every partition of the topics (`coverage`), and
    /// only once every committed file, whoever committed it, is under its final name. A
    /// failed write is retried at the next commit.
    pub(super) async fn mark_complete(&mut self, coverage: &WatermarkCoverage) {
        let Some(watermark) = self.state.watermark_ms() else {
            return;
        };
        if !coverage.is_complete() {
            tracing::debug!(dataset = %self.dataset, ?coverage, "the committed watermark does not cover every partition yet");
            return;
        }
        if let Some(granularity) = self.time_partitions {
            let complete: Vec<String> = self
                .incomplete
                .iter()
                .filter(|b| granularity.end_ms(b).is_some_and(|end| end <= watermark))
                .cloned()
                .collect();
            // A writer that died between its entry and its moves left committed files under
            // their staged names; a reader trusting the marker would miss them.
            if !complete.is_empty()
                && let Err(e) = self.publish_unpublished().await
            {
                tracing::warn!(dataset = %self.dataset, error = %e, "cannot publish every committed file; completeness markers wait for the next commit");
                return;
            }
            for bucket in complete {
                let marker = match under(&self.root, &bucket) {
                    Ok(dir) => dir.join("_SUCCESS"),
                    Err(_) => {
                        self.incomplete.remove(&bucket);
                        continue;
                    }
                };
                // Created once: a second writer's marker would hide when it first appeared.
                let create = PutOptions::from(PutMode::Create);
                match self
                    .store
                    .put_opts(&marker, PutPayload::default(), create)
                    .await
                {
                    Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {
                        self.incomplete.remove(&bucket);
                        tracing::debug!(dataset = %self.dataset, partition = %bucket, "time partition complete");
                    }
                    Err(e) => {
                        tracing::warn!(dataset = %self.dataset, %marker, error = %e, "cannot write a completeness marker; retrying at the next commit");
                        return;
                    }
                }
            }
        }
        if self.published_watermark < Some(watermark) {
            let path = self.root.clone().join(WEIR_DIR).join("watermark.json");
            let body = serde_json::json!({
                "watermark_ms": watermark,
                "watermark": chrono::DateTime::from_timestamp_millis(watermark)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                "log_entry": self.state.next_seq.saturating_sub(1),
            });
            match self
                .store
                .put(&path, PutPayload::from(body.to_string()))
                .await
            {
                Ok(_) => self.published_watermark = Some(watermark),
                Err(e) => {
                    tracing::warn!(dataset = %self.dataset, error = %e, "cannot write the watermark record")
                }
            }
        }
    }
}
