//! The admin HTTP listener (`[admin] listen`): Prometheus `/metrics`, a JSON API for everything
//! `cfs admin` shows and does, and the web console, on one axum server. Every data request
//! needs `Authorization: Bearer TOKEN`, the token derived from the cluster secret
//! (`ClusterSecret::admin_token`; `cfs admin token` prints it); without it: 401. The console's
//! page itself holds no data and is served to anyone; its script asks for the token.
mod api;
pub use cfs::op_names as names;
mod paths;
mod prom;
mod snapshots;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};

/// Samples of the totals kept for the console's charts: one every `SAMPLE_EVERY`, ten minutes.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const SAMPLES: usize = 120;

/// What this process serves, for the listener to read.
pub struct Sources {
    pub mds: Option<mds::admin::Admin>,
    pub mds_listen: Option<SocketAddr>,
    pub ds: Option<Arc<ds::DsServer>>,
    pub started: SystemTime,
    /// Since when the counters run (the first start, or the last unclean one).
    pub counters_since: SystemTime,
    /// Namespace counters of earlier runs (`persist`): added to this run's.
    pub ns_base: mds::admin::StatsSnapshot,
    /// The metadata nodes' client addresses from the config (`[cluster] client_addresses`);
    /// those of nodes that joined later come from the memberships.
    pub client_addresses: std::collections::BTreeMap<u64, SocketAddr>,
    /// The cluster secret, to sign the STATUS calls to the other MDS nodes (`None`: a single
    /// node, which has no other).
    pub cluster_secret: Option<layout::ClusterSecret>,
    /// How long a snapshot taken without `--retain-days` is kept (`[snapshots] retain_days`).
    pub snapshot_retain_secs: u64,
}

/// Totals at one instant, for rates.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    /// Unix seconds.
    pub t: f64,
    pub ops: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

pub struct Admin {
    pub sources: Sources,
    token: String,
    history: Mutex<VecDeque<Sample>>,
    paths: paths::Paths,
}

impl Admin {
    pub fn new(sources: Sources, token: String) -> Arc<Admin> {
        Arc::new(Admin {
            sources,
            token,
            history: Mutex::new(VecDeque::with_capacity(SAMPLES)),
            paths: paths::Paths::default(),
        })
    }

    /// Totals now: NFS operations this process served (both roles) and file bytes moved, on
    /// the MDS itself and, in a cluster, on the data servers (from their heartbeats).
    pub fn sample(&self) -> Sample {
        let mut s = Sample {
            t: unix(SystemTime::now()),
            ops: metrics::mds::OPS.total() + metrics::ds::OPS.total(),
            read_bytes: metrics::mds::READ_BYTES.get(),
            write_bytes: metrics::mds::WRITE_BYTES.get(),
        };
        match self.sources.mds.as_ref().and_then(|m| m.data_servers()) {
            Some(c) => {
                for d in c.status.data_servers {
                    s.ops += d.counters.read_ops + d.counters.write_ops + d.counters.commit_ops;
                    s.read_bytes += d.counters.read_bytes;
                    s.write_bytes += d.counters.write_bytes;
                }
            }
            None => {
                if let Some(d) = &self.sources.ds {
                    let c = d.counters();
                    s.read_bytes += c.read_bytes;
                    s.write_bytes += c.write_bytes;
                }
            }
        }
        s
    }

    fn record_sample(&self) {
        let s = self.sample();
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() == SAMPLES {
            h.pop_front();
        }
        h.push_back(s);
    }

    fn history(&self) -> Vec<Sample> {
        let mut v: Vec<Sample> = self
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        v.push(self.sample());
        v
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(t) = v.strip_prefix("Bearer ") else {
            return false;
        };
        // Compared as hashes: equal time whatever the first differing byte.
        blake3::hash(t.trim().as_bytes()) == blake3::hash(self.token.as_bytes())
    }
}

pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An error the API answers with: a status and a sentence that says what to do.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"cfs admin\""),
            );
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn check(a: &Admin, headers: &HeaderMap) -> ApiResult<()> {
    if a.authorized(headers) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send \"Authorization: Bearer TOKEN\"; `cfs admin token \
             --config CONFIG` prints it (it is derived from the cluster secret)"
                .into(),
        ))
    }
}

