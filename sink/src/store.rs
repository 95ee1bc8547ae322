//! Opening object stores from dataset URLs.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "`{url}` is not a dataset URL (file://, s3://, gs://, az:// or a local path): {reason}"
    )]
    BadUrl { url: String, reason: String },
    #[error("cannot open the object store for `{url}`: {source}")]
    Open {
        url: String,
        source: object_store::Error,
    },
}

/// The store and the dataset's root path in it, for a URL such as `s3://bucket/events`,
/// `file:///data/events` or a plain local path. `options` are object_store's configuration
/// keys (e.g. `aws_endpoint`, `aws_access_key_id`, `aws_allow_http`); anything not given is
/// taken from the environment (AWS_*, GOOGLE_*, AZURE_*) as each cloud's SDK does.
pub fn open_store(
    url: &str,
    options: &BTreeMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, Path), StoreError> {
    let parsed = parse(url)?;
    if parsed.scheme() == "file" {
        let dir = parsed.to_file_path().map_err(|()| StoreError::BadUrl {
            url: url.to_owned(),
            reason: "not an absolute local path".into(),
        })?;
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Open {
            url: url.to_owned(),
            source: object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            },
        })?;
        let store =
            object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|source| {
                StoreError::Open {
                    url: url.to_owned(),
                    source,
                }
            })?;
        return Ok((Arc::new(store), Path::default()));
    }
    let open_err = |source: object_store::Error| StoreError::Open {
        url: url.to_owned(),
        source,
    };
    let (scheme, root) = ObjectStoreScheme::parse(&parsed).map_err(|e| StoreError::BadUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let bad_option = |key: &str| StoreError::BadUrl {
        url: url.to_owned(),
        reason: format!("unknown storage option `{key}` for {scheme:?}"),
    };
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => {
            let mut builder = AmazonS3Builder::from_env().with_url(url);
            for (key, value) in options {
                builder = builder.with_config(key.parse().map_err(|_| bad_option(key))?, value);
            }
            Arc::new(builder.build().map_err(open_err)?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url);
            for (key, value) in options {
                builder = builder.with_config(key.parse().map_err(|_| bad_option(key))?, value);
            }
            Arc::new(builder.build().map_err(open_err)?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(url);
            for (key, value) in options {
                builder = builder.with_config(key.parse().map_err(|_| bad_option(key))?, value);
            }
            Arc::new(builder.build().map_err(open_err)?)
        }
        other => {
            return Err(StoreError::BadUrl {
                url: url.to_owned(),
                reason: format!("{other:?} is not supported"),
            });
        }
    };
    Ok((store, root))
}

/// For a table format that addresses its files by URL (Delta): the dataset URL as a URL,
/// a store rooted at its bucket (for local paths, at the file system's root), and the
/// dataset's root in that store. A local directory is created if missing.
pub fn open_rooted_store(
    url: &str,
    options: &BTreeMap<String, String>,
) -> Result<(Url, Arc<dyn ObjectStore>, Path), StoreError> {
    let parsed = parse(url)?;
    if parsed.scheme() != "file" {
        let (store, root) = open_store(url, options)?;
        return Ok((parsed, store, root));
    }
    // Creates the directory, as for every local dataset.
    open_store(url, options)?;
    let dir = parsed.to_file_path().map_err(|()| StoreError::BadUrl {
        url: url.to_owned(),
        reason: "not an absolute local path".into(),
    })?;
    let root = Path::from_absolute_path(&dir).map_err(|e| StoreError::BadUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let table_url = Url::from_directory_path(&dir).map_err(|()| StoreError::BadUrl {
        url: url.to_owned(),
        reason: "not a usable local path".into(),
    })?;
    Ok((
        table_url,
        Arc::new(object_store::local::LocalFileSystem::new()),
        root,
    ))
}

/// How long a path the store of a dataset URL holds. A local file system holds 255 bytes in
/// one name; S3, GCS and Azure Blob Storage hold keys of 1,024 bytes, however divided. weir
/// keeps local paths to 1,024 bytes too (Linux allows 4,096 with the directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathLimits {
    /// The longest segment between two `/`.
    pub segment_bytes: usize,
    /// The longest whole key, from the store's root.
    pub key_bytes: usize,
}

impl PathLimits {
    const KEY_BYTES: usize = 1024;

    pub fn for_url(url: &str) -> Self {
        let local = parse(url).is_ok_and(|u| u.scheme() == "file");
        Self {
            segment_bytes: if local { 255 } else { Self::KEY_BYTES },
            key_bytes: Self::KEY_BYTES,
        }
    }
}

fn parse(url: &str) -> Result<Url, StoreError> {
    if url.contains("://") {
        return Url::parse(url).map_err(|e| StoreError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        });
    }
    let path = FsPath::new(url);
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|e| StoreError::BadUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?
            .join(path)
    };
    Url::from_directory_path(&absolute).map_err(|()| StoreError::BadUrl {
        url: url.to_owned(),
        reason: "not a usable local path".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_and_file_urls_open_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ds");
        let (_, root) = open_store(target.to_str().unwrap(), &BTreeMap::new()).unwrap();
        assert_eq!(root, Path::default());
        assert!(target.is_dir());
        let url = format!("file://{}", dir.path().join("other").display());
        open_store(&url, &BTreeMap::new()).unwrap();
        assert!(dir.path().join("other").is_dir());
    }

    #[test]
    fn cloud_urls_open_with_their_prefix_and_reject_unknown_options() {
        let options = BTreeMap::from([
            ("aws_region".to_owned(), "eu-west-1".to_owned()),
            ("aws_access_key_id".to_owned(), "id".to_owned()),
            ("aws_secret_access_key".to_owned(), "secret".to_owned()),
        ]);
        let (_, root) = open_store("s3://bucket/data/clicks", &options).unwrap();
        assert_eq!(root.as_ref(), "data/clicks");
        let options = BTreeMap::from([
            ("azure_storage_account_name".to_owned(), "acct".to_owned()),
            ("azure_storage_account_key".to_owned(), "a2V5".to_owned()),
        ]);
        let (_, root) = open_store("az://container/clicks", &options).unwrap();
        assert_eq!(root.as_ref(), "clicks");
        let bad = BTreeMap::from([("aws_endpont".to_owned(), "http://x".to_owned())]);
        let err = open_store("s3://bucket/x", &bad).err().unwrap().to_string();
        assert!(
            err.contains("unknown storage option `aws_endpont`"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn unknown_schemes_are_rejected_with_the_url() {
        let err = open_store("ftp://host/x", &BTreeMap::new()).err().unwrap();
        assert!(err.to_string().contains("ftp://host/x"), "{err}");
    }
}
