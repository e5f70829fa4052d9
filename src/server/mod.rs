//! The HTTP edge: axum router, thin handlers, client auth, body limits, and the
//! mapping of every error to OpenAI's error JSON with the right status.

mod generate;

pub use crate::inbound::ApiError;
pub use generate::embedding_names;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{is_endpoint_name, Config};
use crate::pipeline::{CacheStatus, Pipeline, Routing};

pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    /// sha256(client key) → key name.
    keys: HashMap<[u8; 32], String>,
    /// sha256 of the admin key, when one is configured.
    admin_key: Option<[u8; 32]>,
    endpoints: parking_lot::Mutex<std::collections::HashSet<String>>,
    max_endpoints: usize,
    config_path: Option<std::path::PathBuf>,
    max_body: usize,
    next_id: AtomicU64,
    id_prefix: String,
}

impl AppState {
    /// Reads client keys from the environment; a configured key whose variable is
    /// unset is a startup error (naming the variable, never a value).
    pub fn new(pipeline: Arc<Pipeline>) -> Result<Self, String> {
        let cfg = pipeline.live().cfg.clone();
        let mut keys = HashMap::new();
        for (i, k) in cfg.server.api_keys.iter().enumerate() {
            let secret = std::env::var(&k.key_env).map_err(|_| {
                format!(
                    "server.api_keys[{i}] (`{}`): environment variable {} is not set",
                    k.name, k.key_env
                )
            })?;
            if secret.is_empty() {
                return Err(format!(
                    "server.api_keys[{i}] (`{}`): environment variable {} is empty",
                    k.name, k.key_env
                ));
            }
            keys.insert(Sha256::digest(secret.as_bytes()).into(), k.name.clone());
        }
        let admin_key = match &cfg.server.admin_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(Sha256::digest(v.as_bytes()).into()),
                _ => {
                    return Err(format!(
                        "server.admin_key_env: environment variable {var} is not set"
                    ))
                }
            },
        };
        let id_prefix = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        Ok(Self {
            config_path: None,
            max_endpoints: cfg.ledger.max_endpoints,
            endpoints: parking_lot::Mutex::new(std::collections::HashSet::new()),
            pipeline,
            keys,
            admin_key,
            max_body: cfg.server.max_body_bytes,
            next_id: AtomicU64::new(1),
            id_prefix,
        })
    }

    /// Where `/admin/reload` and SIGHUP read the config from (None: defaults).
    pub fn with_config_path(mut self, path: Option<std::path::PathBuf>) -> Self {
        self.config_path = path;
        self
    }

    /// Re-reads the config file and the head it names, and swaps both in at once.
    /// On any error the running config and head stay.
    pub fn reload_from_disk(&self) -> Result<Value, String> {
        let cfg = match &self.config_path {
            Some(p) => Config::load(p).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        let old = self.pipeline.live();
        let mut restart_needed = Vec::new();
        if serde_json::to_value(&cfg.server).ok() != serde_json::to_value(&old.cfg.server).ok() {
            restart_needed.push("server");
        }
        if serde_json::to_value(&cfg.embed).ok() != serde_json::to_value(&old.cfg.embed).ok() {
            restart_needed.push("embed");
        }
        if serde_json::to_value(&cfg.cache).ok() != serde_json::to_value(&old.cfg.cache).ok() {
            restart_needed.push("cache");
        }
        let (head, head_path) = crate::engine::load_head(&cfg, self.pipeline.pool.embedder())
            .map_err(|e| e.to_string())?;
        let info = json!({
            "head": head_path.display().to_string(),
            "head_created": head.meta().created,
            "tiers": cfg.router.tiers,
            "unchanged_until_restart": restart_needed,
        });
        self.pipeline.reload(cfg, head)?;
        tracing::info!(%info, "reloaded config and head");
        Ok(info)
    }

    fn request_id(&self) -> String {
        format!(
            "req_{}{:08x}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The caller: (tenant = the client key's name or `default`, endpoint = what the
    /// request is accounted under). With client keys, a request is always its key's
    /// tenant: `x-triage-endpoint` may only name the tenant itself or a sub-endpoint
    /// of it (`tenant/name`); anything else is refused with 403. Without keys the
    /// header names any endpoint. Distinct endpoints are bounded by
    /// `ledger.max_endpoints`; the rest are accounted as `other` (`tenant/other`).
    fn authenticate(&self, headers: &HeaderMap) -> Result<(String, String), ApiError> {
        let presented = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim);
        let header_endpoint = match headers.get("x-triage-endpoint") {
            None => None,
            Some(v) => match v.to_str() {
                Ok(e) if is_endpoint_name(e) => Some(e.to_string()),
                _ => {
                    return Err(ApiError::bad_request(
                        "`x-triage-endpoint` must be NAME or TENANT/NAME, each 1-64 letters, digits, '-', '_' or '.'",
                        None,
                    ))
                }
            },
        };
        let tenant = if self.keys.is_empty() {
            "default".to_string()
        } else {
            let Some(key) = presented else {
                return Err(ApiError::unauthorized(
                    "Missing API key: send `Authorization: Bearer <key>`.",
                ));
            };
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            match self.keys.get(&digest) {
                Some(name) => name.clone(),
                None => return Err(ApiError::unauthorized("Invalid API key.")),
            }
        };
        let endpoint = match header_endpoint {
            None => tenant.clone(),
            Some(e) => {
                let keyed = !self.keys.is_empty();
                if keyed && !crate::config::endpoint_covers(&tenant, &e) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "permission_error",
                        "endpoint_not_allowed",
                        format!(
                            "This key belongs to tenant `{tenant}`: `x-triage-endpoint` may name `{tenant}` or `{tenant}/NAME`, not `{e}`."
                        ),
                    ));
                }
                let mut seen = self.endpoints.lock();
                if seen.contains(&e) || seen.len() < self.max_endpoints {
                    seen.insert(e.clone());
                    e
                } else if keyed {
                    format!("{tenant}/other")
                } else {
                    "other".to_string()
                }
            }
        };
        Ok((tenant, endpoint))
    }

    /// Admin endpoints need the admin key (Bearer or `x-admin-key`).
    fn authenticate_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.admin_key else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                "admin_disabled",
                "Admin endpoints are disabled: set server.admin_key_env.",
            ));
        };
        let presented = headers
            .get("x-admin-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            })
            .map(str::trim);
        match presented {
            Some(k) if <[u8; 32]>::from(Sha256::digest(k.as_bytes())) == *expected => Ok(()),
            _ => Err(ApiError::unauthorized("Missing or invalid admin key.")),
        }
    }

    /// Reads the body within the configured limit and parses it as JSON.
    async fn json_body(&self, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
        let bytes = self.read_body(headers, body).await?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            ApiError::bad_request(
                format!(
                    "The request body is not valid UTF-8 (at byte {}).",
                    e.valid_up_to()
                ),
                None,
            )
        })?;
        serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request(
                format!("We could not parse the JSON body of your request: {e}"),
                None,
            )
        })
    }

    /// The whole body, or 413 past `server.max_body_bytes`. A client that sends its
    /// whole body before reading the answer would see a broken pipe if the
    /// connection closed under it, so an oversized body is read and dropped (up to
    /// [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`]) before the 413 is sent.
    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
        let too_large = || ApiError {
            close: true,
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                format!("Request body exceeds the limit of {} bytes.", self.max_body),
            )
        };
        let declared = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut body = body;
        if declared.is_some_and(|len| len > self.max_body) {
            if declared.is_some_and(|len| len <= DRAIN_MAX_BYTES) {
                drain(body, DRAIN_MAX_BYTES).await;
            }
            return Err(too_large());
        }
        let mut out = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::bad_request(format!("Could not read the request body: {e}"), None)
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if out.len() + data.len() > self.max_body {
                drain(body, DRAIN_MAX_BYTES.saturating_sub(out.len() + data.len())).await;
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
        Ok(out.freeze())
    }
}

