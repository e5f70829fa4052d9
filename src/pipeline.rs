//! One request, start to end: parse and validate, resolve the model (route or pass
//! through), embed the routed text on the worker pool, classify, apply the policy
//! (confidence, sticky conversations), forward upstream with retries and fallbacks,
//! and hand the reply to the server with the decision attached.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::cache::{CachedAnswer, Lookup, SemanticCache};
use crate::classify::{decide, Decision, TierHead};
use crate::config::Config;
use crate::embed::{EmbedPool, PoolError};
use crate::ledger::{DecisionRow, Ledger};
use crate::upstream::{sse, CallInfo, ForwardBody, ForwardError, Upstreams, Usage};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
    },
    #[error("The model `{model}` does not exist. Valid models: {valid}")]
    UnknownModel { model: String, valid: String },
    #[error("The model `{model}` cannot be requested directly here; use one of: {valid}")]
    ModelNotAllowed { model: String, valid: String },
    #[error("triage is busy: {0}")]
    Busy(String),
    #[error("The {budget} is spent for this window; requests are refused until it ends (in {retry_after_secs} s).")]
    BudgetExceeded {
        budget: String,
        retry_after_secs: i64,
    },
    #[error(transparent)]
    Upstream(#[from] ForwardError),
    #[error("internal error: {0}")]
    Internal(String),
}

fn bad(message: impl Into<String>, param: &str) -> PipelineError {
    PipelineError::BadRequest {
        message: message.into(),
        param: Some(param.to_string()),
    }
}

/// Characters of the last user message that routing and the cache look at. The
/// embedding uses its first 256 word pieces (a few thousand characters); the rest
/// only costs time to carry.
pub const ROUTED_TEXT_MAX_CHARS: usize = 8192;

const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// A validated chat request. The raw JSON is forwarded untouched but for `model`.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub raw: Value,
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    /// Text the router classifies: the last user message, at most
    /// [`ROUTED_TEXT_MAX_CHARS`] of it.
    pub routed_text: String,
    /// When the message was longer than that: a hash of all of it, part of the cache
    /// scope, so two long messages that share their start never share an answer.
    pub routed_text_cut: Option<[u8; 32]>,
    /// What the head classifies: the routed text and, in a conversation, the
    /// previous user turn (`classify::routed_text`), so "now make it async" is read
    /// with the request it follows. The cache goes by `routed_text` alone.
    pub routing_text: String,
    /// Identifies the conversation when it already has an assistant turn.
    pub conversation: Option<[u8; 16]>,
    /// Key a first turn's answer will be known by (system + first user message).
    pub opening: [u8; 32],
}

/// Text of a message's content: a string, or the text parts of an array.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn opening_hash(messages: &[Value]) -> [u8; 32] {
    let mut h = Sha256::new();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if matches!(role, "system" | "developer") {
            h.update(role.as_bytes());
            h.update([0]);
            h.update(content_text(m.get("content").unwrap_or(&Value::Null)).as_bytes());
            h.update([0]);
        }
    }
    if let Some(u) = messages
        .iter()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    {
        h.update(b"user\0");
        h.update(content_text(u.get("content").unwrap_or(&Value::Null)).as_bytes());
    }
    h.finalize().into()
}

