//! Step: the end of a request. One decision-log row per request (cost from the
//! upstream's usage, or what a cache hit saved), metrics and budgets through the
//! ledger; the first turn's tier remembered under the key its next turn carries;
//! complete answers stored in the cache off the request path. A stream is recorded
//! when it ends.

use std::sync::Arc;
use std::time::Instant;

use super::cache::{self, CacheKey, Hit};
use super::forward::Call;
use super::texts::{conversation_key, signature};
use super::{CacheStatus, Failure, Live, Pipeline, Reply, ReplyBody, RequestCtx, Routing, Turn};
use crate::cache::CachedAnswer;
use crate::canonical::{Block, Reply as Answer, StopReason, Usage};
use crate::ledger::DecisionRow;
use crate::upstream::{CallInfo, ForwardBody, StreamOutcome};

/// What the ledger needs to know about how a request ended.
struct Outcome<'a> {
    cache: CacheStatus,
    model: Option<&'a str>,
    usage: Usage,
    /// For a cache hit: the usage of the call it replaced.
    replaced: Option<(&'a str, Usage)>,
    call: Option<&'a CallInfo>,
    error: Option<String>,
    upstream_ms: i64,
}

impl Outcome<'_> {
    /// No model answered and nothing was spent.
    fn nothing(cache: CacheStatus) -> Self {
        Outcome {
            cache,
            model: None,
            usage: Usage::default(),
            replaced: None,
            call: None,
            error: None,
            upstream_ms: 0,
        }
    }
}

/// The request's facts the row needs once the turn is spent.
struct Facts {
    started: Instant,
    routing: Routing,
    conversation: Option<[u8; 16]>,
    opening: [u8; 32],
    routing_text: String,
    api: &'static str,
}

impl Facts {
    fn of(t: &Turn) -> Self {
        Facts {
            started: t.started,
            routing: t.routing.clone(),
            conversation: t.texts.conversation,
            opening: t.texts.opening,
            routing_text: t.texts.routing.clone(),
            api: t.req.protocol.name(),
        }
    }
}

/// Writes the decision row for a finished request.
fn account(p: &Pipeline, live: &Live, ctx: &RequestCtx, f: &Facts, o: Outcome) {
    let Some(ledger) = &p.ledger else { return };
    let cfg = &live.cfg;
    let routing = &f.routing;
    let d = routing.decision.as_ref();
    let top_model = live
        .head
        .labels()
        .last()
        .and_then(|t| cfg.router.tiers.get(t))
        .and_then(|m| m.first())
        .cloned();
    let (cost, saved, top_cost) = match (o.cache, o.replaced) {
        (CacheStatus::Hit { .. }, Some((m, u))) => (
            Some(0.0),
            ledger.cost(cfg, m, &u),
            top_model.as_deref().and_then(|t| ledger.cost(cfg, t, &u)),
        ),
        _ => (
            o.model.and_then(|m| ledger.cost(cfg, m, &o.usage)),
            None,
            top_model
                .as_deref()
                .and_then(|t| ledger.cost(cfg, t, &o.usage)),
        ),
    };
    let t = &routing.timings;
    ledger.record(DecisionRow {
        id: ctx.request_id.clone(),
        ts_ms: chrono::Utc::now().timestamp_millis(),
        endpoint: ctx.endpoint.clone(),
        tenant: ctx.tenant.clone(),
        api: f.api.to_string(),
        conversation: f.conversation.map(hex::encode),
        // What the head saw, so that a retrain learns from the same text.
        routed_text: ledger.log_text.then(|| f.routing_text.clone()),
        tier: d.map(|d| d.tier.clone()),
        probs: d.map(|d| d.probs_json().to_string()),
        confidence: d.map(|d| d.confidence as f64),
        chosen_model: routing.models.first().cloned(),
        actual_model: o.model.map(str::to_string),
        cache_status: o.cache.as_str().to_string(),
        cache_similarity: match o.cache {
            CacheStatus::Hit { similarity } => Some(similarity as f64),
            _ => None,
        },
        input_tokens: o.usage.prompt_tokens as i64,
        cached_tokens: o.usage.cached_tokens as i64,
        output_tokens: o.usage.completion_tokens as i64,
        cost_usd: cost,
        saved_usd: saved,
        top_tier_cost_usd: top_cost,
        queue_us: t.queue_us as i64,
        embed_us: (t.tokenize_us + t.embed_us + t.pool_us) as i64,
        head_us: t.head_us as i64,
        route_us: t.total_us as i64,
        upstream_ms: o.upstream_ms,
        total_ms: f.started.elapsed().as_millis() as i64,
        upstream_status: o.call.map(|c| c.upstream_status as i64),
        retries: o.call.map(|c| c.retries as i64).unwrap_or(0),
        fallback: o.call.is_some_and(|c| c.fallback_used),
        error: o.error,
        tokens_saved: routing
            .compression
            .as_ref()
            .map(|c| c.tokens_before.saturating_sub(c.tokens_after) as i64)
            .unwrap_or(0),
        summary_cost_usd: routing
            .compression
            .as_ref()
            .and_then(|c| c.summary_usage.as_ref())
            .and_then(|(m, u)| ledger.cost(cfg, m, u)),
        compression_saved_usd: match (&routing.compression, o.model) {
            (Some(c), Some(m)) => ledger.cost(
                cfg,
                m,
                &Usage {
                    prompt_tokens: c.tokens_before.saturating_sub(c.tokens_after) as u64,
                    ..Usage::default()
                },
            ),
            _ => None,
        },
    });
}

