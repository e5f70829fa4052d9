//! Training the linear head with candle-nn: softmax cross-entropy weighted for class
//! balance, AdamW on the full batch, early stopping on the validation loss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use sha2::{Digest, Sha256};

use super::{evaluate, ClassifyError, EvalReport, HeadMeta, TierHead};

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub max_epochs: usize,
    pub learning_rate: f64,
    /// L2 penalty (λ/2·‖W‖²) on the weights over standardized features; the bias is
    /// not penalized. 0.07 was chosen by 5-fold cross-validation on the training split.
    pub l2: f64,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            max_epochs: 2000,
            learning_rate: 0.01,
            l2: 0.07,
            patience: 100,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrainReport {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub train_loss: f32,
    pub val_loss: f32,
    /// Argmax of the head on the validation split.
    pub val: EvalReport,
}

fn to_matrix(rows: &[Vec<f32>], dim: usize) -> Result<Tensor, ClassifyError> {
    let mut flat = Vec::with_capacity(rows.len() * dim);
    for r in rows {
        if r.len() != dim {
            return Err(ClassifyError::Data(format!(
                "embedding of dimension {} where {dim} was expected",
                r.len()
            )));
        }
        flat.extend_from_slice(r);
    }
    Ok(Tensor::from_vec(flat, (rows.len(), dim), &Device::Cpu)?)
}

/// Weighted mean negative log-likelihood.
fn weighted_nll(
    logits: &Tensor,
    y: &Tensor,
    sample_w: &Tensor,
) -> Result<Tensor, candle_core::Error> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?;
    let total_w = sample_w.sum_all()?;
    (picked * sample_w)?
        .sum_all()?
        .neg()?
        .broadcast_div(&total_w)
}

/// Per-feature mean and standard deviation over the training rows.
fn moments(rows: &[Vec<f32>], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0f64; dim];
    for r in rows {
        for (m, x) in mean.iter_mut().zip(r) {
            *m += *x as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0f64; dim];
    for r in rows {
        for ((v, x), m) in var.iter_mut().zip(r).zip(&mean) {
            let d = *x as f64 - m;
            *v += d * d;
        }
    }
    let std = var
        .iter()
        .map(|v| ((v / n).sqrt()).max(1e-6) as f32)
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), std)
}

