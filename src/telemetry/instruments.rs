//! The OpenTelemetry instruments: counters and histograms the observer records into as
//! things happen, and the gauges that read its view at each collection.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, AsyncInstrumentBuilder, Counter, Histogram, Meter};
use weir_ingest::SourceStats;

use super::observer::{Observer, PartitionView};
use super::status::PartitionStatus;

/// Boundaries of the commit-duration histogram, seconds.
const COMMIT_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Boundaries of the freshness histogram, seconds: from sub-second to an hour behind.
const FRESHNESS_SECONDS: &[f64] = &[
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The synchronous instruments; the observable ones live in the meter's callbacks.
pub(super) struct Instruments {
    pub(super) rows: Counter<u64>,
    pub(super) bytes: Counter<u64>,
    pub(super) files: Counter<u64>,
    pub(super) commit_duration: Histogram<f64>,
    pub(super) freshness: Histogram<f64>,
    pub(super) dead_letters: Counter<u64>,
    pub(super) late: Counter<u64>,
    pub(super) rebalances: Counter<u64>,
    pub(super) checkpoints: Counter<u64>,
}

impl Instruments {
    pub(super) fn new(meter: &Meter) -> Self {
        Self {
            rows: meter
                .u64_counter("weir.rows_written")
                .with_description("Rows committed to a dataset.")
                .build(),
            bytes: meter
                .u64_counter("weir.written")
                .with_unit("By")
                .with_description("Bytes of Parquet committed to a dataset.")
                .build(),
            files: meter
                .u64_counter("weir.files_written")
                .with_description("Files committed to a dataset.")
                .build(),
            commit_duration: meter
                .f64_histogram("weir.commit.duration")
                .with_unit("s")
                .with_description(
                    "Time to commit a dataset: closing its files and appending to its commit log.",
                )
                .with_boundaries(COMMIT_SECONDS.to_vec())
                .build(),
            freshness: meter
                .f64_histogram("weir.freshness")
                .with_unit("s")
                .with_description(
                    "From a message's Kafka timestamp to the checkpoint that made its rows visible.",
                )
                .with_boundaries(FRESHNESS_SECONDS.to_vec())
                .build(),
            dead_letters: meter
                .u64_counter("weir.dead_letters")
                .with_description("Messages sent to the dead letters, by reason.")
                .build(),
            late: meter
                .u64_counter("weir.late_records")
                .with_description(
                    "Records after their time: dead-lettered by a windowed dataset, or written to \
                     a time partition already marked complete.",
                )
                .build(),
            rebalances: meter
                .u64_counter("weir.rebalances")
                .with_description("Consumer-group rebalance events, by kind.")
                .build(),
            checkpoints: meter
                .u64_counter("weir.checkpoints")
                .with_description("Checkpoints that committed data.")
                .build(),
        }
    }
}

/// The gauges and observable counters, read from the observer at each collection.
pub(super) fn register_gauges(meter: &Meter, observer: Weak<Observer>) {
    type Reading = Vec<(f64, Vec<KeyValue>)>;
    let gauge = |name: &'static str,
                 unit: &'static str,
                 description: &'static str,
                 read: fn(&Observer) -> Reading| {
        let builder = meter.f64_observable_gauge(name);
        let _ = observing(
            builder,
            unit,
            description,
            &observer,
            move |o, instrument| {
                for (value, attributes) in read(o) {
                    instrument.observe(value, &attributes);
                }
            },
        )
        .build();
    };
    let counter = |name: &'static str,
                   unit: &'static str,
                   description: &'static str,
                   read: fn(&SourceStats) -> u64| {
        let builder = meter.u64_observable_counter(name);
        let _ = observing(
            builder,
            unit,
            description,
            &observer,
            move |o, instrument| {
                instrument.observe(read(&o.source), &o.attributes);
            },
        )
        .build();
    };
    counter(
        "weir.consumed_messages",
        "",
        "Messages read from Kafka.",
        |s| s.messages.load(Ordering::Relaxed),
    );
    counter(
        "weir.consumed",
        "By",
        "Bytes of message payload read from Kafka.",
        |s| s.bytes.load(Ordering::Relaxed),
    );
    counter(
        "weir.backpressure_pauses",
        "",
        "Times the reader found the pipeline full and waited.",
        |s| s.backpressure_pauses.load(Ordering::Relaxed),
    );
    gauge(
        "weir.consumer.offset",
        "",
        "The offset the pipeline reads next, per owned partition.",
        |o| o.per_partition(|p| p.consumed_offset.map(|v| v as f64)),
    );
    gauge(
        "weir.log_end.offset",
        "",
        "The partition's log-end offset (high watermark) as the brokers last reported it.",
        |o| o.per_partition(|p| Observer::log_end(p).map(|v| v as f64)),
    );
    gauge(
        "weir.consumer.lag",
        "",
        "Messages in the log the pipeline has not read yet.",
        |o| o.per_partition(|p| Some((Observer::log_end(p)? - p.consumed_offset?) as f64)),
    );
    gauge(
        "weir.watermark",
        "s",
        "The partition's event-time watermark in the pipeline, Unix seconds.",
        |o| o.per_partition(|p| p.watermark_ms.map(|w| w as f64 / 1000.0)),
    );
    gauge(
        "weir.committed.offset",
        "",
        "Where the dataset continues in the partition, from its commit log.",
        |o| o.per_dataset_partition(|p| p.committed_offset.map(|v| v as f64)),
    );
    gauge(
        "weir.offset_lag",
        "",
        "Messages in the log the dataset does not hold yet (log end − committed offset).",
        |o| o.per_dataset_partition(|p| p.offset_lag.map(|v| v as f64)),
    );
    gauge(
        "weir.committed_watermark",
        "s",
        "The dataset's committed event-time watermark for the partition, Unix seconds.",
        |o| o.per_dataset_partition(|p| p.committed_watermark_ms.map(|w| w as f64 / 1000.0)),
    );
    gauge(
        "weir.watermark_lag",
        "s",
        "How far the dataset's committed watermark trails the clock.",
        |o| o.per_dataset_partition(|p| p.watermark_lag_seconds),
    );
    gauge(
        "weir.commit_age",
        "s",
        "Seconds since this instance last committed the dataset (since start before that).",
        |o| {
            o.datasets()
                .into_iter()
                .filter_map(|d| {
                    let age = d.commit_age_seconds?;
                    Some((age, o.attributes(&[("dataset", d.dataset)])))
                })
                .collect()
        },
    );
    gauge(
        "weir.buffered",
        "By",
        "Rows buffered in memory, waiting for the next checkpoint.",
        |o| vec![(o.view().buffered_bytes as f64, o.attributes.clone())],
    );
    gauge(
        "weir.memory",
        "By",
        "Resident memory of the process not backed by files, held to delivery.max_memory.",
        |o| {
            o.view()
                .memory_bytes
                .map(|bytes| (bytes as f64, o.attributes.clone()))
                .into_iter()
                .collect()
        },
    );
    gauge(
        "weir.assigned_partitions",
        "",
        "Kafka partitions this instance owns.",
        |o| vec![(o.view().partitions.len() as f64, o.attributes.clone())],
    );
    gauge(
        "weir.up",
        "",
        "1 when /healthz says healthy, 0 when the pipeline loop is wedged.",
        |o| {
            let view = o.view();
            let ok = o.health(&view, Instant::now()).ok;
            vec![(if ok { 1.0 } else { 0.0 }, o.attributes.clone())]
        },
    );
}

/// An observable instrument described, with its unit if it has one, whose callback hands
/// `observe` the observer for as long as the observer lives.
fn observing<'a, I, M>(
    builder: AsyncInstrumentBuilder<'a, I, M>,
    unit: &'static str,
    description: &'static str,
    observer: &Weak<Observer>,
    observe: impl Fn(&Observer, &dyn AsyncInstrument<M>) + Send + Sync + 'static,
) -> AsyncInstrumentBuilder<'a, I, M> {
    let observer = observer.clone();
    let builder = builder
        .with_description(description)
        .with_callback(move |instrument| {
            if let Some(observer) = observer.upgrade() {
                observe(&observer, instrument);
            }
        });
    if unit.is_empty() {
        builder
    } else {
        builder.with_unit(unit)
    }
}

impl Observer {
    fn per_partition(
        &self,
        value: impl Fn(&PartitionView) -> Option<f64>,
    ) -> Vec<(f64, Vec<KeyValue>)> {
        self.view()
            .partitions
            .iter()
            .filter_map(|(key, p)| {
                Some((
                    value(p)?,
                    self.attributes(&[
                        ("topic", key.topic.to_string()),
                        ("partition", key.partition.to_string()),
                    ]),
                ))
            })
            .collect()
    }

    fn per_dataset_partition(
        &self,
        value: impl Fn(&PartitionStatus) -> Option<f64>,
    ) -> Vec<(f64, Vec<KeyValue>)> {
        self.datasets()
            .into_iter()
            .flat_map(|d| {
                d.partitions
                    .into_iter()
                    .filter_map(|p| {
                        Some((
                            value(&p)?,
                            self.attributes(&[
                                ("dataset", d.dataset.clone()),
                                ("topic", p.topic.clone()),
                                ("partition", p.partition.to_string()),
                            ]),
                        ))
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}
