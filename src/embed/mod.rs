//! Sentence embeddings on the device: model loading, tokenization, forward pass,
//! masked mean pooling and L2 normalization. Knows nothing about tiers.

pub mod bert;
#[cfg(target_arch = "x86_64")]
pub mod fused;
pub mod import;
mod pool;

pub use import::{import_model, ImportReport};
pub use pool::{EmbedPool, Embedded, PoolError, PoolStats};

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The model that ships in the repository.
pub use crate::config::{parse_device, DeviceSpec, EngineChoice, DEFAULT_MODEL_DIR};
/// Manifest written by `triage model import` next to the weights.
pub const MANIFEST_FILE: &str = "triage-model.json";

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "embedding model `{model}` is not available: {reason}. Provide it locally: put \
         config.json, tokenizer.json and model.safetensors in a directory and set \
         `embed.model` to that directory (or run `triage model import DIR`)"
    )]
    ModelUnavailable { model: String, reason: String },
    #[error("embedding model `{model}`: {message}")]
    BadModel { model: String, message: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("inference: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("device: {0}")]
    Device(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl DeviceSpec {
    pub fn device(self) -> Result<Device, EmbedError> {
        let map = |e: candle_core::Error| {
            EmbedError::Device(format!(
                "{e} (was triage built with `--features cuda`/`metal`?)"
            ))
        };
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => Device::new_cuda(n).map_err(map),
            DeviceSpec::Metal(n) => Device::new_metal(n).map_err(map),
        }
    }
}

/// What `triage model import` records beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelManifest {
    /// Canonical id of the model (hub id).
    pub id: String,
    pub dtype: String,
    pub weights_sha256: String,
    pub source_sha256: Option<String>,
}

/// Resolved model files.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub id: String,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: PathBuf,
}

/// Finds the model: a local directory, else a hub id in the local hub cache, else a
/// download through hf-hub (unless `HF_HUB_OFFLINE` is set).
pub fn locate_model(spec: &str) -> Result<ModelFiles, EmbedError> {
    let dir = Path::new(spec);
    if dir.is_dir() {
        return local_files(spec, dir);
    }
    // `cargo run` from elsewhere: the shipped model lives in the crate.
    let in_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join(spec);
    if spec == DEFAULT_MODEL_DIR && in_crate.is_dir() {
        return local_files(spec, &in_crate);
    }
    let looks_like_hub_id = spec.split('/').count() == 2 && !spec.starts_with('.');
    if !looks_like_hub_id {
        return Err(EmbedError::ModelUnavailable {
            model: spec.into(),
            reason: "no such directory".into(),
        });
    }
    hub_files(spec)
}

fn local_files(spec: &str, dir: &Path) -> Result<ModelFiles, EmbedError> {
    let need = |name: &str| -> Result<PathBuf, EmbedError> {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(EmbedError::ModelUnavailable {
                model: spec.into(),
                reason: format!("{} is missing", p.display()),
            })
        }
    };
    let id = std::fs::read(dir.join(MANIFEST_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<ModelManifest>(&b).ok())
        .map(|m| m.id)
        .unwrap_or_else(|| spec.to_string());
    Ok(ModelFiles {
        id,
        config: need("config.json")?,
        tokenizer: need("tokenizer.json")?,
        weights: need("model.safetensors")?,
    })
}

fn hub_files(id: &str) -> Result<ModelFiles, EmbedError> {
    let unavailable = |reason: String| EmbedError::ModelUnavailable {
        model: id.into(),
        reason,
    };
    let names = ["config.json", "tokenizer.json", "model.safetensors"];
    let cache = hf_hub::Cache::from_env();
    let repo = cache.model(id.to_string());
    let cached: Vec<Option<PathBuf>> = names.iter().map(|n| repo.get(n)).collect();
    let paths: Vec<PathBuf> = if cached.iter().all(Option::is_some) {
        cached.into_iter().flatten().collect()
    } else {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| !v.is_empty() && v != "0")
            .unwrap_or(false);
        if offline {
            return Err(unavailable(
                "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set".into(),
            ));
        }
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|e| unavailable(format!("hub client: {e}")))?;
        let repo = api.model(id.to_string());
        let mut out = Vec::new();
        for n in names {
            out.push(repo.get(n).map_err(|e| {
                unavailable(format!(
                    "download of {n} failed ({e}); the hub may be unreachable"
                ))
            })?);
        }
        out
    };
    Ok(ModelFiles {
        id: id.into(),
        config: paths[0].clone(),
        tokenizer: paths[1].clone(),
        weights: paths[2].clone(),
    })
}