/// An oversized body is read and dropped up to this many bytes before the 413.
const DRAIN_MAX_BYTES: usize = 64 * 1024 * 1024;
/// ...and for at most this long.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);

/// Reads and drops up to `limit` more bytes of `body` (bounded in time as well).
async fn drain(mut body: Body, limit: usize) {
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > limit {
                break;
            }
        }
    })
    .await;
}

/// The request's id, made by [`tag_request`] before any handler runs.
#[derive(Clone)]
pub struct RequestId(pub String);

/// Gives every request an id (`x-triage-request-id` on every response, errors
/// included) that the handlers, the logs and the decision log share.
async fn tag_request(
    State(state): State<Arc<AppState>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let id = state.request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if !resp.headers().contains_key("x-triage-request-id") {
        set_header(resp.headers_mut(), "x-triage-request-id", &id);
    }
    resp
}

/// What triage serves, for the 404 and 405 messages.
const ENDPOINTS: &str = "POST /v1/chat/completions, POST /v1/messages, \
POST /v1/messages/count_tokens, POST /v1/responses, POST /v1/embeddings, POST /v1/route, \
GET /v1/models, POST /v1/feedback, GET /healthz, GET /readyz, GET /metrics, GET /dashboard, \
POST /admin/reload, GET /admin/cache/stats, POST /admin/cache/purge";

