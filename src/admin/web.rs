//! The dashboard (`web/`, compiled into the binary so it works offline and from any
//! directory) and the OpenAPI document.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Admin;

const INDEX: &str = include_str!("../../web/index.html");
const APP: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");
const WORLD: &str = include_str!("../../web/world.svg");
const OPENAPI: &str = include_str!("openapi.json");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
}

pub fn routes() -> Router<Arc<Admin>> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/world.svg",
            get(|| async { asset("image/svg+xml", WORLD) }),
        )
}

pub async fn openapi() -> impl IntoResponse {
    asset("application/json", OPENAPI)
}
