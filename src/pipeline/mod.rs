//! One request, start to end, in whatever protocol it came: resolve the model,
//! embed the routed text, classify, keep the conversation's tier, apply budgets,
//! answer from the cache, compress the history, forward upstream, record. Each
//! step is its own module; [`Pipeline::run`] reads as that list.

mod budget;
mod cache;
mod classify;
mod compress;
mod embed;
mod forward;
mod record;
mod resolve;
pub mod sticky;
pub mod texts;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

pub use sticky::StickyTiers;
pub use texts::{conversation_key, RoutedTexts, ROUTED_TEXT_MAX_CHARS};

use crate::cache::SemanticCache;
use crate::canonical::{Reply as Answer, Request};
use crate::classify::{Decision, TierHead};
use crate::config::Config;
use crate::embed::EmbedPool;
use crate::ledger::Ledger;
use crate::upstream::{CallInfo, Chunk, ForwardError, Upstreams};

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

/// A failed request, with the routing it got when it got that far (for the
/// `x-triage-*` headers of the error reply).
#[derive(Debug)]
pub struct Failure {
    pub error: PipelineError,
    pub routing: Option<Box<Routing>>,
    pub cache: CacheStatus,
}

impl From<PipelineError> for Failure {
    fn from(error: PipelineError) -> Self {
        Failure {
            error,
            routing: None,
            cache: CacheStatus::Bypass,
        }
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
    /// The routing text's features (what the head classifies).
    #[serde(skip)]
    pub features: Option<Vec<f32>>,
    /// Sent to the cheapest tier because a budget with `downgrade` is spent.
    pub downgraded: bool,
    /// A `downgrade` budget is spent but the request named its model explicitly.
    pub budget_spent: bool,
    /// What prompt compression did to the forwarded request.
    #[serde(skip)]
    pub compression: Option<crate::compress::Compression>,
}

impl Routing {
    /// A model the client named, passed through unrouted.
    pub fn passthrough(model: &str) -> Self {
        Routing {
            decision: None,
            sticky: false,
            models: vec![model.to_string()],
            timings: RouteTimings::default(),
            vector: None,
            features: None,
            downgraded: false,
            budget_spent: false,
            compression: None,
        }
    }

    pub fn tier(&self) -> Option<&str> {
        self.decision.as_ref().map(|d| d.tier.as_str())
    }
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

/// What the server renders for the client.
pub enum ReplyBody {
    /// A complete answer; `raw` is the provider's own body when it spoke the
    /// client's protocol.
    Answer {
        answer: Answer,
        raw: Option<Bytes>,
    },
    /// An answer made here (a cache hit, a dry run), streamed when asked.
    Replayed(Answer),
    Stream(tokio::sync::mpsc::Receiver<Chunk>),
}

pub struct Reply {
    pub routing: Routing,
    pub call: Option<CallInfo>,
    pub cache: CacheStatus,
    /// The configured model name that answered (or answered the cached request).
    pub model: String,
    /// The model id the reply names (the provider's, or the cached answer's).
    pub response_model: String,
    pub body: ReplyBody,
    /// Time waiting for the upstream (to the whole body, or a stream's first
    /// event), in microseconds; 0 when none was called.
    pub upstream_us: u64,
    /// The request as forwarded (the client's protocol, for rendering).
    pub request: Request,
}

/// Identity of the caller, from the server.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    /// The client key's name (or `default`).
    pub tenant: String,
    /// What the request is accounted under: the tenant or one of its endpoints.
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
    pub upstreams: Arc<Upstreams>,
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

/// One request as it goes through the steps.
pub struct Turn {
    pub started: Instant,
    pub req: Request,
    pub texts: RoutedTexts,
    pub routing: Routing,
    /// The cache's scope and vector, when the request may use the cache.
    pub cache_key: Option<cache::CacheKey>,
    pub cache: CacheStatus,
    /// A spent `reject` budget: refused unless the cache answers.
    pub refused: Option<PipelineError>,
}

impl Turn {
    fn fail(&self, error: PipelineError) -> Failure {
        Failure {
            error,
            routing: Some(Box::new(self.routing.clone())),
            cache: self.cache,
        }
    }
}

impl Pipeline {
    pub fn new(
        cfg: Arc<Config>,
        pool: EmbedPool,
        head: Arc<TierHead>,
        dry_run: bool,
    ) -> Result<Self, String> {
        let upstreams = Arc::new(Upstreams::new(&cfg, !dry_run)?);
        let sticky = StickyTiers::new(
            cfg.server.sticky_conversations,
            std::time::Duration::from_secs(cfg.server.sticky_ttl_secs),
        );
        Ok(Self {
            compressor: Some(crate::compress::Compressor::new(cfg.compress.clone())),
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
        let upstreams = Arc::new(Upstreams::new(&cfg, !self.dry_run)?);
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

    /// Models a client may name: aliases first, then configured models.
    pub fn model_names(&self, live: &Live) -> Vec<String> {
        resolve::model_names(live)
    }

    /// The routing decision alone (`/v1/route`): resolve, embed, classify, sticky.
    pub async fn route(&self, ctx: &RequestCtx, req: Request) -> Result<Turn, Failure> {
        let live = self.live();
        let mut t = Turn::new(req, ctx);
        resolve::step(&live, &mut t)?;
        embed::step(self, &live, &mut t)
            .await
            .map_err(|e| t.fail(e))?;
        classify::step(&live, &mut t);
        sticky::step(self, &live, &mut t);
        Ok(t)
    }

    /// The whole request.
    pub async fn run(self: &Arc<Self>, ctx: &RequestCtx, req: Request) -> Result<Reply, Failure> {
        let live = self.live();
        let mut t = Turn::new(req, ctx);
        resolve::step(&live, &mut t)?;
        embed::step(self, &live, &mut t)
            .await
            .map_err(|e| t.fail(e))?;
        classify::step(&live, &mut t);
        sticky::step(self, &live, &mut t);
        budget::step(self, &live, ctx, &mut t);
        if let Some(hit) = cache::lookup(self, &live, ctx, &mut t) {
            return Ok(record::hit(self, &live, ctx, t, hit));
        }
        if let Some(refused) = t.refused.take() {
            return Err(t.fail(refused));
        }
        if self.dry_run {
            return Ok(record::dry_run(self, &live, ctx, t));
        }
        compress::step(self, &live, ctx, &mut t).await;
        let forwarded = forward::step(&live, &t).await;
        record::forwarded(self, &live, ctx, t, forwarded)
    }
}

impl Turn {
    pub fn new(req: Request, ctx: &RequestCtx) -> Self {
        let texts = RoutedTexts::of(&req, ctx.conversation_header.as_deref());
        Turn {
            started: Instant::now(),
            routing: Routing::passthrough(&req.model),
            req,
            texts,
            cache_key: None,
            cache: CacheStatus::Bypass,
            refused: None,
        }
    }
}
