//! The batch that ingest hands on, and every later stage takes: the one contract between
//! stages.
//!
//! A [`SourceBatch`] holds the rows decoded from one poll of Kafka (the declared fields and
//! the metadata columns, as the source table of SQL), the offsets the poll covered, the
//! latest event time of each partition among the rows, and the messages that could not be
//! used, as dead letters. It keeps the messages themselves too, so that a stage that rejects
//! a row later (a validation rule, a window it is too late for, a SQL error) dead-letters it
//! with its exact key and payload. Whatever removes rows goes through its methods, which
//! keep those facts true of the rows that are left.

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::TimestampMillisecondType;

use crate::metadata::{Partitions, utc_millis};
use crate::{DeadLetter, DeadLetters, EventTimes, Messages, OffsetRanges, PartitionKey, Reason};

/// One polled batch on its way through the pipeline.
pub struct SourceBatch {
    rows: RecordBatch,
    /// For each row, the index of the message it came from.
    message_of_row: Vec<u32>,
    messages: Messages,
    /// The offsets the batch covers: its rows', its dead letters' and any skipped message's.
    offsets: OffsetRanges,
    /// The column of `rows` that holds the event time.
    event_time: usize,
    event_times: EventTimes,
    dead_letters: DeadLetters,
}

impl SourceBatch {
    /// The rows decoded from `messages` (row `r` from message `message_of_row[r]`, with the
    /// metadata columns appended) and the dead letters of the messages that did not decode.
    /// `event_time` is the index of the event-time column of `rows`.
    pub fn new(
        rows: RecordBatch,
        message_of_row: Vec<u32>,
        messages: Messages,
        dead_letters: DeadLetters,
        event_time: usize,
    ) -> Self {
        debug_assert_eq!(rows.num_rows(), message_of_row.len());
        let mut batch = Self {
            rows,
            message_of_row,
            offsets: messages.ranges().clone(),
            messages,
            event_time,
            event_times: EventTimes::default(),
            dead_letters,
        };
        batch.event_times = batch.latest_event_times();
        batch
    }

    /// The rows: declared fields, then the metadata columns.
    pub fn rows(&self) -> &RecordBatch {
        &self.rows
    }

    pub fn num_rows(&self) -> usize {
        self.rows.num_rows()
    }

    /// The offsets the batch covers, rows or not.
    pub fn offsets(&self) -> &OffsetRanges {
        &self.offsets
    }

    /// How many messages were polled, rows or not.
    pub fn messages(&self) -> usize {
        self.messages.len()
    }

    /// The latest event time of each partition among the rows.
    pub fn event_times(&self) -> &EventTimes {
        &self.event_times
    }

