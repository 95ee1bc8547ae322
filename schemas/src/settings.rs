//! Settings passed through to a client (librdkafka properties, object_store options). Their
//! values are often secrets (`sasl.password`, `aws_secret_access_key`), expanded from the
//! environment: printed for debugging, a map of them shows its keys only.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Settings(BTreeMap<String, String>);

impl Deref for Settings {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Settings {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<BTreeMap<String, String>> for Settings {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Hidden;
        impl fmt::Debug for Hidden {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<hidden>")
            }
        }
        f.debug_map()
            .entries(self.0.keys().map(|key| (key, Hidden)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_keys_not_values() {
        let settings = Settings::from(BTreeMap::from([
            ("sasl.password".to_owned(), "hunter2-secret".to_owned()),
            ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
        ]));
        let printed = format!("{settings:?}");
        assert_eq!(
            printed,
            r#"{"sasl.password": <hidden>, "security.protocol": <hidden>}"#
        );
        assert_eq!(settings["sasl.password"], "hunter2-secret");
    }
}
