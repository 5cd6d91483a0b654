//! The operator overrides: drain and undrain a region, force an endpoint up or down and lift
//! the force.
//!
//! The rule: a write is checked whole (body, then the zone, region and endpoint it names,
//! looked up in one snapshot), journaled and fsynced, then applied; the answer is sent only
//! once DNS follows it. A change that cannot be journaled is not applied (507 when the disk
//! is full, 503 otherwise). Undoing what is not in force (an undrain of a region that is not
//! drained, an unforce of an endpoint that is not forced) changes nothing and is not
//! journaled: it answers 200 with `"changed": false`.
//!
//! In a cluster the write goes to etcd instead ([`cluster_write`]): committed there, then
//! applied (and journaled) from this node's watch like every other node's; while the store is
//! away every write answers 503, a no-op included, since this node cannot know.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::error::{ApiError, ApiResult};
use super::{Admin, Caller};
use crate::cluster::Cluster;
use crate::serving::Snapshot;
use crate::state::{Action, Entry, StateError, now_ms};
use crate::steer::{Endpoint, Region};
use crate::zone::Zone;

/// Longest reason accepted on a write.
pub const MAX_REASON: usize = 500;
/// Longest override accepted, in seconds (30 days).
pub const MAX_EXPIRES_IN: u64 = 30 * 24 * 3600;

/// Body of drain and force calls.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteBody {
    reason: String,
    /// Seconds until the override lifts itself; none: until undone.
    expires_in: Option<u64>,
    /// For force: "up" or "down".
    state: Option<String>,
}

impl WriteBody {
    /// The reason and expiry checked; the expiry as a wall-clock time (ms since the epoch).
    fn check(&self, expiring: bool) -> Result<Option<u64>, ApiError> {
        let reason = self.reason.trim();
        if reason.is_empty() {
            return Err(ApiError::bad_request("reason is empty: say why"));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(ApiError::bad_request(format!(
                "reason is longer than {MAX_REASON} characters"
            )));
        }
        match self.expires_in {
            Some(_) if !expiring => Err(ApiError::bad_request(
                "expires_in applies to drain and force only",
            )),
            Some(0) => Err(ApiError::bad_request(
                "expires_in must be at least 1 second",
            )),
            Some(s) if s > MAX_EXPIRES_IN => Err(ApiError::bad_request(format!(
                "expires_in must be at most {MAX_EXPIRES_IN} seconds (30 days)"
            ))),
            Some(s) => Ok(Some(now_ms() + s * 1000)),
            None => Ok(None),
        }
    }
}

/// The zone and region named in a path, both in `state`, or a 404 that says what exists.
pub(super) fn find_region<'s>(
    state: &'s Snapshot,
    zone: &str,
    region: &str,
) -> Result<(&'s Zone, &'s Region), ApiError> {
    let mut name =
        Name::from_utf8(zone).map_err(|e| ApiError::bad_request(format!("zone {zone:?}: {e}")))?;
    name.set_fqdn(true);
    let z = state
        .zones
        .zones()
        .find(|z| z.origin == name.to_lowercase())
        .ok_or_else(|| ApiError::not_found(format!("unknown zone {name}")))?;
    let r = z.regions.iter().find(|r| r.name == region).ok_or_else(|| {
        let known: Vec<&str> = z.regions.iter().map(|r| r.name.as_str()).collect();
        ApiError::not_found(format!(
            "unknown region {region:?} in zone {} (known: {})",
            z.origin,
            known.join(", ")
        ))
    })?;
    Ok((z, r))
}

/// The zone, region and endpoint named in a path, all in `state`: the region is found in
/// the zone found, never by an index into another snapshot.
fn find_endpoint<'s>(
    state: &'s Snapshot,
    zone: &str,
    region: &str,
    address: &str,
) -> Result<(&'s Zone, &'s Region, &'s Endpoint), ApiError> {
    let (z, r) = find_region(state, zone, region)?;
    let addr: IpAddr = address
        .parse()
        .map_err(|_| ApiError::bad_request(format!("endpoint {address:?} is not an IP address")))?;
    let e = r
        .endpoints
        .iter()
        .find(|e| e.address == addr)
        .ok_or_else(|| {
            let known: Vec<String> = r.endpoints.iter().map(|e| e.address.to_string()).collect();
            ApiError::not_found(format!(
                "region {region} has no endpoint {addr} (endpoints: {})",
                known.join(", ")
            ))
        })?;
    Ok((z, r, e))
}

/// The answer to a write: whether it changed anything and, if so, its journal entry.
#[derive(Serialize)]
pub(super) struct Written {
    changed: bool,
    #[serde(flatten)]
    entry: Option<Entry>,
}

/// The API error for a journal that could not be written: nothing was changed.
pub(super) fn journal_error(e: &StateError) -> ApiError {
    warn!(error = %e, "cannot write the journal");
    if e.is_full() {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "the state directory has no space left, so the change cannot be recorded and \
                 nothing was changed: {e}"
            ),
        )
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the change cannot be recorded, so nothing was changed: {e}"),
        )
    }
}