/// The axum application.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(generate::chat_completions))
        .route("/chat/completions", post(generate::chat_completions))
        .route("/v1/messages", post(generate::messages))
        .route("/v1/messages/count_tokens", post(generate::count_tokens))
        .route("/v1/responses", post(generate::responses))
        .route("/v1/embeddings", post(generate::embeddings))
        .route("/v1/route", post(generate::route))
        .route("/v1/models", get(models))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/dashboard", get(dashboard_page))
        .route("/dashboard/data", get(dashboard_data))
        .route("/v1/feedback", post(feedback))
        .route("/admin/reload", post(reload))
        .route("/admin/cache/stats", get(cache_stats))
        .route("/admin/cache/purge", post(cache_purge))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Our own limit answers 413 in OpenAI's shape; axum's default would not.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            tag_request,
        ))
        .with_state(state)
}

pub(crate) fn header_is(h: &HeaderMap, name: &str, value: &str) -> bool {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
}

pub(crate) fn set_header(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

pub(crate) fn decision_headers(
    h: &mut HeaderMap,
    request_id: &str,
    routing: &Routing,
    model: &str,
    cache: CacheStatus,
) {
    set_header(h, "x-triage-request-id", request_id);
    match &routing.decision {
        Some(d) => {
            set_header(h, "x-triage-tier", &d.tier);
            set_header(h, "x-triage-confidence", &format!("{:.4}", d.confidence));
            set_header(h, "x-triage-strength", &format!("{:.4}", d.strength));
        }
        None => set_header(h, "x-triage-tier", "passthrough"),
    }
    set_header(h, "x-triage-model", model);
    set_header(h, "x-triage-cache", cache.as_str());
    if routing.downgraded {
        set_header(h, "x-triage-budget", "downgraded");
    } else if routing.budget_spent {
        set_header(h, "x-triage-budget", "spent");
    }
    if let Some(c) = &routing.compression {
        set_header(
            h,
            "x-triage-compressed",
            &format!("{}->{}", c.tokens_before, c.tokens_after),
        );
    }
    if let CacheStatus::Hit { similarity } = cache {
        set_header(h, "x-triage-cache-similarity", &format!("{similarity:.4}"));
    }
}

/// `Server-Timing` (W3C): the embedding (queue, tokenizer, forward pass, pooling),
/// the upstream wait, and everything else triage spent: its own overhead.
pub(crate) fn server_timing(routing: &Routing, upstream_us: u64, started: Instant) -> String {
    let t = &routing.timings;
    let embed_us = t.queue_us + t.tokenize_us + t.embed_us + t.pool_us;
    let total_us = started.elapsed().as_micros() as u64;
    let overhead_us = total_us.saturating_sub(embed_us + upstream_us);
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "embed;dur={:.3}, upstream;dur={:.3}, overhead;dur={:.3}, total;dur={:.3}",
        ms(embed_us),
        ms(upstream_us),
        ms(overhead_us),
        ms(total_us)
    )
}

