//! The join of a compose pipeline's parallel service builds (`pipeline_images`): each build
//! records its service's image as it succeeds, and learns every image recorded so far, so the
//! build that completes the set (and only a build that sees it complete) enqueues the launch.

use std::collections::BTreeMap;

use slipway_core::JobId;

use super::{Store, StoreError};

impl Store {
    /// Records `image` as `service`'s for compose pipeline `pipeline` (built by job `built_by`;
    /// recording again replaces it) and returns every service's image recorded so far.
    ///
    /// Callers are serialized on the pipeline's job row (`FOR UPDATE`), and each statement of a
    /// read-committed transaction sees what committed before it: of builds finishing at the
    /// same moment, the one that records last sees the others' images, so a complete set is
    /// never missed by all of them.
    pub async fn record_pipeline_image(
        &self,
        pipeline: JobId,
        service: &str,
        image: &str,
        built_by: JobId,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(pipeline)
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "pipeline job",
                id: pipeline.to_string(),
            });
        }
        sqlx::query(
            "INSERT INTO pipeline_images (pipeline, service, image, built_by) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (pipeline, service) DO UPDATE SET \
               image = EXCLUDED.image, built_by = EXCLUDED.built_by, recorded_at = now()",
        )
        .bind(pipeline)
        .bind(service)
        .bind(image)
        .bind(built_by)
        .execute(&mut *tx)
        .await?;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT service, image FROM pipeline_images WHERE pipeline = $1")
                .bind(pipeline)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(rows.into_iter().collect())
    }
}
