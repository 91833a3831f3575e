//! Route handlers, one module per endpoint family, plus the control API.

pub(crate) mod actions;
pub(crate) mod control;
pub(crate) mod github;
pub(crate) mod queue;
pub(crate) mod runner;

use axum::response::Response;

use crate::endpoint::Family;
use crate::server::{Req, Shared};
use crate::wire::ApiError;

/// Hands a routed request to its family's handler.
pub(crate) async fn handle(shared: &Shared, req: Req) -> Result<Response, ApiError> {
    match req.endpoint.family() {
        Family::GitHub => github::handle(shared, &req),
        Family::Actions => actions::handle(shared, &req),
        Family::Queue => queue::handle(shared, &req).await,
        Family::Runner => runner::handle(shared, &req).await,
    }
}

/// Rejects a non-empty body whose `Content-Type` is not JSON (415), when configured.
pub(crate) fn require_json(shared: &Shared, req: &Req) -> Result<(), ApiError> {
    if req.body.is_empty() || !shared.read(|st, _| st.cfg.require_json_content_type) {
        return Ok(());
    }
    let ct = req.header("content-type").unwrap_or_default();
    if ct.to_ascii_lowercase().contains("json") {
        Ok(())
    } else {
        Err(ApiError::Plain {
            status: 415,
            body: format!(
                "Unsupported Media Type: Content-Type {ct:?}; send Content-Type: application/json"
            ),
        })
    }
}
