//! Reading a Parquet file's footer from object storage, without the rest of the file.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};

/// The metadata in the footer of the Parquet file at `path` (`size` bytes), read with two
/// range requests.
pub(crate) async fn read_metadata(
    store: &dyn ObjectStore,
    path: &Path,
    size: u64,
) -> Result<ParquetMetaData, Box<dyn std::error::Error + Send + Sync>> {
    const TAIL: u64 = 8;
    if size < TAIL {
        return Err("shorter than a Parquet footer".into());
    }
    let tail = store.get_range(path, size - TAIL..size).await?;
    let tail = FooterTail::try_from(tail.as_ref())?;
    let length = tail.metadata_length() as u64;
    if length + TAIL > size {
        return Err("footer length exceeds the file".into());
    }
    let footer = store
        .get_range(path, size - TAIL - length..size - TAIL)
        .await?;
    Ok(ParquetMetaDataReader::decode_metadata(&footer)?)
}
