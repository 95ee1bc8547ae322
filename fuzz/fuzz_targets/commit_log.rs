//! Reading a commit log whose objects hold anything at all: entries and a snapshot, split
//! from the input at 0xFF bytes, in an in-memory store. Reading the state must answer
//! (a state, or an error naming the object), never panic.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use object_store::{ObjectStore, ObjectStoreExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use weir_sink::CommitLog;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
});

fuzz_target!(|data: &[u8]| {
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == 0xFF).collect();
    // The first piece is a snapshot (after entry 0) when it starts with `S`.
    let snapshot = match pieces.first() {
        Some(first) if first.first() == Some(&b'S') => Some(&pieces.remove(0)[1..]),
        _ => None,
    };
    RUNTIME.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("dataset");
        for (seq, body) in pieces.iter().enumerate() {
            let path = weir_sink::commit_log::entry_path(&root, seq as u64);
            store.put(&path, body.to_vec().into()).await.unwrap();
        }
        if let Some(body) = snapshot {
            let path = root.clone().join("_weir/snapshots/00000000000000000000.json");
            store.put(&path, body.to_vec().into()).await.unwrap();
        }
        let _ = CommitLog::read_state("fuzz", store, root).await;
    });
});