/// Trains a head on standardized features, then folds the standardization into the
/// weights (W' = W/σ, b' = b − W'·μ) so prediction is one linear layer on raw features.
/// `meta` supplies everything but the metrics, which are filled in.
pub fn train_head(
    train_x: &[Vec<f32>],
    train_y: &[usize],
    val_x: &[Vec<f32>],
    val_y: &[usize],
    mut meta: HeadMeta,
    opts: &TrainOptions,
    mut progress: impl FnMut(usize, f32, f32),
) -> Result<(TierHead, TrainReport), ClassifyError> {
    let classes = meta.labels.len();
    let dim = meta.dim;
    if train_x.is_empty() || val_x.is_empty() {
        return Err(ClassifyError::Data(
            "both the training and the validation split need examples".into(),
        ));
    }
    // Class weights: n / (classes · count_c), so every tier weighs the same in the loss.
    let mut counts = vec![0usize; classes];
    for &y in train_y {
        if y >= classes {
            return Err(ClassifyError::Data(format!("label index {y} out of range")));
        }
        counts[y] += 1;
    }
    if let Some(c) = counts.iter().position(|&c| c == 0) {
        return Err(ClassifyError::Data(format!(
            "tier {} has no training examples",
            meta.labels[c]
        )));
    }
    let n = train_y.len() as f32;
    let class_w: Vec<f32> = counts
        .iter()
        .map(|&c| n / (classes as f32 * c as f32))
        .collect();
    let weights_for = |ys: &[usize]| -> Result<Tensor, candle_core::Error> {
        Tensor::from_vec(
            ys.iter().map(|&y| class_w[y]).collect::<Vec<_>>(),
            ys.len(),
            &Device::Cpu,
        )
    };
    let labels_for = |ys: &[usize]| -> Result<Tensor, candle_core::Error> {
        Tensor::from_vec(
            ys.iter().map(|&y| y as u32).collect::<Vec<_>>(),
            ys.len(),
            &Device::Cpu,
        )
    };
    let (mu, sigma) = moments(train_x, dim);
    let mu_t = Tensor::from_vec(mu.clone(), dim, &Device::Cpu)?;
    let sigma_t = Tensor::from_vec(sigma.clone(), dim, &Device::Cpu)?;
    let standardize = |x: Tensor| -> Result<Tensor, candle_core::Error> {
        x.broadcast_sub(&mu_t)?.broadcast_div(&sigma_t)
    };
    let xt = standardize(to_matrix(train_x, dim)?)?;
    let yt = labels_for(train_y)?;
    let wt = weights_for(train_y)?;
    let xv = standardize(to_matrix(val_x, dim)?)?;
    let yv = labels_for(val_y)?;
    let wv = weights_for(val_y)?;

    // Zero initialization: the problem is convex, and training is reproducible.
    let w = Var::zeros((classes, dim), DType::F32, &Device::Cpu)?;
    let b = Var::zeros(classes, DType::F32, &Device::Cpu)?;
    let mut opt = AdamW::new(
        vec![w.clone(), b.clone()],
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let forward = |x: &Tensor| -> Result<Tensor, candle_core::Error> {
        x.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())
    };
    let mut best = (f32::INFINITY, 0usize, f32::INFINITY);
    let mut best_w = w.as_tensor().copy()?;
    let mut best_b = b.as_tensor().copy()?;
    let mut epochs_run = 0;
    for epoch in 1..=opts.max_epochs {
        epochs_run = epoch;
        let nll = weighted_nll(&forward(&xt)?, &yt, &wt)?;
        let penalty = (w.as_tensor().sqr()?.sum_all()? * (opts.l2 / 2.0))?;
        opt.backward_step(&(&nll + penalty)?)?;
        let train_loss = nll.to_scalar::<f32>()?;
        let val_loss = weighted_nll(&forward(&xv)?, &yv, &wv)?.to_scalar::<f32>()?;
        if val_loss < best.0 - 1e-6 {
            best = (val_loss, epoch, train_loss);
            best_w = w.as_tensor().copy()?;
            best_b = b.as_tensor().copy()?;
        }
        if epoch % 25 == 0 || epoch == 1 {
            progress(epoch, train_loss, val_loss);
        }
        if epoch - best.1 >= opts.patience {
            break;
        }
    }
    // Fold the standardization into the layer.
    let folded_w = best_w.broadcast_div(&sigma_t)?;
    let folded_b = (best_b - folded_w.matmul(&mu_t.unsqueeze(1)?)?.squeeze(1)?)?;
    let weight = folded_w.flatten_all()?.to_vec1::<f32>()?;
    let bias = folded_b.to_vec1::<f32>()?;
    // Metrics of the head itself (argmax) on the validation split.
    let head =
        TierHead::new(weight.clone(), bias.clone(), meta.clone()).map_err(ClassifyError::Data)?;
    let predicted: Vec<usize> = val_x.iter().map(|x| head.predict(x).tier).collect();
    let val = evaluate(&meta.labels, val_y, &predicted);
    meta.metrics = serde_json::json!({
        "validation": &val,
        "best_epoch": best.1,
        "val_loss": best.0,
        "train_loss": best.2,
    });
    let head = TierHead::new(weight, bias, meta).map_err(ClassifyError::Data)?;
    Ok((
        head,
        TrainReport {
            epochs_run,
            best_epoch: best.1,
            train_loss: best.2,
            val_loss: best.0,
            val,
        },
    ))
}

/// Share of all validation decisions that may be wrong at a confidence above 0.9.
pub const MAX_WRONG_ABOVE_90: f64 = 0.01;

/// The softmax temperature, fitted on validation: the one that minimizes the loss
/// (a grid over 1..4), never below 1 (traffic is harder than validation, so the
/// head is never made surer than it was trained), then raised until at most
/// [`MAX_WRONG_ABOVE_90`] of the decisions are wrong above 0.9 confidence. One
/// scalar changes no decision's argmax.
pub fn fit_temperature(head: &TierHead, val_x: &[Vec<f32>], val_y: &[usize]) -> f32 {
    let (w, b) = head.weights();
    let dim = head.dim();
    let logits: Vec<Vec<f32>> = val_x
        .iter()
        .map(|x| {
            b.iter()
                .enumerate()
                .map(|(i, bi)| {
                    bi + w[i * dim..(i + 1) * dim]
                        .iter()
                        .zip(x)
                        .map(|(w, x)| w * x)
                        .sum::<f32>()
                })
                .collect()
        })
        .collect();
    let nll = |t: f32| -> f64 {
        logits
            .iter()
            .zip(val_y)
            .map(|(l, &y)| {
                let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f64 = l.iter().map(|v| (((v - max) / t) as f64).exp()).sum();
                sum.ln() - ((l[y] - max) / t) as f64
            })
            .sum::<f64>()
            / logits.len().max(1) as f64
    };
    let wrong_above_90 = |t: f32| -> f64 {
        let wrong = logits
            .iter()
            .zip(val_y)
            .filter(|(l, &y)| {
                let top = super::argmax(l);
                let max = l[top];
                let sum: f32 = l.iter().map(|v| ((v - max) / t).exp()).sum();
                top != y && 1.0 / sum > 0.9
            })
            .count();
        wrong as f64 / logits.len().max(1) as f64
    };
    let mut best = (f64::INFINITY, 1.0f32);
    let mut t = 1.0f32;
    while t <= 4.0 {
        let v = nll(t);
        if v < best.0 {
            best = (v, t);
        }
        t += 0.01;
    }
    let mut t = best.1;
    while wrong_above_90(t) > MAX_WRONG_ABOVE_90 && t < 4.0 {
        t += 0.01;
    }
    t
}

