//! Load reports for spillover: `POST /api/v1/zones/{zone}/regions/{region}/load` with
//! `{"load": 1234.5}`, in the unit of the region's `capacity` (queries per second unless the
//! operator chose another).
//!
//! The rule: a report is a measurement, not an override: it is checked (a known zone and
//! region, a finite load of at least 0) and held in memory for the controller
//! ([`crate::spill`]), never journaled; a report older than `stale-ms` counts as none.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::{Admin, Caller};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoadBody {
    load: f64,
}

#[derive(Serialize)]
pub(super) struct Accepted {
    zone: String,
    region: String,
    load: f64,
    /// `None`: the region has no capacity in its zone file, so its load sheds nothing.
    capacity: Option<f64>,
    /// The report counts as none after this long without another.
    stale_ms: u64,
}

pub(super) async fn load(
    State(admin): State<Arc<Admin>>,
    axum::Extension(_caller): axum::Extension<Caller>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<axum::Json<LoadBody>, JsonRejection>,
) -> ApiResult<Accepted> {
    let Path((zone, region)) = path?;
    let load = body?.0.load;
    let state = admin.state.load();
    let (z, r) = super::write::find_region(&state, &zone, &region)?;
    if !load.is_finite() || load < 0.0 {
        return Err(ApiError::bad_request(format!(
            "load {load} is not a number of at least 0 (the region's load in its capacity's \
             unit, per second)"
        )));
    }
    let origin = z.origin.to_string();
    admin.spill.report(&origin, &r.name, load, Instant::now());
    let ri = z
        .regions
        .iter()
        .position(|x| x.name == r.name)
        .expect("found in this zone");
    Ok(axum::Json(Accepted {
        zone: origin,
        region: r.name.clone(),
        load,
        capacity: z.capacity.get(ri).copied().flatten(),
        stale_ms: admin.spill.config.stale_ms,
    }))
}
