//! A client of a Confluent-compatible schema registry: the part of its REST API a consumer
//! needs.
//!
//! Schema ids are immutable, so what an id names is asked once per process and kept by the
//! callers. A subject's versions are asked at start only (the reader schema). Errors keep
//! two kinds apart, because a consumer must treat them differently: the registry saying a
//! schema does not exist ([`RegistryError::NotFound`]: the message naming it is a dead
//! letter) and the registry not answering ([`RegistryError::Unavailable`]: wait and ask
//! again, never a dead letter).

use std::path::PathBuf;
use std::time::Duration;

/// Where the registry is and how to talk to it.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The registry's base URL, e.g. `https://registry.example.com:8081`.
    pub url: String,
    /// HTTP basic authentication.
    pub username: Option<String>,
    pub password: Option<Password>,
    /// PEM file of the CA certificates that sign the registry's certificate, trusted besides
    /// the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM file holding the client's certificate chain and its private key, for mutual TLS.
    pub client_identity_file: Option<PathBuf>,
    /// How long one request may take, connecting included.
    pub timeout: Duration,
}

/// A secret: shown nowhere, not even by `Debug`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that what was asked for does not exist (HTTP 404).
    #[error("schema registry: {what} not found (error {code}: {message})")]
    NotFound {
        what: String,
        code: i64,
        message: String,
    },
    /// The registry could not be reached or answered that it cannot serve now (timeouts,
    /// refused connections, 408, 429 and 5xx): worth asking again later.
    #[error("schema registry unavailable at {url}: {why}")]
    Unavailable { url: String, why: String },
    /// The registry refused the request for a reason asking again will not change
    /// (401/403 wrong credentials, other 4xx), or answered what a registry does not.
    #[error("schema registry at {url} refused {what}: HTTP {status}, {message}")]
    Refused {
        url: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error("schema registry settings: {0}")]
    Config(String),
}

/// A schema as the registry holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredSchema {
    pub id: u32,
    /// `AVRO`, `PROTOBUF` or `JSON`; the registry leaves it out for Avro.
    pub schema_type: String,
    /// The schema text: Avro JSON, `.proto` source or a JSON Schema.
    pub schema: String,
    /// The subject's version, when the schema was asked for by subject.
    pub version: Option<i64>,
    /// The schemas this one imports (Protobuf) or names (Avro), each a subject's version.
    pub references: Vec<SchemaReference>,
}

/// A schema another one refers to: the name it is imported by (for Protobuf, the import
/// path), and the subject version holding it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SchemaReference {
    pub name: String,
    pub subject: String,
    pub version: i64,
}

/// Where schemas come from: the registry, or a fixed set in tests and tools. Blocking.
pub trait FetchSchema: Send + Sync {
    /// The schema with this id.
    fn fetch(&self, id: u32) -> Result<RegisteredSchema, RegistryError>;
    /// A version of a subject: how references name the schemas they import. Sources that
    /// hold schemas by id alone (fixed sets) have none.
    fn fetch_version(
        &self,
        subject: &str,
        version: i64,
    ) -> Result<RegisteredSchema, RegistryError> {
        Err(RegistryError::NotFound {
            what: format!("version {version} of subject `{subject}`"),
            code: 40401,
            message: "schemas are known by id only".into(),
        })
    }
}

/// Which version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectVersion {
    Latest,
    Number(u32),
}

impl std::fmt::Display for SubjectVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubjectVersion::Latest => f.write_str("latest"),
            SubjectVersion::Number(n) => write!(f, "{n}"),
        }
    }
}

/// The Confluent wire format's framing: magic byte 0 and the schema id.
pub const FRAMING_BYTES: usize = 5;

/// The writer schema id in a payload's framing, or what is wrong with the framing.
pub fn framed_id(payload: &[u8]) -> Result<u32, String> {
    match payload {
        [0, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        [0, ..] => Err(format!(
            "expected magic byte 0 and a 4-byte schema id, found only {} bytes",
            payload.len()
        )),
        [first, ..] => Err(format!(
            "expected magic byte 0 and a 4-byte schema id, found first byte 0x{first:02x}"
        )),
        [] => Err("empty".into()),
    }
}

pub mod evolution;
mod writers;
pub use evolution::{ReaderEvolution, WriterAhead};
pub use writers::{ReadAs, WriterSchema, WriterSchemas};

#[cfg(feature = "kafka")]
mod client;
#[cfg(feature = "kafka")]
pub use client::{BlockingRegistry, SchemaRegistry};
