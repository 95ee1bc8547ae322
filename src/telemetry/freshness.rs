//! Kafka timestamps of the messages a checkpoint makes visible, from which the freshness
//! histogram is recorded.

/// Kafka timestamps of messages, one per message, kept as runs of equal ones: messages
/// produced together share a timestamp, so a backlog costs a few bytes per run, not per
/// message.
#[derive(Debug, Default)]
pub struct Timestamps {
    pub(super) runs: Vec<(i64, u32)>,
}

impl Timestamps {
    pub fn extend(&mut self, timestamps: impl IntoIterator<Item = i64>) {
        for timestamp in timestamps {
            match self.runs.last_mut() {
                Some((last, messages)) if *last == timestamp && *messages < u32::MAX => {
                    *messages += 1;
                }
                _ => self.runs.push((timestamp, 1)),
            }
        }
    }

    pub fn clear(&mut self) {
        self.runs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_one_per_message_in_runs() {
        let mut timestamps = Timestamps::default();
        timestamps.extend([5, 5, 5, 7, 5]);
        timestamps.extend([5]);
        assert_eq!(timestamps.runs, [(5, 3), (7, 1), (5, 2)]);
        timestamps.clear();
        assert!(timestamps.runs.is_empty());
    }
}
