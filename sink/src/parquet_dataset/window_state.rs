//! Window state files: the open windows' partial aggregates a commit of a windowed dataset
//! references, as Arrow IPC (accumulator states use types, lists of partial digests and
//! structs, that must round-trip bit for bit).

use arrow::array::RecordBatch;
use arrow::ipc::CompressionType;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use object_store::ObjectStoreExt;

use super::ParquetDataset;
use crate::SinkError;
use crate::commit_log::under;

impl ParquetDataset {
    /// Writes `state` at `relative` (under the dataset root) for the next commit to reference.
    pub(super) async fn write_window_state(
        &self,
        relative: &str,
        state: &RecordBatch,
    ) -> Result<(), SinkError> {
        let mut bytes = Vec::new();
        let written = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::ZSTD))
            .and_then(|options| {
                let mut writer =
                    FileWriter::try_new_with_options(&mut bytes, &state.schema(), options)?;
                writer.write(state)?;
                writer.finish()
            });
        written.map_err(|source| SinkError::Schema {
            dataset: self.name.clone(),
            source,
        })?;
        let path = under(&self.root, relative).expect("a valid path");
        self.store
            .put(&path, bytes.into())
            .await
            .map_err(|source| self.store_error("write", &path, source))?;
        Ok(())
    }

    /// Reads a window state file a commit references.
    pub(super) async fn read_window_state(
        &self,
        relative: &str,
    ) -> Result<Vec<RecordBatch>, SinkError> {
        let corrupt = |source| SinkError::Schema {
            dataset: self.name.clone(),
            source,
        };
        let path = under(&self.root, relative)
            .map_err(|e| corrupt(arrow::error::ArrowError::ParseError(e.to_string())))?;
        let read = async { self.store.get(&path).await?.bytes().await };
        let bytes = read
            .await
            .map_err(|source| self.store_error("read", &path, source))?;
        FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(corrupt)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt)
    }
}
