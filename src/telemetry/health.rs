//! `/healthz` and `/readyz`: when the pipeline counts as alive, and as ready for traffic,
//! judged from the observer's view.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::observer::{Observer, View};
use super::scrub;

/// When the probes call the pipeline unhealthy or not ready.
#[derive(Debug, Clone, Copy)]
pub struct HealthLimits {
    /// `/healthz` fails when the pipeline loop has not moved for this long.
    pub wedged_after: Duration,
    /// `/readyz` fails when the last checkpoint (or one still running) is older than this.
    pub max_checkpoint_age: Duration,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub ok: bool,
    /// Why not, or what was checked.
    pub reasons: Vec<String>,
}

impl Observer {
    /// `/healthz`'s verdict.
    pub fn healthy(&self) -> Verdict {
        self.health(&self.view(), Instant::now())
    }

    /// `/readyz`'s verdict.
    pub fn ready(&self) -> Verdict {
        self.readiness(&self.view(), Instant::now())
    }

    pub(super) fn health(&self, view: &View, now: Instant) -> Verdict {
        let since = view.last_beat.unwrap_or(self.started);
        let still = now.saturating_duration_since(since);
        if still >= self.limits.wedged_after {
            return Verdict {
                ok: false,
                reasons: vec![format!(
                    "the pipeline loop has not moved for {} s (limit {} s)",
                    still.as_secs(),
                    self.limits.wedged_after.as_secs()
                )],
            };
        }
        Verdict {
            ok: true,
            reasons: vec![format!(
                "the pipeline loop moved {:.1} s ago",
                still.as_secs_f64()
            )],
        }
    }

    pub(super) fn readiness(&self, view: &View, now: Instant) -> Verdict {
        let limit = self.limits.max_checkpoint_age;
        let mut problems = Vec::new();
        if !view.storage_checked {
            problems.push("the datasets' storage has not been checked yet".to_owned());
        }
        if view.partitions.is_empty() {
            let mut problem = "no Kafka partitions assigned to this instance".to_owned();
            // Most often why: brokers it cannot reach, a TLS handshake or a login that fails.
            if let Some((error, at)) = self.source.client_errors.latest() {
                problem.push_str(&format!(
                    "; the Kafka client's latest error, {} s ago: {}",
                    now.saturating_duration_since(at).as_secs(),
                    scrub::error(&error)
                ));
            }
            problems.push(problem);
        }
        let stall = self.decode_stall.lock().expect("not poisoned").waiting();
        if let Some((why, since)) = stall {
            problems.push(format!(
                "decoding has waited {} s: {}",
                now.saturating_duration_since(since).as_secs(),
                scrub::error(&why)
            ));
        }
        if let Some(since) = view.checkpoint_running_since {
            let running = now.saturating_duration_since(since);
            if running >= limit {
                problems.push(format!(
                    "a checkpoint has been running for {} s (limit {} s): storage slow or unreachable",
                    running.as_secs(),
                    limit.as_secs()
                ));
            }
        }
        let last = view.last_checkpoint.unwrap_or(self.started);
        let age = now.saturating_duration_since(last);
        if age >= limit {
            problems.push(format!(
                "no checkpoint for {} s (limit {} s)",
                age.as_secs(),
                limit.as_secs()
            ));
        }
        if let Some(error) = &view.last_checkpoint_error {
            problems.push(format!("the last checkpoint failed: {error}"));
        }
        if problems.is_empty() {
            Verdict {
                ok: true,
                reasons: vec![format!(
                    "{} partitions assigned, storage writable, last checkpoint {:.1} s ago",
                    view.partitions.len(),
                    age.as_secs_f64()
                )],
            }
        } else {
            Verdict {
                ok: false,
                reasons: problems,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_schemas::PartitionKey;

    use super::*;
    use crate::telemetry::observer::observer_for_tests as observer;

    const MINUTE: Duration = Duration::from_secs(60);

    fn reasons(verdict: &Verdict) -> String {
        verdict.reasons.join("; ")
    }

    #[test]
    fn ready_once_storage_is_checked_and_partitions_are_assigned() {
        let o = observer(MINUTE, MINUTE);
        let ready = o.status().ready;
        assert!(!ready.ok);
        let said = reasons(&ready);
        assert!(said.contains("storage has not been checked"), "{said}");
        assert!(said.contains("no Kafka partitions"), "{said}");

        o.storage_checked([("clicks".to_owned(), "s3://b/clicks".to_owned())]);
        let partition = PartitionKey::new("t", 0);
        o.assigned(std::slice::from_ref(&partition));
        let ready = o.status().ready;
        assert!(ready.ok, "{}", reasons(&ready));

        o.revoked(&[partition], false);
        let ready = o.status().ready;
        assert!(!ready.ok);
        assert!(reasons(&ready).contains("no Kafka partitions"));
    }

    #[test]
    fn without_partitions_it_says_what_the_kafka_client_last_failed_on() {
        let o = observer(MINUTE, MINUTE);
        o.storage_checked([]);
        let error = "ssl://b:9093/bootstrap: SSL handshake failed: certificate verify failed";
        o.source.client_errors.record(error, Instant::now());
        let said = reasons(&o.status().ready);
        assert!(
            said.contains("no Kafka partitions assigned to this instance; the Kafka client's latest error, 0 s ago: ssl://b:9093/bootstrap: SSL handshake failed: certificate verify failed"),
            "{said}"
        );
    }

    #[test]
    fn stale_stuck_or_failed_checkpoints_make_it_unready() {
        let o = observer(MINUTE, Duration::ZERO);
        o.storage_checked([]);
        o.assigned(&[PartitionKey::new("t", 0)]);
        assert!(reasons(&o.status().ready).contains("no checkpoint for"));
        o.checkpoint_started();
        let said = reasons(&o.status().ready);
        assert!(said.contains("a checkpoint has been running"), "{said}");

        let o = observer(MINUTE, MINUTE);
        o.storage_checked([]);
        o.assigned(&[PartitionKey::new("t", 0)]);
        o.checkpoint_started();
        o.checkpoint_finished(Some("storage said no".into()), true, 0);
        let ready = o.status().ready;
        assert!(!ready.ok);
        assert!(reasons(&ready).contains("the last checkpoint failed: storage said no"));
        o.checkpoint_started();
        o.checkpoint_finished(None, true, 0);
        assert!(o.status().ready.ok);
    }

    #[test]
    fn unhealthy_when_the_loop_stops_moving() {
        assert!(observer(MINUTE, MINUTE).status().healthy.ok);
        let o = observer(Duration::ZERO, MINUTE);
        o.beat();
        let healthy = o.status().healthy;
        assert!(!healthy.ok);
        assert!(reasons(&healthy).contains("has not moved"));
    }
}