async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = state.authenticate(&headers) {
        return e.into_response();
    }
    let live = state.pipeline.live();
    let cfg = live.cfg.clone();
    let names: Vec<(String, String)> = state
        .pipeline
        .model_names(&live)
        .into_iter()
        .map(|name| {
            let owned_by = if cfg.router.aliases.contains(&name) {
                "triage".to_string()
            } else {
                cfg.model(&name)
                    .map(|m| m.upstream.clone())
                    .unwrap_or_else(|| "triage".into())
            };
            (name, owned_by)
        })
        .collect();
    Json(generate::models_json(&names)).into_response()
}

const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// The dashboard needs the admin key when one is configured (header or `?key=`).
fn dashboard_auth(
    state: &AppState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<(), ApiError> {
    if state.admin_key.is_none() {
        return Ok(());
    }
    if state.authenticate_admin(headers).is_ok() {
        return Ok(());
    }
    let key = uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("key="))
            .map(str::to_string)
    });
    match (key, &state.admin_key) {
        (Some(k), Some(expected))
            if <[u8; 32]>::from(Sha256::digest(k.as_bytes())) == *expected =>
        {
            Ok(())
        }
        _ => Err(ApiError::unauthorized(
            "The dashboard needs the admin key (?key=…).",
        )),
    }
}

async fn dashboard_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if let Err(e) = dashboard_auth(&state, &headers, &uri) {
        return e.into_response();
    }
    axum::response::Html(DASHBOARD_HTML).into_response()
}

/// The numbers behind the dashboard: the last 24 hours of the decision log.
async fn dashboard_data(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if let Err(e) = dashboard_auth(&state, &headers, &uri) {
        return e.into_response();
    }
    let Some(ledger) = state.pipeline.ledger.clone() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "ledger_disabled",
            "No ledger.",
        )
        .into_response();
    };
    let Some(db) = ledger.log.as_ref().map(|l| l.path().to_path_buf()) else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "ledger_disabled",
            "The dashboard reads the decision log: set ledger.enabled = true.",
        )
        .into_response();
    };
    let now = chrono::Utc::now().timestamp_millis();
    let report = tokio::task::spawn_blocking(move || {
        crate::ledger::report::build(
            &db,
            now - 86_400_000,
            now + 1,
            crate::ledger::report::GroupBy::Tier,
        )
    })
    .await;
    let report = match report {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "report_failed",
                e.to_string(),
            )
            .into_response()
        }
        Err(e) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "report_failed",
                e.to_string(),
            )
            .into_response()
        }
    };
    let hours: Vec<String> = report.hourly.iter().map(|g| g.key.clone()).collect();
    let mut models: Vec<String> = report
        .hourly_model_cost
        .iter()
        .map(|(_, m, _)| m.clone())
        .collect();
    models.sort();
    models.dedup();
    let series: Vec<Value> = models
        .iter()
        .map(|m| {
            let values: Vec<f64> = hours
                .iter()
                .map(|h| {
                    report
                        .hourly_model_cost
                        .iter()
                        .filter(|(hh, mm, _)| hh == h && mm == m)
                        .map(|(_, _, c)| *c)
                        .sum()
                })
                .collect();
            json!({"name": m, "values": values})
        })
        .collect();
    Json(json!({
        "totals": report.totals,
        "saved_vs_top_tier_usd": report.saved_vs_top_tier_usd,
        "saved_by_cache_usd": report.saved_by_cache_usd,
        "cost_by_hour": {"hours": hours, "models": series},
        "tiers": report.groups.iter().map(|g| json!({"key": g.key, "requests": g.totals.requests})).collect::<Vec<_>>(),
        "hourly": report.hourly.iter().map(|g| json!({"key": g.key, "cache_hit_rate": g.totals.cache_hit_rate})).collect::<Vec<_>>(),
        "endpoints": report.endpoints,
        "budgets": ledger.budgets().status(),
    }))
    .into_response()
}

