//! The model-facing endpoints: chat completions, Anthropic messages and OpenAI
//! responses (one handler: parse in the client's protocol, run the pipeline, render
//! back in it), the routing decision alone, Anthropic's token count, and local
//! embeddings.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tracing::Instrument;

use super::{decision_headers, header_is, server_timing, set_header, AppState, RequestId};
use crate::canonical::Protocol;
use crate::inbound::{self, ApiError};
use crate::pipeline::{CacheStatus, Failure, ReplyBody, RequestCtx, Routing};

/// A failed request: the error, and the routing it got when it got that far.
type Failed = (ApiError, Option<Routing>, CacheStatus);

fn failed(e: impl Into<ApiError>) -> Failed {
    (e.into(), None, CacheStatus::Bypass)
}

impl From<Failure> for Failed {
    fn from(f: Failure) -> Self {
        (f.error.into(), f.routing.map(|r| *r), f.cache)
    }
}

pub(super) async fn chat_completions(
    state: State<Arc<AppState>>,
    id: Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    generate(state, id, headers, body, Protocol::OpenAiChat).await
}

pub(super) async fn messages(
    state: State<Arc<AppState>>,
    id: Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    generate(state, id, headers, body, Protocol::AnthropicMessages).await
}

pub(super) async fn responses(
    state: State<Arc<AppState>>,
    id: Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    generate(state, id, headers, body, Protocol::OpenAiResponses).await
}

async fn generate(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
    protocol: Protocol,
) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!("generate", request_id = %request_id, api = protocol.name());
    let result = generate_inner(&state, &request_id, &headers, body, started, protocol)
        .instrument(span)
        .await;
    match result {
        Ok(resp) => resp,
        Err((e, routing, cache)) => {
            tracing::info!(status = e.status.as_u16(), error = %e.message, "request failed");
            let mut resp = e.response_in(protocol);
            if let Some(r) = &routing {
                let model = r.models.first().cloned().unwrap_or_default();
                decision_headers(resp.headers_mut(), &request_id, r, &model, cache);
            }
            resp
        }
    }
}

/// What the client's headers ask of the pipeline.
fn context(
    state: &AppState,
    request_id: &str,
    headers: &HeaderMap,
) -> Result<RequestCtx, ApiError> {
    let (tenant, endpoint) = state.authenticate(headers)?;
    Ok(RequestCtx {
        request_id: request_id.to_string(),
        tenant,
        endpoint,
        conversation_header: headers
            .get("x-triage-conversation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        compress_off: header_is(headers, "x-triage-compress", "off"),
        cache_off: header_is(headers, "x-triage-cache", "off")
            || headers
                .get("cache-control")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("no-cache")),
    })
}

async fn generate_inner(
    state: &Arc<AppState>,
    request_id: &str,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
    protocol: Protocol,
) -> Result<Response, Failed> {
    let ctx = context(state, request_id, headers).map_err(failed)?;
    let raw = state.json_body(headers, body).await.map_err(failed)?;
    let req = inbound::parse(protocol, raw, headers).map_err(failed)?;
    // The pipeline runs on its own task: a client that goes away before the answer
    // does not cancel it, so the call is still tried to its end and recorded.
    let (pipeline, run_ctx) = (state.pipeline.clone(), ctx.clone());
    let reply = tokio::spawn(async move { pipeline.run(&run_ctx, req).await }.in_current_span())
        .await
        .map_err(|e| failed(ApiError::internal(format!("request task failed: {e}"))))??;
    tracing::info!(
        endpoint = %ctx.endpoint,
        tier = reply.routing.tier().unwrap_or("passthrough"),
        model = %reply.model,
        retries = reply.call.as_ref().map(|c| c.retries).unwrap_or(0),
        fallback = reply.call.as_ref().map(|c| c.fallback_used).unwrap_or(false),
        cache = reply.cache.as_str(),
        "routed"
    );
    let mut h = HeaderMap::new();
    decision_headers(
        &mut h,
        request_id,
        &reply.routing,
        &reply.model,
        reply.cache,
    );
    set_header(
        &mut h,
        "server-timing",
        &server_timing(&reply.routing, reply.upstream_us, started),
    );
    let req = &reply.request;
    let model = reply.response_model.as_str();
    let stream = match reply.body {
        ReplyBody::Answer { answer, raw } => {
            let bytes = inbound::render_reply(req, &answer, raw, request_id, model);
            h.insert("content-type", HeaderValue::from_static("application/json"));
            return Ok((StatusCode::OK, h, bytes).into_response());
        }
        ReplyBody::Replayed(answer) if !req.stream => {
            let bytes = inbound::render_reply(req, &answer, None, request_id, model);
            h.insert("content-type", HeaderValue::from_static("application/json"));
            return Ok((StatusCode::OK, h, bytes).into_response());
        }
        ReplyBody::Replayed(answer) => inbound::replay_stream(req, &answer, request_id, model),
        ReplyBody::Stream(rx) => inbound::render_stream(req, rx, request_id, model),
    };
    h.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    let body = Body::from_stream(ReceiverStream::new(stream).map(Ok::<_, std::io::Error>));
    Ok((StatusCode::OK, h, body).into_response())
}

