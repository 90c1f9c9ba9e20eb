//! Recording and queueing a job from inside a worker (a pipeline's launch, a teardown of an
//! expired preview): the same steps the API takes, in the same order.
//!
//! The row is committed first, then the preview's older unfinished jobs of the given kinds are
//! superseded (in Postgres, and their queue entries told), then the job is pushed to Redis and
//! marked enqueued. A push that fails leaves the row un-enqueued for the API's relay, so
//! nothing is lost when Redis is away; a repeated submission with the same idempotency key
//! returns the first job and queues nothing twice.

use slipway_core::JobKind;
use tracing::{info, warn};

use crate::queue::QueueClient;
use crate::store::{Inserted, NewJob, Store, StoreError};

/// Records and queues jobs.
#[derive(Clone)]
pub struct Submitter {
    pub store: Store,
    pub queue: QueueClient,
}

impl Submitter {
    pub fn new(store: Store, queue: QueueClient) -> Self {
        Submitter { store, queue }
    }

    /// Record `new`, supersede the preview's older unfinished jobs of `supersedes`, and push
    /// it. Only the insert can fail the call: the rest is logged and left to the relay.
    pub async fn submit(
        &self,
        mut new: NewJob,
        supersedes: &[JobKind],
    ) -> Result<Inserted, StoreError> {
        // A job a worker creates continues the span it is created in (a pipeline's launch
        // follows its build, a teardown the sweep that found the preview expired), so one trace
        // runs from the request to the last job it caused.
        if let Some(traceparent) = crate::telemetry::current_traceparent() {
            new.trace_context = Some(traceparent);
        }
        let inserted = self.store.insert_job(new).await?;
        let job = &inserted.job;
        if inserted.created
            && let Some(preview) = job.preview.as_deref()
            && !supersedes.is_empty()
        {
            match self
                .store
                .supersede_older(preview, job.id, supersedes)
                .await
            {
                Ok(ids) => {
                    let reason = format!("superseded by job {}", job.id);
                    // The store returns ids only; a queue that does not hold an id says so.
                    for id in ids {
                        for kind in supersedes {
                            if let Err(e) = self.queue.cancel(*kind, &id.to_string(), &reason).await
                            {
                                warn!(job.id = %id, error = %e, "could not signal supersede to the queue");
                            }
                        }
                    }
                }
                Err(e) => warn!(error = %e, "could not supersede older jobs"),
            }
        }
        if job.enqueued_at.is_none() && !job.state.is_terminal() {
            let budget = u32::try_from(job.max_attempts).unwrap_or(3);
            match self
                .queue
                .push_traced(job.kind, job.id, budget, job.trace_context.as_deref())
                .await
            {
                Ok(()) => {
                    if let Err(e) = self.store.mark_enqueued(job.id).await {
                        warn!(job.id = %job.id, error = %e, "could not mark the job enqueued; the relay will push it again");
                    }
                }
                // The row stays un-enqueued: the API's relay pushes it when Redis is back.
                Err(e) => {
                    warn!(job.id = %job.id, error = %e, "could not push the job; the relay will")
                }
            }
        }
        info!(job.id = %job.id, job.kind = %job.kind, created = inserted.created, "job submitted");
        Ok(inserted)
    }
}
