//! TOML configuration: schema, defaults and validation.
//!
//! Every section rejects unknown keys. Errors name the file and the offending key.
//! Secrets never live in the file: only the *names* of environment variables do.
//!
//! This module sits at the bottom of the crate: it imports nothing of triage's, and
//! every section's types live here (the modules that act on them re-export them).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Tier names the default head is trained with; the head's metadata is the source of truth
/// at run time, this list only seeds the built-in routing table.
pub const DEFAULT_TIERS: [&str; 3] = ["SIMPLE", "MODERATE", "COMPLEX"];

pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";

/// Where `triage train` writes the head and where serve/route look for it.
pub const DEFAULT_HEAD_PATH: &str = "models/tier-head.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: invalid value for `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub embed: EmbedConfig,
    pub router: RouterConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub models: Vec<ModelConfig>,
    pub cache: CacheConfig,
    pub compress: CompressConfig,
    pub ledger: LedgerConfig,
    /// Hourly/daily USD budgets, global or per endpoint.
    pub budgets: Vec<BudgetConfig>,
    /// Where budget alerts go.
    pub alerts: AlertConfig,
    /// Price overrides and additions, USD per 1M tokens, by model name.
    pub prices: std::collections::HashMap<String, Price>,
    /// Where serve/report/retrain keep their state (decision log, cache snapshot).
    pub data_dir: Option<PathBuf>,
    /// Directory the config file was read from; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Largest accepted request body in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Client keys: each has a name (the endpoint it is accounted under) and the
    /// environment variable holding the secret. Empty = no client auth.
    pub api_keys: Vec<ApiKeyConfig>,
    /// Environment variable holding the admin key for /admin endpoints.
    pub admin_key_env: Option<String>,
    /// Seconds SIGTERM waits for in-flight requests before exiting.
    pub shutdown_grace_secs: u64,
    /// Conversations remembered for sticky tiers.
    pub sticky_conversations: usize,
    /// Seconds a conversation's tier is remembered after its last request.
    pub sticky_ttl_secs: u64,
    /// Overall deadline for one request across retries and fallbacks, in seconds.
    pub request_deadline_secs: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 4 * 1024 * 1024,
            api_keys: Vec::new(),
            admin_key_env: None,
            shutdown_grace_secs: 30,
            sticky_conversations: 100_000,
            sticky_ttl_secs: 6 * 3600,
            request_deadline_secs: 300.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    pub key_env: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    /// Local directory or a Hugging Face hub id.
    pub model: String,
    /// `cpu`, `cuda`, `cuda:N` or `metal`.
    pub device: String,
    /// Word-piece tokens kept per input (the model was trained at 256).
    pub max_tokens: usize,
    /// Largest batch the embedding worker runs at once.
    pub max_batch: usize,
    /// Requests that may wait for the embedding worker before 503.
    pub queue_capacity: usize,
    /// Embedding worker threads (each runs whole batches).
    pub workers: usize,
    /// Recent exact texts whose embeddings are remembered (0: off; ~17 KB each).
    pub memo_entries: usize,
    /// Forward pass: `auto`, `candle`, `fast-f32` or `fast-bf16` (see docs/benchmarks.md
    /// for the speed and accuracy of each).
    pub engine: EngineChoice,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL_DIR.into(),
            device: "cpu".into(),
            max_tokens: 256,
            max_batch: 32,
            queue_capacity: 1024,
            workers: 1,
            memo_entries: 1024,
            engine: EngineChoice::Auto,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Path of the tier head (safetensors; metadata in the `.json` beside it).
    pub head: String,
    /// Tier name → ordered model list: the first is used, the rest are fallbacks.
    pub tiers: BTreeMap<String, Vec<String>>,
    /// Below this top probability the request goes one tier up.
    pub min_confidence: f32,
    /// The cheapest tier is used only while the top tier's probability is below this.
    pub top_tier_guard: f32,
    /// Model names that mean "route this".
    pub aliases: Vec<String>,
    /// Whether a configured concrete model name passes through unrouted.
    pub allow_passthrough: bool,
    /// The one knob between cost and quality: the share of the strongest model's
    /// quality to keep (e.g. 0.95). The head's outcome output then raises to the top
    /// tier every request whose strength reaches the threshold that keeps this share
    /// on the outcome data it was trained on, with the fewest strong calls. Unset:
    /// the task-type decision alone.
    pub quality_target: Option<f32>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        let tiers = [
            ("SIMPLE", "gpt-4o-mini"),
            ("MODERATE", "gpt-4.1-mini"),
            ("COMPLEX", "gpt-4.1"),
        ]
        .into_iter()
        .map(|(t, m)| (t.to_string(), vec![m.to_string()]))
        .collect();
        Self {
            head: DEFAULT_HEAD_PATH.into(),
            tiers,
            min_confidence: 0.5,
            top_tier_guard: 0.2,
            aliases: vec!["auto".into()],
            allow_passthrough: true,
            quality_target: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Write the decision log (SQLite in the data directory).
    pub enabled: bool,
    /// Keep the routed text in the log (needed for retraining).
    pub log_text: bool,
    /// Days rows are kept (0: forever).
    pub retention_days: u64,
    /// Rows waiting for the writer before new ones are dropped.
    pub queue_capacity: usize,
    /// Distinct `x-triage-endpoint` values accepted (bounds metric cardinality).
    pub max_endpoints: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            log_text: false,
            retention_days: 90,
            queue_capacity: 10_000,
            max_endpoints: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Cosine similarity a candidate needs before hit verification.
    pub similarity: f32,
    /// Per-tier overrides of `similarity`.
    pub tier_similarity: BTreeMap<String, f32>,
    /// Tiers whose answers are never cached (e.g. creative work).
    pub uncached_tiers: Vec<String>,
    /// Requests with a higher temperature bypass the cache. A request without
    /// `temperature` counts as 1.0, the API's default.
    pub max_temperature: f32,
    /// Seconds an entry lives.
    pub ttl_secs: u64,
    pub max_entries: usize,
    /// Approximate bytes of cached text and vectors.
    pub max_bytes: usize,
    /// Seconds between snapshots of the cache file.
    pub snapshot_interval_secs: u64,
    /// HNSW search breadth.
    pub ef_search: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            similarity: 0.7,
            tier_similarity: BTreeMap::new(),
            uncached_tiers: Vec::new(),
            max_temperature: 0.7,
            ttl_secs: 7 * 86_400,
            max_entries: 100_000,
            max_bytes: 512 * 1024 * 1024,
            snapshot_interval_secs: 300,
            ef_search: 64,
        }
    }
}

