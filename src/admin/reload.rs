//! Zone reloads, from `POST /api/v1/reload` and from SIGHUP.
//!
//! The rule: the zone directory is loaded and validated aside; only a load that validates
//! whole, and is journaled, reaches the monitor, which swaps it in with its health. A load
//! that fails keeps the running zones serving and answers 422 with every diagnostic. Reloads
//! run one at a time, from reading the files to journaling the swap: the zones in force are
//! those of the reload that read the files last, never older files from a slower reload that
//! started first.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::error::{ApiError, ApiResult};
use super::write::{entry, journal_error};
use super::{Admin, Caller};
use crate::state::{Action, Entry};
use crate::zone::{self, Diagnostic};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    reason: Option<String>,
}

#[derive(Serialize)]
pub struct Reloaded {
    pub zones: usize,
    /// Zones served before and not now: their files were removed.
    pub dropped: Vec<String>,
    pub entry: Entry,
}

/// The body is optional: empty (or blank) means "reload requested".
pub(super) async fn reload(
    State(admin): State<Arc<Admin>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Reloaded> {
    let body = body?;
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        "reload requested".to_string()
    } else {
        let b: ReloadBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))?;
        b.reason.unwrap_or_else(|| "reload requested".into())
    };
    reload_zones(&admin, &caller.0, &reason)
        .await
        .map(axum::Json)
}

/// Loads the zone directory again; a load that fails validation keeps the running zones and
/// returns every diagnostic. Shared by the API and SIGHUP, which wait for each other.
pub async fn reload_zones(admin: &Admin, by: &str, reason: &str) -> Result<Reloaded, ApiError> {
    let _one_at_a_time = admin.reloads.lock().await;
    let dir = admin.zones_dir.clone();
    let state_dir = admin.state_dir.clone();
    let loaded = tokio::task::spawn_blocking(move || zone::load_keyed(&dir, &state_dir))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let metrics = admin.metrics.clone();
    match loaded {
        Ok(zones) => {
            let count = zones.len();
            let kept: std::collections::HashSet<_> = zones.zones().map(|z| &z.origin).collect();
            let dropped: Vec<String> = admin
                .state
                .load()
                .zones
                .zones()
                .filter(|z| !kept.contains(&z.origin))
                .map(|z| z.origin.to_string())
                .collect();
            // Journaled before it takes effect, as every write is: a reload that cannot be
            // recorded (a full disk) keeps the running zones.
            let e = entry(by, Action::Reload, String::new(), String::new(), reason);
            let appended = admin.journal.lock().await.append(e);
            let entry = match appended {
                Ok(entry) => entry,
                Err(e) => {
                    metrics.reload(false);
                    return Err(journal_error(&e));
                }
            };
            admin.monitor.reload(zones).await;
            metrics.reload(true);
            admin.changed();
            if !dropped.is_empty() {
                warn!(by, dropped = ?dropped, "zones dropped: their files are gone; they are no longer served");
            }
            info!(zones = count, by, "zones reloaded");
            Ok(Reloaded {
                zones: count,
                dropped,
                entry,
            })
        }
        Err(e) => {
            metrics.reload(false);
            warn!(by, diagnostics = %e, "reload refused; the running zones keep serving");
            let list: Vec<String> = e.0.iter().map(Diagnostic::to_string).collect();
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the zones do not validate ({} problems); the running zones keep serving",
                    e.0.len()
                ),
            )
            .with_diagnostics(list))
        }
    }
}