/// The conversation key: its opening plus the first answer, so two users who both
/// open with "hi" are told apart by what they were answered.
pub fn conversation_key(opening: &[u8; 32], first_answer: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(opening);
    h.update(first_answer.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

fn header_key(value: &str) -> [u8; 16] {
    let d = Sha256::digest(format!("header\0{value}").as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

impl ChatRequest {
    /// Validates an OpenAI chat request; every error names the offending field.
    pub fn parse(raw: Value, conversation_header: Option<&str>) -> Result<Self, PipelineError> {
        let obj = raw
            .as_object()
            .ok_or_else(|| bad("the request body must be a JSON object", "body"))?;
        let model = match obj.get("model") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) | None => return Err(bad("`model` is required", "model")),
            Some(_) => return Err(bad("`model` must be a string", "model")),
        };
        let messages = match obj.get("messages") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            Some(Value::Array(_)) => return Err(bad("`messages` must not be empty", "messages")),
            Some(_) => return Err(bad("`messages` must be an array", "messages")),
            None => return Err(bad("`messages` is required", "messages")),
        };
        for (i, m) in messages.iter().enumerate() {
            let p = format!("messages[{i}]");
            let m = m
                .as_object()
                .ok_or_else(|| bad(format!("`{p}` must be an object"), &p))?;
            let role = match m.get("role") {
                Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.as_str(),
                Some(Value::String(r)) => {
                    return Err(bad(
                        format!("`{p}.role` `{r}` is not one of {}", ROLES.join(", ")),
                        &format!("{p}.role"),
                    ))
                }
                _ => {
                    return Err(bad(
                        format!("`{p}.role` is required and must be a string"),
                        &format!("{p}.role"),
                    ))
                }
            };
            match m.get("content") {
                Some(Value::String(_)) => {}
                Some(Value::Array(parts)) => {
                    for (j, part) in parts.iter().enumerate() {
                        let pp = format!("{p}.content[{j}]");
                        let ty = part.get("type").and_then(Value::as_str).ok_or_else(|| {
                            bad(
                                format!("`{pp}` must be an object with a string `type`"),
                                &pp,
                            )
                        })?;
                        if ty == "text" && !part.get("text").is_some_and(Value::is_string) {
                            return Err(bad(format!("`{pp}.text` must be a string"), &pp));
                        }
                    }
                }
                None | Some(Value::Null)
                    if role == "assistant"
                        && (m.contains_key("tool_calls") || m.contains_key("function_call")) => {}
                None | Some(Value::Null) => {
                    return Err(bad(
                        format!("`{p}.content` is required for role `{role}`"),
                        &format!("{p}.content"),
                    ))
                }
                Some(_) => {
                    return Err(bad(
                        format!("`{p}.content` must be a string or an array of content parts"),
                        &format!("{p}.content"),
                    ))
                }
            }
            if role == "tool" && !m.get("tool_call_id").is_some_and(Value::is_string) {
                return Err(bad(
                    format!("`{p}.tool_call_id` is required for role `tool`"),
                    &format!("{p}.tool_call_id"),
                ));
            }
        }
        let stream = match obj.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("`stream` must be a boolean", "stream")),
        };
        if let Some(n) = obj.get("n") {
            if !n.is_null() && n.as_u64().is_none_or(|n| n == 0 || n > 128) {
                return Err(bad("`n` must be an integer between 1 and 128", "n"));
            }
        }
        let include_usage = obj
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .or_else(|| messages.last());
        let full_text = last_user
            .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
            .unwrap_or_default();
        let routed_text = crate::embed::prefix_chars(&full_text, ROUTED_TEXT_MAX_CHARS);
        let routed_text_cut = (routed_text.len() < full_text.len())
            .then(|| Sha256::digest(full_text.as_bytes()).into());
        let routed_text = routed_text.to_string();
        let previous_user = messages
            .iter()
            .rev()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .nth(1)
            .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)));
        let routing_text = crate::classify::routed_text(&routed_text, previous_user.as_deref());
        let opening = opening_hash(messages);
        let conversation = match conversation_header {
            Some(h) => Some(header_key(h)),
            None => messages
                .iter()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
                .map(|a| {
                    conversation_key(
                        &opening,
                        &content_text(a.get("content").unwrap_or(&Value::Null)),
                    )
                }),
        };
        Ok(Self {
            raw,
            model,
            stream,
            include_usage,
            routed_text,
            routed_text_cut,
            routing_text,
            conversation,
            opening,
        })
    }
}

/// Remembers the highest tier each conversation has needed (bounded LRU with TTL).
pub struct StickyTiers {
    map: Mutex<lru::LruCache<[u8; 16], (usize, Instant)>>,
    ttl: Duration,
}

impl StickyTiers {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            map: Mutex::new(lru::LruCache::new(cap)),
            ttl,
        }
    }

    pub fn get(&self, key: &[u8; 16]) -> Option<usize> {
        let mut map = self.map.lock();
        match map.get(key) {
            Some((tier, at)) if at.elapsed() < self.ttl => Some(*tier),
            Some(_) => {
                map.pop(key);
                None
            }
            None => None,
        }
    }

    /// Records `tier` unless the conversation already needed a higher one.
    pub fn raise(&self, key: [u8; 16], tier: usize) {
        let mut map = self.map.lock();
        let prev = map
            .get(&key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(t, _)| *t)
            .unwrap_or(0);
        map.put(key, (prev.max(tier), Instant::now()));
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Microseconds per routing stage.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RouteTimings {
    pub queue_us: u64,
    pub tokenize_us: u64,
    pub embed_us: u64,
    pub pool_us: u64,
    pub head_us: u64,
    pub total_us: u64,
    pub batch_size: usize,
}

/// The routing outcome of a request.
#[derive(Debug, Clone, Serialize)]
pub struct Routing {
    /// None for a passed-through model name.
    pub decision: Option<Decision>,
    /// Tier raised because the conversation needed it before.
    pub sticky: bool,
    /// Ordered models to try.
    pub models: Vec<String>,
    pub timings: RouteTimings,
    /// The routed text's sentence vector (what the cache indexes).
    #[serde(skip)]
    pub vector: Option<Vec<f32>>,
    /// Sent to the cheapest tier because a budget with `downgrade` is spent.
    pub downgraded: bool,
    /// A `downgrade` budget is spent but the request named its model explicitly.
    pub budget_spent: bool,
    /// What prompt compression did to the forwarded request.
    #[serde(skip)]
    pub compression: Option<crate::compress::Compression>,
}

impl Routing {
    pub fn tier(&self) -> Option<&str> {
        self.decision.as_ref().map(|d| d.tier.as_str())
    }
}

/// What the server sends back.
pub enum ReplyBody {
    Json(Bytes),
    Stream(mpsc::Receiver<Bytes>),
}

/// What the cache did for a request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum CacheStatus {
    Hit { similarity: f32 },
    Miss,
    Bypass,
}