/// `POST /v1/route`: the routing decision for a chat completions body, without
/// forwarding it.
pub(super) async fn route(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result: Result<Response, Failed> = async {
        let ctx = context(&state, &request_id, &headers).map_err(failed)?;
        let raw = state.json_body(&headers, body).await.map_err(failed)?;
        let req = inbound::parse(Protocol::OpenAiChat, raw, &headers).map_err(failed)?;
        let live = state.pipeline.live();
        let t = state.pipeline.route(&ctx, req).await?;
        let routing = &t.routing;
        let mut h = HeaderMap::new();
        let model = routing.models.first().cloned().unwrap_or_default();
        decision_headers(&mut h, &request_id, routing, &model, CacheStatus::Bypass);
        let d = routing.decision.as_ref();
        let body = json!({
            "request_id": request_id,
            "tier": d.map(|d| d.tier.clone()),
            "head_tier": d.map(|d| d.head_tier.clone()),
            "confidence": d.map(|d| crate::classify::round4(d.confidence)),
            "probs": d.map(|d| d.probs_json()),
            "raised": d.map(|d| d.raised),
            "strength": d.map(|d| crate::classify::round4(d.strength)),
            "raised_by_quality_target": d.map(|d| d.by_quality),
            "quality_target": live.cfg.router.quality_target,
            "sticky": routing.sticky,
            "model": model,
            "models": routing.models,
            "routed_text_chars": t.texts.routed.chars().count(),
            "agent": t.texts.agent,
            "latency_us": routing.timings,
        });
        Ok((StatusCode::OK, h, Json(body)).into_response())
    }
    .await;
    result.unwrap_or_else(|(e, _, _)| e.into_response())
}

/// `POST /v1/messages/count_tokens`: Anthropic's token count of a request, by
/// the model family's tokenizer where triage has it, else its estimate.
pub(super) async fn count_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let protocol = Protocol::AnthropicMessages;
    let result: Result<Response, ApiError> = async {
        state.authenticate(&headers)?;
        let mut raw = state.json_body(&headers, body).await?;
        // A count needs no `max_tokens`.
        if let Some(o) = raw.as_object_mut() {
            o.entry("max_tokens").or_insert(json!(1));
        }
        let req = inbound::parse(protocol, raw, &headers)?;
        let live = state.pipeline.live();
        let model = if live.cfg.router.aliases.contains(&req.model) {
            let top = live.head.labels().last().cloned().unwrap_or_default();
            live.cfg
                .router
                .tiers
                .get(&top)
                .and_then(|m| m.first())
                .cloned()
                .unwrap_or_default()
        } else {
            req.model.clone()
        };
        let tokenizer = live.cfg.upstream_model_id(&model);
        let mut n = crate::compress::count_request_tokens(tokenizer, &req);
        for t in &req.tools {
            n += crate::compress::count_text_tokens(tokenizer, &t.schema.to_string())
                + crate::compress::count_text_tokens(tokenizer, &t.name);
        }
        Ok(Json(json!({"input_tokens": n})).into_response())
    }
    .await;
    result.unwrap_or_else(|e| e.response_in(protocol))
}

/// Names the on-device embedding model answers to: its id and `triage-embed`.
pub fn embedding_names(model_id: &str) -> Vec<String> {
    let short = model_id.rsplit('/').next().unwrap_or(model_id).to_string();
    let mut v = vec![model_id.to_string(), short, "triage-embed".to_string()];
    v.dedup();
    v
}

/// `POST /v1/embeddings`: sentence vectors from the on-device model; no upstream
/// call, recorded in the ledger at zero cost.
pub(super) async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result: Result<Response, ApiError> = async {
        let (tenant, endpoint) = state.authenticate(&headers)?;
        let raw = state.json_body(&headers, body).await?;
        let req = inbound::embeddings::parse(&raw)?;
        let pool = &state.pipeline.pool;
        let embedder = pool.embedder().clone();
        let names = embedding_names(embedder.model_id());
        if !names.contains(&req.model) {
            return Err(ApiError {
                param: Some("model".into()),
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "model_not_found",
                    format!(
                        "The embedding model `{}` is not served here: triage embeds on the device with {}.",
                        req.model,
                        names.join(", ")
                    ),
                )
            });
        }
        let jobs = req.inputs.iter().map(|t| pool.embed(t.clone()));
        let mut vectors = Vec::with_capacity(req.inputs.len());
        for r in futures::future::join_all(jobs).await {
            let e = r.map_err(|e| match e {
                crate::embed::PoolError::Busy(_) => ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "server_error",
                        "overloaded",
                        format!("triage is busy: {e}"),
                    )
                },
                other => ApiError::internal(other.to_string()),
            })?;
            vectors.push(e.embedding.vector);
        }
        let inputs = req.inputs.clone();
        let tokens = tokio::task::spawn_blocking(move || {
            inputs
                .iter()
                .map(|t| embedder.count_tokens(t).unwrap_or(0))
                .sum::<usize>()
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(ledger) = &state.pipeline.ledger {
            ledger.record(crate::ledger::DecisionRow {
                id: request_id.clone(),
                ts_ms: chrono::Utc::now().timestamp_millis(),
                endpoint,
                tenant,
                api: "embeddings".into(),
                chosen_model: Some(req.model.clone()),
                actual_model: Some(req.model.clone()),
                cache_status: "bypass".into(),
                input_tokens: tokens as i64,
                cost_usd: Some(0.0),
                total_ms: started.elapsed().as_millis() as i64,
                ..Default::default()
            });
        }
        let body = inbound::embeddings::render(&req.model, &vectors, req.base64, tokens);
        Ok(Json(body).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/models` in a shape both SDK families read: OpenAI's list fields and
/// Anthropic's (`type`, `display_name`, `has_more`).
pub(super) fn models_json(names: &[(String, String)]) -> Value {
    let data: Vec<Value> = names
        .iter()
        .map(|(name, owner)| {
            json!({"id": name, "object": "model", "created": 0, "owned_by": owner,
                   "type": "model", "display_name": name, "created_at": "1970-01-01T00:00:00Z"})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "has_more": false,
        "first_id": names.first().map(|n| n.0.clone()),
        "last_id": names.last().map(|n| n.0.clone()),
    })
}
