//! The reader schema following the registry mid-run (`evolution = "add_columns"`).
//!
//! The decoders give up the first batch holding a writer schema with fields the reader
//! lacks, or one the reader cannot read, and the session ends as at shutdown: everything before that batch is committed.
//! Then the pipeline is built again from its config, which reads the subject's latest
//! version. If that version keeps every column of the current reader, at the same or a
//! wider type, it becomes the reader: a new [`State`] opens the datasets, the next session
//! resumes from their commit logs (reading the given-up batch again) and the datasets'
//! next files carry the new columns, which their commit logs record. Otherwise the reader
//! stays, says why, and reads that writer's messages as before (or dead-letters them as
//! `incompatible_schema`); columns never go away mid-run, nor change to a type their earlier
//! files cannot be read as.

use std::time::Duration;

use arrow::datatypes::{DataType, Fields, Schema};
use weir_ingest::registry::WriterAhead;

use super::{RunError, State};
use crate::pipeline::{BuildError, Pipeline};

/// Waits between attempts to build the pipeline while the registry does not answer.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(30);

impl State {
    /// Takes the subject's latest version as the reader if it evolves the current one
    /// (see the module's docs); the state to go on with.
    pub(super) async fn follow(self, new: WriterAhead) -> Result<State, RunError> {
        let (id, change) = (new.schema_id, &new.change);
        let pipeline = match self.build_again().await {
            Ok(pipeline) => pipeline,
            Err(e) => {
                tracing::warn!(error = %e, "schema id {id} {change}, but the pipeline could not be built with the subject's latest version; the reader stays {}", self.source_described);
                return Ok(self);
            }
        };
        if pipeline.source_schema == self.source_schema {
            tracing::warn!(
                "schema id {id} {change}, and the subject's latest version is the reader already ({}): its messages are read as before",
                self.source_described
            );
            return Ok(self);
        }
        if let Err(why) = evolves(&self.source_schema, &pipeline.source_schema) {
            tracing::warn!(
                "schema id {id} {change}, but the subject's latest version ({}) is not an evolution of the reader: {why}; the reader stays {} until a restart",
                pipeline.source_described,
                self.source_described
            );
            return Ok(self);
        }
        tracing::info!(
            "schema id {id} {change}: the reader schema follows the subject, now {}",
            pipeline.source_described
        );
        // A dataset may refuse the new columns (a Delta table takes added columns only).
        let mut next = match State::open(pipeline, self.observer.clone()).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "schema id {id} {change}, but a dataset refuses the subject's latest version; the reader stays {} until a restart", self.source_described);
                return Ok(self);
            }
        };
        next.summary = self.summary;
        next.summary.reader_schema_changes += 1;
        next.watch_brokers()?;
        Ok(next)
    }

    /// The pipeline built again from its config, asking the registry until it answers.
    async fn build_again(&self) -> Result<Pipeline, BuildError> {
        let mut wait = FIRST_RETRY;
        loop {
            match Pipeline::build(self.config.clone()).await {
                Err(BuildError::Registry { error, .. })
                    if matches!(
                        error,
                        weir_ingest::registry::RegistryError::Unavailable { .. }
                    ) =>
                {
                    tracing::warn!(error = %error, "the reader schema waits for the schema registry");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(LAST_RETRY);
                }
                built => return built,
            }
        }
    }
}

/// Whether `after` keeps every column of `before`, at the same or a wider type: `Err` names
/// the first column that it does not.
pub(crate) fn evolves(before: &Schema, after: &Schema) -> Result<(), String> {
    fields_kept(before.fields(), after.fields(), "")
}

fn fields_kept(before: &Fields, after: &Fields, prefix: &str) -> Result<(), String> {
    for field in before {
        let path = format!("{prefix}{}", field.name());
        let Some(kept) = after.iter().find(|f| f.name() == field.name()) else {
            return Err(format!("it drops column `{path}`"));
        };
        type_kept(field.data_type(), kept.data_type(), &path)?;
    }
    Ok(())
}

fn type_kept(before: &DataType, after: &DataType, path: &str) -> Result<(), String> {
    use DataType::*;
    match (before, after) {
        (a, b) if a == b => Ok(()),
        (Struct(a), Struct(b)) => fields_kept(a, b, &format!("{path}.")),
        (List(a), List(b)) | (LargeList(a), LargeList(b)) => {
            type_kept(a.data_type(), b.data_type(), &format!("{path}[]"))
        }
        (Map(a, _), Map(b, _)) => type_kept(a.data_type(), b.data_type(), &format!("{path}{{}}")),
        // What readers of the earlier files widen themselves (`union_by_name`, Spark's
        // schema merging).
        (Int8 | Int16 | Int32, Int64) | (Int8 | Int16, Int32) | (Float32, Float64) => Ok(()),
        (UInt8 | UInt16 | UInt32, UInt64) => Ok(()),
        (a, b) => Err(format!("it changes column `{path}` from {a} to {b}")),
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::Field;

    use super::*;

    #[test]
    fn a_version_evolves_the_reader_when_it_keeps_every_column_at_a_type_as_wide() {
        let order = |fields: Vec<Field>| DataType::Struct(fields.into());
        let before = Schema::new(vec![
            Field::new("n", DataType::Int32, false),
            Field::new("f", DataType::Float32, true),
            Field::new(
                "order",
                order(vec![Field::new("total", DataType::Int32, true)]),
                true,
            ),
        ]);
        let widened = Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("f", DataType::Float64, true),
            Field::new(
                "order",
                order(vec![
                    Field::new("total", DataType::Int64, true),
                    Field::new("coupon", DataType::Utf8, true),
                ]),
                true,
            ),
            Field::new("channel", DataType::Utf8, true),
        ]);
        assert_eq!(evolves(&before, &widened), Ok(()));
        assert_eq!(evolves(&before, &before), Ok(()));
        assert_eq!(
            evolves(&widened, &before),
            Err("it changes column `n` from Int64 to Int32".into())
        );
        let dropped = Schema::new(vec![
            Field::new("n", DataType::Int32, false),
            Field::new("f", DataType::Float32, true),
            Field::new("order", order(vec![]), true),
        ]);
        assert_eq!(
            evolves(&before, &dropped),
            Err("it drops column `order.total`".into())
        );
        let retyped = Schema::new(vec![
            Field::new("n", DataType::Utf8, false),
            Field::new("f", DataType::Float32, true),
            Field::new(
                "order",
                order(vec![Field::new("total", DataType::Int32, true)]),
                true,
            ),
        ]);
        assert_eq!(
            evolves(&before, &retyped),
            Err("it changes column `n` from Int32 to Utf8".into())
        );
    }
}