/// Remembers a first turn's tier under the key its next turn will carry: the
/// conversation's opening and this answer.
fn remember_first_turn(p: &Pipeline, f: &Facts, answer: &str) {
    if f.conversation.is_some() {
        return;
    }
    if let Some(d) = &f.routing.decision {
        p.sticky
            .raise(conversation_key(&f.opening, answer), d.tier_index);
    }
}

fn answer_text(blocks: &[Block]) -> Answer {
    Answer {
        id: String::new(),
        model: String::new(),
        blocks: blocks.to_vec(),
        stop: StopReason::EndTurn,
        stop_sequence: None,
        usage: Usage::default(),
        more_choices: 0,
    }
}

/// A cache hit, answered as the cached request was.
pub(super) fn hit(p: &Pipeline, live: &Live, ctx: &RequestCtx, t: Turn, h: Hit) -> Reply {
    let Hit { answer, similarity } = h;
    let f = Facts::of(&t);
    remember_first_turn(p, &f, &signature(&answer.content, std::iter::empty()));
    let original = Usage {
        prompt_tokens: answer.prompt_tokens,
        completion_tokens: answer.completion_tokens,
        cached_tokens: answer.cached_tokens,
        cache_write_tokens: 0,
    };
    account(
        p,
        live,
        ctx,
        &f,
        Outcome {
            model: Some(&answer.model),
            replaced: Some((&answer.model, original)),
            ..Outcome::nothing(CacheStatus::Hit { similarity })
        },
    );
    let mut reply = answer_text(&[Block::text(answer.content.clone())]);
    reply.id = ctx.request_id.clone();
    reply.model = answer.response_model.clone();
    Reply {
        routing: t.routing,
        call: None,
        cache: CacheStatus::Hit { similarity },
        model: answer.model,
        response_model: answer.response_model,
        body: ReplyBody::Replayed(reply),
        upstream_us: 0,
        request: t.req,
    }
}

/// A dry run: the routing decision as the answer.
pub(super) fn dry_run(p: &Pipeline, live: &Live, ctx: &RequestCtx, t: Turn) -> Reply {
    let f = Facts::of(&t);
    let text = dry_run_text(&t.routing);
    remember_first_turn(p, &f, &signature(&text, std::iter::empty()));
    account(p, live, ctx, &f, Outcome::nothing(t.cache));
    let model = t.routing.models.first().cloned().unwrap_or_default();
    let mut reply = answer_text(&[Block::text(text)]);
    reply.id = ctx.request_id.clone();
    reply.model = model.clone();
    Reply {
        routing: t.routing,
        call: None,
        cache: t.cache,
        response_model: model.clone(),
        model,
        body: ReplyBody::Replayed(reply),
        upstream_us: 0,
        request: t.req,
    }
}

fn dry_run_text(r: &Routing) -> String {
    match &r.decision {
        None => format!(
            "[triage dry run] model `{}` passed through unrouted.",
            r.models.first().map(String::as_str).unwrap_or("")
        ),
        Some(d) => {
            let probs: Vec<String> = d.probs.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
            let mut s = format!(
                "[triage dry run] tier {} (confidence {:.3}; {}) -> model {}",
                d.tier,
                d.confidence,
                probs.join(", "),
                r.models.first().map(String::as_str).unwrap_or("-")
            );
            if r.models.len() > 1 {
                s.push_str(&format!(" (fallbacks: {})", r.models[1..].join(", ")));
            }
            s.push_str(&format!("; strength {:.3}", d.strength));
            if d.raised {
                let why = if d.by_quality {
                    "router.quality_target"
                } else {
                    "the confidence policy"
                };
                s.push_str(&format!("; raised from {} by {why}", d.head_tier));
            }
            if r.sticky {
                s.push_str("; raised to the conversation's earlier tier");
            }
            s.push('.');
            s
        }
    }
}

/// Only complete, plain answers are cached: never errors, truncations, tool calls
/// or several choices.
fn cacheable(stop: Option<&StopReason>, tool_calls: bool, more_choices: usize, text: &str) -> bool {
    matches!(stop, Some(StopReason::EndTurn | StopReason::StopSequence))
        && !tool_calls
        && more_choices == 0
        && !text.is_empty()
}

fn cached(text: String, model: &str, response_model: String, u: Usage) -> CachedAnswer {
    CachedAnswer {
        content: text,
        model: model.to_string(),
        response_model,
        finish_reason: "stop".into(),
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cached_tokens: u.cached_tokens,
    }
}

