//! The routing engine: the embedding model and the tier head loaded together from
//! config, checked against each other. Shared by `route`, `eval`, `serve` and `bench`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::classify::{decide, ClassifyError, Decision, TierHead};
use crate::config::{Config, RouterConfig};
use crate::embed::{parse_device, EmbedError, EmbedOptions, EmbedTimings, Embedder, Embedding};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error("{0}")]
    Config(String),
}

/// Resolves a file the config names: against the config's directory, then the
/// working directory, and — for the shipped defaults only — the crate's directory,
/// so `cargo run` works from anywhere in a checkout.
pub fn resolve_asset(cfg: &Config, p: &str, default: &str) -> PathBuf {
    let candidate = cfg.resolve(p);
    if candidate.exists() || Path::new(p).is_absolute() {
        return candidate;
    }
    if Path::new(p).exists() {
        return PathBuf::from(p);
    }
    if p == default {
        let in_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join(p);
        if in_crate.exists() {
            return in_crate;
        }
    }
    candidate
}

/// Embedder options from config; a local model directory resolves like other assets,
/// anything else (a hub id) is passed on as written.
pub fn embed_options(cfg: &Config) -> Result<EmbedOptions, EngineError> {
    let device = parse_device(&cfg.embed.device)
        .map_err(|e| EngineError::Config(format!("embed.device: {e}")))?;
    let local = resolve_asset(cfg, &cfg.embed.model, crate::embed::DEFAULT_MODEL_DIR);
    let model = if local.is_dir() {
        local.to_string_lossy().into_owned()
    } else {
        cfg.embed.model.clone()
    };
    Ok(EmbedOptions {
        model,
        device,
        max_tokens: cfg.embed.max_tokens,
        engine: cfg.embed.engine,
    })
}

pub fn head_path(cfg: &Config) -> PathBuf {
    resolve_asset(cfg, &cfg.router.head, crate::classify::DEFAULT_HEAD_PATH)
}

/// Loads a head and checks it against the embedder, and the routing table against
/// the head's labels.
pub fn load_head(cfg: &Config, embedder: &Embedder) -> Result<(TierHead, PathBuf), EngineError> {
    let path = head_path(cfg);
    let head = TierHead::load(&path)?;
    head.check_embedder(
        &path,
        embedder.model_id(),
        embedder.weights_sha256(),
        embedder.features_dim(),
    )?;
    check_routing_table(&cfg.router, &head)?;
    Ok((head, path))
}

/// Every tier the head can output needs models, and no table entry may name a tier
/// the head does not know.
pub fn check_routing_table(router: &RouterConfig, head: &TierHead) -> Result<(), EngineError> {
    for label in head.labels() {
        if !router.tiers.contains_key(label) {
            return Err(EngineError::Config(format!(
                "router.tiers has no entry for tier `{label}` (the head's tiers: {})",
                head.labels().join(", ")
            )));
        }
    }
    for tier in router.tiers.keys() {
        if !head.labels().contains(tier) {
            return Err(EngineError::Config(format!(
                "router.tiers.{tier}: the head has no such tier (its tiers: {})",
                head.labels().join(", ")
            )));
        }
    }
    Ok(())
}

/// A routing decision with where its time went.
#[derive(Debug, Clone)]
pub struct Routed {
    pub decision: Decision,
    pub timings: EmbedTimings,
    pub head_us: u64,
    pub embedding: Embedding,
}

pub struct Engine {
    pub embedder: Arc<Embedder>,
    pub head: Arc<TierHead>,
    pub head_path: PathBuf,
}

impl Engine {
    pub fn load(cfg: &Config) -> Result<Self, EngineError> {
        let embedder = Embedder::load(&embed_options(cfg)?)?;
        let (head, head_path) = load_head(cfg, &embedder)?;
        Ok(Self {
            embedder: Arc::new(embedder),
            head: Arc::new(head),
            head_path,
        })
    }

    /// One throwaway forward pass: starts the thread pools and faults in the weights so
    /// the first real request does not pay for them.
    pub fn warm_up(&self) {
        if let Err(e) = self
            .embedder
            .embed(&["warm up", "a second, longer warm-up sentence"])
        {
            tracing::warn!(error = %e, "warm-up embedding failed");
        }
    }

    /// Routes one text on the calling thread.
    pub fn route(&self, text: &str, router: &RouterConfig) -> Result<Routed, EngineError> {
        let (embedding, timings) = self.embedder.embed_one(text)?;
        let t = Instant::now();
        let pred = self.head.predict(&embedding.features);
        let decision = decide(&self.head, &pred, router);
        Ok(Routed {
            decision,
            timings,
            head_us: t.elapsed().as_micros() as u64,
            embedding,
        })
    }
}
