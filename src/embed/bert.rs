//! BERT encoder on candle, written for embedding: every layer's output is returned
//! (the router pools several layers), Q/K/V are one fused matmul, and token-type
//! embeddings are a single broadcast row (sentence embedding never uses segment B).
//! Weights load from the same safetensors names as Hugging Face's BertModel.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

pub struct Bert {
    word: Embedding,
    position: Tensor,
    /// Token type 0's embedding, shape (hidden,).
    token_type0: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    act: HiddenAct,
    /// For the fused encoder (x86-64 only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    eps: f64,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    intermediate: usize,
}

fn linear(vb: VarBuilder, in_dim: usize, out_dim: usize) -> candle_core::Result<Linear> {
    let w = vb.get((out_dim, in_dim), "weight")?;
    let b = vb.get(out_dim, "bias")?;
    Ok(Linear::new(w, Some(b)))
}

fn layer_norm(vb: VarBuilder, dim: usize, eps: f64) -> candle_core::Result<LayerNorm> {
    let (w, b) = match (vb.get(dim, "weight"), vb.get(dim, "bias")) {
        (Ok(w), Ok(b)) => (w, b),
        // Old TF-converted checkpoints name them gamma/beta.
        _ => (vb.get(dim, "gamma")?, vb.get(dim, "beta")?),
    };
    Ok(LayerNorm::new(w, b, eps))
}