/// The forwarded call: recorded now (JSON) or when the stream ends.
pub(super) fn forwarded(
    p: &Arc<Pipeline>,
    live: &Arc<Live>,
    ctx: &RequestCtx,
    t: Turn,
    call: Call,
) -> Result<Reply, Failure> {
    let f = Facts::of(&t);
    let upstream_ms = || call.started.elapsed().as_millis() as i64;
    let fwd = match call.result {
        Ok(fwd) => fwd,
        Err(e) => {
            account(
                p,
                live,
                ctx,
                &f,
                Outcome {
                    error: Some(e.to_string()),
                    upstream_ms: upstream_ms(),
                    ..Outcome::nothing(t.cache)
                },
            );
            return Err(Failure {
                error: e.into(),
                routing: Some(Box::new(t.routing)),
                cache: t.cache,
            });
        }
    };
    let model = fwd.info.model.clone();
    let Turn {
        req,
        routing,
        cache_key,
        cache: status,
        texts,
        ..
    } = t;
    let (body, response_model) = match fwd.body {
        ForwardBody::Json { reply, raw } => {
            let text = reply.text();
            remember_first_turn(
                p,
                &f,
                &signature(
                    &text,
                    reply.blocks.iter().filter_map(|b| match b {
                        Block::ToolUse { name, input, .. } => Some((name.as_str(), input)),
                        _ => None,
                    }),
                ),
            );
            account(
                p,
                live,
                ctx,
                &f,
                Outcome {
                    cache: status,
                    model: Some(&model),
                    usage: reply.usage,
                    replaced: None,
                    call: Some(&fwd.info),
                    error: None,
                    upstream_ms: upstream_ms(),
                },
            );
            let response_model = if reply.model.is_empty() {
                model.clone()
            } else {
                reply.model.clone()
            };
            if let Some(k) = cache_key {
                if cacheable(
                    Some(&reply.stop),
                    reply.has_tool_calls(),
                    reply.more_choices,
                    &text,
                ) {
                    cache::store(
                        p,
                        k,
                        &ctx.tenant,
                        &texts.routed,
                        cached(text, &model, response_model.clone(), reply.usage),
                    );
                }
            }
            (ReplyBody::Answer { answer: reply, raw }, response_model)
        }
        ForwardBody::Stream { rx, done } => {
            let (p, live, ctx, m, info) = (
                p.clone(),
                live.clone(),
                ctx.clone(),
                model.clone(),
                fwd.info.clone(),
            );
            let routed = texts.routed.clone();
            tokio::spawn(async move {
                let Ok(outcome) = done.await else { return };
                streamed(
                    &p,
                    &live,
                    &ctx,
                    &f,
                    &m,
                    &info,
                    cache_key,
                    &routed,
                    outcome,
                    call.started,
                );
            });
            (ReplyBody::Stream(rx), model.clone())
        }
    };
    Ok(Reply {
        routing,
        call: Some(fwd.info),
        cache: status,
        model,
        response_model,
        body,
        upstream_us: call.upstream_us,
        request: req,
    })
}

/// A stream has ended: its row, its first turn, and (when complete) its answer.
#[allow(clippy::too_many_arguments)]
fn streamed(
    p: &Pipeline,
    live: &Live,
    ctx: &RequestCtx,
    f: &Facts,
    model: &str,
    info: &CallInfo,
    key: Option<CacheKey>,
    routed: &str,
    outcome: StreamOutcome,
    started: Instant,
) {
    tracing::debug!(request_id = %ctx.request_id, complete = outcome.complete,
        client_gone = outcome.client_gone, "stream finished");
    let error = if outcome.client_gone {
        Some("client went away mid-stream".to_string())
    } else if outcome.complete {
        None
    } else {
        outcome.error.clone()
    };
    let usage = outcome.usage.unwrap_or_default();
    account(
        p,
        live,
        ctx,
        f,
        Outcome {
            cache: if key.is_some() {
                CacheStatus::Miss
            } else {
                CacheStatus::Bypass
            },
            model: Some(model),
            usage,
            replaced: None,
            call: Some(info),
            error: error.clone(),
            upstream_ms: started.elapsed().as_millis() as i64,
        },
    );
    if !outcome.complete || error.is_some() {
        return;
    }
    let inputs: Vec<(String, serde_json::Value)> = outcome
        .tool_uses
        .iter()
        .map(|(name, json)| {
            (
                name.clone(),
                crate::wire::openai_chat::arguments_value(json),
            )
        })
        .collect();
    remember_first_turn(
        p,
        f,
        &signature(
            &outcome.content,
            inputs.iter().map(|(n, v)| (n.as_str(), v)),
        ),
    );
    if let (Some(k), true) = (
        key,
        cacheable(
            outcome.stop.as_ref(),
            outcome.tool_calls,
            0,
            &outcome.content,
        ),
    ) {
        let response_model = outcome
            .response_model
            .clone()
            .unwrap_or_else(|| model.to_string());
        cache::store(
            p,
            k,
            &ctx.tenant,
            routed,
            cached(outcome.content, model, response_model, usage),
        );
    }
}
