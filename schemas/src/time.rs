//! Event time as people and directories read it: instants in RFC 3339, and time partitions,
//! directories that each hold one span of event time (a day, an hour or a minute) and can
//! therefore be marked complete once the watermark has passed their end.

use chrono::{NaiveDate, NaiveTime, TimeDelta};
use serde::Deserialize;

/// The first instant RFC 3339 can write, `0001-01-01T00:00:00Z`, in epoch milliseconds: the
/// earliest event time weir accepts.
pub const EARLIEST_EVENT_TIME_MS: i64 = -62_135_596_800_000;
/// The last instant RFC 3339 can write, `9999-12-31T23:59:59.999Z`, in epoch milliseconds:
/// the latest event time weir accepts, whatever the clock.
pub const LATEST_EVENT_TIME_MS: i64 = 253_402_300_799_999;

/// Epoch milliseconds as an RFC 3339 instant in UTC with milliseconds
/// (`2026-11-25T10:00:00.000Z`); the number itself when it is outside chrono's range.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

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
    /// How many leading directories of a partition path make its time partition: `dt`,
    /// then `hour`, then `minute`.
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

    /// How long a time partition of this granularity spans, milliseconds.
    pub fn span_ms(self) -> i64 {
        match self {
            TimeGranularity::Day => 86_400_000,
            TimeGranularity::Hour => 3_600_000,
            TimeGranularity::Minute => 60_000,
        }
    }

    /// The directories of the time partition holding `ms` (epoch milliseconds, UTC), e.g.
    /// `dt=2026-11-25/hour=10`: what [`TimeGranularity::end_ms`] reads. `None` outside the
    /// years chrono can write.
    pub fn path_of(self, ms: i64) -> Option<String> {
        let time = chrono::DateTime::from_timestamp_millis(ms)?;
        let format = match self {
            TimeGranularity::Day => "dt=%Y-%m-%d",
            TimeGranularity::Hour => "dt=%Y-%m-%d/hour=%H",
            TimeGranularity::Minute => "dt=%Y-%m-%d/hour=%H/minute=%M",
        };
        Some(time.format(format).to_string())
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
    }

    #[test]
    fn a_time_partition_path_ends_where_its_span_does() {
        let ms = 1_795_615_200_000 + 5 * 60_000 + 59_999; // 2026-11-25T14:05:59.999Z
        for granularity in [
            TimeGranularity::Day,
            TimeGranularity::Hour,
            TimeGranularity::Minute,
        ] {
            let path = granularity.path_of(ms).unwrap();
            let end = granularity.end_ms(&path).unwrap();
            assert!(end > ms && end - granularity.span_ms() <= ms, "{path}");
        }
        assert_eq!(
            TimeGranularity::Minute.path_of(ms).unwrap(),
            "dt=2026-11-25/hour=14/minute=05"
        );
        assert_eq!(
            TimeGranularity::Day.path_of(-1).unwrap(),
            "dt=1969-12-31",
            "before the epoch"
        );
    }
}
