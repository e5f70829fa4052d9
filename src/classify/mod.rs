//! The tier head: a linear layer over the sentence embedding, with softmax.
//! Load/save (safetensors + JSON metadata), predict, train, evaluate. No network.

mod data;
mod eval;
pub mod finish;
pub mod outcome_head;
pub mod outcomes;
mod train;

pub use data::{read_examples, routed_text, tier_index, LabeledExample, CONTEXT_MAX_CHARS};
pub use eval::{calibration, evaluate, Calibration, EvalReport, TierMetrics};
pub use train::{
    fit_temperature, train_head, train_logistic, EmbeddingCache, TrainOptions, TrainReport,
};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use crate::config::DEFAULT_HEAD_PATH;

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("tier head {path}: {message}")]
    BadHead { path: PathBuf, message: String },
    /// The head was trained on another embedding model's vectors.
    #[error("{0}")]
    ModelMismatch(String),
    #[error("training data: {0}")]
    Data(String),
    #[error("training: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Everything recorded beside the head's weights.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeadMeta {
    /// Tier names, cheapest first. The routing table is keyed by these.
    pub labels: Vec<String>,
    pub embedding_model: String,
    pub embedding_sha256: String,
    /// How the input features are computed (see `embed::FEATURE_SPEC`).
    #[serde(default)]
    pub features: String,
    /// Input dimension.
    pub dim: usize,
    pub max_tokens: usize,
    pub training_data_sha256: String,
    pub train_examples: usize,
    pub validation_examples: usize,
    /// Validation metrics at the time of training.
    pub metrics: serde_json::Value,
    /// RFC 3339 UTC.
    pub created: String,
    /// The softmax temperature fitted on validation (already folded into the
    /// weights; kept for the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// How the "needs a stronger model" output was trained and how it is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeMeta>,
}

/// The head's second output: a logistic "the stronger model answers better" trained
/// on measured outcomes, blended with the expected tier into one ranking score.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutcomeMeta {
    /// The outcome file (path and sha256) and its (cheaper, stronger) models.
    pub data: String,
    pub models: Vec<String>,
    pub examples: usize,
    /// Weight of the expected tier in the blend; the outcome logit gets the rest.
    pub blend: f32,
    /// Mean and standard deviation of the expected tier and of the outcome logit
    /// over the taxonomy training set: both are standardized before blending.
    pub tier_mean: f32,
    pub tier_std: f32,
    pub logit_mean: f32,
    pub logit_std: f32,
    /// On the outcome data (outcome logits cross-fitted over 5 folds): what
    /// sending the top tier's decisions plus every request whose strength reaches
    /// `threshold` to the stronger model keeps, strongest threshold first.
    pub operating_points: Vec<OperatingPoint>,
}

/// One point of the cost/quality trade-off `router.quality_target` chooses from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct OperatingPoint {
    /// Requests at or above this strength go to the top tier (None: none beyond
    /// the taxonomy's own).
    pub threshold: Option<f32>,
    /// Mean quality as a share of the all-strong quality.
    pub quality_share: f64,
    /// Share of requests sent to the stronger model.
    pub strong_share: f64,
    /// Cost as a share of the all-strong cost.
    pub cost_share: f64,
}

/// Output of the head for one embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Index of the most probable tier.
    pub tier: usize,
    pub probs: Vec<f32>,
    /// The outcome output: P(the stronger model answers better), when the head has one.
    pub outcome: Option<f32>,
    /// How much the request needs a stronger model, in (0, 1): the ranking score
    /// (see [`TierHead::predict`]).
    pub strength: f32,
}

impl Prediction {
    pub fn confidence(&self) -> f32 {
        self.probs.get(self.tier).copied().unwrap_or(0.0)
    }
}