impl CacheConfig {
    pub fn threshold(&self, tier: Option<&str>) -> f32 {
        tier.and_then(|t| self.tier_similarity.get(t))
            .copied()
            .unwrap_or(self.similarity)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    Openai,
    Anthropic,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    pub kind: UpstreamKind,
    pub base_url: String,
    /// Environment variable holding the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Seconds to establish a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// Seconds one attempt may take until the response headers (and, when not
    /// streaming, the whole body) arrive.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: f64,
    /// Retries after the first attempt, on connect errors, 429 and 5xx.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Base of the exponential backoff, in milliseconds.
    #[serde(default = "default_backoff_ms")]
    pub backoff_base_ms: u64,
    /// Longest single backoff sleep (also caps Retry-After), in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Anthropic API version header.
    #[serde(default)]
    pub anthropic_version: Option<String>,
}

fn default_connect_timeout() -> f64 {
    5.0
}
fn default_request_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    2
}
fn default_backoff_ms() -> u64 {
    250
}
fn default_backoff_max_ms() -> u64 {
    8_000
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Name clients and the routing table use.
    pub name: String,
    /// Upstream (by name) that serves it.
    pub upstream: String,
    /// Model id sent upstream (defaults to `name`).
    #[serde(default)]
    pub upstream_model: Option<String>,
}

