//! Asks the brokers for the log-end offsets of the partitions this instance owns, every
//! `log_end_interval`, with a client of its own (see [`weir_ingest::offsets`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weir_ingest::ConsumerConfig;
use weir_ingest::offsets::OffsetClient;

use super::Observer;

const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn spawn(
    observer: Arc<Observer>,
    kafka: ConsumerConfig,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = match OffsetClient::new(&kafka, false) {
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
                asking
                    .bounds_until(owned, deadline)
                    .into_iter()
                    .map(|(partition, log)| (partition, log.start, log.end))
                    .collect::<Vec<_>>()
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