impl TierHead {
    /// The head with its logits divided by `t` (recorded as `meta.temperature`).
    pub fn with_temperature(&self, t: f32) -> Result<Self, ClassifyError> {
        let (w, b) = self.weights();
        let mut meta = self.meta().clone();
        meta.temperature = Some(t);
        let head = TierHead::new(
            w.iter().map(|v| v / t).collect(),
            b.iter().map(|v| v / t).collect(),
            meta,
        )
        .map_err(ClassifyError::Data)?;
        match self.outcome_weights() {
            Some((w, b)) if head.meta().outcome.is_some() => head
                .with_outcome(w.to_vec(), b)
                .map_err(ClassifyError::Data),
            _ => Ok(head),
        }
    }
}

/// Binary logistic regression on standardized features (L2 λ/2·‖w‖², the bias not
/// penalized), full-batch AdamW until the loss stops improving; the
/// standardization is folded into the returned weights. `y` is 0 or 1 and
/// `sample_w` weighs each example.
pub fn train_logistic(
    x: &[Vec<f32>],
    y: &[f32],
    sample_w: &[f32],
    l2: f64,
    max_epochs: usize,
) -> Result<(Vec<f32>, f32), ClassifyError> {
    let dim = x.first().map_or(0, Vec::len);
    if x.is_empty() || y.len() != x.len() || sample_w.len() != x.len() {
        return Err(ClassifyError::Data(
            "logistic regression needs examples with one label and one weight each".into(),
        ));
    }
    let (mu, sigma) = moments(x, dim);
    let mu_t = Tensor::from_vec(mu.clone(), dim, &Device::Cpu)?;
    let sigma_t = Tensor::from_vec(sigma.clone(), dim, &Device::Cpu)?;
    let xt = to_matrix(x, dim)?
        .broadcast_sub(&mu_t)?
        .broadcast_div(&sigma_t)?;
    let yt = Tensor::from_vec(y.to_vec(), y.len(), &Device::Cpu)?;
    let total_w: f32 = sample_w.iter().sum();
    let wt = Tensor::from_vec(
        sample_w
            .iter()
            .map(|w| w / total_w.max(1e-12))
            .collect::<Vec<_>>(),
        y.len(),
        &Device::Cpu,
    )?;
    let w = Var::zeros(dim, DType::F32, &Device::Cpu)?;
    let b = Var::zeros(1, DType::F32, &Device::Cpu)?;
    let mut opt = AdamW::new(
        vec![w.clone(), b.clone()],
        ParamsAdamW {
            lr: 0.01,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let mut best = f32::INFINITY;
    let mut since_best = 0;
    for _ in 0..max_epochs {
        let z = xt
            .matmul(&w.as_tensor().unsqueeze(1)?)?
            .squeeze(1)?
            .broadcast_add(b.as_tensor())?;
        // log(1 + e^z) - y·z, computed stably as relu(z) + log(1 + e^-|z|) - y·z.
        let softplus = (z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        let nll = ((softplus - (&z * &yt)?)? * &wt)?.sum_all()?;
        let loss = (&nll + (w.as_tensor().sqr()?.sum_all()? * (l2 / 2.0))?)?;
        opt.backward_step(&loss)?;
        let v = loss.to_scalar::<f32>()?;
        if v < best - 1e-7 {
            best = v;
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= 25 {
                break;
            }
        }
    }
    let folded = w.as_tensor().broadcast_div(&sigma_t)?;
    let bias = b.as_tensor().to_vec1::<f32>()?[0]
        - folded
            .to_vec1::<f32>()?
            .iter()
            .zip(&mu)
            .map(|(w, m)| w * m)
            .sum::<f32>();
    Ok((folded.to_vec1::<f32>()?, bias))
}

/// Embeddings of training texts, keyed by the text's sha256, so a re-run of
/// `triage train` embeds only what changed. One file per embedding model.
pub struct EmbeddingCache {
    path: PathBuf,
    dim: usize,
    map: HashMap<[u8; 32], Vec<f32>>,
    dirty: bool,
}

fn key(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl EmbeddingCache {
    /// Opens (or starts) the cache for one model; a damaged file is started afresh.
    pub fn open(dir: &Path, model_sha256: &str, max_tokens: usize, dim: usize) -> Self {
        let short = model_sha256.get(..16).unwrap_or(model_sha256);
        let path = dir.join(format!("embeddings-{short}-{max_tokens}.safetensors"));
        let map = Self::read(&path, dim).unwrap_or_else(|e| {
            if path.exists() {
                tracing::warn!(path = %path.display(), error = %e, "embedding cache unreadable, starting afresh");
            }
            HashMap::new()
        });
        Self {
            path,
            dim,
            map,
            dirty: false,
        }
    }

    fn read(path: &Path, dim: usize) -> Result<HashMap<[u8; 32], Vec<f32>>, candle_core::Error> {
        let t = candle_core::safetensors::load(path, &Device::Cpu)?;
        let (Some(keys), Some(vecs)) = (t.get("keys"), t.get("vectors")) else {
            candle_core::bail!("missing tensors");
        };
        let keys = keys.to_vec2::<u8>()?;
        let vecs = vecs.to_vec2::<f32>()?;
        let mut map = HashMap::with_capacity(keys.len());
        for (k, v) in keys.into_iter().zip(vecs) {
            if k.len() == 32 && v.len() == dim {
                let mut kk = [0u8; 32];
                kk.copy_from_slice(&k);
                map.insert(kk, v);
            }
        }
        Ok(map)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, text: &str) -> Option<&Vec<f32>> {
        self.map.get(&key(text))
    }

    pub fn insert(&mut self, text: &str, v: Vec<f32>) {
        self.map.insert(key(text), v);
        self.dirty = true;
    }

    pub fn save(&mut self) -> Result<(), ClassifyError> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let n = self.map.len();
        let mut keys = Vec::with_capacity(n * 32);
        let mut vecs = Vec::with_capacity(n * self.dim);
        for (k, v) in &self.map {
            keys.extend_from_slice(k);
            vecs.extend_from_slice(v);
        }
        let mut t = HashMap::new();
        t.insert(
            "keys".to_string(),
            Tensor::from_vec(keys, (n, 32), &Device::Cpu)?,
        );
        t.insert(
            "vectors".to_string(),
            Tensor::from_vec(vecs, (n, self.dim), &Device::Cpu)?,
        );
        let tmp = self.path.with_extension("tmp");
        candle_core::safetensors::save(&t, &tmp)?;
        std::fs::rename(&tmp, &self.path)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(dim: usize) -> HeadMeta {
        HeadMeta {
            labels: vec!["A".into(), "B".into(), "C".into()],
            embedding_model: "m".into(),
            embedding_sha256: "s".into(),
            features: String::new(),
            dim,
            max_tokens: 256,
            training_data_sha256: "d".into(),
            train_examples: 0,
            validation_examples: 0,
            metrics: serde_json::Value::Null,
            created: String::new(),
            temperature: None,
            outcome: None,
        }
    }

    /// Three separable clusters with noise: training must learn them.
    #[test]
    fn learns_separable_clusters() {
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let dim = 8;
        let mut make = |n: usize| {
            let mut xs = Vec::new();
            let mut ys = Vec::new();
            for i in 0..n {
                let c = i % 3;
                let mut v: Vec<f32> = (0..dim).map(|_| rnd() * 0.5).collect();
                v[c] += 1.0;
                xs.push(v);
                ys.push(c);
            }
            (xs, ys)
        };
        let (tx, ty) = make(300);
        let (vx, vy) = make(90);
        let (head, report) = train_head(
            &tx,
            &ty,
            &vx,
            &vy,
            meta(dim),
            &TrainOptions::default(),
            |_, _, _| {},
        )
        .unwrap();
        assert!(report.val.accuracy > 0.95, "{}", report.val.render());
        assert_eq!(
            head.predict(&[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]).tier,
            2
        );
        assert!(
            head.meta().metrics["validation"]["accuracy"]
                .as_f64()
                .unwrap()
                > 0.95
        );
    }

    #[test]
    fn missing_class_is_an_error() {
        let x = vec![vec![1.0, 0.0]; 4];
        let y = vec![0, 1, 0, 1];
        let err = train_head(
            &x,
            &y,
            &x,
            &y,
            meta(2),
            &TrainOptions::default(),
            |_, _, _| {},
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("C"), "{err}");
    }

    #[test]
    fn embedding_cache_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EmbeddingCache::open(dir.path(), "abcdef0123456789ff", 256, 2);
        assert!(c.is_empty());
        c.insert("hello", vec![1.0, 2.0]);
        c.save().unwrap();
        let c2 = EmbeddingCache::open(dir.path(), "abcdef0123456789ff", 256, 2);
        assert_eq!(c2.get("hello"), Some(&vec![1.0, 2.0]));
        assert!(c2.get("other").is_none());
        // Another model gets another file.
        let c3 = EmbeddingCache::open(dir.path(), "0000000000000000", 256, 2);
        assert!(c3.is_empty());
    }
}
