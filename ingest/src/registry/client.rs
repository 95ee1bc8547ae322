//! The HTTP side of the registry client.

use serde::Deserialize;

use super::{
    FetchSchema, Password, RegisteredSchema, RegistryConfig, RegistryError, SchemaReference,
    SubjectVersion,
};

/// The registry's answer for a schema, by id or by subject version.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    id: Option<u32>,
    schema: String,
    schema_type: Option<String>,
    version: Option<i64>,
    #[serde(default)]
    references: Vec<SchemaReference>,
}

/// The registry's answer to a registration.
#[derive(Deserialize)]
struct Registered {
    id: u32,
}

/// A subject as one segment of a path.
fn encoded(subject: &str) -> String {
    url::form_urlencoded::byte_serialize(subject.as_bytes()).collect()
}

/// The registry's error body.
#[derive(Deserialize)]
struct ErrorBody {
    error_code: i64,
    message: String,
}

/// A schema registry client; cheap to clone.
#[derive(Clone)]
pub struct SchemaRegistry {
    base: url::Url,
    http: reqwest::Client,
    username: Option<String>,
    password: Option<Password>,
}

impl SchemaRegistry {
    pub fn new(config: &RegistryConfig) -> Result<Self, RegistryError> {
        let url = url::Url::parse(&config.url).map_err(|e| {
            RegistryError::Config(format!("url: expected an http:// or https:// URL: {e}"))
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RegistryError::Config(
                "the url must not hold credentials: give `username` and `password` instead".into(),
            ));
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::Config(format!(
                "the url must be http:// or https://, found {}://",
                url.scheme()
            )));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout);
        if let Some(path) = &config.ca_file {
            let pem = read_file(path, "ca_file")?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| RegistryError::Config(format!("ca_file {}: {e}", path.display())))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(path) = &config.client_identity_file {
            let pem = read_file(path, "client_identity_file")?;
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                RegistryError::Config(format!(
                    "client_identity_file {}: expected a PEM certificate chain and its private \
                     key: {e}",
                    path.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Config(e.to_string()))?;
        let mut base = url;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            base,
            http,
            username: config.username.clone(),
            password: config.password.clone(),
        })
    }

    /// The base URL, for messages.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// The schema with this id (`GET /schemas/ids/{id}`).
    pub async fn schema_by_id(&self, id: u32) -> Result<RegisteredSchema, RegistryError> {
        let body = self
            .get(&format!("schemas/ids/{id}"), &format!("schema id {id}"))
            .await?;
        Ok(RegisteredSchema {
            id,
            schema_type: body.schema_type.unwrap_or_else(|| "AVRO".into()),
            schema: body.schema,
            version: None,
            references: body.references,
        })
    }

    /// A version of a subject (`GET /subjects/{subject}/versions/{version}`).
    pub async fn subject_version(
        &self,
        subject: &str,
        version: SubjectVersion,
    ) -> Result<RegisteredSchema, RegistryError> {
        let what = format!("version {version} of subject `{subject}`");
        let path = format!("subjects/{}/versions/{version}", encoded(subject));
        let body = self.get(&path, &what).await?;
        let id = body.id.ok_or_else(|| RegistryError::Refused {
            url: self.base.to_string(),
            what: what.clone(),
            status: 200,
            message: "the answer has no schema id".into(),
        })?;
        Ok(RegisteredSchema {
            id,
            schema_type: body.schema_type.unwrap_or_else(|| "AVRO".into()),
            schema: body.schema,
            version: body.version,
            references: body.references,
        })
    }

    /// Registers a `schema` of `schema_type` (`AVRO`, `PROTOBUF`) under `subject` (`POST
    /// /subjects/{subject}/versions`) and returns its id: the one it already has if it is
    /// registered.
    pub async fn register(
        &self,
        subject: &str,
        schema_type: &str,
        schema: &str,
    ) -> Result<u32, RegistryError> {
        let what = format!("registering a schema under subject `{subject}`");
        let path = format!("subjects/{}/versions", encoded(subject));
        let body = serde_json::json!({ "schema": schema, "schemaType": schema_type });
        let registered: Registered = self
            .send(reqwest::Method::POST, &path, Some(body), &what)
            .await?;
        Ok(registered.id)
    }

    async fn get(&self, path: &str, what: &str) -> Result<SchemaBody, RegistryError> {
        self.send(reqwest::Method::GET, path, None, what).await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        what: &str,
    ) -> Result<T, RegistryError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| RegistryError::Config(e.to_string()))?;
        let mut request = self.http.request(method, url).header(
            reqwest::header::ACCEPT,
            "application/vnd.schemaregistry.v1+json",
        );
        if let Some(body) = body {
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/vnd.schemaregistry.v1+json",
                )
                .body(body.to_string());
        }
        if let Some(username) = &self.username {
            request = request.basic_auth(username, self.password.as_ref().map(|p| &p.0));
        }
        let unavailable = |why: String| RegistryError::Unavailable {
            url: self.base.to_string(),
            why,
        };
        // Transport errors name the URL at most, never the credentials (sent as a header).
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(transport_error(&e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(transport_error(&e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| RegistryError::Refused {
                url: self.base.to_string(),
                what: what.to_owned(),
                status: status.as_u16(),
                message: format!("the answer is not a schema: {e}"),
            });
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (body.error_code, body.message),
            Err(_) => (
                -1,
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            ),
        };
        match status.as_u16() {
            404 => Err(RegistryError::NotFound {
                what: what.to_owned(),
                code,
                message,
            }),
            408 | 429 | 500..=599 => Err(unavailable(format!("HTTP {status}: {message}"))),
            other => Err(RegistryError::Refused {
                url: self.base.to_string(),
                what: what.to_owned(),
                status: other,
                message,
            }),
        }
    }
}