async fn metrics_page(State(a): State<Arc<Admin>>, headers: HeaderMap) -> ApiResult<Response> {
    check(&a, &headers)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prom::render(&a),
    )
        .into_response())
}

async fn status(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    check(&a, &headers)?;
    // Each node knows the metadata lag of the shards it leads only: the others are asked.
    let lags = match (&a.sources.mds, &a.sources.cluster_secret) {
        (Some(m), Some(secret)) => crate::admin::metadata_lags(m.other_mds_nodes(), secret).await,
        _ => Vec::new(),
    };
    Ok(Json(api::status(&a, &lags)))
}

async fn clients(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    check(&a, &headers)?;
    let m = a.sources.mds.as_ref().ok_or_else(no_mds)?;
    Ok(Json(api::clients(m)))
}

#[derive(serde::Deserialize)]
struct TopQuery {
    n: Option<usize>,
}

async fn top(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Query(q): Query<TopQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    check(&a, &headers)?;
    let m = a.sources.mds.as_ref().ok_or_else(no_mds)?;
    Ok(Json(api::top(q.n.unwrap_or(10).min(100), m, &a.paths)))
}

async fn history(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    check(&a, &headers)?;
    Ok(Json(serde_json::json!({
        "interval_seconds": SAMPLE_EVERY.as_secs(),
        "samples": a.history(),
    })))
}

fn no_mds() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "this process does not run the mds role: ask the MDS's admin listener".into(),
    )
}

fn parse_id(s: &str) -> ApiResult<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{s:?} is not an id: ids are hex, as `cfs admin clients` shows them"),
        )
    })
}

async fn evict(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    check(&a, &headers)?;
    let m = a.sources.mds.as_ref().ok_or_else(no_mds)?;
    let id = parse_id(&id)?;
    if m.evict(id) {
        Ok(Json(serde_json::json!({ "evicted": format!("{id:016x}") })))
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no client {id:016x}: `cfs admin clients` lists them"),
        ))
    }
}

/// POST (start) or DELETE (`cancel`) of the drain of data server `id`.
async fn drain_change(
    a: &Admin,
    headers: &HeaderMap,
    id: &str,
    cancel: bool,
) -> ApiResult<Json<serde_json::Value>> {
    use mds::admin::{DataDrainError, DrainError};
    check(a, headers)?;
    let m = a.sources.mds.as_ref().ok_or_else(no_mds)?;
    let id = parse_id(id)?;
    let ds = layout::DsId(id);
    let done = if cancel {
        m.cancel_data_server_drain(ds)
            .await
            .map(|()| serde_json::json!({ "cancelled": format!("{id:016x}") }))
    } else {
        m.drain_data_server(ds).await.map(|left| {
            serde_json::json!({
                "draining": format!("{id:016x}"),
                "files_left": left,
                "state": if left == 0 { "drained" } else { "draining" },
            })
        })
    };
    done.map(Json).map_err(|e| match e {
        DataDrainError::NoDataServers => ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no data server {id:016x}: this MDS keeps file data itself (no [cluster] \
                 section in its configuration), so there is {}",
                if cancel {
                    "no drain to cancel"
                } else {
                    "nothing to drain"
                }
            ),
        ),
        DataDrainError::Drain(e @ DrainError::Unknown(_)) => {
            ApiError(StatusCode::NOT_FOUND, e.to_string())
        }
        DataDrainError::Drain(e @ DrainError::NotDraining(_)) => {
            ApiError(StatusCode::CONFLICT, e.to_string())
        }
        DataDrainError::Drain(e @ DrainError::Namespace(_)) => ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e}; the MDS log says more, try again"),
        ),
    })
}

async fn drain(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    drain_change(&a, &headers, &id, false).await
}

/// DELETE of a drain: `cfs admin node drain ID --cancel`.
async fn cancel_drain(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    drain_change(&a, &headers, &id, true).await
}

