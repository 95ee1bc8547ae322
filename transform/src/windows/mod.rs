//! Event-time windows: how SQL names them, which windows an event falls in, and the state
//! that keeps their aggregates until the watermark passes them.
//!
//! A windowed transform groups by one window call over the event-time column, in the style
//! of Flink's group windows:
//!
//! ```sql
//! SELECT window_start, window_end, page, count(*) AS views
//! FROM events
//! GROUP BY tumble(ts, INTERVAL '1 minute'), page
//! ```
//!
//! Before planning, the call is replaced by the columns `window_start` and `window_end`,
//! which the windowed source table carries; weir fills them in as events arrive (one row per
//! window for hopping windows), so DataFusion plans an ordinary aggregation.
//!
//! By role:
//! - `syntax`: finding the window call in the SQL and putting the window columns in its place;
//! - `assign`: placing events in their windows;
//! - `plan`: the physical plan, split at its innermost aggregation;
//! - `state`: the open windows' groups and partial aggregates ([`WindowState`]), grown by
//!   each batch; `session` merges session windows as events join them;
//! - `snapshot`: emitting closed windows and compacting the open ones into a snapshot
//!   ([`Checkpointed`]), and restoring from one.

mod assign;
pub(crate) mod plan;
mod session;
mod snapshot;
mod state;
pub(crate) mod syntax;

pub use snapshot::{Checkpointed, FailedWindow};
pub use state::WindowState;

/// The columns a windowed transform selects to name its window.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";

/// The longest window, gap or slide: 10,000 days. With event times bounded to years 1 to
/// 9999 (ingest dead-letters the rest), every window bound weir computes stays far inside
/// `i64`, so the arithmetic below cannot overflow.
pub const MAX_WINDOW_MS: i64 = 10_000 * 86_400_000;

/// The shape of a transform's windows; all lengths in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed windows `[k·size, (k+1)·size)`, each event in exactly one.
    Tumble { size: i64 },
    /// Windows of `size` starting every `slide`; an event is in `size / slide` of them.
    Hop { slide: i64, size: i64 },
    /// Per key, events closer than `gap` to each other form one window, which ends `gap`
    /// after its last event.
    Session { gap: i64 },
}

impl WindowKind {
    /// How long a window lasts, when that is fixed.
    pub fn size(&self) -> Option<i64> {
        match *self {
            WindowKind::Tumble { size } | WindowKind::Hop { size, .. } => Some(size),
            WindowKind::Session { .. } => None,
        }
    }

    /// Calls `window(start, end)` for every window an event at `ts` falls in. A session
    /// window starts as `[ts, ts + gap)` and grows as events of its key join it.
    pub fn assign(&self, ts: i64, mut window: impl FnMut(i64, i64)) {
        match *self {
            WindowKind::Tumble { size } => {
                let start = ts - ts.rem_euclid(size);
                window(start, start + size);
            }
            WindowKind::Hop { slide, size } => {
                let mut start = ts - ts.rem_euclid(slide);
                while start > ts - size {
                    window(start, start + size);
                    start -= slide;
                }
            }
            WindowKind::Session { gap } => window(ts, ts + gap),
        }
    }

    pub fn describe(&self) -> String {
        let d = |ms: i64| humanize(ms);
        match *self {
            WindowKind::Tumble { size } => format!("tumbling {}", d(size)),
            WindowKind::Hop { slide, size } => format!("hopping {} every {}", d(size), d(slide)),
            WindowKind::Session { gap } => format!("session, gap {}", d(gap)),
        }
    }
}

fn humanize(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(kind: WindowKind, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        kind.assign(ts, |s, e| out.push((s, e)));
        out.sort();
        out
    }

    #[test]
    fn assigns_events_to_windows() {
        let tumble = WindowKind::Tumble { size: 60 };
        assert_eq!(windows(tumble, 0), [(0, 60)]);
        assert_eq!(windows(tumble, 59), [(0, 60)]);
        assert_eq!(windows(tumble, 60), [(60, 120)]);
        assert_eq!(windows(tumble, -1), [(-60, 0)]);
        let hop = WindowKind::Hop {
            slide: 20,
            size: 60,
        };
        assert_eq!(windows(hop, 65), [(20, 80), (40, 100), (60, 120)]);
        assert_eq!(windows(hop, 60), [(20, 80), (40, 100), (60, 120)]);
        let uneven = WindowKind::Hop {
            slide: 40,
            size: 60,
        };
        assert_eq!(windows(uneven, 45), [(0, 60), (40, 100)]);
        assert_eq!(windows(uneven, 75), [(40, 100)]);
        assert_eq!(windows(WindowKind::Session { gap: 30 }, 100), [(100, 130)]);
    }

    #[test]
    fn the_longest_windows_over_the_extreme_event_times_stay_in_range() {
        use weir_schemas::time::{EARLIEST_EVENT_TIME_MS, LATEST_EVENT_TIME_MS};
        let kinds = [
            WindowKind::Tumble {
                size: MAX_WINDOW_MS,
            },
            WindowKind::Hop {
                slide: MAX_WINDOW_MS / 4,
                size: MAX_WINDOW_MS,
            },
            WindowKind::Session { gap: MAX_WINDOW_MS },
        ];
        for kind in kinds {
            for ts in [EARLIEST_EVENT_TIME_MS, 0, LATEST_EVENT_TIME_MS] {
                let found = windows(kind, ts);
                assert!(!found.is_empty(), "{kind:?} at {ts}");
                for (start, end) in found {
                    assert!(
                        start <= ts && ts < end,
                        "{kind:?} at {ts}: [{start}, {end})"
                    );
                    // The end plus a lateness or a gap more still fits.
                    assert!(end.checked_add(2 * MAX_WINDOW_MS).is_some());
                    assert!(start.checked_sub(2 * MAX_WINDOW_MS).is_some());
                }
            }
        }
    }
}