/// The expected tier under `probs`, scaled so the cheapest tier is 0 and the top 1.
pub fn expected_tier(probs: &[f32]) -> f32 {
    let top = probs.len().saturating_sub(1).max(1) as f32;
    probs
        .iter()
        .enumerate()
        .map(|(i, p)| i as f32 * p)
        .sum::<f32>()
        / top
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[derive(Debug, Clone)]
pub struct TierHead {
    /// Row-major (labels × dim).
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// The outcome output's weights and bias (with `meta.outcome`).
    outcome: Option<(Vec<f32>, f32)>,
    meta: HeadMeta,
}

/// The metadata file that goes with a head's weights.
pub fn meta_path(head: &Path) -> PathBuf {
    head.with_extension("json")
}

impl TierHead {
    pub fn new(weight: Vec<f32>, bias: Vec<f32>, meta: HeadMeta) -> Result<Self, String> {
        let n = meta.labels.len();
        if n < 2 {
            return Err("a head needs at least two labels".into());
        }
        if weight.len() != n * meta.dim || bias.len() != n {
            return Err(format!(
                "weights are {}+{} values, expected {}x{} + {}",
                weight.len(),
                bias.len(),
                n,
                meta.dim,
                n
            ));
        }
        Ok(Self {
            weight,
            bias,
            outcome: None,
            meta,
        })
    }

    /// The head with an outcome output (`weight` over the same features).
    pub fn with_outcome(mut self, weight: Vec<f32>, bias: f32) -> Result<Self, String> {
        if weight.len() != self.meta.dim {
            return Err(format!(
                "outcome weights are {} values, expected {}",
                weight.len(),
                self.meta.dim
            ));
        }
        if self.meta.outcome.is_none() {
            return Err("an outcome output needs `outcome` metadata".into());
        }
        self.outcome = Some((weight, bias));
        Ok(self)
    }

    /// The outcome output's (weights, bias), if the head has one.
    pub fn outcome_weights(&self) -> Option<(&[f32], f32)> {
        self.outcome.as_ref().map(|(w, b)| (w.as_slice(), *b))
    }

    /// The operating point `router.quality_target` picks: the fewest strong calls
    /// that keep `target` of the strong model's quality on the outcome data. None
    /// without an outcome output.
    pub fn operating_point(&self, target: f32) -> Option<OperatingPoint> {
        let points = &self.meta.outcome.as_ref()?.operating_points;
        points
            .iter()
            .filter(|p| p.quality_share >= target as f64)
            .min_by(|a, b| a.strong_share.total_cmp(&b.strong_share))
            .or_else(|| {
                points
                    .iter()
                    .max_by(|a, b| a.quality_share.total_cmp(&b.quality_share))
            })
            .copied()
    }

    pub fn meta(&self) -> &HeadMeta {
        &self.meta
    }
    pub fn labels(&self) -> &[String] {
        &self.meta.labels
    }
    pub fn dim(&self) -> usize {
        self.meta.dim
    }

    pub fn load(path: &Path) -> Result<Self, ClassifyError> {
        let bad = |message: String| ClassifyError::BadHead {
            path: path.to_path_buf(),
            message,
        };
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| bad(format!("cannot read weights: {e}")))?;
        let meta_file = meta_path(path);
        let meta: HeadMeta = serde_json::from_slice(
            &std::fs::read(&meta_file)
                .map_err(|e| bad(format!("cannot read {}: {e}", meta_file.display())))?,
        )
        .map_err(|e| bad(format!("{}: {e}", meta_file.display())))?;
        let get = |name: &str| -> Result<Vec<f32>, ClassifyError> {
            let t = tensors
                .get(name)
                .ok_or_else(|| bad(format!("tensor `{name}` missing")))?;
            Ok(t.to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        let weight = get("weight")?;
        let bias = get("bias")?;
        let head = Self::new(weight, bias, meta).map_err(bad)?;
        match (
            tensors.contains_key("outcome_weight"),
            head.meta.outcome.is_some(),
        ) {
            (false, false) => Ok(head),
            (true, true) => {
                let ob = get("outcome_bias")?;
                let ob = ob
                    .first()
                    .copied()
                    .ok_or_else(|| bad("`outcome_bias` is empty".into()))?;
                head.with_outcome(get("outcome_weight")?, ob).map_err(bad)
            }
            (true, false) => Err(bad("`outcome_weight` without `outcome` metadata".into())),
            (false, true) => Err(bad("`outcome` metadata without `outcome_weight`".into())),
        }
    }

    /// Writes weights and metadata, each through a temporary file and a rename.
    pub fn save(&self, path: &Path) -> Result<(), ClassifyError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let n = self.meta.labels.len();
        let mut map = HashMap::new();
        map.insert(
            "weight".to_string(),
            Tensor::from_vec(self.weight.clone(), (n, self.meta.dim), &Device::Cpu)?,
        );
        map.insert(
            "bias".to_string(),
            Tensor::from_vec(self.bias.clone(), n, &Device::Cpu)?,
        );
        if let Some((w, b)) = &self.outcome {
            map.insert(
                "outcome_weight".to_string(),
                Tensor::from_vec(w.clone(), self.meta.dim, &Device::Cpu)?,
            );
            map.insert(
                "outcome_bias".to_string(),
                Tensor::from_vec(vec![*b], 1, &Device::Cpu)?,
            );
        }
        let tmp = path.with_extension("safetensors.tmp");
        candle_core::safetensors::save(&map, &tmp)?;
        let meta_tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(&self.meta)
            .map_err(|e| ClassifyError::Data(e.to_string()))?;
        std::fs::write(&meta_tmp, json)?;
        std::fs::rename(&tmp, path)?;
        std::fs::rename(&meta_tmp, meta_path(path))?;
        Ok(())
    }

    /// Refuses a head trained on another embedding model.
    pub fn check_embedder(
        &self,
        path: &Path,
        model_id: &str,
        weights_sha256: &str,
        dim: usize,
    ) -> Result<(), ClassifyError> {
        if self.meta.features != crate::embed::FEATURE_SPEC {
            return Err(ClassifyError::BadHead {
                path: path.to_path_buf(),
                message: format!(
                    "it was trained on features `{}`, this triage computes `{}`; retrain with `triage train`",
                    self.meta.features,
                    crate::embed::FEATURE_SPEC
                ),
            });
        }
        if self.meta.embedding_sha256 != weights_sha256 || self.meta.dim != dim {
            return Err(ClassifyError::ModelMismatch(format!(
                "tier head {} was trained on embeddings of `{}` (weights sha256 {}, dimension {}), \
                 but the loaded embedding model is `{model_id}` (sha256 {weights_sha256}, dimension \
                 {dim}); retrain the head with `triage train` or load the model it was trained with",
                path.display(),
                self.meta.embedding_model,
                self.meta.embedding_sha256,
                self.meta.dim,
            )));
        }
        Ok(())
    }

    /// The ranking score of tier probabilities and an outcome logit `z`: the
    /// expected tier alone without an outcome output (or without `z`).
    pub fn strength_of(&self, probs: &[f32], z: Option<f32>) -> f32 {
        let e = expected_tier(probs);
        match (z, &self.meta.outcome) {
            (Some(z), Some(m)) => sigmoid(
                m.blend * (e - m.tier_mean) / m.tier_std.max(1e-6)
                    + (1.0 - m.blend) * (z - m.logit_mean) / m.logit_std.max(1e-6),
            ),
            _ => e,
        }
    }

    /// Logits → softmax probabilities, and the ranking score. Plain Rust: a few
    /// dot products over the features (about a microsecond).
    ///
    /// The strength is the expected tier under the probabilities; with an outcome
    /// output, the logistic of a blend of that and the outcome logit, each
    /// standardized by its spread over the taxonomy training set.
    pub fn predict(&self, embedding: &[f32]) -> Prediction {
        let dim = self.meta.dim;
        let dot = |w: &[f32]| w.iter().zip(embedding).map(|(w, x)| w * x).sum::<f32>();
        let mut logits: Vec<f32> = self
            .bias
            .iter()
            .enumerate()
            .map(|(i, b)| b + dot(&self.weight[i * dim..(i + 1) * dim]))
            .collect();
        softmax_in_place(&mut logits);
        let tier = argmax(&logits);
        let (outcome, strength) = match &self.outcome {
            Some((w, b)) => {
                let z = b + dot(w);
                (Some(sigmoid(z)), self.strength_of(&logits, Some(z)))
            }
            None => (None, self.strength_of(&logits, None)),
        };
        Prediction {
            tier,
            probs: logits,
            outcome,
            strength,
        }
    }
}

pub fn softmax_in_place(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    if sum > 0.0 {
        for x in v.iter_mut() {
            *x /= sum;
        }
    }
}

pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Routing policy on top of the head; sending a hard request to a cheap model is the
/// expensive mistake, so both rules only ever raise the tier:
/// - the cheapest tier is chosen only while the top tier's probability stays below
///   `top_tier_guard`; otherwise the likelier of the tiers above it is used;
/// - when the head is unsure (top probability below `min_confidence`), go one up.
///
/// Returns the tier index and whether the policy raised it.
pub fn apply_policy(pred: &Prediction, min_confidence: f32, top_tier_guard: f32) -> (usize, bool) {
    let n = pred.probs.len();
    let top = n.saturating_sub(1);
    if pred.tier == 0 && n > 1 && pred.probs[top] >= top_tier_guard {
        return (1 + argmax(&pred.probs[1..]), true);
    }
    if pred.confidence() < min_confidence && pred.tier < top {
        (pred.tier + 1, true)
    } else {
        (pred.tier, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(tier: usize, probs: Vec<f32>) -> Prediction {
        Prediction {
            tier,
            strength: expected_tier(&probs),
            probs,
            outcome: None,
        }
    }

    fn meta(dim: usize) -> HeadMeta {
        HeadMeta {
            labels: vec!["SIMPLE".into(), "MODERATE".into(), "COMPLEX".into()],
            embedding_model: "m".into(),
            embedding_sha256: "abc".into(),
            features: crate::embed::FEATURE_SPEC.into(),
            dim,
            max_tokens: 256,
            training_data_sha256: "d".into(),
            train_examples: 1,
            validation_examples: 1,
            metrics: serde_json::json!({}),
            created: "2026-01-01T00:00:00Z".into(),
            temperature: None,
            outcome: None,
        }
    }

    #[test]
    fn predict_softmax_and_argmax() {
        // Tier i responds to feature i.
        let w = vec![5.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 5.0];
        let head = TierHead::new(w, vec![0.0; 3], meta(3)).unwrap();
        let p = head.predict(&[0.0, 1.0, 0.0]);
        assert_eq!(p.tier, 1);
        assert!((p.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(p.confidence() > 0.9);
    }

    #[test]
    fn low_confidence_goes_one_tier_up_but_not_past_the_top() {
        let p = pred(0, vec![0.45, 0.35, 0.2]);
        assert_eq!(apply_policy(&p, 0.5, 1.0), (1, true));
        assert_eq!(apply_policy(&p, 0.4, 1.0), (0, false));
        let top = pred(2, vec![0.3, 0.3, 0.4]);
        assert_eq!(apply_policy(&top, 0.5, 1.0), (2, false));
    }

    #[test]
    fn cheapest_tier_needs_a_small_top_tier_probability() {
        let p = pred(0, vec![0.6, 0.15, 0.25]);
        // P(top) = 0.25 ≥ 0.2: the likelier of the upper tiers (COMPLEX here).
        assert_eq!(apply_policy(&p, 0.0, 0.2), (2, true));
        assert_eq!(apply_policy(&p, 0.0, 0.3), (0, false));
    }

    #[test]
    fn save_load_roundtrip_and_mismatch_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.safetensors");
        let head = TierHead::new(
            (0..9).map(|x| x as f32).collect(),
            vec![1.0, 2.0, 3.0],
            meta(3),
        )
        .unwrap();
        head.save(&path).unwrap();
        let back = TierHead::load(&path).unwrap();
        assert_eq!(back.meta(), head.meta());
        assert_eq!(
            back.predict(&[1.0, 0.0, 0.0]),
            head.predict(&[1.0, 0.0, 0.0])
        );
        assert!(back.check_embedder(&path, "m", "abc", 3).is_ok());
        let err = back
            .check_embedder(&path, "other", "zzz", 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("other") && err.contains("triage train"),
            "{err}"
        );
    }

    #[test]
    fn wrong_shapes_are_rejected() {
        assert!(TierHead::new(vec![0.0; 8], vec![0.0; 3], meta(3)).is_err());
        let mut m = meta(3);
        m.labels.truncate(1);
        assert!(TierHead::new(vec![0.0; 3], vec![0.0; 1], m).is_err());
    }
}

/// A routing decision for one text: the head's opinion, the policy's tier, and the
/// ordered models (first used, the rest fallbacks) the routing table maps it to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Decision {
    pub tier: String,
    pub tier_index: usize,
    /// The head's own top tier (before the confidence policy).
    pub head_tier: String,
    pub confidence: f32,
    /// Probabilities in label order (cheapest tier first).
    pub probs: Vec<(String, f32)>,
    /// True when the policy raised the tier (low confidence, the top-tier guard or
    /// `router.quality_target`).
    pub raised: bool,
    /// True when `router.quality_target` raised it.
    pub by_quality: bool,
    /// How much the request needs a stronger model (see [`TierHead::predict`]).
    pub strength: f32,
    pub models: Vec<String>,
}

impl Decision {
    pub fn probs_json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .probs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(round4(*v))))
            .collect();
        serde_json::Value::Object(map)
    }
}