/// Time spent in each stage of one embedding call, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct EmbedTimings {
    pub tokenize_us: u64,
    pub forward_us: u64,
    pub pool_us: u64,
}

/// How the router's feature vector is built from one forward pass. A head records
/// it, and a head built on other features is refused.
pub const FEATURE_SPEC: &str =
    "mean+max over tokens of each of the last 5 layers, each L2-normalized";
/// Layers pooled into the routing features (or all, for shallower models).
const FEATURE_LAYERS: usize = 5;

/// One text's embedding: the sentence vector (masked mean of the last layer, unit
/// length: what the cache indexes) and the router's richer feature vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub vector: Vec<f32>,
    pub features: Vec<f32>,
}

impl EngineChoice {
    /// Whether this machine can run the engine on `device`.
    pub fn available(self, device: DeviceSpec) -> bool {
        match self {
            EngineChoice::Auto | EngineChoice::Candle => true,
            #[cfg(target_arch = "x86_64")]
            EngineChoice::FastF32 => device == DeviceSpec::Cpu && fused::Precision::F32.supported(),
            #[cfg(target_arch = "x86_64")]
            EngineChoice::FastBf16 => {
                device == DeviceSpec::Cpu && fused::Precision::Bf16.supported()
            }
            #[cfg(not(target_arch = "x86_64"))]
            EngineChoice::FastF32 | EngineChoice::FastBf16 => {
                let _ = device;
                false
            }
        }
    }

    /// What `Auto` becomes on this machine and device.
    pub fn resolve(self, device: DeviceSpec) -> EngineChoice {
        if device != DeviceSpec::Cpu {
            return EngineChoice::Candle;
        }
        if self == EngineChoice::Auto {
            return [EngineChoice::FastBf16, EngineChoice::FastF32]
                .into_iter()
                .find(|e| e.available(device))
                .unwrap_or(EngineChoice::Candle);
        }
        self
    }
}

enum Encoder {
    Candle(bert::Bert),
    #[cfg(target_arch = "x86_64")]
    Fused(fused::FusedBert),
}

/// A loaded sentence-embedding model.
pub struct Embedder {
    model: Encoder,
    engine: EngineChoice,
    layers: usize,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    model_id: String,
    weights_sha256: String,
    max_tokens: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("model_id", &self.model_id)
            .field("dim", &self.dim)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

/// Options for loading an [`Embedder`].
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    pub model: String,
    pub device: DeviceSpec,
    pub max_tokens: usize,
    pub engine: EngineChoice,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL_DIR.into(),
            device: DeviceSpec::Cpu,
            max_tokens: 256,
            engine: EngineChoice::Auto,
        }
    }
}

pub fn sha256_file(path: &Path) -> Result<String, std::io::Error> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

