//! `weir generate`: generated click-stream events into a Kafka cluster, at most `rate` a
//! second, until `events` or Ctrl-C.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::cli::shutdown_signal;
use crate::config::PayloadFormat;
use weir_ingest::registry::{RegistryConfig, SchemaRegistry};

use crate::generate::{Generator, LIVE_LINGER, produce};

/// `generator` making Avro or Protobuf events, their schema registered as `<topic>-value` at
/// `url`.
pub async fn registered(
    generator: Generator,
    format: PayloadFormat,
    url: &str,
    topic: &str,
) -> anyhow::Result<Generator> {
    let registry = SchemaRegistry::new(&RegistryConfig {
        url: url.to_owned(),
        username: None,
        password: None,
        ca_file: None,
        client_identity_file: None,
        timeout: std::time::Duration::from_secs(10),
    })?;
    let subject = format!("{topic}-value");
    let (schema_type, schema) = match format {
        PayloadFormat::Avro => ("AVRO", crate::generate::avro_schema()),
        PayloadFormat::Protobuf => ("PROTOBUF", crate::generate::protobuf_schema()),
        PayloadFormat::Json => unreachable!("JSON events have no registered schema"),
    };
    let id = registry.register(&subject, schema_type, &schema).await?;
    eprintln!("the events' schema is id {id}, subject {subject}");
    Ok(match format {
        PayloadFormat::Protobuf => generator.with_protobuf(id),
        _ => generator.with_avro(id),
    })
}

pub async fn run(
    bootstrap_servers: String,
    topic: String,
    events: Option<u64>,
    rate: Option<u64>,
    generator: Generator,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let within_rate = move |index: u64| {
        rate.is_none_or(|rate| index < (started.elapsed().as_secs_f64() * rate as f64) as u64 + 1)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut shutdown = shutdown_signal()?;
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = shutdown.changed().await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    let generated = tokio::task::spawn_blocking(move || {
        produce(
            &bootstrap_servers,
            &topic,
            &generator,
            events,
            LIVE_LINGER,
            &stop,
            &within_rate,
        )
    })
    .await??;
    println!("{}", serde_json::to_string(&generated)?);
    Ok(())
}
