//! The OpenAPI document served at `/openapi.json`. Paths come from the handlers' annotations
//! (registered with `utoipa_axum::routes!`); this adds the title, auth scheme and tags.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "Slipway API", description = "Enqueue builds, launches and cleanups; inspect jobs, logs, previews and queues."),
    modifiers(&Security),
    tags(
        (name = "enqueue", description = "Create jobs (scope `enqueue`)"),
        (name = "jobs", description = "Read jobs and logs (scope `read`)"),
        (name = "previews", description = "The preview registry"),
        (name = "queues", description = "Queue figures (scope `read`)"),
        (name = "operate", description = "Retry, cancel, pause, resume (scope `admin`)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