impl ModelConfig {
    pub fn upstream_model(&self) -> &str {
        self.upstream_model.as_deref().unwrap_or(&self.name)
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text, path)?;
        cfg.base_dir = path.parent().map(Path::to_path_buf);
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: describe_toml_error(&e),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks cross-references and ranges; every error names its key.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad(
                "server.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    self.server.listen
                ),
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(bad("server.max_body_bytes", "must be at least 1024".into()));
        }
        if !(self.server.request_deadline_secs > 0.0
            && self.server.request_deadline_secs.is_finite())
        {
            return Err(bad(
                "server.request_deadline_secs",
                "must be a positive number of seconds".into(),
            ));
        }
        let mut key_names = HashSet::new();
        for (i, k) in self.server.api_keys.iter().enumerate() {
            if !is_identifier(&k.name) {
                return Err(bad(
                    &format!("server.api_keys[{i}].name"),
                    "use letters, digits, '-', '_' or '.' (at most 64)".into(),
                ));
            }
            if !key_names.insert(&k.name) {
                return Err(bad(
                    &format!("server.api_keys[{i}].name"),
                    format!("duplicate key name `{}`", k.name),
                ));
            }
            if k.key_env.trim().is_empty() {
                return Err(bad(
                    &format!("server.api_keys[{i}].key_env"),
                    "must name an environment variable".into(),
                ));
            }
        }
        if self.embed.max_tokens < 8 || self.embed.max_tokens > 8192 {
            return Err(bad("embed.max_tokens", "must be between 8 and 8192".into()));
        }
        if self.embed.max_batch == 0 {
            return Err(bad("embed.max_batch", "must be at least 1".into()));
        }
        if self.embed.queue_capacity == 0 {
            return Err(bad("embed.queue_capacity", "must be at least 1".into()));
        }
        if self.embed.workers == 0 {
            return Err(bad("embed.workers", "must be at least 1".into()));
        }
        parse_device(&self.embed.device).map_err(|e| bad("embed.device", e))?;
        if let Some(q) = self.router.quality_target {
            if !(q > 0.0 && q <= 1.0) {
                return Err(bad(
                    "router.quality_target",
                    "is a share of the strongest model's quality, above 0 and at most 1 (e.g. 0.95)".into(),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.router.min_confidence) {
            return Err(bad(
                "router.min_confidence",
                "must be between 0 and 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.router.top_tier_guard) {
            return Err(bad(
                "router.top_tier_guard",
                "must be between 0 and 1".into(),
            ));
        }
        if self.router.aliases.is_empty() {
            return Err(bad("router.aliases", "needs at least one alias".into()));
        }
        for (key, v) in std::iter::once(("cache.similarity".to_string(), self.cache.similarity))
            .chain(
                self.cache
                    .tier_similarity
                    .iter()
                    .map(|(t, v)| (format!("cache.tier_similarity.{t}"), *v)),
            )
        {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(&key, "must be between 0 and 1".into()));
            }
        }
        for (m, p) in &self.prices {
            for (field, v) in [
                ("input", Some(p.input)),
                ("cached_input", p.cached_input),
                ("output", Some(p.output)),
            ] {
                if let Some(v) = v {
                    if !(v >= 0.0 && v.is_finite()) {
                        return Err(bad(
                            &format!("prices.{m}.{field}"),
                            "must be a non-negative number (USD per 1M tokens)".into(),
                        ));
                    }
                }
            }
        }
        for (i, b) in self.budgets.iter().enumerate() {
            if !(b.usd > 0.0 && b.usd.is_finite()) {
                return Err(bad(
                    &format!("budgets[{i}].usd"),
                    "must be a positive amount of USD".into(),
                ));
            }
            if b.thresholds.iter().any(|t| !(*t > 0.0 && *t <= 10.0)) {
                return Err(bad(
                    &format!("budgets[{i}].thresholds"),
                    "each threshold is a share of the budget, e.g. 0.8 or 1.0".into(),
                ));
            }
            if let Some(e) = &b.endpoint {
                if !is_endpoint_name(e) {
                    return Err(bad(
                        &format!("budgets[{i}].endpoint"),
                        "not a valid endpoint name (NAME or TENANT/NAME)".into(),
                    ));
                }
            }
        }
        if let Some(u) = &self.alerts.webhook_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(bad(
                    "alerts.webhook_url",
                    "must start with http:// or https://".into(),
                ));
            }
        }
        if let Some(m) = &self.compress.summarizer_model {
            if !self.models.is_empty() && !model_names_all(self).contains(&m.as_str()) {
                return Err(bad(
                    "compress.summarizer_model",
                    format!("model `{m}` is not defined in [[models]]"),
                ));
            }
        } else if self.compress.enabled {
            return Err(bad(
                "compress.summarizer_model",
                "compression needs a summarizer model (a cheap [[models]] entry)".into(),
            ));
        }
        if self.compress.keep_last_turns == 0 {
            return Err(bad("compress.keep_last_turns", "must be at least 1".into()));
        }
        if self.cache.max_entries == 0 {
            return Err(bad("cache.max_entries", "must be at least 1".into()));
        }
        if self.cache.ef_search == 0 {
            return Err(bad("cache.ef_search", "must be at least 1".into()));
        }
        let mut upstream_names = HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            if !upstream_names.insert(u.name.as_str()) {
                return Err(bad(
                    &format!("upstreams[{i}].name"),
                    format!("duplicate upstream `{}`", u.name),
                ));
            }
            if !(u.base_url.starts_with("http://") || u.base_url.starts_with("https://")) {
                return Err(bad(
                    &format!("upstreams[{i}].base_url"),
                    "must start with http:// or https://".into(),
                ));
            }
            for (key, v) in [
                ("connect_timeout_secs", u.connect_timeout_secs),
                ("request_timeout_secs", u.request_timeout_secs),
            ] {
                if !(v > 0.0 && v.is_finite()) {
                    return Err(bad(
                        &format!("upstreams[{i}].{key}"),
                        "must be a positive number of seconds".into(),
                    ));
                }
            }
        }
        let mut model_names = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            if !model_names.insert(m.name.as_str()) {
                return Err(bad(
                    &format!("models[{i}].name"),
                    format!("duplicate model `{}`", m.name),
                ));
            }
            if self.router.aliases.contains(&m.name) {
                return Err(bad(
                    &format!("models[{i}].name"),
                    format!("`{}` is also a routing alias", m.name),
                ));
            }
            if !upstream_names.contains(m.upstream.as_str()) {
                return Err(bad(
                    &format!("models[{i}].upstream"),
                    format!("no [[upstreams]] entry is named `{}`", m.upstream),
                ));
            }
        }
        for (tier, list) in &self.router.tiers {
            let key = format!("router.tiers.{tier}");
            if list.is_empty() {
                return Err(bad(&key, "needs at least one model".into()));
            }
            // With upstreams configured every routed model must be servable.
            if !self.models.is_empty() {
                for m in list {
                    if !model_names.contains(m.as_str()) {
                        return Err(bad(
                            &key,
                            format!("model `{m}` is not defined in [[models]]"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let path = PathBuf::from(p);
        if path.is_absolute() {
            return path;
        }
        match &self.base_dir {
            Some(dir) => dir.join(path),
            None => path,
        }
    }

    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The id the upstream knows a model by: its `upstream_model`, else its name.
    /// Token counting and prices go by this id (`fa-mini` may be `gpt-4o-mini`).
    pub fn upstream_model_id<'a>(&'a self, name: &'a str) -> &'a str {
        self.model(name).map_or(name, ModelConfig::upstream_model)
    }

    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

fn model_names_all(cfg: &Config) -> Vec<&str> {
    cfg.models.iter().map(|m| m.name.as_str()).collect()
}

/// Names that end up in metrics labels and logs: short and plain.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// An endpoint name: `NAME` or `TENANT/NAME`, each part an identifier.
pub fn is_endpoint_name(s: &str) -> bool {
    match s.split_once('/') {
        None => is_identifier(s),
        Some((tenant, sub)) => is_identifier(tenant) && is_identifier(sub),
    }
}

/// Whether traffic on `endpoint` counts toward what is configured for `name`: the
/// endpoint itself, or one of its sub-endpoints (`name/...`).
pub fn endpoint_covers(name: &str, endpoint: &str) -> bool {
    endpoint
        .strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn describe_toml_error(e: &toml::de::Error) -> String {
    // toml's message already names the unknown/missing key and the line.
    e.to_string().trim().replace('\n', " ")
}

/// Where to run inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Metal(usize),
}

pub fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    let s = s.trim().to_ascii_lowercase();
    let (kind, ordinal) = match s.split_once(':') {
        Some((k, n)) => (
            k.to_string(),
            n.parse::<usize>()
                .map_err(|_| format!("`{s}`: device ordinal must be a number"))?,
        ),
        None => (s.clone(), 0),
    };
    match kind.as_str() {
        "cpu" => Ok(DeviceSpec::Cpu),
        "cuda" | "gpu" => Ok(DeviceSpec::Cuda(ordinal)),
        "metal" => Ok(DeviceSpec::Metal(ordinal)),
        _ => Err(format!("`{s}`: expected cpu, cuda, cuda:N or metal")),
    }
}

/// Which code runs the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EngineChoice {
    /// `fast-bf16` where the CPU has AVX512-BF16, else `fast-f32` where it has
    /// AVX-512, else `candle`; always `candle` on a GPU.
    #[default]
    Auto,
    /// candle's tensor ops, one per step (any device).
    Candle,
    /// The fused AVX-512 encoder in f32: candle's results, faster.
    FastF32,
    /// The fused encoder with bf16 matrix multiplies: fastest, cosine ≥ 0.999.
    FastBf16,
}

impl EngineChoice {
    pub fn name(self) -> &'static str {
        match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Candle => "candle",
            EngineChoice::FastF32 => "fast-f32",
            EngineChoice::FastBf16 => "fast-bf16",
        }
    }
}

/// What to send when no summary can be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Drop the older turns without a summary.
    #[default]
    Trim,
    /// Send the request as it came.
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressConfig {
    pub enabled: bool,
    /// History (all messages) above this many tokens is compressed.
    pub max_history_tokens: usize,
    /// Turns kept verbatim at the end (a turn: a user message, or an assistant
    /// message with the tool results that answer its calls).
    pub keep_last_turns: usize,
    /// Model (a `[[models]]` name) that writes summaries.
    pub summarizer_model: Option<String>,
    pub summary_max_tokens: u32,
    /// Seconds a summary may take before the fallback is used.
    pub summary_timeout_secs: f64,
    /// Without a cached summary, send this turn plainly trimmed and summarize in
    /// the background (true), or wait for the summary (false).
    pub background: bool,
    pub on_failure: OnFailure,
    /// Summaries remembered.
    pub cache_entries: usize,
    /// Per-endpoint overrides.
    pub endpoints: BTreeMap<String, EndpointCompress>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EndpointCompress {
    pub enabled: Option<bool>,
    pub max_history_tokens: Option<usize>,
    pub keep_last_turns: Option<usize>,
}

impl Default for CompressConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_history_tokens: 6000,
            keep_last_turns: 6,
            summarizer_model: None,
            summary_max_tokens: 400,
            summary_timeout_secs: 20.0,
            background: true,
            on_failure: OnFailure::Trim,
            cache_entries: 10_000,
            endpoints: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Hour,
    Day,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    #[default]
    Alert,
    Downgrade,
    Reject,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub window: Window,
    pub usd: f64,
    /// Absent: the budget covers all endpoints together.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Shares of the budget that raise an alert.
    #[serde(default = "default_thresholds")]
    pub thresholds: Vec<f64>,
    #[serde(default)]
    pub enforcement: Enforcement,
}

fn default_thresholds() -> Vec<f64> {
    vec![0.8, 1.0]
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// POSTed a JSON body for every alert.
    pub webhook_url: Option<String>,
    /// Attempts per alert before it is given up (with backoff).
    pub webhook_attempts: Option<u32>,
}

/// USD per one million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    /// Prompt tokens served from the provider's prompt cache (defaults to `input`).
    #[serde(default)]
    pub cached_input: Option<f64>,
    pub output: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("t.toml"))
    }

    #[test]
    fn empty_config_is_valid_with_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.router.tiers.len(), 3);
        assert_eq!(c.embed.max_tokens, 256);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listne"), "{err}");
        assert!(err.contains("t.toml"), "{err}");
    }

    #[test]
    fn model_must_reference_known_upstream() {
        let err = parse(
            r#"
[[upstreams]]
name = "openai"
kind = "openai"
base_url = "https://api.openai.com/v1"
[[models]]
name = "gpt-4o-mini"
upstream = "opnai"
"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("models[0].upstream"), "{err}");
        assert!(err.contains("opnai"), "{err}");
    }

    #[test]
    fn routed_models_must_be_defined_when_models_exist() {
        let err = parse(
            r#"
[router.tiers]
SIMPLE = ["cheap"]
MODERATE = ["mid"]
COMPLEX = ["nope"]
[[upstreams]]
name = "u"
kind = "openai"
base_url = "http://127.0.0.1:1"
[[models]]
name = "cheap"
upstream = "u"
[[models]]
name = "mid"
upstream = "u"
"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("router.tiers.COMPLEX"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[server]\nlisten = \"nowhere\"", "server.listen"),
            ("[router]\nmin_confidence = 1.5", "router.min_confidence"),
            ("[router]\nquality_target = 1.2", "router.quality_target"),
            ("[embed]\ndevice = \"tpu\"", "embed.device"),
            ("[embed]\nmax_batch = 0", "embed.max_batch"),
        ] {
            let err = parse(toml).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("triage.example.toml");
        Config::load(&path).unwrap();
    }
}
