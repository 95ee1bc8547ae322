//! A schema registry inside weir, for what runs without any server: the Avro quickstart and
//! `weir bench --format avro`. It holds schemas in memory and answers the requests weir's
//! own client and producers make (register a schema, a subject's version, a schema by id),
//! in the REST API of Confluent's registry, on 127.0.0.1.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Default)]
struct Schemas {
    /// Schema texts; a schema's id is its index plus one.
    texts: Vec<String>,
    /// Per subject, the ids of its versions in order.
    subjects: HashMap<String, Vec<u32>>,
}

type Shared = Arc<Mutex<Schemas>>;

/// The registry, serving on a thread of its own until dropped.
pub struct EmbeddedRegistry {
    pub url: String,
    schemas: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedRegistry {
    pub fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("binding the embedded schema registry")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let schemas = Shared::default();
        let app = Router::new()
            .route("/subjects/{subject}/versions", post(register))
            .route("/subjects/{subject}/versions/{version}", get(version))
            .route("/schemas/ids/{id}", get(by_id))
            .with_state(schemas.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("weir-registry".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("a listener on the runtime");
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })?;
        Ok(Self {
            url,
            schemas,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl EmbeddedRegistry {
    /// Registers `schema` under `subject`, as a producer would; its id.
    pub fn register(&self, subject: &str, schema: &str) -> u32 {
        register_schema(
            &mut self.schemas.lock().expect("not poisoned"),
            subject,
            schema,
        )
    }
}

impl Drop for EmbeddedRegistry {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    let content_type = [(
        axum::http::header::CONTENT_TYPE,
        "application/vnd.schemaregistry.v1+json",
    )];
    (status, content_type, body.to_string()).into_response()
}

fn error(status: StatusCode, code: u32, message: String) -> Response {
    answer(status, json!({ "error_code": code, "message": message }))
}

async fn register(
    State(schemas): State<Shared>,
    Path(subject): Path<String>,
    body: String,
) -> Response {
    let Some(text) = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["schema"].as_str().map(str::to_owned))
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "expected {\"schema\": \"...\"}".into(),
        );
    };
    let id = register_schema(&mut schemas.lock().expect("not poisoned"), &subject, &text);
    answer(StatusCode::OK, json!({ "id": id }))
}

/// Adds `text` to `subject`'s versions unless it is the subject's already; its id.
fn register_schema(schemas: &mut Schemas, subject: &str, text: &str) -> u32 {
    let id = match schemas.texts.iter().position(|t| t == text) {
        Some(index) => index as u32 + 1,
        None => {
            schemas.texts.push(text.to_owned());
            schemas.texts.len() as u32
        }
    };
    let versions = schemas.subjects.entry(subject.to_owned()).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    id
}

async fn version(
    State(schemas): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    let schemas = schemas.lock().expect("not poisoned");
    let Some(versions) = schemas.subjects.get(&subject) else {
        return error(
            StatusCode::NOT_FOUND,
            40401,
            format!("Subject '{subject}' not found."),
        );
    };
    let number = match version.as_str() {
        "latest" | "-1" => versions.len(),
        n => match n.parse::<usize>() {
            Ok(n) if (1..=versions.len()).contains(&n) => n,
            _ => {
                return error(
                    StatusCode::NOT_FOUND,
                    40402,
                    format!("Version {version} not found."),
                );
            }
        },
    };
    let id = versions[number - 1];
    answer(
        StatusCode::OK,
        json!({
            "subject": subject,
            "version": number,
            "id": id,
            "schema": schemas.texts[id as usize - 1],
        }),
    )
}

async fn by_id(State(schemas): State<Shared>, Path(id): Path<u32>) -> Response {
    let schemas = schemas.lock().expect("not poisoned");
    match id
        .checked_sub(1)
        .and_then(|index| schemas.texts.get(index as usize))
    {
        Some(text) => answer(StatusCode::OK, json!({ "schema": text })),
        None => error(
            StatusCode::NOT_FOUND,
            40403,
            format!("Schema {id} not found"),
        ),
    }
}