impl Bert {
    pub fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!(
                "hidden size {h} is not divisible by {} heads",
                cfg.num_attention_heads
            );
        }
        let e = vb.pp("embeddings");
        let word = Embedding::new(e.get((cfg.vocab_size, h), "word_embeddings.weight")?, h);
        let position = e.get(
            (cfg.max_position_embeddings, h),
            "position_embeddings.weight",
        )?;
        let token_type0 = e
            .get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?
            .get(0)?;
        let emb_norm = layer_norm(e.pp("LayerNorm"), h, cfg.layer_norm_eps)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let (q, k, v) = (
                linear(a.pp("self.query"), h, h)?,
                linear(a.pp("self.key"), h, h)?,
                linear(a.pp("self.value"), h, h)?,
            );
            let w = Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?;
            let bias = |l: &Linear| {
                l.bias()
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg("attention without bias".into()))
            };
            let b = Tensor::cat(&[bias(&q)?, bias(&k)?, bias(&v)?], 0)?;
            layers.push(Layer {
                qkv: Linear::new(w, Some(b)),
                attn_out: linear(a.pp("output.dense"), h, h)?,
                attn_norm: layer_norm(a.pp("output.LayerNorm"), h, cfg.layer_norm_eps)?,
                intermediate: linear(l.pp("intermediate.dense"), h, cfg.intermediate_size)?,
                output: linear(l.pp("output.dense"), cfg.intermediate_size, h)?,
                out_norm: layer_norm(l.pp("output.LayerNorm"), h, cfg.layer_norm_eps)?,
            });
        }
        Ok(Self {
            word,
            position,
            token_type0,
            emb_norm,
            layers,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            act: cfg.hidden_act,
            eps: cfg.layer_norm_eps,
            intermediate: cfg.intermediate_size,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Packs the weights for the fused CPU encoder, one layer at a time. Only exact
    /// GELU is fused, so a model with another activation is refused.
    #[cfg(target_arch = "x86_64")]
    pub fn fused(
        &self,
        precision: super::fused::Precision,
        pooled_layers: usize,
    ) -> Result<super::fused::FusedBert, String> {
        use super::fused::{BertSource, FusedBert, LayerSource, WordTable};
        if !matches!(self.act, HiddenAct::Gelu) {
            return Err("the fused encoder implements only exact GELU".into());
        }
        let err = |e: candle_core::Error| e.to_string();
        let flat = |t: &Tensor| -> Result<Vec<f32>, String> {
            t.flatten_all()
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(err)
        };
        let lin = |l: &Linear| -> Result<(Vec<f32>, Vec<f32>), String> {
            let b = l.bias().ok_or("linear layer without bias")?;
            Ok((flat(l.weight())?, flat(b)?))
        };
        let ln = |l: &LayerNorm| -> Result<(Vec<f32>, Vec<f32>), String> {
            let b = l.bias().ok_or("layer norm without bias")?;
            Ok((flat(l.weight())?, flat(b)?))
        };
        let words = self.word.embeddings();
        let word = if words.dtype() == DType::F16 {
            let v = words
                .flatten_all()
                .and_then(|t| t.to_vec1::<half::f16>())
                .map_err(err)?;
            WordTable::F16(v.into_iter().map(half::f16::to_bits).collect())
        } else {
            WordTable::F32(flat(words)?)
        };
        let layers = self.layers.iter().map(|l| {
            Ok(LayerSource {
                qkv: lin(&l.qkv)?,
                attn_out: lin(&l.attn_out)?,
                ln1: ln(&l.attn_norm)?,
                inter: lin(&l.intermediate)?,
                out: lin(&l.output)?,
                ln2: ln(&l.out_norm)?,
            })
        });
        let src = BertSource {
            hidden: self.heads * self.head_dim,
            heads: self.heads,
            intermediate: self.intermediate,
            eps: self.eps as f32,
            word,
            position: flat(&self.position)?,
            token_type0: flat(&self.token_type0)?,
            emb_ln: ln(&self.emb_norm)?,
            layers,
        };
        FusedBert::new(src, precision, pooled_layers)
    }

    /// Runs the encoder. `ids` and `mask` are (batch, seq); returns each layer's
    /// output, (batch, seq, hidden), first layer first.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let (b, s) = ids.dims2()?;
        let pos = self.position.narrow(0, 0, s)?;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&pos)?
            .broadcast_add(&self.token_type0)?;
        let mut x = self.emb_norm.forward(&x)?;
        // Additive attention bias: 0 for tokens, a large negative for padding.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e4)?.reshape((b, 1, 1, s))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let mut outputs = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let qkv = l
                .qkv
                .forward(&x)?
                .reshape((b, s, 3, self.heads, self.head_dim))?
                .permute((2, 0, 3, 1, 4))?; // (3, b, heads, s, head_dim)
            let q = (qkv.get(0)?.contiguous()? * scale)?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx =
                probs
                    .matmul(&v)?
                    .transpose(1, 2)?
                    .reshape((b, s, self.heads * self.head_dim))?;
            let attn = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
            let inter = l.intermediate.forward(&attn)?;
            let inter = match self.act {
                HiddenAct::Gelu => inter.gelu_erf()?,
                HiddenAct::GeluApproximate => inter.gelu()?,
                HiddenAct::Relu => inter.relu()?,
            };
            x = l.out_norm.forward(&(l.output.forward(&inter)? + &attn)?)?;
            outputs.push(x.clone());
        }
        Ok(outputs)
    }
}

/// Masked mean over the sequence, then L2 normalization: (b, s, h) → (b, h).
pub fn masked_mean_l2(hidden: &Tensor, mask3: &Tensor) -> candle_core::Result<Tensor> {
    let summed = hidden.broadcast_mul(mask3)?.sum(1)?;
    let counts = mask3.sum(1)?.clamp(1e-9f32, f32::MAX)?;
    l2_normalize(&summed.broadcast_div(&counts)?)
}

/// Masked max over the sequence, then L2 normalization: (b, s, h) → (b, h).
pub fn masked_max_l2(hidden: &Tensor, mask3: &Tensor) -> candle_core::Result<Tensor> {
    // Padding gets a large negative value so it never wins.
    let penalty = ((mask3 - 1.0)? * 1e9)?;
    l2_normalize(&hidden.broadcast_add(&penalty)?.max(1)?)
}

pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    x.broadcast_div(&norm)
}
