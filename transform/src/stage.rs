//! The transform stage: what becomes of one batch between ingest and the datasets.
//!
//! Validation rules first, then every output's SQL over the rows that passed them. SQL that
//! fails on a batch (a failed cast, an overlong partition value) is run again over parts of
//! it until the rows it fails on are found: only they are dead letters, and only for the
//! output whose SQL failed on them; every other output, and every other row, is untouched. A
//! validation rule that cannot be evaluated on a row dead-letters it for every output, since
//! nobody knows whether it is valid. After a restart a dataset may already hold some of a
//! batch's offsets (it committed further than another before the crash); it gets only the
//! rest.

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use datafusion::error::DataFusionError;
use weir_schemas::{PartitionKey, Reason, SourceBatch, metadata};

use crate::bisect::Bisection;
use crate::engine::SqlEngine;
use crate::error::TransformError;
use crate::output::{Output, Rejected, Rows};
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
    /// `batch` are then those of the rows that passed the rules (a row dead-lettered for one
    /// output only still moves event time). `next_offset(output,
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
        batch.reject(computed.failed);
        for (row, reason, detail) in computed.failed_for_one {
            batch.dead_letter_row(row, reason, detail);
        }
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
    /// without changing anything: what to dead-letter is returned.
    async fn compute(
        &self,
        batch: &SourceBatch,
        next_offset: &impl Fn(usize, &PartitionKey) -> Option<i64>,
    ) -> Result<Computed, TransformError> {
        let execute = |transform: &str, source| TransformError::Execute {
            transform: transform.to_owned(),
            source,
        };
        let (passed, failed) = self.validate(batch.rows())?;
        let passed = &passed;
        let mut computed = Computed {
            rows: self.outputs.iter().map(|_| Vec::new()).collect(),
            failed,
            failed_for_one: Vec::new(),
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
            // Every stateless output at once, over one registration of the rows; only if
            // something fails is each output run, and narrowed down, on its own.
            let stateless: Vec<_> = self
                .outputs
                .iter()
                .filter(|o| o.windows().is_none())
                .map(Output::transform)
                .collect();
            let mut results = self
                .engine
                .run(passed.clone(), &stateless)
                .await
                .ok()
                .map(Vec::into_iter);
            for (index, output) in self.outputs.iter().enumerate() {
                if output.windows().is_some() {
                    computed.windowed.push((index, None));
                    continue;
                }
                let routed = results
                    .as_mut()
                    .and_then(Iterator::next)
                    .and_then(|batches| output.route(batches).ok());
                computed.rows[index] = match routed {
                    Some(rows) => rows,
                    None => {
                        let (rows, failed) = output.run_isolating(&self.engine, passed).await;
                        computed.failed_for_one.extend(failed);
                        rows
                    }
                };
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
            let (rows, failed) = output.run_isolating(&self.engine, &input).await;
            computed.rows[index] = rows;
            // Rows of `input` are the rows of `passed` that `keep` selects.
            let of_passed: Vec<usize> = match &keep {
                None => (0..passed.num_rows()).collect(),
                Some(keep) => (0..keep.len()).filter(|&row| keep.value(row)).collect(),
            };
            computed.failed_for_one.extend(
                failed
                    .into_iter()
                    .map(|(row, reason, detail)| (of_passed[row], reason, detail)),
            );
        }
        Ok(computed)
    }

    /// The rows of `rows` that pass the rules, and `(row, reason, detail)` for the others:
    /// those that failed a rule, and those a rule cannot be evaluated on (found by
    /// bisection).
    fn validate(&self, rows: &RecordBatch) -> Result<(RecordBatch, Rejected), TransformError> {
        let rule_failed = |failed: Vec<(usize, std::sync::Arc<str>, String)>, start: usize| {
            failed
                .into_iter()
                .map(move |(row, rule, detail)| (start + row, Reason::Rule(rule), detail))
        };
        if let Ok(outcome) = self.rules.apply(rows.clone()) {
            return Ok((outcome.passed, rule_failed(outcome.failed, 0).collect()));
        }
        let mut passed = Vec::new();
        let mut failed = Vec::new();
        let mut bisection = Bisection::new(rows.num_rows());
        while let Some(slice) = bisection.next_slice() {
            match self.rules.apply(rows.slice(slice.start, slice.len())) {
                Ok(outcome) => {
                    passed.push(outcome.passed);
                    failed.extend(rule_failed(outcome.failed, slice.start));
                }
                Err(error) => failed.extend(bisection.failed(slice).map(|row| {
                    let detail = format!("the validation rules cannot be evaluated: {error}");
                    (row, Reason::TransformFailed, detail)
                })),
            }
        }
        tracing::warn!(
            rows = failed.len(),
            "validation rules failed on some rows; they are dead letters"
        );
        let passed =
            concat_batches(&rows.schema(), &passed).map_err(|e| TransformError::Execute {
                transform: "validation".into(),
                source: e.into(),
            })?;
        Ok((passed, failed))
    }
}

/// What [`Transforms::compute`] yields for one batch.
struct Computed {
    rows: Vec<Rows>,
    /// Rows that failed the validation rules, `(row, reason, detail)`: dead letters for every
    /// output.
    failed: Rejected,
    /// Rows one stateless output's SQL failed on, indices into the rows that passed the
    /// rules: dead letters for that output, still written by the others.
    failed_for_one: Rejected,
    /// The windowed outputs that take rows of the batch, with the rows each takes (`None`:
    /// all), indices into the rows that passed the rules.
    windowed: Vec<(usize, Option<BooleanArray>)>,
}
