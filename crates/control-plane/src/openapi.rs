//! The OpenAPI document, generated from the handlers and the `control-api` types. A copy is
//! kept in `docs/openapi.json`; a test fails when they differ (regenerate with
//! `UPDATE_OPENAPI=1 cargo test -p control-plane --test openapi`).

use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        for name in ["admin_token", "edge_token"] {
            c.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "cloudproxy control plane", description = "Proxy info for clients, registry for edges, provisioning for operators."),
    paths(
        api::proxy, api::release, api::heartbeat,
        api::create_app, api::list_apps, api::show_app, api::update_app, api::delete_app, api::promote_app,
        api::app_whitelist, api::app_usage, api::list_edges, api::drain_edge, api::rotate_secrets,
        api::healthz, api::metrics,
    ),
    components(schemas(control_api::ErrorCode, control_api::TransportMode, control_api::WhitelistFormat)),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// The document as pretty JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// `GET /openapi.json`.
pub async fn serve() -> axum::response::Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
        .into_response()
}