impl Embedder {
    pub fn load(opts: &EmbedOptions) -> Result<Self, EmbedError> {
        let files = locate_model(&opts.model)?;
        let bad = |message: String| EmbedError::BadModel {
            model: opts.model.clone(),
            message,
        };
        let config: BertConfig = serde_json::from_slice(&std::fs::read(&files.config)?)
            .map_err(|e| bad(format!("config.json is not a BERT config: {e}")))?;
        if opts.max_tokens > config.max_position_embeddings {
            return Err(bad(format!(
                "max_tokens {} exceeds the model's {} positions",
                opts.max_tokens, config.max_position_embeddings
            )));
        }
        let mut tokenizer = Tokenizer::from_file(&files.tokenizer)
            .map_err(|e| bad(format!("tokenizer.json: {e}")))?;
        // The shipped tokenizer.json pads to a fixed 128 and truncates at 128: pad a
        // batch only to its longest member, and truncate where we choose.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id: config.pad_token_id as u32,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: opts.max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| bad(format!("truncation: {e}")))?;
        let device = opts.device.device()?;
        let weights_sha256 = sha256_file(&files.weights)?;
        let engine = opts.engine.resolve(opts.device);
        // candle computes in f32; the fused encoder packs its own copy, so it loads
        // the file's own precision (no f32 copy of the whole model at any time).
        let load_dtype = match engine {
            EngineChoice::Candle => DType::F32,
            _ => file_dtype(&files.weights).unwrap_or(DType::F32),
        };
        // SAFETY: the weights file is memory-mapped read-only; triage never writes it
        // while running, and a concurrent external modification is outside our contract.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&files.weights], load_dtype, &device)? };
        let bert = bert::Bert::load(vb, &config)
            .map_err(|e| bad(format!("weights do not fit a BERT model: {e}")))?;
        let layers = bert.num_layers();
        let model = match engine {
            #[cfg(target_arch = "x86_64")]
            EngineChoice::FastF32 | EngineChoice::FastBf16 => {
                let precision = if engine == EngineChoice::FastBf16 {
                    fused::Precision::Bf16
                } else {
                    fused::Precision::F32
                };
                Encoder::Fused(
                    bert.fused(precision, FEATURE_LAYERS)
                        .map_err(|e| bad(format!("engine {}: {e}", engine.name())))?,
                )
            }
            EngineChoice::Candle => Encoder::Candle(bert),
            other => {
                return Err(bad(format!(
                    "engine {} is not available on this machine",
                    other.name()
                )))
            }
        };
        Ok(Self {
            model,
            engine,
            layers,
            tokenizer,
            device,
            dim: config.hidden_size,
            model_id: files.id,
            weights_sha256,
            max_tokens: opts.max_tokens,
        })
    }

    /// Dimension of the sentence vector.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Dimension of the routing features.
    pub fn features_dim(&self) -> usize {
        2 * self.layers.min(FEATURE_LAYERS) * self.dim
    }
    /// The engine running the forward pass (never `Auto`).
    pub fn engine(&self) -> EngineChoice {
        self.engine
    }
    pub fn model_id(&self) -> &str {
        &self.model_id
    }
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Number of word-piece tokens (with special tokens, after truncation).
    pub fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().len())
    }

    pub fn embed_one(&self, text: &str) -> Result<(Embedding, EmbedTimings), EmbedError> {
        let (mut v, t) = self.embed(&[text])?;
        let e = v
            .pop()
            .ok_or_else(|| EmbedError::Tokenizer("no output".into()))?;
        Ok((e, t))
    }

    /// Embeds a batch: one sentence vector and one feature vector per input. Only a
    /// bounded prefix of each text is tokenized (see [`prefix_chars`]), so the cost
    /// of an input is bounded whatever its size.
    pub fn embed<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> Result<(Vec<Embedding>, EmbedTimings), EmbedError> {
        if texts.is_empty() {
            return Ok((Vec::new(), EmbedTimings::default()));
        }
        let t0 = Instant::now();
        // Only the first `max_tokens` word pieces are used: tokenizing more of a huge
        // text would only cost time. A word piece covers at least one character and
        // rarely more than a dozen, so a prefix of 16 characters per token keeps
        // every token the model sees.
        let max_chars = self.max_tokens.saturating_mul(CHARS_PER_TOKEN_BOUND);
        let inputs: Vec<&str> = texts
            .iter()
            .map(|t| prefix_chars(t.as_ref(), max_chars))
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let t1 = Instant::now();
        let (out, t2) = match &self.model {
            Encoder::Candle(model) => self.forward_candle(model, &encodings)?,
            #[cfg(target_arch = "x86_64")]
            Encoder::Fused(model) => self.forward_fused(model, &encodings)?,
        };
        let t3 = Instant::now();
        Ok((
            out,
            EmbedTimings {
                tokenize_us: (t1 - t0).as_micros() as u64,
                forward_us: (t2 - t1).as_micros() as u64,
                pool_us: (t3 - t2).as_micros() as u64,
            },
        ))
    }
}

