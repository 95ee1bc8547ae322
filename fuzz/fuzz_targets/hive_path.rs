//! Partition values as Hive path segments: any value escapes to one segment the object store
//! takes as it is, which readers unescape back to the value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use object_store::path::Path;
use weir_schemas::hive::{NULL_PARTITION, escape_into, unescape};

fuzz_target!(|value: &str| {
    let mut segment = String::from("c=");
    escape_into(&mut segment, value);
    let escaped = &segment["c=".len()..];
    if value.is_empty() {
        assert_eq!(escaped, NULL_PARTITION);
        return;
    }
    assert!(!escaped.contains('/'), "{escaped:?} is more than one segment");
    assert_eq!(escaped.matches('=').count(), 0, "{escaped:?} holds a `=`");
    assert_eq!(unescape(escaped).as_deref(), Some(value), "{escaped:?} reads back otherwise");
    let path = Path::parse(&segment).unwrap_or_else(|e| panic!("{segment:?}: {e}"));
    assert_eq!(path.parts().count(), 1);
    assert_eq!(path.as_ref(), segment, "the store would rename {segment:?}");
});