    /// The Kafka timestamps of the messages polled.
    pub fn kafka_timestamps(&self) -> impl Iterator<Item = i64> + '_ {
        self.messages.timestamps()
    }

    pub fn dead_letters(&self) -> &DeadLetters {
        &self.dead_letters
    }

    /// Takes the dead letters out, once the batch is done with.
    pub fn take_dead_letters(&mut self) -> DeadLetters {
        self.dead_letters.take()
    }

    /// A dead letter for the message `row` came from.
    pub fn dead_letter(&self, row: usize, reason: Reason, detail: String) -> DeadLetter {
        let message = self.message_of_row[row] as usize;
        self.messages.dead_letter(message, reason, detail)
    }

    /// Dead-letters the message `row` came from, keeping the row (it may be used elsewhere:
    /// late for one window, it can still be written by another transform).
    pub fn dead_letter_row(&mut self, row: usize, reason: Reason, detail: String) {
        let letter = self.dead_letter(row, reason, detail);
        self.dead_letters.push(letter);
    }

    /// Keeps only what came from partitions `keep` accepts: rows, dead letters, offsets and
    /// event times.
    pub fn retain_partitions(&mut self, keep: impl Fn(&PartitionKey) -> bool) {
        let messages = &self.messages;
        let kept: Vec<bool> = (0..messages.len())
            .map(|i| {
                keep(&PartitionKey {
                    topic: messages.topic(i).clone(),
                    partition: messages.partition(i),
                })
            })
            .collect();
        let mut offsets = OffsetRanges::default();
        for (i, _) in kept.iter().enumerate().filter(|(_, k)| **k) {
            let key = PartitionKey {
                topic: messages.topic(i).clone(),
                partition: messages.partition(i),
            };
            offsets.record(&key, messages.offset(i));
        }
        self.offsets = offsets;
        let mask: BooleanArray = self
            .message_of_row
            .iter()
            .map(|&m| Some(kept[m as usize]))
            .collect();
        self.rows =
            filter_record_batch(&self.rows, &mask).expect("a mask as long as the batch filters it");
        self.message_of_row.retain(|&m| kept[m as usize]);
        self.dead_letters.retain(|letter| {
            keep(&PartitionKey {
                topic: letter.topic.clone(),
                partition: letter.partition,
            })
        });
        self.event_times.retain(&keep);
    }

    /// Dead-letters the rows `rejected` names (row, reason, detail) and drops them; the event
    /// times are then those of the rows that are left.
    pub fn reject(&mut self, rejected: impl IntoIterator<Item = (usize, Reason, String)>) {
        let mut keep = vec![true; self.rows.num_rows()];
        let mut any = false;
        for (row, reason, detail) in rejected {
            self.dead_letter_row(row, reason, detail);
            keep[row] = false;
            any = true;
        }
        if !any {
            return;
        }
        let mask = BooleanArray::from(keep);
        self.rows =
            filter_record_batch(&self.rows, &mask).expect("a mask as long as the batch filters it");
        let mut row = 0;
        self.message_of_row.retain(|_| {
            row += 1;
            mask.value(row - 1)
        });
        self.event_times = self.latest_event_times();
    }

    /// Dead-letters every row with the same reason and detail (say, the SQL failed on the
    /// batch); nothing of it is left to write or to move event time.
    pub fn reject_all(&mut self, reason: Reason, detail: &str) {
        let rows = self.rows.num_rows();
        self.reject((0..rows).map(|row| (row, reason.clone(), detail.to_owned())));
    }

    fn latest_event_times(&self) -> EventTimes {
        let mut times = EventTimes::default();
        if self.rows.num_rows() == 0 {
            return times;
        }
        let partitions = Partitions::of(&self.rows).expect("source rows have metadata columns");
        let values = arrow::compute::cast(self.rows.column(self.event_time), &utc_millis())
            .expect("the event time is a timestamp");
        let values = values.as_primitive::<TimestampMillisecondType>();
        for (row, time) in values.iter().enumerate() {
            if let Some(time) = time {
                let (topic, partition) = partitions.of_row(row);
                times.observe(topic, partition, time);
            }
        }
        times
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::RawMessages;
    use crate::metadata;

    /// Messages 0..6 of partitions 0 and 1 (alternating); message 3 did not decode.
    fn batch() -> SourceBatch {
        let mut raw = RawMessages::with_capacity(6);
        for offset in 0..6 {
            let payload = format!("m{offset}");
            raw.push(
                "t",
                (offset % 2) as i32,
                offset,
                None,
                None,
                Some(payload.as_bytes()),
            );
        }
        let messages = raw.finish();
        let rows: Vec<u32> = vec![0, 1, 2, 4, 5];
        let mut fields = vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("ts", metadata::utc_millis(), true),
        ];
        fields.extend(metadata::fields());
        let table = Arc::new(Schema::new(fields));
        let ids: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c", "e", "f"]));
        let times: ArrayRef = Arc::new(
            TimestampMillisecondArray::from(vec![Some(50), Some(10), Some(70), None, Some(40)])
                .with_timezone("UTC"),
        );
        let declared = RecordBatch::try_new(
            Arc::new(Schema::new(table.fields()[..2].to_vec())),
            vec![ids, times],
        )
        .unwrap();
        let decoded = metadata::append(&table, declared, &messages, &rows);
        let mut dead = DeadLetters::default();
        dead.push(messages.dead_letter(3, Reason::InvalidJson, "no".into()));
        SourceBatch::new(decoded, rows, messages, dead, 1)
    }

    fn times(batch: &SourceBatch) -> Vec<(i32, i64)> {
        batch
            .event_times()
            .iter()
            .map(|(p, t)| (p.partition, t))
            .collect()
    }

    #[test]
    fn event_times_follow_the_rows_that_are_left() {
        let mut batch = batch();
        assert_eq!(times(&batch), vec![(0, 70), (1, 40)]);
        // Row 2 is message 2 (partition 0, event time 70): rejecting it moves partition 0 back.
        batch.reject([(2, Reason::Late, "late".into())]);
        assert_eq!(times(&batch), vec![(0, 50), (1, 40)]);
        let offsets: Vec<i64> = batch.dead_letters().iter().map(|d| d.offset).collect();
        assert_eq!(offsets, vec![3, 2]);
        assert_eq!(
            batch
                .dead_letters()
                .iter()
                .nth(1)
                .unwrap()
                .payload
                .as_deref(),
            Some(&b"m2"[..])
        );
        batch.reject_all(Reason::TransformFailed, "boom");
        assert_eq!(batch.num_rows(), 0);
        assert!(batch.event_times().is_empty());
        assert_eq!(batch.dead_letters().len(), 6);
        // The offsets still cover every message: all of them are accounted for.
        assert_eq!(batch.offsets().messages(), 6);
    }

    #[test]
    fn retaining_partitions_keeps_rows_letters_offsets_and_times_of_those() {
        let mut batch = batch();
        batch.retain_partitions(|p| p.partition == 1);
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(times(&batch), vec![(1, 40)]);
        assert_eq!(batch.dead_letters().len(), 1);
        let ranges: Vec<_> = batch
            .offsets()
            .iter()
            .map(|r| (r.partition.partition, r.from, r.to))
            .collect();
        assert_eq!(ranges, vec![(1, 1, 6)]);
        assert_eq!(batch.offsets().messages(), 3);
        // Row 0 is now message 1.
        assert_eq!(batch.dead_letter(0, Reason::Late, String::new()).offset, 1);
    }
}
