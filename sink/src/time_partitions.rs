//! Time partitions: directories that each hold one span of event time (a day, an hour or a
//! minute), and can therefore be marked complete once the watermark has passed their end.

use chrono::{NaiveDate, NaiveTime, TimeDelta};
use serde::Deserialize;

/// The span of event time one partition directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeGranularity {
    /// `dt=2026-11-25`
    Day,
    /// `dt=2026-11-25/hour=10`
    Hour,
    /// `dt=2026-11-25/hour=10/minute=05`
    Minute,
}

impl TimeGranularity {
    /// The partition columns, as (name, SQL expression over `column`), outermost first.
    pub fn partition_specs(self, column: &str) -> Vec<(String, String)> {
        let column = format!("\"{}\"", column.replace('"', "\"\""));
        let all = [("dt", "%Y-%m-%d"), ("hour", "%H"), ("minute", "%M")];
        all[..self.depth()]
            .iter()
            .map(|(name, format)| (name.to_string(), format!("to_char({column}, '{format}')")))
            .collect()
    }

    /// How many leading directories of a partition path make its time partition.
    pub fn depth(self) -> usize {
        match self {
            TimeGranularity::Day => 1,
            TimeGranularity::Hour => 2,
            TimeGranularity::Minute => 3,
        }
    }

    /// The time partition of a partition path (its leading directories).
    pub fn bucket(self, partition: &str) -> Option<String> {
        let parts: Vec<&str> = partition.split('/').take(self.depth()).collect();
        (parts.len() == self.depth()).then(|| parts.join("/"))
    }

    /// When the time partition `bucket` (as from [`TimeGranularity::bucket`]) ends, epoch
    /// milliseconds; `None` if it is not one weir wrote.
    pub fn end_ms(self, bucket: &str) -> Option<i64> {
        let mut parts = bucket.split('/');
        let day = parts.next()?.strip_prefix("dt=")?;
        let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let mut value = |name: &str| -> Option<u32> {
            parts
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')?
                .parse()
                .ok()
        };
        let (start, span) = match self {
            TimeGranularity::Day => (NaiveTime::MIN, TimeDelta::days(1)),
            TimeGranularity::Hour => (
                NaiveTime::from_hms_opt(value("hour")?, 0, 0)?,
                TimeDelta::hours(1),
            ),
            TimeGranularity::Minute => {
                let hour = value("hour")?;
                (
                    NaiveTime::from_hms_opt(hour, value("minute")?, 0)?,
                    TimeDelta::minutes(1),
                )
            }
        };
        Some((day.and_time(start) + span).and_utc().timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_their_ends() {
        let hour = TimeGranularity::Hour;
        assert_eq!(
            hour.bucket("dt=2026-11-25/hour=10/country=NL").as_deref(),
            Some("dt=2026-11-25/hour=10")
        );
        assert_eq!(hour.bucket("dt=2026-11-25"), None);
        let end = hour.end_ms("dt=2026-11-25/hour=23").unwrap();
        assert_eq!(
            chrono::DateTime::from_timestamp_millis(end)
                .unwrap()
                .to_rfc3339(),
            "2026-11-26T00:00:00+00:00"
        );
        let minute = TimeGranularity::Minute
            .end_ms("dt=2026-11-25/hour=10/minute=05")
            .unwrap();
        assert_eq!(minute % 86_400_000, (10 * 60 + 6) * 60_000);
        assert_eq!(TimeGranularity::Day.end_ms("dt=nope"), None);
        assert_eq!(
            TimeGranularity::Day.partition_specs("ts"),
            vec![("dt".to_string(), "to_char(\"ts\", '%Y-%m-%d')".to_string())]
        );
    }
}
