//! `/api/v1/snapshots`: create (POST), list (GET), delete (DELETE `/{name}`) and restore
//! (POST `/{name}/restore`) snapshots, over `mds::admin::Admin::snapshot_*` (`cfs admin
//! snapshot ...` calls these).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use mds::admin::SnapshotError as E;

use super::{check, no_mds, Admin, ApiError, ApiResult};

#[derive(serde::Deserialize)]
pub(super) struct CreateBody {
    path: String,
    name: String,
    /// Absent: `[snapshots] retain_days` (`Sources::snapshot_retain_secs`).
    retain_secs: Option<u64>,
}

fn refused(e: E) -> ApiError {
    let code = match e {
        E::BadName(_) => StatusCode::BAD_REQUEST,
        E::NotFound(_) | E::NoSuchSnapshot(_) => StatusCode::NOT_FOUND,
        E::BadTarget(_) => StatusCode::BAD_REQUEST,
        E::NotDir(_)
        | E::HidesSnapshots(_)
        | E::Exists(_)
        | E::TargetExists(_)
        | E::RestoreConflict(_)
        | E::RestoreRunning => StatusCode::CONFLICT,
        E::Busy | E::Quiesce(_) | E::Namespace(_) | E::Data(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError(code, e.to_string())
}

/// POST `{"path": "/dir", "name": "weekly"}`.
pub(super) async fn create(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Json(body): Json<CreateBody>,
) -> ApiResult<Json<serde_json::Value>> {
    check(&a, &headers)?;
    let m = a.sources.mds.as_ref().ok_or_else(no_mds)?;
    let retain = body.retain_secs.unwrap_or(a.sources.snapshot_retain_secs);
    let id = m
        .snapshot_create(&body.path, &body.name, Some(retain))
        .await
        .map_err(refused)?;
    Ok(Json(serde_json::json!({
        "id": id,
        "name": body.name,
        "path": body.path,
        "shown_at": format!("{}/{}/{}", body.path.trim_end_matches('/'), mds::admin::SNAPSHOT_DIR, body.name),
        "retain_secs": retain,
    })))
}

#[derive(serde::Deserialize, Default)]
pub(super) struct ListQuery {
    /// Count each snapshot's bytes now, not take the count kept from the last minute
    /// (`Admin::snapshot_bytes`): the CLI asks for this, the console does not.
    #[serde(default)]
    fresh: bool,
}

/// GET: every snapshot not aborted, oldest first, with its unique and shared bytes
/// (`bytes_exact` false: a lower bound, some image not counted).
pub(super) async fn list(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    check(&a, &headers)?;
    let m = a.sources.mds.as_ref().ok_or_else(no_mds)?;
    let snaps = m.snapshot_list().await.map_err(refused)?;
    let usage = m.snapshot_bytes(q.fresh).await;
    let rows: Vec<serde_json::Value> = snaps
        .into_iter()
        .map(|s| {
            let bytes = usage.by_snap.get(&s.id).copied().unwrap_or_default();
            serde_json::json!({
                "unique_bytes": bytes.unique,
                "shared_bytes": bytes.shared,
                "id": s.id,
                "name": s.name,
                "path": s.path,
                "root": s.root,
                "created": s.created,
                "retain_secs": s.retain_secs,
                "state": s.state,
                "location": s.location,
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "snapshots": rows, "bytes_exact": usage.exact }),
    ))
}

/// DELETE `/api/v1/snapshots/{name}`.
pub(super) async fn delete(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    check(&a, &headers)?;
    let m = a.sources.mds.as_ref().ok_or_else(no_mds)?;
    let id = m.snapshot_delete(&name).await.map_err(refused)?;
    Ok(Json(serde_json::json!({ "deleted": name, "id": id })))
}

#[derive(serde::Deserialize, Default)]
pub(super) struct RestoreBody {
    /// Absent: in place, under the snapshot's own directory.
    to: Option<String>,
}

/// POST `/api/v1/snapshots/{name}/restore` `{"to": "/new/path"}` (or `{}`: in place). Answers
/// when the tree is back. The restore runs as its own task: a caller that hangs up does not
/// cut it short (and one cut short by a crash is finished by asking again).
pub(super) async fn restore(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Option<Json<RestoreBody>>,
) -> ApiResult<Json<serde_json::Value>> {
    check(&a, &headers)?;
    let m = a.sources.mds.as_ref().ok_or_else(no_mds)?.clone();
    let to = body.and_then(|Json(b)| b.to);
    let task = {
        let name = name.clone();
        tokio::spawn(async move { m.snapshot_restore(&name, to.as_deref()).await })
    };
    let r = task
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(refused)?;
    Ok(Json(serde_json::json!({
        "snapshot": r.snapshot,
        "to": r.to,
        "replaced": r.replaced,
        "dirs": r.dirs,
        "files": r.files,
        "others": r.others,
        "links": r.links,
        "shared_bytes": r.shared_bytes,
        "copied_bytes": r.copied_bytes,
        "secs": r.secs,
    })))
}