/// POST of the drain of MDS node `id` (a decimal id, as `cfs admin status` shows): removes it
/// from every shard's membership; it then stops (`mds::admin::Admin::drain_mds`).
async fn drain_mds(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    use mds::admin::MembershipError as E;
    check(&a, &headers)?;
    let m = a.sources.mds.as_ref().ok_or_else(no_mds)?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not an MDS node id (a number, as `cfs admin status` shows)"),
        )
    })?;
    match m.drain_mds(id).await {
        Ok(()) => Ok(Json(serde_json::json!({ "drained_mds": id }))),
        Err(e @ (E::NotMember(_) | E::Solo)) => Err(ApiError(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ (E::LastNode(_) | E::NoMajority { .. })) => {
            Err(ApiError(StatusCode::CONFLICT, e.to_string()))
        }
        Err(e) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{e}; the drain is partly done: run it again"),
        )),
    }
}

#[derive(serde::Deserialize)]
struct RmtreeBody {
    path: String,
}

/// POST of a tree's removal (`cfs admin rmtree PATH`): the name goes before the answer, the
/// contents in the background (`mds::admin::Admin::rmtree`); `cfs admin status` shows what
/// is left.
async fn rmtree(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Json(body): Json<RmtreeBody>,
) -> ApiResult<Json<serde_json::Value>> {
    use mds::admin::RmtreeError as E;
    check(&a, &headers)?;
    let m = a.sources.mds.as_ref().ok_or_else(no_mds)?;
    match m.rmtree(&body.path).await {
        Ok(ino) => Ok(Json(serde_json::json!({
            "removed": body.path,
            "ino": ino,
            "state": "reclaiming",
        }))),
        Err(e @ E::BadPath(_)) => Err(ApiError(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e @ (E::Root | E::Export(..))) => Err(ApiError(StatusCode::FORBIDDEN, e.to_string())),
        Err(e @ E::NotFound(_)) => Err(ApiError(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ E::NotDir(_)) => Err(ApiError(StatusCode::CONFLICT, e.to_string())),
        Err(e @ E::Namespace(..)) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

#[derive(serde::Deserialize)]
struct PinBody {
    path: String,
    pin: String,
}

/// POST of a pin (`cfs admin tier pin PATH flash|s3|auto`: `mds::admin::Admin::tier_pin`).
async fn tier_pin(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Json(body): Json<PinBody>,
) -> ApiResult<Json<serde_json::Value>> {
    use mds::admin::TierPinError as E;
    check(&a, &headers)?;
    let m = a.sources.mds.as_ref().ok_or_else(no_mds)?;
    match m.tier_pin(&body.path, &body.pin).await {
        Ok(ino) => Ok(Json(serde_json::json!({
            "pinned": body.path,
            "ino": ino,
            "pin": body.pin,
        }))),
        Err(e @ E::BadPin(_)) => Err(ApiError(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e @ E::NotFound(_)) => Err(ApiError(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ E::NoTier) => Err(ApiError(StatusCode::CONFLICT, e.to_string())),
        Err(e @ E::Namespace(_)) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

async fn console() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        include_str!("console.html"),
    )
}

pub fn router(a: Arc<Admin>) -> Router {
    Router::new()
        .route("/", get(console))
        .route("/metrics", get(metrics_page))
        .route("/api/v1/status", get(status))
        .route("/api/v1/clients", get(clients))
        .route("/api/v1/top", get(top))
        .route("/api/v1/history", get(history))
        .route("/api/v1/clients/{id}/evict", post(evict))
        .route(
            "/api/v1/data-servers/{id}/drain",
            post(drain).delete(cancel_drain),
        )
        .route("/api/v1/mds-nodes/{id}/drain", post(drain_mds))
        .route("/api/v1/rmtree", post(rmtree))
        .route("/api/v1/tier/pin", post(tier_pin))
        .route(
            "/api/v1/snapshots",
            post(snapshots::create).get(snapshots::list),
        )
        .route("/api/v1/snapshots/{name}", delete(snapshots::delete))
        .route("/api/v1/snapshots/{name}/restore", post(snapshots::restore))
        .with_state(a)
}

/// Serves `listener` until `stop` resolves, sampling the totals for the charts meanwhile.
pub async fn serve(
    listener: tokio::net::TcpListener,
    a: Arc<Admin>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let sampler = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                a.record_sample();
            }
        })
    };
    if let Err(e) = axum::serve(listener, router(a))
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!("admin listener failed: {e}");
    }
    sampler.abort();
}