/// Journals `entry` and applies the new overrides; answers once DNS follows them. An entry
/// that would change nothing is neither journaled nor applied.
async fn write(admin: &Admin, entry: Entry) -> ApiResult<Written> {
    if let Some(cluster) = &admin.cluster {
        return cluster_write(admin, cluster, entry).await;
    }
    let mut journal = admin.journal.lock().await;
    // Decided under the lock that orders writes: no other write can slip in between.
    if !journal.overrides().would_change(&entry, now_ms()) {
        return Ok(axum::Json(Written {
            changed: false,
            entry: None,
        }));
    }
    let entry = journal.append(entry).map_err(|e| journal_error(&e))?;
    info!(by = %entry.by, action = ?entry.action, zone = %entry.zone, region = %entry.region,
        endpoint = ?entry.endpoint, reason = %entry.reason, expires_at_ms = ?entry.expires_at_ms,
        "operator override");
    // Still under the lock: the monitor gets the overrides in journal order, so a slower
    // earlier write cannot hand it a state without a later one.
    admin.monitor.overrides(journal.overrides().clone()).await;
    drop(journal);
    admin.changed();
    Ok(axum::Json(Written {
        changed: true,
        entry: Some(entry),
    }))
}

/// In a cluster: commits `entry` to etcd and answers once this node applied it from its
/// watch (which journals it). Nothing is acknowledged that etcd did not commit: while the
/// store is away the answer is 503 and nothing changes.
async fn cluster_write(admin: &Admin, cluster: &Cluster, entry: Entry) -> ApiResult<Written> {
    let unchanged = Written {
        changed: false,
        entry: None,
    };
    // One write at a time from this node; the journal (this node's copy of the cluster's
    // overrides, current while the store is up) says whether an undo would change anything.
    let _order = cluster.writes.lock().await;
    let away = |e: crate::cluster::ClusterError| {
        warn!(error = %e, "cannot write the override to the cluster store");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    };
    cluster.usable().map_err(away)?;
    if !admin
        .journal
        .lock()
        .await
        .overrides()
        .would_change(&entry, now_ms())
    {
        return Ok(axum::Json(unchanged));
    }
    match cluster.commit(entry).await {
        Err(e) => Err(away(e)),
        Ok(None) => Ok(axum::Json(unchanged)),
        Ok(Some((revision, entry))) => {
            info!(by = %entry.by, action = ?entry.action, zone = %entry.zone, region = %entry.region,
                endpoint = ?entry.endpoint, reason = %entry.reason, expires_at_ms = ?entry.expires_at_ms,
                revision, "operator override committed to the cluster store");
            if !cluster.wait_applied(revision).await {
                warn!(
                    revision,
                    "committed, but this node has not applied it yet: it will once its watch catches up"
                );
            }
            admin.changed();
            Ok(axum::Json(Written {
                changed: true,
                entry: Some(entry),
            }))
        }
    }
}

/// A journal entry stamped now; the journal gives it its sequence number.
pub(super) fn entry(by: &str, action: Action, zone: String, region: String, reason: &str) -> Entry {
    Entry {
        seq: 0,
        at_ms: now_ms(),
        by: by.to_string(),
        action,
        zone,
        region,
        endpoint: None,
        reason: reason.trim().to_string(),
        expires_at_ms: None,
        node: None,
    }
}

pub(super) async fn drain(
    State(admin): State<Arc<Admin>>,
    axum::Extension(caller): axum::Extension<Caller>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<axum::Json<WriteBody>, JsonRejection>,
) -> ApiResult<Written> {
    let Path(target) = path?;
    region_write(&admin, &caller, &target, body, Action::Drain).await
}

pub(super) async fn undrain(
    State(admin): State<Arc<Admin>>,
    axum::Extension(caller): axum::Extension<Caller>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<axum::Json<WriteBody>, JsonRejection>,
) -> ApiResult<Written> {
    let Path(target) = path?;
    region_write(&admin, &caller, &target, body, Action::Undrain).await
}

/// A drain (which may expire) or an undrain of one region.
async fn region_write(
    admin: &Admin,
    caller: &Caller,
    target: &(String, String),
    body: Result<axum::Json<WriteBody>, JsonRejection>,
    action: Action,
) -> ApiResult<Written> {
    let body = body?.0;
    if body.state.is_some() {
        return Err(ApiError::bad_request("state applies to force only"));
    }
    let expires = body.check(action == Action::Drain)?;
    let mut e = region_entry(admin, caller, action, target, &body.reason)?;
    e.expires_at_ms = expires;
    write(admin, e).await
}