/// Prometheus text format.
async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let p = &state.pipeline;
    metrics::gauge!("triage_embed_queue_depth").set(p.pool.queue_depth() as f64);
    if let Some(c) = &p.cache {
        let r = c.stats_report();
        metrics::gauge!("triage_cache_hit_ratio").set(r.hit_ratio);
        metrics::gauge!("triage_cache_entries").set(r.entries as f64);
        metrics::gauge!("triage_cache_write_queue").set(r.queued as f64);
        metrics::gauge!("triage_cache_dropped_writes").set(r.dropped as f64);
    }
    if let Some(l) = p.ledger.as_ref().and_then(|l| l.log.as_ref()) {
        metrics::gauge!("triage_ledger_rows_dropped")
            .set(l.dropped.load(std::sync::atomic::Ordering::Relaxed) as f64);
    }
    let mut body = crate::ledger::metrics_handle().render();
    body.push_str(&crate::ledger::usd::render());
    ([("content-type", "text/plain; version=0.0.4")], body).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    request_id: String,
    correct_tier: Option<String>,
    outcome: Option<String>,
    note: Option<String>,
}

/// `POST /v1/feedback`: a correction or an outcome for an earlier request.
async fn feedback(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let result: Result<Response, ApiError> = async {
        let (tenant, _) = state.authenticate(&headers)?;
        let raw = state.json_body(&headers, body).await?;
        let fb: FeedbackBody = serde_json::from_value(raw).map_err(|e| {
            ApiError::bad_request(
                format!("feedback takes {{request_id, correct_tier?, outcome?, note?}}: {e}"),
                None,
            )
        })?;
        if fb.request_id.trim().is_empty() || fb.request_id.len() > 128 {
            return Err(ApiError::bad_request(
                "`request_id` must be 1-128 characters",
                Some("request_id".into()),
            ));
        }
        let live = state.pipeline.live();
        let labels = live.head.labels();
        let correct_tier = match fb.correct_tier {
            None => None,
            Some(t) => match labels.iter().find(|l| l.eq_ignore_ascii_case(&t)) {
                Some(l) => Some(l.clone()),
                None => {
                    return Err(ApiError::bad_request(
                        format!("`correct_tier` must be one of {}", labels.join(", ")),
                        Some("correct_tier".into()),
                    ))
                }
            },
        };
        if let Some(o) = &fb.outcome {
            if o != "success" && o != "failure" {
                return Err(ApiError::bad_request(
                    "`outcome` must be \"success\" or \"failure\"",
                    Some("outcome".into()),
                ));
            }
        }
        if correct_tier.is_none() && fb.outcome.is_none() {
            return Err(ApiError::bad_request(
                "give `correct_tier`, `outcome`, or both",
                None,
            ));
        }
        let note = fb.note.map(|n| n.chars().take(2000).collect::<String>());
        let Some(log) = state.pipeline.ledger.as_ref().and_then(|l| l.log.as_ref()) else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "ledger_disabled",
                "Feedback needs the decision log: set ledger.enabled = true.",
            ));
        };
        // Feedback is for a request this tenant made; any other id is unknown to it.
        let known = {
            let id = fb.request_id.clone();
            let ledger = state.pipeline.ledger.clone();
            tokio::task::spawn_blocking(move || {
                ledger
                    .as_ref()
                    .and_then(|l| l.log.as_ref())
                    .map(|log| log.tenant_of(&id))
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
        };
        match known {
            Some(Ok(Some(t))) if state.keys.is_empty() || t == tenant => {}
            Some(Err(e)) => return Err(ApiError::internal(e.to_string())),
            _ => {
                return Err(ApiError {
                    param: Some("request_id".into()),
                    ..ApiError::new(
                        StatusCode::NOT_FOUND,
                        "invalid_request_error",
                        "request_not_found",
                        format!(
                            "No request with id `{}` is in the decision log.",
                            fb.request_id
                        ),
                    )
                })
            }
        }
        log.feedback(crate::ledger::FeedbackRow {
            request_id: fb.request_id,
            ts_ms: chrono::Utc::now().timestamp_millis(),
            correct_tier,
            outcome: fb.outcome,
            note,
        });
        Ok((StatusCode::ACCEPTED, Json(json!({"status": "recorded"}))).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /admin/reload`: re-read the config's routing table, prices, budgets and
/// the head; on failure the old ones stay and the error is reported.
async fn reload(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = state.authenticate_admin(&headers) {
        return e.into_response();
    }
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.reload_from_disk()).await {
        Ok(Ok(info)) => Json(json!({"status": "reloaded", "info": info})).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reload failed; keeping the running config and head");
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                "reload_failed",
                format!("Reload failed; the running config and head are unchanged: {e}"),
            )
            .into_response()
        }
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "reload_failed",
            e.to_string(),
        )
        .into_response(),
    }
}

async fn cache_stats(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = state.authenticate_admin(&headers) {
        return e.into_response();
    }
    match &state.pipeline.cache {
        Some(c) => Json(json!({"enabled": true, "stats": c.stats_report()})).into_response(),
        None => Json(json!({"enabled": false})).into_response(),
    }
}

async fn cache_purge(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result: Result<Response, ApiError> = async {
        state.authenticate_admin(&headers)?;
        let raw = state.json_body(&headers, body).await?;
        let purge: crate::cache::Purge = serde_json::from_value(raw).map_err(|e| {
            ApiError::bad_request(
                format!("purge takes {{\"all\": true}}, {{\"tenant\": NAME}} or {{\"older_than_secs\": N}}: {e}"),
                None,
            )
        })?;
        if !purge.all && purge.tenant.is_none() && purge.older_than_secs.is_none() {
            return Err(ApiError::bad_request(
                "say what to purge: `all`, `tenant` or `older_than_secs`",
                None,
            ));
        }
        let removed = state.pipeline.cache.as_ref().map(|c| c.purge(&purge)).unwrap_or(0);
        Ok(Json(json!({"removed": removed})).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let p = &state.pipeline;
    let live = p.live();
    let upstreams_ok = p.dry_run || !live.upstreams.is_empty();
    let body = json!({
        "status": if upstreams_ok { "ready" } else { "not ready: no [[upstreams]] configured (use --dry-run to try without)" },
        "embedding_model": p.pool.embedder().model_id(),
        "head_labels": live.head.labels(),
        "upstreams": live.cfg.upstreams.iter().map(|u| u.name.clone()).collect::<Vec<_>>(),
        "dry_run": p.dry_run,
        "queue_depth": p.pool.queue_depth(),
    });
    let status = if upstreams_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "unknown_url",
        format!(
            "Unknown request URL: {}. triage serves {ENDPOINTS}.",
            uri.path()
        ),
    )
    .into_response()
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}. triage serves {ENDPOINTS}.",
            uri.path()
        ),
    )
    .into_response()
}

/// Serves until `shutdown` resolves, then drains in-flight requests for at most
/// `grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let app = router(state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut drain_rx = stop_rx.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    tokio::select! {
        r = server => r,
        _ = async {
            let _ = drain_rx.wait_for(|v| *v).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "shutdown grace period over; dropping remaining requests");
            Ok(())
        }
    }
}
