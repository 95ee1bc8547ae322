//! Asks the brokers for the log-end offsets of the partitions this instance owns.
//!
//! A client of its own, apart from the pipeline's consumer: the consumer's cached high
//! watermarks stop moving exactly when lag matters most (consumption paused under
//! backpressure, a stalled pipeline), while a ListOffsets request answers regardless.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::watch;
use weir_ingest::SourceConfig;

use super::Observer;

const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn spawn(
    observer: Arc<Observer>,
    kafka: SourceConfig,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client: BaseConsumer = match weir_ingest::client_config(
            &kafka.bootstrap_servers,
            &kafka.properties,
        )
        .create()
        {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create a Kafka client for log-end offsets; lag metrics stay empty");
                return;
            }
        };
        let client = Arc::new(client);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                _ = ticks.tick() => {}
            }
            let owned = observer.owned();
            if owned.is_empty() {
                continue;
            }
            let asking = client.clone();
            // One round gives up at the next tick: with brokers down, the partitions not
            // asked yet wait for the next round instead of piling up timeouts.
            let deadline = std::time::Instant::now() + every.min(BROKER_TIMEOUT);
            let asked = tokio::task::spawn_blocking(move || {
                let mut ends = Vec::with_capacity(owned.len());
                for partition in owned {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match asking.fetch_watermarks(&partition.topic, partition.partition, left) {
                        Ok((start, end)) => ends.push((partition, start, end)),
                        Err(e) => {
                            tracing::debug!(%partition, error = %e, "cannot read the log-end offset");
                        }
                    }
                }
                ends
            });
            tokio::select! {
                // Shutting down does not wait for the brokers.
                _ = stopped.changed() => break,
                ends = asked => if let Ok(ends) = ends {
                    observer.log_ends(&ends);
                }
            }
        }
        // Closing a client can wait on the brokers; nobody needs to wait for that.
        tokio::task::spawn_blocking(move || drop(client));
    })
}
