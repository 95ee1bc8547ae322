//! Where the log's objects live under a dataset root, and the entry numbers their names
//! carry.

use object_store::path::Path;

/// Directory under the dataset root that holds weir's own objects.
pub const WEIR_DIR: &str = "_weir";

/// The path of entry `seq` under a dataset root.
pub fn entry_path(root: &Path, seq: u64) -> Path {
    root.clone()
        .join(WEIR_DIR)
        .join("log")
        .join(format!("{seq:020}.json"))
}

pub(crate) fn snapshot_dir(root: &Path) -> Path {
    root.clone().join(WEIR_DIR).join("snapshots")
}

pub(super) fn snapshot_path(root: &Path, seq: u64) -> Path {
    snapshot_dir(root).join(format!("{seq:020}.json"))
}

/// The entry number a log entry or a snapshot is named after (`<20 digits>.json`).
pub(super) fn seq_of(path: &Path) -> Option<u64> {
    let digits = path.filename()?.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where a committed file whose final name the store cannot hold is kept instead of its
/// staged name (`staging`, as the log records it), so that no start of weir is stuck on it
/// and no clean-up of staged files deletes it.
pub fn quarantine_path(root: &Path, staging: &str) -> Path {
    let name = staging.rsplit('/').next().unwrap_or(staging);
    root.clone().join(WEIR_DIR).join("quarantine").join(name)
}

/// `relative` (an encoded path as recorded in the log) under `root`.
pub fn under(root: &Path, relative: &str) -> Result<Path, object_store::path::Error> {
    let relative = Path::parse(relative)?;
    Ok(root.parts().chain(relative.parts()).collect())
}

/// `path` relative to `root`, as the log records paths.
pub(super) fn relative_to(root: &Path, path: &Path) -> String {
    path.parts()
        .skip(root.parts().count())
        .map(|part| part.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join("/")
}
