//! The preview page's status history and the queues page's throughput chart: shapes of read
//! models ([`crate::read::jobs`] with attempts, [`crate::read::throughput`]) for templates.

use super::pages::{ago, job_href, short};
use crate::views::{JobView, ThroughputView};
use chrono::{DateTime, Utc};

/// Jobs of a preview the history covers (the newest), and events it shows at most.
pub const HISTORY_JOBS: u32 = 20;
const HISTORY_EVENTS: usize = 80;

/// One moment of a preview's history.
pub struct HistoryEvent {
    /// RFC 3339, for `<time datetime>`.
    pub at: String,
    pub ago: String,
    pub kind: String,
    pub job_href: String,
    pub job_short: String,
    /// A state or attempt outcome (a CSS `status-…` class too).
    pub state: String,
    pub text: String,
}

/// The jobs' creations, attempts (start and end) and ends, newest first.
pub fn history(jobs: &[JobView]) -> Vec<HistoryEvent> {
    let mut events: Vec<(DateTime<Utc>, u8, HistoryEvent)> = Vec::new();
    for j in jobs {
        let ev = |at: DateTime<Utc>, state: &str, text: String| HistoryEvent {
            at: at.to_rfc3339(),
            ago: ago(at),
            kind: j.kind.to_string(),
            job_href: job_href(j.id),
            job_short: j.id.to_string().chars().take(8).collect(),
            state: state.to_owned(),
            text,
        };
        let commit = j
            .commit
            .as_deref()
            .map(|c| format!(" for commit {}", short(Some(c))))
            .unwrap_or_default();
        events.push((
            j.created_at,
            0,
            ev(j.created_at, "queued", format!("requested{commit}")),
        ));
        for a in &j.attempts {
            events.push((
                a.started_at,
                1,
                ev(
                    a.started_at,
                    "running",
                    format!("attempt {} started on {}", a.attempt, a.worker_id),
                ),
            ));
            if let (Some(at), Some(outcome)) = (a.finished_at, a.outcome.as_deref()) {
                let why = a
                    .error
                    .as_deref()
                    .map(|e| format!(": {}", e.chars().take(160).collect::<String>()))
                    .unwrap_or_default();
                events.push((
                    at,
                    2,
                    ev(at, outcome, format!("attempt {} {outcome}{why}", a.attempt)),
                ));
            }
        }
        // A job that ended without an attempt (cancelled or superseded while waiting).
        if let Some(at) = j.finished_at
            && j.attempts.is_empty()
        {
            let state = j.state.as_str();
            events.push((at, 3, ev(at, state, state.to_owned())));
        }
    }
    events.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    events.truncate(HISTORY_EVENTS);
    events.into_iter().map(|(_, _, e)| e).collect()
}

/// A bar of the throughput chart, in SVG user units.
pub struct Bar {
    pub x: u32,
    pub y: u32,
    pub height: u32,
    pub label: String,
}

/// The queues page's chart: jobs finished per minute over the last hour.
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub bar_width: u32,
    pub bars: Vec<Bar>,
    pub max: i64,
    pub total: i64,
}

const CHART_HEIGHT: u32 = 80;
const BAR_STEP: u32 = 10;

/// Bars scaled to the busiest minute (an empty hour draws no bars).
pub fn chart(t: &ThroughputView) -> Chart {
    let max = t.minutes.iter().map(|m| m.finished).max().unwrap_or(0);
    let bars = t
        .minutes
        .iter()
        .enumerate()
        .filter(|(_, m)| m.finished > 0)
        .map(|(i, m)| {
            let h = ((m.finished as f64 / max as f64) * f64::from(CHART_HEIGHT)).ceil() as u32;
            let h = h.clamp(1, CHART_HEIGHT);
            Bar {
                x: i as u32 * BAR_STEP,
                y: CHART_HEIGHT - h,
                height: h,
                label: format!("{}: {} finished", m.minute.format("%H:%M UTC"), m.finished),
            }
        })
        .collect();
    Chart {
        width: t.minutes.len() as u32 * BAR_STEP,
        height: CHART_HEIGHT,
        bar_width: BAR_STEP - 2,
        bars,
        max,
        total: t.minutes.iter().map(|m| m.finished).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::MinuteCount;

    #[test]
    fn bars_scale_to_the_busiest_minute_and_skip_empty_ones() {
        let now = Utc::now();
        let minutes = [0, 4, 1, 0]
            .iter()
            .enumerate()
            .map(|(i, &n)| MinuteCount {
                minute: now + chrono::Duration::minutes(i as i64),
                finished: n,
            })
            .collect();
        let c = chart(&ThroughputView { minutes });
        assert_eq!((c.width, c.max, c.total), (40, 4, 5));
        assert_eq!(c.bars.len(), 2);
        assert_eq!((c.bars[0].x, c.bars[0].y, c.bars[0].height), (10, 0, 80));
        assert_eq!((c.bars[1].x, c.bars[1].height), (20, 20));
        assert!(c.bars[1].label.ends_with(": 1 finished"));
    }
}
