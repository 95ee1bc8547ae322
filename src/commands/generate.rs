//! `weir generate`: generated click-stream events into a Kafka cluster, at most `rate` a
//! second, until `events` or Ctrl-C.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::cli::shutdown_signal;
use crate::generate::{Generator, produce};

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
            &stop,
            &within_rate,
        )
    })
    .await??;
    println!("{}", serde_json::to_string(&generated)?);
    Ok(())
}
