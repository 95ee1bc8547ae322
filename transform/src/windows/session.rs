//! Session merging: per key, the session windows that an event's window `[ts, ts + gap)`
//! joins, merging every session it overlaps or touches into one.

/// A session window of one key: its extent and the accumulator slots merged into it.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub start: i64,
    pub end: i64,
    pub slots: Vec<usize>,
}

/// The slot of a session window `[start, end)` of the key with group `group`, given every
/// group's sessions: it joins (and merges) every session it overlaps or touches, or opens a
/// new one in a new slot, counted in `slots`.
pub(super) fn place(
    sessions: &mut Vec<Vec<Session>>,
    slots: &mut usize,
    group: usize,
    start: i64,
    end: i64,
) -> usize {
    if sessions.len() <= group {
        sessions.resize_with(group + 1, Vec::new);
    }
    let sessions = &mut sessions[group];
    let mut merged: Option<Session> = None;
    sessions.retain(|s| {
        if s.start <= end && start <= s.end {
            match &mut merged {
                None => merged = Some(s.clone()),
                Some(m) => {
                    m.start = m.start.min(s.start);
                    m.end = m.end.max(s.end);
                    m.slots.extend_from_slice(&s.slots);
                }
            }
            false
        } else {
            true
        }
    });
    let session = match merged {
        Some(mut m) => {
            m.start = m.start.min(start);
            m.end = m.end.max(end);
            m
        }
        None => {
            *slots += 1;
            Session {
                start,
                end,
                slots: vec![*slots - 1],
            }
        }
    };
    let slot = session.slots[0];
    sessions.push(session);
    slot
}