pub fn round4(x: f32) -> f64 {
    (x as f64 * 10_000.0).round() / 10_000.0
}

/// Applies the policy and the routing table to a prediction.
pub fn decide(
    head: &TierHead,
    pred: &Prediction,
    router: &crate::config::RouterConfig,
) -> Decision {
    let (mut idx, mut raised) = apply_policy(pred, router.min_confidence, router.top_tier_guard);
    let labels = head.labels();
    // `router.quality_target`: a request strong enough for the chosen operating point
    // goes to the top tier.
    let top = labels.len().saturating_sub(1);
    let point = router.quality_target.and_then(|t| head.operating_point(t));
    let by_quality = idx < top
        && point
            .and_then(|p| p.threshold)
            .is_some_and(|t| pred.strength >= t);
    if by_quality {
        idx = top;
        raised = true;
    }
    let tier = labels[idx].clone();
    Decision {
        models: router.tiers.get(&tier).cloned().unwrap_or_default(),
        tier,
        tier_index: idx,
        head_tier: labels[pred.tier].clone(),
        confidence: pred.confidence(),
        probs: labels
            .iter()
            .cloned()
            .zip(pred.probs.iter().copied())
            .collect(),
        raised,
        by_quality,
        strength: pred.strength,
    }
}

/// The routed tier (the head plus the policy, as `serve` decides) of each input.
pub fn routed_tiers(
    head: &TierHead,
    xs: &[Vec<f32>],
    router: &crate::config::RouterConfig,
) -> Vec<usize> {
    xs.iter()
        .map(|x| decide(head, &head.predict(x), router).tier_index)
        .collect()
}

