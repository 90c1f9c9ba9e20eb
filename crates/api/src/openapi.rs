//! The OpenAPI document served at `/openapi.json`. Paths come from the handlers' annotations
//! (registered with `utoipa_axum::routes!`); this adds the title, auth scheme and tags, and the
//! error responses every operation of a kind can return ([`CommonResponses`]), so that no
//! operation can forget one: a client generated from the document, or a fuzzer checking
//! status-code conformance, sees every status the API sends.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

#[derive(OpenApi)]
#[openapi(
    info(title = "Slipway API", description = "Enqueue builds, launches and cleanups; inspect jobs, logs, previews and queues. Every error has the body `ErrorBody`: `{\"error\": {\"code\", \"message\", \"field\"}}`, `field` naming the request field, query parameter or header at fault."),
    modifiers(&Security),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
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

/// Adds to every operation the error statuses the shared layers and extractors produce, where
/// its annotation does not already list them:
/// - every operation: 500 (a bug; the detail is in the server log) and 503 (Postgres or Redis
///   unavailable);
/// - bearer-secured operations: 401 (no or unknown token) and 403 (token lacks the scope);
/// - operations with a query string: 400 (a parameter of the wrong type or out of range);
/// - operations with path parameters: 404 (no such job, queue, preview or repository);
/// - operations with a body: 413 (over the body limit); with a JSON body (the secured ones;
///   the webhook reads raw bytes and answers every signed delivery), 400 (not JSON, or a bad
///   `Idempotency-Key`), 415 (no JSON content type) and 422 (a field breaks a rule).
///
/// Applied by [`crate::router`] once the routes have added their paths (an `#[openapi]`
/// modifier runs before that).
pub struct CommonResponses;

impl CommonResponses {
    fn add(op: &mut Operation, status: &str, description: &str) {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                )
            });
    }
}

impl Modify for CommonResponses {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for item in api.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let params = op.parameters.as_deref().unwrap_or_default();
                let has = |at: ParameterIn| params.iter().any(|p| p.parameter_in == at);
                let (query, path) = (has(ParameterIn::Query), has(ParameterIn::Path));
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let body = op.request_body.is_some();
                Self::add(
                    op,
                    "500",
                    "Internal error (details in the server log, under the id in the message)",
                );
                Self::add(op, "503", "Postgres or Redis is unavailable; retry later");
                if secured {
                    Self::add(op, "401", "Missing or unknown bearer token");
                    Self::add(op, "403", "The token lacks this operation's scope");
                }
                if query {
                    Self::add(
                        op,
                        "400",
                        "A query parameter of the wrong type or out of range (`field` names it)",
                    );
                }
                if path {
                    Self::add(op, "404", "No such resource");
                }
                if body {
                    Self::add(op, "413", "The body is over the size limit");
                    if secured {
                        Self::add(
                            op,
                            "400",
                            "The body is not JSON, or a header is malformed (`field` names it)",
                        );
                        Self::add(op, "415", "The body is not sent as `application/json`");
                        Self::add(op, "422", "A field breaks a rule (`field` names it)");
                    }
                }
            }
        }
    }
}