/// A transport error with its causes, which say what actually failed (refused, timed out,
/// a certificate not trusted).
fn transport_error(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn read_file(path: &std::path::Path, key: &str) -> Result<Vec<u8>, RegistryError> {
    std::fs::read(path)
        .map_err(|e| RegistryError::Config(format!("cannot read {key} {}: {e}", path.display())))
}

/// A [`SchemaRegistry`] asked from the decoding threads, which are not async: each request
/// runs to completion on a runtime of its own, on a thread of its own, so that it works from
/// any thread, inside an async runtime or not. Requests are rare (once per schema id).
pub struct BlockingRegistry {
    registry: SchemaRegistry,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl BlockingRegistry {
    pub fn new(registry: SchemaRegistry) -> Result<Self, RegistryError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Config(format!("cannot start its runtime: {e}")))?;
        Ok(Self {
            registry,
            runtime: Some(runtime),
        })
    }
}

impl BlockingRegistry {
    fn wait_for<T: Send>(&self, request: impl Future<Output = T> + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = self.runtime.as_ref().expect("until dropped");
                    runtime.block_on(request)
                })
                .join()
                .expect("a registry request does not panic")
        })
    }
}

impl FetchSchema for BlockingRegistry {
    fn fetch(&self, id: u32) -> Result<RegisteredSchema, RegistryError> {
        self.wait_for(self.registry.schema_by_id(id))
    }

    fn fetch_version(
        &self,
        subject: &str,
        version: i64,
    ) -> Result<RegisteredSchema, RegistryError> {
        let version = u32::try_from(version).map_err(|_| RegistryError::NotFound {
            what: format!("version {version} of subject `{subject}`"),
            code: 40402,
            message: "versions count up from 1".into(),
        })?;
        self.wait_for(
            self.registry
                .subject_version(subject, SubjectVersion::Number(version)),
        )
    }
}

impl Drop for BlockingRegistry {
    // The last decoder may be dropped on an async task; a runtime may not wait for its
    // threads there, and this one has nothing left to wait for.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
