//! The one live log tail behind `GET /v1/jobs/{id}/logs?follow=true` and the dashboard's
//! `/ui/jobs/{id}/log/stream`: a Server-Sent Events stream of every line from a starting point
//! that ends (an `end` event carrying the job's final state) once the job has ended and every
//! line was sent. Each event's `id` is the line's `<attempt>:<seq>`, so a reconnecting client
//! resumes with `Last-Event-ID`.
//!
//! Tails wake on Postgres `NOTIFY` (fanned out by [`crate::state::LogHub`]): the workers'
//! batched inserts and the store's state changes (finish, cancel, supersede) both announce the
//! job id on `slipway_logs`, so a tail neither polls per line nor per second. A slow poll
//! ([`SAFETY_POLL`]) only covers a notification lost without the listener noticing.
//! The callers differ only in how a line is written ([`TailFormat`]).

use crate::read::position;
use crate::state::AppState;
use crate::views::{BuildProgressView, LogLineView};
use axum::response::sse::{Event, KeepAlive, Sse};
use slipway_core::JobId;
use slipway_shared::store::{JobRecord, LogWake};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Lines read per query while draining.
const BATCH: u32 = 500;
/// Re-read without a notification this often: a safety net only, since job ends and new
/// lines both notify (and a listener reconnect wakes every tail).
pub const SAFETY_POLL: Duration = Duration::from_secs(20);

/// How one kind of tail writes its events.
pub trait TailFormat: Send + 'static {
    /// The `data` of a line's event.
    fn line(&mut self, line: &LogLineView) -> String;
    /// An extra event for the job as read at a wake-up (sent before the lines read with it),
    /// e.g. the dashboard's build progress when it changed.
    fn job(&mut self, _job: &JobRecord) -> Option<Event> {
        None
    }
}

/// Sends a `progress` event (data: a [`BuildProgressView`] or null) whenever a job's stored
/// build progress differs from what was sent last.
#[derive(Default)]
pub struct ProgressEvents {
    sent: Option<Option<BuildProgressView>>,
}

impl ProgressEvents {
    pub fn event(&mut self, job: &JobRecord) -> Option<Event> {
        let now = BuildProgressView::of(job);
        // Nothing to say about a job that never had progress.
        if self.sent.as_ref() == Some(&now) || (self.sent.is_none() && now.is_none()) {
            return None;
        }
        let data = serde_json::to_string(&now).unwrap_or_default();
        self.sent = Some(now);
        Some(Event::default().event("progress").data(data))
    }
}

/// The JSON API's format: each line's data is its `LogLineView`; with `progress`, also the
/// build's progress events.
pub struct JsonLines {
    pub progress: Option<ProgressEvents>,
}

impl TailFormat for JsonLines {
    fn line(&mut self, line: &LogLineView) -> String {
        serde_json::to_string(line).unwrap_or_default()
    }

    fn job(&mut self, job: &JobRecord) -> Option<Event> {
        self.progress.as_mut()?.event(job)
    }
}

/// Follow job `id`'s log after `after` (all of it if `None`) until the job ends.
pub fn follow<F: TailFormat>(
    state: Arc<AppState>,
    id: JobId,
    after: Option<(i32, i64)>,
    format: F,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    Sse::new(events(state, id, after, format))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn events<F: TailFormat>(
    state: Arc<AppState>,
    id: JobId,
    mut after: Option<(i32, i64)>,
    mut format: F,
) -> impl futures::Stream<Item = Result<Event, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        // Subscribed before the first read, so nothing committed after that read is missed.
        let mut wakes = state.logs.subscribe();
        loop {
            // Check the state before reading, so lines written before the job ended are all
            // read before the stream ends.
            let ended = match state.store.get_job(id).await {
                Ok(Some(job)) => {
                    if let Some(ev) = format.job(&job)
                        && tx.send(ev).await.is_err()
                    {
                        return;
                    }
                    job.state.is_terminal().then_some(job.state)
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(job.id = %id, error = %e, "log tail cannot read the job");
                    None
                }
            };
            // Drain everything stored so far.
            loop {
                let lines = match state.store.read_logs(id, after, BATCH).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(job.id = %id, error = %e, "log tail cannot read lines");
                        break;
                    }
                };
                let n = lines.len() as u32;
                for line in lines {
                    let view = LogLineView::from(line);
                    after = Some((view.attempt, view.seq));
                    let ev = Event::default()
                        .id(position(&view))
                        .data(format.line(&view));
                    if tx.send(ev).await.is_err() {
                        return; // the client went away
                    }
                }
                if n < BATCH {
                    break;
                }
            }
            if let Some(final_state) = ended {
                let data = serde_json::json!({ "state": final_state.as_str() }).to_string();
                let _ = tx.send(Event::default().event("end").data(data)).await;
                return;
            }
            // Sleep until our job's lines or state change, a reconnect, the safety poll, or
            // shutdown.
            let deadline = tokio::time::sleep(SAFETY_POLL);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = &mut deadline => break,
                    wake = wakes.recv() => match wake {
                        Ok(LogWake::Appended(job)) if job != id => continue,
                        // Ours, a reconnect (notifications may be lost) or lag: re-read.
                        _ => break,
                    },
                }
            }
        }
    });
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}
