//! The transform stage: what becomes of one batch between ingest and the datasets.
//!
//! Validation rules first, then every output's SQL over the rows that passed them. The SQL
//! of all outputs runs before any row is written: when it fails on a batch, every row of the
//! batch is dead-lettered with the error, and no dataset gets a part of it. After a restart a
//! dataset may already hold some of a batch's offsets (it committed further than another
//! before the crash); it gets only the rest.

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use datafusion::error::DataFusionError;
use weir_schemas::{PartitionKey, Reason, SourceBatch, metadata};

use crate::engine::SqlEngine;
use crate::error::TransformError;
use crate::output::{Output, Rows};
use crate::rules::ValidationRules;

/// The rules and outputs of a pipeline, and the SQL session they run in.
pub struct Transforms {
    engine: SqlEngine,
    rules: ValidationRules,
    outputs: Vec<Output>,
}

/// What the stage made of one batch for each output, in order.
pub struct Processed {
    /// The rows to write; empty for windowed outputs, whose rows come at checkpoints.
    pub rows: Vec<Rows>,
    /// Rows dead-lettered as too late for a windowed output's windows.
    pub late: Vec<u64>,
}

impl Transforms {
    pub fn new(engine: SqlEngine, rules: ValidationRules, outputs: Vec<Output>) -> Self {
        Self {
            engine,
            rules,
            outputs,
        }
    }

    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    pub fn outputs_mut(&mut self) -> &mut [Output] {
        &mut self.outputs
    }

    /// Runs `batch` through the rules and every output. Rows that fail a rule, come too late
    /// for a window or meet failing SQL end as dead letters in `batch`; the event times of
    /// `batch` are then those of the rows that passed the rules. `next_offset(output,
    /// partition)` says where each output's dataset continues.
    pub async fn process(
        &mut self,
        batch: &mut SourceBatch,
        next_offset: impl Fn(usize, &PartitionKey) -> Option<i64>,
    ) -> Processed {
        let nothing = || Processed {
            rows: self.outputs.iter().map(|_| Vec::new()).collect(),
            late: vec![0; self.outputs.len()],
        };
        if batch.num_rows() == 0 {
            return nothing();
        }
        let computed = match self.compute(batch, &next_offset).await {
            Ok(computed) => computed,
            Err(error) => {
                let detail = error.to_string();
                tracing::warn!(error = %detail, "SQL failed on a batch; dead-lettering its rows");
                batch.reject_all(Reason::TransformFailed, &detail);
                return nothing();
            }
        };
        batch.reject(
            computed
                .failed
                .into_iter()
                .map(|(row, rule, detail)| (row, Reason::Rule(rule), detail)),
        );
        let mut late = vec![0; self.outputs.len()];
        for (index, keep) in computed.windowed {
            late[index] = self.outputs[index]
                .add_to_windows(batch, keep.as_ref())
                .await;
        }
        Processed {
            rows: computed.rows,
            late,
        }
    }

    /// Applies the rules and runs every stateless output's SQL, computing partition paths,
    /// without changing anything: a failure anywhere leaves the batch as it was.
    async fn compute(
        &self,
        batch: &SourceBatch,
        next_offset: &impl Fn(usize, &PartitionKey) -> Option<i64>,
    ) -> Result<Computed, TransformError> {
        let execute = |transform: &str, source| TransformError::Execute {
            transform: transform.to_owned(),
            source,
        };
        let outcome = self
            .rules
            .apply(batch.rows().clone())
            .map_err(|e| execute("validation", e))?;
        let passed = &outcome.passed;
        let mut computed = Computed {
            rows: self.outputs.iter().map(|_| Vec::new()).collect(),
            failed: outcome.failed,
            windowed: Vec::new(),
        };
        if passed.num_rows() == 0 {
            return Ok(computed);
        }
        // Which rows each output still needs: `None` for all of them, as it is except just
        // after a restart.
        let mut keep = Vec::with_capacity(self.outputs.len());
        for index in 0..self.outputs.len() {
            let next = |p: &PartitionKey| next_offset(index, p);
            let replayed = batch
                .offsets()
                .iter()
                .any(|range| next(&range.partition).is_some_and(|next| range.from < next));
            keep.push(match replayed {
                false => None,
                true => {
                    Some(metadata::not_held(passed, next).map_err(|e| {
                        execute("validation", DataFusionError::External(Box::new(e)))
                    })?)
                }
            });
        }
        if keep.iter().all(Option::is_none) {
            let stateless: Vec<_> = self
                .outputs
                .iter()
                .filter(|o| o.windows().is_none())
                .map(Output::transform)
                .collect();
            let mut results = self
                .engine
                .run(passed.clone(), &stateless)
                .await?
                .into_iter();
            for (index, output) in self.outputs.iter().enumerate() {
                if output.windows().is_some() {
                    computed.windowed.push((index, None));
                } else {
                    let batches = results.next().expect("one result per stateless transform");
                    computed.rows[index] = output.route(batches)?;
                }
            }
            return Ok(computed);
        }
        for (index, (output, keep)) in self.outputs.iter().zip(keep).enumerate() {
            let input = match &keep {
                None => passed.clone(),
                Some(keep) => filter_record_batch(passed, keep)
                    .map_err(|e| execute(output.name(), e.into()))?,
            };
            // The dataset holds all of these rows already: nothing to compute (an aggregate
            // over no rows would still yield one).
            if input.num_rows() == 0 {
                continue;
            }
            if output.windows().is_some() {
                computed.windowed.push((index, keep));
                continue;
            }
            let mut result = self.engine.run(input, &[output.transform()]).await?;
            computed.rows[index] = output.route(result.pop().unwrap_or_default())?;
        }
        Ok(computed)
    }
}

/// What [`Transforms::compute`] yields for one batch.
struct Computed {
    rows: Vec<Rows>,
    /// Rows that failed a validation rule: `(row, rule, detail)`.
    failed: Vec<(usize, std::sync::Arc<str>, String)>,
    /// The windowed outputs that take rows of the batch, with the rows each takes (`None`:
    /// all), indices into the rows that passed the rules.
    windowed: Vec<(usize, Option<BooleanArray>)>,
}