impl CacheStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheStatus::Hit { .. } => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

pub struct Reply {
    pub routing: Routing,
    pub call: Option<CallInfo>,
    pub cache: CacheStatus,
    /// The model that answered (or answered the cached request).
    pub model: String,
    pub body: ReplyBody,
    /// Time waiting for the upstream (to the whole body, or a stream's first
    /// event), in microseconds; 0 when none was called.
    pub upstream_us: u64,
}

/// Identity of the caller, from the server.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    /// The client key's name (or `default`).
    pub tenant: String,
    /// What the request is accounted under: `x-triage-endpoint`, else the tenant.
    pub endpoint: String,
    pub conversation_header: Option<String>,
    /// `Cache-Control: no-cache` or `x-triage-cache: off`.
    pub cache_off: bool,
    /// `x-triage-compress: off`.
    pub compress_off: bool,
}

/// What a reload swaps as one: the config's routing table (and upstreams) and the
/// head. Each request works on the snapshot it started with.
pub struct Live {
    pub cfg: Arc<Config>,
    pub head: Arc<TierHead>,
    pub upstreams: Upstreams,
}

pub struct Pipeline {
    live: arc_swap::ArcSwap<Live>,
    pub pool: EmbedPool,
    pub sticky: StickyTiers,
    pub dry_run: bool,
    pub cache: Option<Arc<SemanticCache>>,
    pub ledger: Option<Arc<Ledger>>,
    pub compressor: Option<Arc<crate::compress::Compressor>>,
}

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

/// Where a cacheable request's answer lives.
struct CacheKey {
    scope: [u8; 16],
    threshold: f32,
    vector: Vec<f32>,
}

impl Pipeline {
    pub fn new(
        cfg: Arc<Config>,
        pool: EmbedPool,
        head: Arc<TierHead>,
        dry_run: bool,
    ) -> Result<Self, String> {
        let upstreams = Upstreams::new(&cfg, !dry_run)?;
        let cfg_compress = cfg.compress.clone();
        let sticky = StickyTiers::new(
            cfg.server.sticky_conversations,
            Duration::from_secs(cfg.server.sticky_ttl_secs),
        );
        Ok(Self {
            live: arc_swap::ArcSwap::from_pointee(Live {
                cfg,
                head,
                upstreams,
            }),
            pool,
            sticky,
            dry_run,
            cache: None,
            ledger: None,
            compressor: Some(crate::compress::Compressor::new(cfg_compress)),
        })
    }

    /// The current config and head.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Swaps in a new config and head at once. Requests in flight finish on the old
    /// ones. Nothing changes when the new pair does not fit together.
    pub fn reload(&self, cfg: Config, head: TierHead) -> Result<(), String> {
        crate::engine::check_routing_table(&cfg.router, &head).map_err(|e| e.to_string())?;
        let emb = self.pool.embedder();
        head.check_embedder(
            std::path::Path::new("(reloaded head)"),
            emb.model_id(),
            emb.weights_sha256(),
            emb.features_dim(),
        )
        .map_err(|e| e.to_string())?;
        let upstreams = Upstreams::new(&cfg, !self.dry_run)?;
        if let Some(l) = &self.ledger {
            l.reload(&cfg);
        }
        self.live.store(Arc::new(Live {
            cfg: Arc::new(cfg),
            head: Arc::new(head),
            upstreams,
        }));
        Ok(())
    }