pub(super) async fn force(
    State(admin): State<Arc<Admin>>,
    axum::Extension(caller): axum::Extension<Caller>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    body: Result<axum::Json<WriteBody>, JsonRejection>,
) -> ApiResult<Written> {
    let Path(target) = path?;
    let body = body?.0;
    let action = match body.state.as_deref() {
        Some("up") => Action::ForceUp,
        Some("down") => Action::ForceDown,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state {other:?} must be \"up\" or \"down\""
            )));
        }
        None => {
            return Err(ApiError::bad_request(
                "state is missing: \"up\" or \"down\"",
            ));
        }
    };
    let expires = body.check(true)?;
    let mut e = endpoint_entry(&admin, &caller, action, &target, &body.reason)?;
    e.expires_at_ms = expires;
    write(&admin, e).await
}

pub(super) async fn unforce(
    State(admin): State<Arc<Admin>>,
    axum::Extension(caller): axum::Extension<Caller>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    body: Result<axum::Json<WriteBody>, JsonRejection>,
) -> ApiResult<Written> {
    let Path(target) = path?;
    let body = body?.0;
    if body.state.is_some() {
        return Err(ApiError::bad_request("state applies to force only"));
    }
    body.check(false)?;
    let e = endpoint_entry(&admin, &caller, Action::Unforce, &target, &body.reason)?;
    write(&admin, e).await
}

/// The entry for `action` on the region a path names (zone, region), looked up in one
/// snapshot: loaded here, so it is released before the write waits on the journal and the
/// monitor.
fn region_entry(
    admin: &Admin,
    caller: &Caller,
    action: Action,
    (zone, region): &(String, String),
    reason: &str,
) -> Result<Entry, ApiError> {
    let state = admin.state.load();
    let (z, r) = find_region(&state, zone, region)?;
    Ok(entry(
        &caller.0,
        action,
        z.origin.to_string(),
        r.name.clone(),
        reason,
    ))
}

/// The entry for `action` on the endpoint a path names (zone, region, address), looked up
/// in one snapshot, as [`region_entry`] does.
fn endpoint_entry(
    admin: &Admin,
    caller: &Caller,
    action: Action,
    (zone, region, address): &(String, String, String),
    reason: &str,
) -> Result<Entry, ApiError> {
    let state = admin.state.load();
    let (z, r, endpoint) = find_endpoint(&state, zone, region, address)?;
    let mut e = entry(
        &caller.0,
        action,
        z.origin.to_string(),
        r.name.clone(),
        reason,
    );
    e.endpoint = Some(endpoint.address);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::geo::GeoDb;
    use crate::zone::{self, ZoneSet};

    /// A zone with one region, `us-east`, of one endpoint.
    fn zone(origin: &str, endpoint: &str) -> Zone {
        let text = format!(
            r#"zone = "{origin}"
records = '''
$TTL 3600
@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@ IN NS  ns1
ns1 IN A 192.0.2.53
'''

[regions.us-east]
location = {{ lat = 39.04, lon = -77.49 }}
endpoints = ["{endpoint}"]
"#
        );
        zone::load_file(Path::new(&format!("zones/{origin}toml")), &text)
            .unwrap_or_else(|d| panic!("{}", zone::LoadError(d)))
    }

    fn snapshot(zones: Vec<Zone>) -> Snapshot {
        let geo = GeoDb::embedded().expect("the embedded GeoIP table opens");
        Snapshot::new(
            ZoneSet::new(zones),
            Arc::new(geo),
            &crate::metrics::Metrics::default(),
        )
    }

    fn within<T>(item: &T, all: &[T]) -> bool {
        all.iter().any(|x| std::ptr::eq(x, item))
    }

    /// The race of two loads per request: the zone's index taken from one snapshot and used
    /// in the next, where a reload put a zone that sorts earlier at that index (here its own
    /// `us-east`, so the endpoint would be looked for in the wrong zone). One lookup in one
    /// snapshot returns references into that snapshot only.
    #[test]
    fn endpoint_lookup_stays_in_its_snapshot_when_a_reload_shifts_zone_indexes() {
        let before = snapshot(vec![zone("example.com.", "192.0.2.10")]);
        let after = snapshot(vec![
            zone("example.com.", "192.0.2.10"),
            zone("example.biz.", "198.51.100.10"),
        ]);
        let (old, _, _) = find_endpoint(&before, "example.com", "us-east", "192.0.2.10")
            .expect("the endpoint is in the first snapshot");
        let shifted = after.zones.get(old.index).expect("the reload added a zone");
        assert_eq!(shifted.origin.to_string(), "example.biz.");

        let (z, r, e) = find_endpoint(&after, "example.com", "us-east", "192.0.2.10")
            .expect("the endpoint is in the reloaded snapshot too");
        assert_eq!(z.origin.to_string(), "example.com.");
        assert_ne!(z.index, old.index);
        assert!(after.zones.zones().any(|x| std::ptr::eq(x, z)));
        assert!(within(r, &z.regions));
        assert!(within(e, &r.endpoints));
    }
}