/// The head with its routed validation metrics recorded as `metrics.routed_validation`
/// (and the policy that produced them): the one "validation accuracy" that `train`,
/// `retrain` and `head list` show.
pub fn with_routed_validation(
    head: TierHead,
    val_x: &[Vec<f32>],
    val_y: &[usize],
    router: &crate::config::RouterConfig,
) -> Result<(TierHead, EvalReport), ClassifyError> {
    let routed = evaluate(head.labels(), val_y, &routed_tiers(&head, val_x, router));
    let mut meta = head.meta().clone();
    if !meta.metrics.is_object() {
        meta.metrics = serde_json::json!({});
    }
    if let serde_json::Value::Object(m) = &mut meta.metrics {
        m.insert(
            "routed_validation".into(),
            serde_json::to_value(&routed).map_err(|e| ClassifyError::Data(e.to_string()))?,
        );
        m.insert(
            "min_confidence".into(),
            serde_json::json!(router.min_confidence),
        );
        m.insert(
            "top_tier_guard".into(),
            serde_json::json!(router.top_tier_guard),
        );
    }
    let head = head.with_meta(meta).map_err(ClassifyError::Data)?;
    Ok((head, routed))
}

impl TierHead {
    /// Raw parameters: (row-major weight, bias).
    pub fn weights(&self) -> (&[f32], &[f32]) {
        (&self.weight, &self.bias)
    }

    /// The same parameters (the outcome output's too) with other metadata.
    pub fn with_meta(&self, meta: HeadMeta) -> Result<Self, String> {
        let head = Self::new(self.weight.clone(), self.bias.clone(), meta)?;
        match &self.outcome {
            Some((w, b)) if head.meta.outcome.is_some() => head.with_outcome(w.clone(), *b),
            _ => Ok(head),
        }
    }
}
