//! Narrowing a computation that failed on a batch down to the rows it fails on.
//!
//! SQL fails on a batch as a whole: one row whose `CAST` fails fails the query, and one row
//! with an overlong partition value fails its output's paths. Run again over the halves, then
//! over the halves of the halves that fail, the failure is narrowed down to rows that fail
//! alone; every other row gets its result. With `k` such rows among `n`, that is about
//! `2·k·log2(n)` runs, paid only by batches where something fails.

use std::ops::Range;

/// The slices of a batch still to run, first ones first.
pub(crate) struct Bisection {
    pending: Vec<Range<usize>>,
}

impl Bisection {
    /// Starts with the whole batch of `rows` rows.
    pub(crate) fn new(rows: usize) -> Self {
        let mut pending = Vec::new();
        if rows > 0 {
            pending.push(0..rows);
        }
        Self { pending }
    }

    /// The rows to run next, in order of the batch.
    pub(crate) fn next_slice(&mut self) -> Option<Range<usize>> {
        self.pending.pop()
    }

    /// Takes note that the run over `rows` failed: returns the row if it is one alone (it
    /// fails by itself), and otherwise splits the rows in halves to run again.
    pub(crate) fn failed(&mut self, rows: Range<usize>) -> Option<usize> {
        if rows.len() == 1 {
            return Some(rows.start);
        }
        let middle = rows.start + rows.len() / 2;
        self.pending.push(middle..rows.end);
        self.pending.push(rows.start..middle);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a computation that fails on any slice holding one of `bad`, over `rows` rows.
    fn narrow(rows: usize, bad: &[usize]) -> (Vec<Range<usize>>, Vec<usize>, usize) {
        let mut bisection = Bisection::new(rows);
        let (mut done, mut failed, mut runs) = (Vec::new(), Vec::new(), 0);
        while let Some(slice) = bisection.next_slice() {
            runs += 1;
            if bad.iter().any(|row| slice.contains(row)) {
                failed.extend(bisection.failed(slice));
            } else {
                done.push(slice);
            }
        }
        (done, failed, runs)
    }

    #[test]
    fn only_the_rows_that_fail_alone_are_set_apart() {
        let (done, failed, runs) = narrow(1000, &[3, 500, 501, 999]);
        assert_eq!(failed, [3, 500, 501, 999]);
        // The rest, in order, each row once.
        let covered: Vec<usize> = done.into_iter().flatten().collect();
        let expected: Vec<usize> = (0..1000)
            .filter(|r| ![3, 500, 501, 999].contains(r))
            .collect();
        assert_eq!(covered, expected);
        assert!(runs <= 2 * 4 * 10 + 1, "{runs} runs");
    }

    #[test]
    fn a_batch_that_runs_is_run_once_and_an_empty_one_never() {
        let whole = 0..10;
        assert_eq!(narrow(10, &[]), (vec![whole], vec![], 1));
        assert_eq!(narrow(0, &[]), (vec![], vec![], 0));
        assert_eq!(narrow(1, &[0]), (vec![], vec![0], 1));
    }
}
