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
            let ends = tokio::task::spawn_blocking(move || {
                owned
                    .into_iter()
                    .filter_map(|partition| {
                        match asking.fetch_watermarks(
                            &partition.topic,
                            partition.partition,
                            BROKER_TIMEOUT,
                        ) {
                            Ok((_, end)) => Some((partition, end)),
                            Err(e) => {
                                tracing::debug!(%partition, error = %e, "cannot read the log-end offset");
                                None
                            }
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            if let Ok(ends) = ends {
                observer.log_ends(&ends);
            }
        }
        // Closing a client can wait on the brokers.
        let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    })
}