impl Embedder {
    /// candle's forward pass over a padded batch, then masked pooling.
    fn forward_candle(
        &self,
        model: &bert::Bert,
        encodings: &[tokenizers::Encoding],
    ) -> Result<(Vec<Embedding>, Instant), EmbedError> {
        let batch = encodings.len();
        let seq = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch * seq);
        let mut mask = Vec::with_capacity(batch * seq);
        for e in encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (batch, seq), &self.device)?;
        let mask = Tensor::from_vec(mask, (batch, seq), &self.device)?;
        let layers = model.forward(&ids, &mask)?;
        let t2 = Instant::now();
        let mask3 = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let pooled = &layers[layers.len().saturating_sub(FEATURE_LAYERS)..];
        let mut blocks = Vec::with_capacity(2 * pooled.len());
        for l in pooled {
            blocks.push(bert::masked_mean_l2(l, &mask3)?);
        }
        for l in pooled {
            blocks.push(bert::masked_max_l2(l, &mask3)?);
        }
        let sentence = blocks[pooled.len() - 1]
            .to_device(&Device::Cpu)?
            .to_vec2::<f32>()?;
        let features = Tensor::cat(&blocks, 1)?
            .to_device(&Device::Cpu)?
            .to_vec2::<f32>()?;
        let out = sentence
            .into_iter()
            .zip(features)
            .map(|(vector, features)| Embedding { vector, features })
            .collect();
        Ok((out, t2))
    }

    /// The fused encoder over the batch's tokens without padding; it pools itself.
    #[cfg(target_arch = "x86_64")]
    fn forward_fused(
        &self,
        model: &fused::FusedBert,
        encodings: &[tokenizers::Encoding],
    ) -> Result<(Vec<Embedding>, Instant), EmbedError> {
        let mut ids = Vec::new();
        let mut lens = Vec::with_capacity(encodings.len());
        for e in encodings {
            // Padding (batch-longest) sits at the end; the mask says where.
            let len = e.get_attention_mask().iter().filter(|&&m| m != 0).count();
            ids.extend_from_slice(&e.get_ids()[..len]);
            lens.push(len);
        }
        let n = ids.len();
        let ids = Tensor::from_vec(ids, n, &Device::Cpu)?;
        let features = model.forward(&ids, &lens)?.to_vec2::<f32>()?;
        let t2 = Instant::now();
        let last = FEATURE_LAYERS.min(self.layers) - 1;
        let out = features
            .into_iter()
            .map(|features| Embedding {
                vector: features[last * self.dim..(last + 1) * self.dim].to_vec(),
                features,
            })
            .collect();
        Ok((out, t2))
    }
}

/// The floating-point type of the model file's token embeddings (f16 for the
/// shipped model), read from the safetensors header.
fn file_dtype(path: &Path) -> Option<DType> {
    // SAFETY: read-only map of the weights, as above.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path).ok()? };
    let (_, view) = st
        .tensors()
        .into_iter()
        .find(|(name, _)| name.ends_with("word_embeddings.weight"))?;
    let dtype = DType::try_from(view.dtype()).ok()?;
    matches!(dtype, DType::F16 | DType::BF16 | DType::F32).then_some(dtype)
}

/// Cosine similarity of two vectors (dot product when both are unit length).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// Characters tokenized per token the model keeps (see [`Embedder::embed`]).
pub const CHARS_PER_TOKEN_BOUND: usize = 16;

/// The longest prefix of `text` with at most `max_chars` characters.
pub fn prefix_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn prefix_chars_cuts_at_a_character_boundary() {
        assert_eq!(prefix_chars("héllo", 2), "hé");
        assert_eq!(prefix_chars("héllo", 10), "héllo");
        assert_eq!(prefix_chars("", 3), "");
    }

    use super::*;

    #[test]
    fn device_parsing() {
        assert_eq!(parse_device("cpu"), Ok(DeviceSpec::Cpu));
        assert_eq!(parse_device("CUDA:1"), Ok(DeviceSpec::Cuda(1)));
        assert_eq!(parse_device("metal"), Ok(DeviceSpec::Metal(0)));
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
    }

    #[test]
    fn missing_local_model_says_how_to_fix() {
        let err = locate_model("./no/such/model").unwrap_err().to_string();
        assert!(err.contains("./no/such/model"), "{err}");
        assert!(err.contains("embed.model"), "{err}");
    }

    #[test]
    fn offline_uncached_hub_model_is_a_clear_error() {
        // A hub id that cannot be in any cache here; HF_HUB_OFFLINE avoids the network.
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("HF_HOME", dir.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let err = locate_model("nobody/no-such-model")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nobody/no-such-model"), "{err}");
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    }

    #[test]
    fn cosine_basics() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