    /// Adds the ledger (costs, decision log, metrics).
    pub fn with_ledger(mut self, ledger: Option<Arc<Ledger>>) -> Self {
        self.ledger = ledger;
        self
    }

    /// Enforces spent budgets: refuse, or send everything to the cheapest tier.
    fn apply_budget(
        &self,
        live: &Live,
        ctx: &RequestCtx,
        routing: &mut Routing,
    ) -> Result<(), PipelineError> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        match ledger.budgets().verdict(&ctx.endpoint) {
            crate::ledger::budget::Verdict::Allow => Ok(()),
            crate::ledger::budget::Verdict::Reject {
                budget,
                retry_after_secs,
            } => Err(PipelineError::BudgetExceeded {
                budget,
                retry_after_secs,
            }),
            crate::ledger::budget::Verdict::Downgrade { budget } => {
                // An explicitly requested model is the client's choice: `downgrade`
                // leaves it alone and says so (`x-triage-budget: spent`); only
                // `reject` refuses it.
                if routing.decision.is_none() {
                    routing.budget_spent = true;
                    return Ok(());
                }
                let Some(cheapest) = live.head.labels().first() else {
                    return Ok(());
                };
                let models = live
                    .cfg
                    .router
                    .tiers
                    .get(cheapest)
                    .cloned()
                    .unwrap_or_default();
                if models.is_empty() {
                    return Ok(());
                }
                tracing::info!(request_id = %ctx.request_id, %budget, "budget spent: downgraded to the cheapest tier");
                if let Some(d) = routing.decision.as_mut() {
                    d.tier = cheapest.clone();
                    d.tier_index = 0;
                    d.models = models.clone();
                }
                routing.models = models;
                routing.downgraded = true;
                Ok(())
            }
        }
    }

    /// Writes the decision row for a finished request.
    fn account(
        &self,
        live: &Live,
        ctx: &RequestCtx,
        req: &ChatRequest,
        routing: &Routing,
        started: Instant,
        o: Outcome,
    ) {
        let Some(ledger) = &self.ledger else { return };
        let cfg = &live.cfg;
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
            conversation: req.conversation.map(hex::encode),
            // What the head saw, so that a retrain learns from the same text.
            routed_text: ledger.log_text.then(|| req.routing_text.clone()),
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
            total_ms: started.elapsed().as_millis() as i64,
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

    /// Adds the semantic cache.
    /// Uses this cache; its hit verification pairs reworded words by the routing
    /// model's word vectors, as `triage cache explain` does.
    pub fn with_cache(mut self, cache: Option<Arc<SemanticCache>>) -> Self {
        if let Some(c) = &cache {
            c.set_word_vectors(Arc::new(crate::cache::ModelWords::new(
                self.pool.embedder().clone(),
            )));
        }
        self.cache = cache;
        self
    }

    /// Whether this request may use the cache, and under which scope.
    fn cache_key(
        &self,
        ctx: &RequestCtx,
        req: &ChatRequest,
        routing: &Routing,
    ) -> Option<CacheKey> {
        let cache = self.cache.as_ref()?;
        let cfg = cache.config();
        let d = routing.decision.as_ref()?;
        let vector = routing.vector.clone()?;
        let raw = req.raw.as_object()?;
        let temperature = raw
            .get("temperature")
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        let n = raw.get("n").and_then(Value::as_u64).unwrap_or(1);
        let messages = raw.get("messages")?.as_array()?;
        let last_is_user = messages
            .last()
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
            == Some("user");
        if ctx.cache_off
            || self.dry_run
            || temperature > cfg.max_temperature as f64
            || n > 1
            || !last_is_user
            || cfg.uncached_tiers.contains(&d.tier)
        {
            return None;
        }
        // Everything but the routed message and transport options shapes the answer.
        let mut shape = raw.clone();
        for k in [
            "stream",
            "stream_options",
            "user",
            "metadata",
            "model",
            "store",
        ] {
            shape.remove(k);
        }
        shape.insert(
            "messages".into(),
            Value::Array(messages[..messages.len() - 1].to_vec()),
        );
        // The authenticated tenant first: no header can reach another tenant's entries.
        let mut h = Sha256::new();
        h.update(ctx.tenant.as_bytes());
        h.update([0]);
        h.update(ctx.endpoint.as_bytes());
        h.update([0]);
        h.update(
            routing
                .models
                .first()
                .map(String::as_str)
                .unwrap_or("")
                .as_bytes(),
        );
        h.update([0]);
        h.update(Value::Object(shape).to_string().as_bytes());
        if let Some(cut) = &req.routed_text_cut {
            h.update(b"\0cut\0");
            h.update(cut);
        }
        let mut scope = [0u8; 16];
        scope.copy_from_slice(&h.finalize()[..16]);
        Some(CacheKey {
            scope,
            threshold: cfg.threshold(Some(&d.tier)),
            vector,
        })
    }

    /// Stores a complete answer, off the request path.
    fn cache_store(&self, key: CacheKey, tenant: &str, text: &str, answer: CachedAnswer) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        let (tenant, text) = (tenant.to_string(), text.to_string());
        tokio::task::spawn_blocking(move || {
            cache.insert(key.scope, &tenant, &text, key.vector, answer)
        });
    }

    /// Models a client may name: aliases first, then configured models.
    pub fn model_names(&self, live: &Live) -> Vec<String> {
        let mut names = live.cfg.router.aliases.clone();
        for m in self.configured_models(live) {
            if !names.contains(&m) {
                names.push(m);
            }
        }
        names
    }

    /// [[models]], or in a config without upstreams, the routing table's names.
    fn configured_models(&self, live: &Live) -> Vec<String> {
        if !live.cfg.models.is_empty() {
            return live.cfg.models.iter().map(|m| m.name.clone()).collect();
        }
        let mut v: Vec<String> = Vec::new();
        for list in live.cfg.router.tiers.values() {
            for m in list {
                if !v.contains(m) {
                    v.push(m.clone());
                }
            }
        }
        v
    }

    /// Embeds and classifies the routed text; applies the confidence policy and the
    /// conversation's sticky tier.
    pub async fn route(&self, live: &Live, req: &ChatRequest) -> Result<Routing, PipelineError> {
        if !live.cfg.router.aliases.contains(&req.model) {
            let configured = self.configured_models(live);
            if !configured.contains(&req.model) {
                return Err(PipelineError::UnknownModel {
                    model: req.model.clone(),
                    valid: self.model_names(live).join(", "),
                });
            }
            if !live.cfg.router.allow_passthrough {
                return Err(PipelineError::ModelNotAllowed {
                    model: req.model.clone(),
                    valid: live.cfg.router.aliases.join(", "),
                });
            }
            return Ok(Routing {
                decision: None,
                sticky: false,
                models: vec![req.model.clone()],
                timings: RouteTimings::default(),
                vector: None,
                downgraded: false,
                budget_spent: false,
                compression: None,
            });
        }
        let t0 = Instant::now();
        let embed = |text: String| async move {
            self.pool.embed(text).await.map_err(|e| match e {
                PoolError::Busy(_) => PipelineError::Busy(e.to_string()),
                other => PipelineError::Internal(other.to_string()),
            })
        };
        // A follow-up is classified with the turn before it, and cached by its own
        // text: both go to the pool together and share a batch.
        let (embedded, own) = if req.routing_text == req.routed_text {
            (embed(req.routed_text.clone()).await?, None)
        } else {
            let (with_context, own) = tokio::join!(
                embed(req.routing_text.clone()),
                embed(req.routed_text.clone())
            );
            (with_context?, Some(own?))
        };
        let th = Instant::now();
        let pred = live.head.predict(&embedded.embedding.features);
        let mut decision = decide(&live.head, &pred, &live.cfg.router);
        let head_us = th.elapsed().as_micros() as u64;
        let mut sticky = false;
        if let Some(key) = &req.conversation {
            if let Some(prev) = self.sticky.get(key) {
                if prev > decision.tier_index {
                    sticky = true;
                    decision.tier_index = prev;
                    decision.tier = live.head.labels()[prev].clone();
                    decision.models = live
                        .cfg
                        .router
                        .tiers
                        .get(&decision.tier)
                        .cloned()
                        .unwrap_or_default();
                }
            }
            self.sticky.raise(*key, decision.tier_index);
        }
        let t = embedded.timings;
        let (queue_us, batch_size) = (embedded.queue_us, embedded.batch_size);
        Ok(Routing {
            compression: None,
            downgraded: false,
            budget_spent: false,
            vector: Some(own.unwrap_or(embedded).embedding.vector),
            models: decision.models.clone(),
            decision: Some(decision),
            sticky,
            timings: RouteTimings {
                queue_us,
                tokenize_us: t.tokenize_us,
                embed_us: t.forward_us,
                pool_us: t.pool_us,
                head_us,
                total_us: t0.elapsed().as_micros() as u64,
                batch_size,
            },
        })
    }

    /// Remembers a first turn's tier under the key its next turn will carry.
    fn remember_first_turn(&self, req: &ChatRequest, routing: &Routing, answer: &str) {
        if req.conversation.is_some() {
            return;
        }
        if let Some(d) = &routing.decision {
            self.sticky
                .raise(conversation_key(&req.opening, answer), d.tier_index);
        }
    }

    /// The whole chat completion.
    pub async fn chat(
        self: &Arc<Self>,
        ctx: &RequestCtx,
        raw: Value,
    ) -> Result<Reply, PipelineError> {
        let started = Instant::now();
        let live = self.live();
        let req = ChatRequest::parse(raw, ctx.conversation_header.as_deref())?;
        let mut routing = self.route(&live, &req).await?;
        // A spent `reject` budget still lets cache hits through: they cost nothing.
        let refused = self.apply_budget(&live, ctx, &mut routing).err();
        let key = self.cache_key(ctx, &req, &routing);
        let mut cache_status = CacheStatus::Bypass;
        if let (Some(k), Some(cache)) = (&key, &self.cache) {
            match cache.lookup(&k.scope, &req.routed_text, &k.vector, k.threshold) {
                Lookup::Hit {
                    answer, similarity, ..
                } => {
                    self.remember_first_turn(&req, &routing, &answer.content);
                    let original = Usage {
                        prompt_tokens: answer.prompt_tokens,
                        completion_tokens: answer.completion_tokens,
                        cached_tokens: answer.cached_tokens,
                    };
                    self.account(
                        &live,
                        ctx,
                        &req,
                        &routing,
                        started,
                        Outcome {
                            cache: CacheStatus::Hit { similarity },
                            model: Some(&answer.model),
                            usage: Usage::default(),
                            replaced: Some((&answer.model, original)),
                            call: None,
                            error: None,
                            upstream_ms: 0,
                        },
                    );
                    // The body names the model as the replayed answer did.
                    let body = if req.stream {
                        ReplyBody::Stream(replay_stream(
                            &ctx.request_id,
                            &answer.response_model,
                            &answer.content,
                            req.include_usage,
                        ))
                    } else {
                        ReplyBody::Json(Bytes::from(
                            completion_json(
                                &ctx.request_id,
                                &answer.response_model,
                                &answer.content,
                            )
                            .to_string(),
                        ))
                    };
                    return Ok(Reply {
                        routing,
                        call: None,
                        cache: CacheStatus::Hit { similarity },
                        model: answer.model,
                        body,
                        upstream_us: 0,
                    });
                }
                Lookup::Miss { .. } => cache_status = CacheStatus::Miss,
            }
        } else if let Some(cache) = &self.cache {
            cache.note_bypass();
        }
        if let Some(e) = refused {
            return Err(e);
        }
        if self.dry_run {
            let text = dry_run_text(&routing);
            self.remember_first_turn(&req, &routing, &text);
            let model = routing.models.first().cloned().unwrap_or_default();
            let body = if req.stream {
                ReplyBody::Stream(replay_stream(
                    &ctx.request_id,
                    &model,
                    &text,
                    req.include_usage,
                ))
            } else {
                ReplyBody::Json(Bytes::from(
                    completion_json(&ctx.request_id, &model, &text).to_string(),
                ))
            };
            self.account(
                &live,
                ctx,
                &req,
                &routing,
                started,
                Outcome::nothing(cache_status),
            );
            return Ok(Reply {
                model,
                routing,
                call: None,
                cache: cache_status,
                body,
                upstream_us: 0,
            });
        }
        // Long histories: last turns plus a summary of the older ones.
        let mut compressed_body = None;
        if let Some(c) = &self.compressor {
            if !ctx.compress_off && c.active(&ctx.endpoint) {
                let mut body = req.raw.clone();
                let model = routing.models.first().cloned().unwrap_or_default();
                let tokenizer = live.cfg.upstream_model_id(&model).to_string();
                let result = c
                    .compress(&mut body, &tokenizer, &ctx.endpoint, live.clone())
                    .await;
                if result.mode != "none" {
                    tracing::info!(request_id = %ctx.request_id, mode = result.mode,
                        before = result.tokens_before, after = result.tokens_after, "history compressed");
                    compressed_body = Some(body);
                    routing.compression = Some(result);
                }
            }
        }
        let deadline =
            Instant::now() + Duration::from_secs_f64(live.cfg.server.request_deadline_secs);
        let upstream_started = Instant::now();
        let forwarded = live
            .upstreams
            .forward(
                &routing.models,
                compressed_body.as_ref().unwrap_or(&req.raw),
                req.stream,
                req.include_usage,
                deadline,
            )
            .await;
        let upstream_us = upstream_started.elapsed().as_micros() as u64;
        let fwd = match forwarded {
            Ok(f) => f,
            Err(e) => {
                self.account(
                    &live,
                    ctx,
                    &req,
                    &routing,
                    started,
                    Outcome {
                        error: Some(e.to_string()),
                        upstream_ms: upstream_started.elapsed().as_millis() as i64,
                        ..Outcome::nothing(cache_status)
                    },
                );
                return Err(e.into());
            }
        };
        let model = fwd.info.model.clone();
        let body = match fwd.body {
            ForwardBody::Json { body, usage } => {
                let parsed = serde_json::from_slice::<Value>(&body).ok();
                let choice = parsed.as_ref().and_then(|v| v.pointer("/choices/0"));
                let content = choice
                    .and_then(|c| c.pointer("/message/content"))
                    .map(content_text)
                    .unwrap_or_default();
                self.remember_first_turn(&req, &routing, &content);
                let finish = choice
                    .and_then(|c| c.get("finish_reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let tool_calls = choice.is_some_and(|c| {
                    c.pointer("/message/tool_calls")
                        .is_some_and(|t| !t.is_null())
                });
                let single = parsed
                    .as_ref()
                    .and_then(|v| v.get("choices"))
                    .and_then(Value::as_array)
                    .is_some_and(|c| c.len() == 1);
                self.account(
                    &live,
                    ctx,
                    &req,
                    &routing,
                    started,
                    Outcome {
                        cache: cache_status,
                        model: Some(&model),
                        usage: usage.unwrap_or_default(),
                        replaced: None,
                        call: Some(&fwd.info),
                        error: None,
                        upstream_ms: upstream_started.elapsed().as_millis() as i64,
                    },
                );
                if let Some(k) = key {
                    // Only complete, plain answers: never errors, truncations or tool calls.
                    if finish == "stop" && !tool_calls && single && !content.is_empty() {
                        let u = usage.unwrap_or_default();
                        self.cache_store(
                            k,
                            &ctx.tenant,
                            &req.routed_text,
                            CachedAnswer {
                                content,
                                response_model: parsed
                                    .as_ref()
                                    .and_then(|v| v.get("model"))
                                    .and_then(Value::as_str)
                                    .unwrap_or(&model)
                                    .to_string(),
                                model: model.clone(),
                                finish_reason: finish.to_string(),
                                prompt_tokens: u.prompt_tokens,
                                completion_tokens: u.completion_tokens,
                                cached_tokens: u.cached_tokens,
                            },
                        );
                    }
                }
                ReplyBody::Json(body)
            }
            ForwardBody::Stream { rx, done } => {
                let this = self.clone();
                let req2 = req.clone();
                let routing2 = routing.clone();
                let request_id = ctx.request_id.clone();
                let tenant = ctx.tenant.clone();
                let model2 = model.clone();
                let ctx2 = ctx.clone();
                let live2 = live.clone();
                let info = fwd.info.clone();
                tokio::spawn(async move {
                    let Ok(outcome) = done.await else { return };
                    tracing::debug!(request_id = %request_id, complete = outcome.complete,
                        client_gone = outcome.client_gone, "stream finished");
                    let error = if outcome.client_gone {
                        Some("client went away mid-stream".to_string())
                    } else {
                        outcome.error.clone()
                    };
                    this.account(
                        &live2,
                        &ctx2,
                        &req2,
                        &routing2,
                        started,
                        Outcome {
                            cache: cache_status,
                            model: Some(&model2),
                            usage: outcome.usage.unwrap_or_default(),
                            replaced: None,
                            call: Some(&info),
                            error,
                            upstream_ms: upstream_started.elapsed().as_millis() as i64,
                        },
                    );
                    if !outcome.complete {
                        return;
                    }
                    this.remember_first_turn(&req2, &routing2, &outcome.content);
                    let cacheable = outcome.finish_reason.as_deref() == Some("stop")
                        && !outcome.client_gone
                        && outcome.error.is_none()
                        && !outcome.content.is_empty();
                    if let (Some(k), true) = (key, cacheable) {
                        let u = outcome.usage.unwrap_or_default();
                        this.cache_store(
                            k,
                            &tenant,
                            &req2.routed_text,
                            CachedAnswer {
                                content: outcome.content,
                                response_model: outcome
                                    .response_model
                                    .unwrap_or_else(|| model2.clone()),
                                model: model2,
                                finish_reason: "stop".into(),
                                prompt_tokens: u.prompt_tokens,
                                completion_tokens: u.completion_tokens,
                                cached_tokens: u.cached_tokens,
                            },
                        );
                    }
                });
                ReplyBody::Stream(rx)
            }
        };
        Ok(Reply {
            routing,
            call: Some(fwd.info),
            cache: cache_status,
            model,
            body,
            upstream_us,
        })
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A chat completion carrying `text` (dry runs and cache hits; no tokens spent).
fn completion_json(id: &str, model: &str, text: &str) -> Value {
    json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": null}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    })
}

/// The same as an SSE stream: role, content, finish, (usage), [DONE].
fn replay_stream(id: &str, model: &str, text: &str, usage: bool) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(8);
    let chunk = |delta: Value, finish: Option<&str>| {
        sse::data_event(
            &json!({
                "id": format!("chatcmpl-{id}"), "object": "chat.completion.chunk",
                "created": unix_now(), "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
            .to_string(),
        )
    };
    let mut events = vec![
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": text}), None),
        chunk(json!({}), Some("stop")),
    ];
    if usage {
        events.push(sse::data_event(
            &json!({"id": format!("chatcmpl-{id}"), "object": "chat.completion.chunk", "created": unix_now(),
                "model": model, "choices": [], "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
            .to_string(),
        ));
    }
    events.push(sse::done_event());
    tokio::spawn(async move {
        for e in events {
            if tx.send(e).await.is_err() {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ChatRequest, PipelineError> {
        ChatRequest::parse(v, None)
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (json!([]), "body"),
            (
                json!({"messages": [{"role": "user", "content": "x"}]}),
                "model",
            ),
            (json!({"model": "auto"}), "messages"),
            (json!({"model": "auto", "messages": []}), "messages"),
            (
                json!({"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "auto", "messages": [{"role": "user", "content": 5}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "auto", "messages": [{"role": "user"}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "auto", "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"model": "auto", "messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (
                json!({"model": "auto", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}),
                "stream",
            ),
            (
                json!({"model": "auto", "n": 0, "messages": [{"role": "user", "content": "x"}]}),
                "n",
            ),
        ];
        for (body, param) in cases {
            match parse(body.clone()) {
                Err(PipelineError::BadRequest { param: Some(p), .. }) => {
                    assert_eq!(p, param, "{body}")
                }
                Err(e) => panic!("{body}: {e}"),
                Ok(_) => panic!("{body} accepted"),
            }
        }
    }

    #[test]
    fn routed_text_is_the_last_user_message() {
        let r = parse(json!({"model": "auto", "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ]}))
        .unwrap();
        assert_eq!(r.routed_text, "second");
        assert!(r.conversation.is_some());
        assert_eq!(r.conversation, Some(conversation_key(&r.opening, "answer")));
    }

    #[test]
    fn a_huge_message_is_routed_on_a_bounded_prefix() {
        let words = "lorem ipsum dolor sit amet ".repeat(20_000);
        let a = parse(json!({"model": "auto", "messages": [{"role": "user", "content": words.clone() + "alpha"}]}))
            .unwrap();
        let b = parse(
            json!({"model": "auto", "messages": [{"role": "user", "content": words + "beta"}]}),
        )
        .unwrap();
        assert_eq!(a.routed_text.chars().count(), ROUTED_TEXT_MAX_CHARS);
        assert_eq!(a.routed_text, b.routed_text);
        // The prefixes are equal, the messages are not: the cache must tell them apart.
        assert!(a.routed_text_cut.is_some() && a.routed_text_cut != b.routed_text_cut);
        let short =
            parse(json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}))
                .unwrap();
        assert_eq!(short.routed_text_cut, None);
    }

    #[test]
    fn first_turn_has_no_conversation_unless_the_header_names_one() {
        let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
        assert!(parse(body.clone()).unwrap().conversation.is_none());
        let with = ChatRequest::parse(body, Some("c-1")).unwrap();
        assert_eq!(with.conversation, Some(header_key("c-1")));
    }

    #[test]
    fn sticky_tiers_only_go_up_and_expire() {
        let s = StickyTiers::new(2, Duration::from_secs(60));
        let k = [1u8; 16];
        s.raise(k, 2);
        s.raise(k, 0);
        assert_eq!(s.get(&k), Some(2));
        // Bounded: the least recently used conversation is forgotten.
        s.raise([2u8; 16], 1);
        s.raise([3u8; 16], 1);
        assert_eq!(s.len(), 2);
        let short = StickyTiers::new(2, Duration::from_millis(0));
        short.raise(k, 2);
        assert_eq!(short.get(&k), None);
    }
}
