//! The fast CPU encoder: the whole BERT forward pass as one candle custom op.
//!
//! candle runs BERT as ~25 separate tensor ops per layer, each allocating its output
//! and re-packing the weights for its matrix multiply; on a short prompt that
//! overhead is most of the time. This op holds the weights pre-packed for AVX-512
//! micro-kernels and runs a batch as one packed sequence of tokens (no padding):
//! the matrix multiplies see every token of every input at once, attention runs per
//! input. Bias, GELU and residual adds are fused into the matrix multiply's
//! epilogue, and the routing features are pooled as each layer finishes.
//!
//! Two precisions: `F32` computes what candle computes (same math, different
//! summation order); `Bf16` rounds weights and activations to bfloat16 for the
//! matrix multiplies (f32 accumulation; attention, softmax, layer norm and pooling
//! stay f32) and uses the CPU's AVX512-BF16 dot products, about twice the
//! throughput. The accuracy cost of each is measured in tests/embeddings.rs.

use std::arch::x86_64::*;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

/// Output columns a micro-kernel computes at once (four AVX-512 vectors).
const NR: usize = 64;
/// Rows a micro-kernel computes at once (4×6 accumulators fill 24 of 32 registers).
const MR: usize = 6;
/// Multiply-adds below which a matrix multiply is not split across threads.
const PARALLEL_MIN_MACS: usize = 1 << 21;
/// Tokens per part below which a batch is not split across threads.
const MIN_SPLIT_TOKENS: usize = 16;

/// Arithmetic of the matrix multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    Bf16,
}

impl Precision {
    /// Whether this CPU can run the fused encoder at this precision.
    pub fn supported(self) -> bool {
        let base = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("fma");
        match self {
            Precision::F32 => base,
            Precision::Bf16 => base && is_x86_feature_detected!("avx512bf16"),
        }
    }
}

enum PackedData {
    /// `[group][k][NR]`: row `k` of the transposed weight, 64 columns at a time.
    F32(Vec<f32>),
    /// `[group][k/2][NR][2]`: pairs of consecutive inputs as the bf16 dot product
    /// consumes them.
    Bf16(Vec<u16>),
}

/// A linear layer's weight, transposed and packed for the micro-kernels.
struct Packed {
    n: usize,
    k: usize,
    groups: usize,
    data: PackedData,
    /// Bias, zero-padded to `groups * NR`.
    bias: Vec<f32>,
}

fn to_bf16(x: f32) -> u16 {
    // Round to nearest even; the weights are finite.
    let bits = x.to_bits();
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

impl Packed {
    /// `w` is (n, k) row-major as stored by PyTorch (out_features × in_features).
    fn new(w: &[f32], bias: &[f32], n: usize, k: usize, precision: Precision) -> Self {
        let groups = n.div_ceil(NR);
        let at = |row: usize, col: usize| if row < n { w[row * k + col] } else { 0.0 };
        let data = match precision {
            Precision::F32 => {
                let mut d = vec![0f32; groups * k * NR];
                for g in 0..groups {
                    for kk in 0..k {
                        for c in 0..NR {
                            d[(g * k + kk) * NR + c] = at(g * NR + c, kk);
                        }
                    }
                }
                PackedData::F32(d)
            }
            Precision::Bf16 => {
                let kp = k / 2;
                let mut d = vec![0u16; groups * kp * NR * 2];
                for g in 0..groups {
                    for p in 0..kp {
                        for c in 0..NR {
                            for e in 0..2 {
                                d[((g * kp + p) * NR + c) * 2 + e] =
                                    to_bf16(at(g * NR + c, 2 * p + e));
                            }
                        }
                    }
                }
                PackedData::Bf16(d)
            }
        };
        let mut b = vec![0f32; groups * NR];
        b[..n].copy_from_slice(bias);
        Self {
            n,
            k,
            groups,
            data,
            bias: b,
        }
    }
}

/// What happens to `x·Wᵀ + b` before it is stored.
#[derive(Clone, Copy)]
enum Epilogue<'a> {
    Bias,
    Gelu,
    /// Adds a residual with the output's layout.
    Residual(&'a [f32]),
}

struct LayerWeights {
    qkv: Packed,
    attn_out: Packed,
    ln1: (Vec<f32>, Vec<f32>),
    inter: Packed,
    out: Packed,
    ln2: (Vec<f32>, Vec<f32>),
}

/// The token embedding table, kept in the precision the model file has (the
/// shipped model is f16: half the memory, and exactly the file's values).
pub enum WordTable {
    F16(Vec<u16>),
    F32(Vec<f32>),
}

impl WordTable {
    fn len(&self) -> usize {
        match self {
            WordTable::F16(v) => v.len(),
            WordTable::F32(v) => v.len(),
        }
    }

    /// Adds row `id` to `dst`.
    #[target_feature(enable = "avx512f")]
    unsafe fn add_row(&self, id: usize, dst: &mut [f32]) {
        let h = dst.len();
        match self {
            WordTable::F32(w) => {
                for (d, v) in dst.iter_mut().zip(&w[id * h..(id + 1) * h]) {
                    *d += v;
                }
            }
            WordTable::F16(w) => {
                let row = &w[id * h..(id + 1) * h];
                for (d, c) in dst.chunks_exact_mut(16).zip(row.chunks_exact(16)) {
                    let x = _mm512_cvtph_ps(_mm256_loadu_si256(c.as_ptr().cast()));
                    let y = _mm512_add_ps(_mm512_loadu_ps(d.as_ptr()), x);
                    _mm512_storeu_ps(d.as_mut_ptr(), y);
                }
            }
        }
    }
}

/// The pre-packed encoder. Built from the same weights as [`super::bert::Bert`].
pub struct FusedBert {
    precision: Precision,
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    word: WordTable,
    position: Vec<f32>,
    token_type0: Vec<f32>,
    emb_ln: (Vec<f32>, Vec<f32>),
    layers: Vec<LayerWeights>,
    pooled_layers: usize,
}

/// Weights of one layer as plain row-major f32, in Hugging Face's layout.
pub struct LayerSource {
    /// Fused query/key/value, (3·hidden, hidden), and its bias.
    pub qkv: (Vec<f32>, Vec<f32>),
    pub attn_out: (Vec<f32>, Vec<f32>),
    pub ln1: (Vec<f32>, Vec<f32>),
    pub inter: (Vec<f32>, Vec<f32>),
    pub out: (Vec<f32>, Vec<f32>),
    pub ln2: (Vec<f32>, Vec<f32>),
}

/// Everything the fused encoder needs; layers come one at a time so that only one
/// layer's f32 copy exists while the weights are packed.
pub struct BertSource<L> {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f32,
    pub word: WordTable,
    pub position: Vec<f32>,
    pub token_type0: Vec<f32>,
    pub emb_ln: (Vec<f32>, Vec<f32>),
    pub layers: L,
}

impl FusedBert {
    pub fn new<L: Iterator<Item = Result<LayerSource, String>>>(
        src: BertSource<L>,
        precision: Precision,
        pooled_layers: usize,
    ) -> Result<Self, String> {
        let h = src.hidden;
        if !precision.supported() {
            return Err(format!("this CPU lacks the instructions for {precision:?}"));
        }
        if !h.is_multiple_of(32)
            || !src.intermediate.is_multiple_of(32)
            || src.heads == 0
            || !h.is_multiple_of(src.heads)
        {
            return Err(format!(
                "unsupported shape: hidden {h}, intermediate {}, {} heads",
                src.intermediate, src.heads
            ));
        }
        let mut layers = Vec::new();
        for l in src.layers {
            let l = l?;
            layers.push(LayerWeights {
                qkv: Packed::new(&l.qkv.0, &l.qkv.1, 3 * h, h, precision),
                attn_out: Packed::new(&l.attn_out.0, &l.attn_out.1, h, h, precision),
                ln1: l.ln1,
                inter: Packed::new(&l.inter.0, &l.inter.1, src.intermediate, h, precision),
                out: Packed::new(&l.out.0, &l.out.1, h, src.intermediate, precision),
                ln2: l.ln2,
            });
        }
        if layers.is_empty() {
            return Err("the model has no layers".into());
        }
        let pooled_layers = pooled_layers.min(layers.len()).max(1);
        Ok(Self {
            precision,
            hidden: h,
            heads: src.heads,
            inter: src.intermediate,
            eps: src.eps,
            word: src.word,
            position: src.position,
            token_type0: src.token_type0,
            emb_ln: src.emb_ln,
            layers,
            pooled_layers,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Length of one input's output row: mean blocks, then max blocks.
    pub fn features_dim(&self) -> usize {
        2 * self.pooled_layers * self.hidden
    }

    /// Runs the encoder on `ids` (every input's token ids, one after another, as a
    /// u32 tensor) split by `lens`; returns (inputs, features_dim) pooled features.
    pub fn forward(&self, ids: &Tensor, lens: &[usize]) -> candle_core::Result<Tensor> {
        ids.apply_op1_no_bwd(&FusedCall { model: self, lens })
    }

    fn run(&self, ids: &[u32], lens: &[usize]) -> Result<Vec<f32>, String> {
        let h = self.hidden;
        let t = ids.len();
        if lens.iter().sum::<usize>() != t {
            return Err("token lengths do not add up".into());
        }
        let vocab = self.word.len() / h;
        let positions = self.position.len() / h;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(format!("token id {bad} outside the vocabulary"));
        }
        if let Some(&l) = lens.iter().find(|&&l| l > positions) {
            return Err(format!("{l} tokens exceed {positions} positions"));
        }
        let threads = rayon::current_num_threads();
        if threads < 2 || lens.len() < 2 || ids.len() < 2 * MIN_SPLIT_TOKENS {
            // SAFETY: the CPU features were checked when the model was built.
            return Ok(unsafe { self.run_avx512(ids, lens, threads > 1) });
        }
        // A batch splits into one part per thread, each a whole forward pass on its
        // own inputs: no synchronization per layer, and the serial steps (layer
        // norm, attention of short inputs, pooling) run in parallel too.
        use rayon::prelude::*;
        let parts = split_by_tokens(lens, threads);
        let outputs: Vec<Vec<f32>> = parts
            .par_iter()
            .map(|&(i0, i1, t0, t1)| {
                // SAFETY: as above.
                unsafe { self.run_avx512(&ids[t0..t1], &lens[i0..i1], false) }
            })
            .collect();
        Ok(outputs.concat())
    }

    /// The forward pass; `parallel` lets its matrix multiplies and attention use
    /// the thread pool (for one long input).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    unsafe fn run_avx512(&self, ids: &[u32], lens: &[usize], parallel: bool) -> Vec<f32> {
        let h = self.hidden;
        let t = ids.len();
        let fdim = self.features_dim();
        let mut features = vec![0f32; lens.len() * fdim];
        // Embeddings: word + position + token type 0, then layer norm.
        let mut x = vec![0f32; t * h];
        let mut row = 0;
        for &l in lens {
            for p in 0..l {
                let id = ids[row] as usize;
                let dst = &mut x[row * h..(row + 1) * h];
                let pos = &self.position[p * h..(p + 1) * h];
                for i in 0..h {
                    dst[i] = pos[i] + self.token_type0[i];
                }
                self.word.add_row(id, dst);
                layer_norm(dst, &self.emb_ln.0, &self.emb_ln.1, self.eps);
                row += 1;
            }
        }
        let mut qkv = vec![0f32; t * 3 * h];
        let mut ctx = vec![0f32; t * h];
        let mut attn = vec![0f32; t * h];
        let mut inter = vec![0f32; t * self.inter];
        let mut scratch = Vec::new();
        let first_pooled = self.layers.len() - self.pooled_layers;
        for (li, l) in self.layers.iter().enumerate() {
            let p = parallel;
            self.gemm(&l.qkv, &x, t, &mut qkv, Epilogue::Bias, &mut scratch, p);
            self.attention(&qkv, lens, &mut ctx, p);
            let epi = Epilogue::Residual(&x);
            self.gemm(&l.attn_out, &ctx, t, &mut attn, epi, &mut scratch, p);
            for r in attn.chunks_exact_mut(h) {
                layer_norm(r, &l.ln1.0, &l.ln1.1, self.eps);
            }
            self.gemm(
                &l.inter,
                &attn,
                t,
                &mut inter,
                Epilogue::Gelu,
                &mut scratch,
                p,
            );
            let epi = Epilogue::Residual(&attn);
            self.gemm(&l.out, &inter, t, &mut x, epi, &mut scratch, p);
            for r in x.chunks_exact_mut(h) {
                layer_norm(r, &l.ln2.0, &l.ln2.1, self.eps);
            }
            if li >= first_pooled {
                self.pool(&x, lens, li - first_pooled, &mut features);
            }
        }
        features
    }

    /// Mean and max over each input's tokens of one layer, each L2-normalized, into
    /// block `block` (mean) and `pooled_layers + block` (max) of its feature row.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn pool(&self, x: &[f32], lens: &[usize], block: usize, features: &mut [f32]) {
        let h = self.hidden;
        let fdim = self.features_dim();
        let mut start = 0;
        for (i, &l) in lens.iter().enumerate() {
            let out = &mut features[i * fdim..(i + 1) * fdim];
            let (means, maxes) = out.split_at_mut(self.pooled_layers * h);
            let mean = &mut means[block * h..(block + 1) * h];
            let max = &mut maxes[block * h..(block + 1) * h];
            mean.fill(0.0);
            max.fill(f32::NEG_INFINITY);
            for r in x[start * h..(start + l) * h].chunks_exact(h) {
                for j in 0..h {
                    mean[j] += r[j];
                    max[j] = max[j].max(r[j]);
                }
            }
            if l == 0 {
                max.fill(0.0);
            }
            let inv = 1.0 / (l.max(1) as f32);
            mean.iter_mut().for_each(|v| *v *= inv);
            l2_normalize(mean);
            l2_normalize(max);
            start += l;
        }
    }

    /// `out = epilogue(x·Wᵀ + b)`, x (t, k), out (t, n).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
    unsafe fn gemm(
        &self,
        w: &Packed,
        x: &[f32],
        t: usize,
        out: &mut [f32],
        epi: Epilogue,
        scratch: &mut Vec<u32>,
        parallel: bool,
    ) {
        let k = w.k;
        debug_assert_eq!(x.len(), t * k);
        debug_assert_eq!(out.len(), t * w.n);
        // The bf16 kernel reads the activations as pairs of bf16 in one u32.
        let xb: &[u32] = match w.data {
            PackedData::Bf16(_) => {
                scratch.resize(t * k / 2, 0);
                // SAFETY: bf16 weights exist only where the CPU has AVX512-BF16.
                unsafe { to_bf16_pairs(x, scratch) };
                scratch
            }
            PackedData::F32(_) => &[],
        };
        let out_ptr = SendPtr(out.as_mut_ptr());
        let run_group = |g: usize| {
            let out_ptr = &out_ptr;
            // SAFETY: each group writes only its own 64 columns of `out`.
            unsafe { gemm_group(w, x, xb, t, g, out_ptr.0, epi) }
        };
        if parallel && t * w.n * k >= PARALLEL_MIN_MACS {
            use rayon::prelude::*;
            (0..w.groups).into_par_iter().for_each(run_group);
        } else {
            (0..w.groups).for_each(run_group);
        }
    }

    /// Scaled dot-product attention per input and head; `qkv` rows are
    /// [q | k | v], `ctx` rows get the heads side by side.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn attention(&self, qkv: &[f32], lens: &[usize], ctx: &mut [f32], parallel: bool) {
        let h = self.hidden;
        let dh = h / self.heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut jobs = Vec::with_capacity(lens.len() * self.heads);
        let mut start = 0;
        for &l in lens {
            for head in 0..self.heads {
                jobs.push((start, l, head));
            }
            start += l;
        }
        let ctx_ptr = SendPtr(ctx.as_mut_ptr());
        let work: usize = lens.iter().map(|l| l * l).sum::<usize>() * h;
        let run = |&(start, l, head): &(usize, usize, usize)| {
            let ctx_ptr = &ctx_ptr;
            // SAFETY: each (input, head) writes only its own rows and columns.
            unsafe { attend(qkv, h, dh, scale, start, l, head, ctx_ptr.0) }
        };
        if parallel && work >= PARALLEL_MIN_MACS {
            use rayon::prelude::*;
            jobs.par_iter().for_each(run);
        } else {
            jobs.iter().for_each(run);
        }
    }
}

/// Splits inputs into at most `parts` contiguous runs of about equal token counts:
/// (first input, end input, first token, end token).
fn split_by_tokens(lens: &[usize], parts: usize) -> Vec<(usize, usize, usize, usize)> {
    let total: usize = lens.iter().sum();
    let target = total.div_ceil(parts.max(1)).max(1);
    let mut out = Vec::with_capacity(parts);
    let (mut i0, mut t0, mut t) = (0, 0, 0);
    for (i, &l) in lens.iter().enumerate() {
        t += l;
        if t - t0 >= target && out.len() + 1 < parts {
            out.push((i0, i + 1, t0, t));
            i0 = i + 1;
            t0 = t;
        }
    }
    if i0 < lens.len() {
        out.push((i0, lens.len(), t0, t));
    }
    out
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint parts of one buffer to rayon tasks.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// One (input, head) of attention as two small matrix multiplies, eight queries
/// at a time so that the multiply-adds are independent: scores = Q·Kᵀ (keys
/// transposed, 16 per vector), softmax per row, then context = P·V.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,fma")]
unsafe fn attend(
    qkv: &[f32],
    h: usize,
    dh: usize,
    scale: f32,
    start: usize,
    l: usize,
    head: usize,
    ctx: *mut f32,
) {
    const QB: usize = 8;
    let ld = 3 * h;
    let lp = l.div_ceil(16) * 16;
    let lq = l.div_ceil(QB) * QB;
    // Scaled queries and values of this head, contiguous; keys transposed.
    let mut q = vec![0f32; lq * dh];
    let mut v = vec![0f32; l * dh];
    let mut kt = vec![0f32; dh * lp];
    for j in 0..l {
        let row = &qkv[(start + j) * ld..][..ld];
        for d in 0..dh {
            q[j * dh + d] = row[head * dh + d] * scale;
            kt[d * lp + j] = row[h + head * dh + d];
        }
        v[j * dh..(j + 1) * dh].copy_from_slice(&row[2 * h + head * dh..][..dh]);
    }
    let mut p = vec![0f32; lq * lp];
    for i0 in (0..lq).step_by(QB) {
        for c in (0..lp).step_by(16) {
            let mut acc = [_mm512_setzero_ps(); QB];
            for d in 0..dh {
                let kv = _mm512_loadu_ps(kt.as_ptr().add(d * lp + c));
                for (r, a) in acc.iter_mut().enumerate() {
                    let qv = _mm512_set1_ps(*q.get_unchecked((i0 + r) * dh + d));
                    *a = _mm512_fmadd_ps(qv, kv, *a);
                }
            }
            for (r, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(p.as_mut_ptr().add((i0 + r) * lp + c), *a);
            }
        }
    }
    // Softmax per row; padded key columns get probability 0.
    let tail: __mmask16 = if l.is_multiple_of(16) {
        0xffff
    } else {
        (1u16 << (l % 16)) - 1
    };
    for i in 0..l {
        let row = p.as_mut_ptr().add(i * lp);
        let last = lp - 16;
        let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
        for c in (0..lp).step_by(16) {
            let k = if c == last { tail } else { 0xffff };
            m = _mm512_mask_max_ps(m, k, m, _mm512_loadu_ps(row.add(c)));
        }
        let mv = _mm512_set1_ps(_mm512_reduce_max_ps(m));
        let mut sum = _mm512_setzero_ps();
        for c in (0..lp).step_by(16) {
            let k = if c == last { tail } else { 0xffff };
            let e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_loadu_ps(row.add(c)), mv)));
            sum = _mm512_add_ps(sum, e);
            _mm512_storeu_ps(row.add(c), e);
        }
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
        for c in (0..lp).step_by(16) {
            _mm512_storeu_ps(row.add(c), _mm512_mul_ps(_mm512_loadu_ps(row.add(c)), inv));
        }
    }
    // Context = P·V, head_dim 32 = two vectors per row.
    if dh == 32 {
        for i0 in (0..l).step_by(QB) {
            let mut acc = [[_mm512_setzero_ps(); 2]; QB];
            for j in 0..l {
                let v0 = _mm512_loadu_ps(v.as_ptr().add(j * dh));
                let v1 = _mm512_loadu_ps(v.as_ptr().add(j * dh + 16));
                for (r, a) in acc.iter_mut().enumerate() {
                    let pv = _mm512_set1_ps(*p.get_unchecked((i0 + r) * lp + j));
                    a[0] = _mm512_fmadd_ps(pv, v0, a[0]);
                    a[1] = _mm512_fmadd_ps(pv, v1, a[1]);
                }
            }
            for (r, a) in acc.iter().enumerate().take(l - i0) {
                let dst = ctx.add((start + i0 + r) * h + head * dh);
                _mm512_storeu_ps(dst, a[0]);
                _mm512_storeu_ps(dst.add(16), a[1]);
            }
        }
    } else {
        let mut acc = vec![0f32; dh];
        for i in 0..l {
            acc.fill(0.0);
            for j in 0..l {
                let pij = p[i * lp + j];
                for d in 0..dh {
                    acc[d] += pij * v[j * dh + d];
                }
            }
            std::ptr::copy_nonoverlapping(acc.as_ptr(), ctx.add((start + i) * h + head * dh), dh);
        }
    }
}

/// Rounds activations to bf16, two per u32, as the bf16 dot product reads them.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn to_bf16_pairs(x: &[f32], out: &mut [u32]) {
    for (src, dst) in x.chunks_exact(32).zip(out.chunks_exact_mut(16)) {
        let lo = _mm512_loadu_ps(src.as_ptr());
        let hi = _mm512_loadu_ps(src.as_ptr().add(16));
        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(dst.as_mut_ptr().cast(), packed);
    }
}

/// One 64-column group of a matrix multiply, all rows, MR rows at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
unsafe fn gemm_group(
    w: &Packed,
    x: &[f32],
    xb: &[u32],
    t: usize,
    g: usize,
    out: *mut f32,
    epi: Epilogue,
) {
    let mut r = 0;
    while r < t {
        let rows = (t - r).min(MR);
        let mut acc = [[_mm512_setzero_ps(); 4]; MR];
        match &w.data {
            PackedData::F32(d) => {
                let panel = d.as_ptr().add(g * w.k * NR);
                let xr = x.as_ptr().add(r * w.k);
                match rows {
                    6 => tile_f32::<6>(xr, w.k, panel, &mut acc),
                    5 => tile_f32::<5>(xr, w.k, panel, &mut acc),
                    4 => tile_f32::<4>(xr, w.k, panel, &mut acc),
                    3 => tile_f32::<3>(xr, w.k, panel, &mut acc),
                    2 => tile_f32::<2>(xr, w.k, panel, &mut acc),
                    _ => tile_f32::<1>(xr, w.k, panel, &mut acc),
                }
            }
            PackedData::Bf16(d) => {
                let kp = w.k / 2;
                let panel = d.as_ptr().add(g * kp * NR * 2);
                let xr = xb.as_ptr().add(r * kp);
                match rows {
                    6 => tile_bf16::<6>(xr, kp, panel, &mut acc),
                    5 => tile_bf16::<5>(xr, kp, panel, &mut acc),
                    4 => tile_bf16::<4>(xr, kp, panel, &mut acc),
                    3 => tile_bf16::<3>(xr, kp, panel, &mut acc),
                    2 => tile_bf16::<2>(xr, kp, panel, &mut acc),
                    _ => tile_bf16::<1>(xr, kp, panel, &mut acc),
                }
            }
        }
        store_tile(w, g, r, rows, &acc, out, epi);
        r += rows;
    }
}

#[inline]
#[target_feature(enable = "avx512f,fma")]
unsafe fn tile_f32<const R: usize>(
    x: *const f32,
    k: usize,
    panel: *const f32,
    acc: &mut [[__m512; 4]; MR],
) {
    let mut a = [[_mm512_setzero_ps(); 4]; R];
    for kk in 0..k {
        let wp = panel.add(kk * NR);
        let w0 = _mm512_loadu_ps(wp);
        let w1 = _mm512_loadu_ps(wp.add(16));
        let w2 = _mm512_loadu_ps(wp.add(32));
        let w3 = _mm512_loadu_ps(wp.add(48));
        for (r, ar) in a.iter_mut().enumerate() {
            let xv = _mm512_set1_ps(*x.add(r * k + kk));
            ar[0] = _mm512_fmadd_ps(xv, w0, ar[0]);
            ar[1] = _mm512_fmadd_ps(xv, w1, ar[1]);
            ar[2] = _mm512_fmadd_ps(xv, w2, ar[2]);
            ar[3] = _mm512_fmadd_ps(xv, w3, ar[3]);
        }
    }
    acc[..R].copy_from_slice(&a);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn tile_bf16<const R: usize>(
    x: *const u32,
    kp: usize,
    panel: *const u16,
    acc: &mut [[__m512; 4]; MR],
) {
    let mut a = [[_mm512_setzero_ps(); 4]; R];
    for p in 0..kp {
        let wp = panel.add(p * NR * 2);
        let w0: __m512bh = std::mem::transmute(_mm512_loadu_si512(wp.cast()));
        let w1: __m512bh = std::mem::transmute(_mm512_loadu_si512(wp.add(32).cast()));
        let w2: __m512bh = std::mem::transmute(_mm512_loadu_si512(wp.add(64).cast()));
        let w3: __m512bh = std::mem::transmute(_mm512_loadu_si512(wp.add(96).cast()));
        for (r, ar) in a.iter_mut().enumerate() {
            let xv: __m512bh = std::mem::transmute(_mm512_set1_epi32(*x.add(r * kp + p) as i32));
            ar[0] = _mm512_dpbf16_ps(ar[0], xv, w0);
            ar[1] = _mm512_dpbf16_ps(ar[1], xv, w1);
            ar[2] = _mm512_dpbf16_ps(ar[2], xv, w2);
            ar[3] = _mm512_dpbf16_ps(ar[3], xv, w3);
        }
    }
    acc[..R].copy_from_slice(&a);
}

#[target_feature(enable = "avx512f,fma")]
unsafe fn store_tile(
    w: &Packed,
    g: usize,
    r0: usize,
    rows: usize,
    acc: &[[__m512; 4]; MR],
    out: *mut f32,
    epi: Epilogue,
) {
    for (r, ar) in acc.iter().enumerate().take(rows) {
        let row = r0 + r;
        for (v, a) in ar.iter().enumerate() {
            let col = g * NR + v * 16;
            if col >= w.n {
                break;
            }
            let left = (w.n - col).min(16);
            let mask: __mmask16 = if left == 16 {
                0xffff
            } else {
                (1u16 << left) - 1
            };
            let mut y = _mm512_add_ps(*a, _mm512_loadu_ps(w.bias.as_ptr().add(col)));
            let idx = row * w.n + col;
            match epi {
                Epilogue::Bias => {}
                Epilogue::Gelu => y = gelu512(y),
                Epilogue::Residual(res) => {
                    y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, res.as_ptr().add(idx)));
                }
            }
            _mm512_mask_storeu_ps(out.add(idx), mask, y);
        }
    }
}

/// e^x, Cephes' polynomial with range reduction by powers of two; relative error
/// about 1e-7 over the range softmax uses.
#[inline]
#[target_feature(enable = "avx512f,fma")]
unsafe fn exp512(x: __m512) -> __m512 {
    let x = _mm512_max_ps(
        _mm512_min_ps(x, _mm512_set1_ps(88.37)),
        _mm512_set1_ps(-87.33),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let r2 = _mm512_mul_ps(r, r);
    let y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(y, n)
}

/// Exact (erf) GELU; erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7).
#[inline]
#[target_feature(enable = "avx512f,fma")]
unsafe fn gelu512(x: __m512) -> __m512 {
    let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let a = _mm512_abs_ps(z);
    let t = _mm512_div_ps(
        _mm512_set1_ps(1.0),
        _mm512_fmadd_ps(a, _mm512_set1_ps(0.327_591_1), _mm512_set1_ps(1.0)),
    );
    let mut p = _mm512_set1_ps(1.061_405_4);
    for c in [-1.453_152_1, 1.421_413_7, -0.284_496_72, 0.254_829_6] {
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c));
    }
    p = _mm512_mul_ps(p, t);
    let e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
    let erf_abs = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.0));
    // Copy the sign of z onto erf(|z|).
    let sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(i32::MIN));
    let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erf_abs), sign));
    _mm512_mul_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(0.5)),
        _mm512_add_ps(erf, _mm512_set1_ps(1.0)),
    )
}

/// Layer norm of one row (length a multiple of 16), in vectors: float sums are
/// not vectorized by the compiler on its own.
#[target_feature(enable = "avx512f,fma")]
unsafe fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = x.len();
    debug_assert!(n.is_multiple_of(16) && gamma.len() == n && beta.len() == n);
    let p = x.as_mut_ptr();
    let mut sum = _mm512_setzero_ps();
    for c in (0..n).step_by(16) {
        sum = _mm512_add_ps(sum, _mm512_loadu_ps(p.add(c)));
    }
    let mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / n as f32);
    let mut var = _mm512_setzero_ps();
    for c in (0..n).step_by(16) {
        let d = _mm512_sub_ps(_mm512_loadu_ps(p.add(c)), mean);
        var = _mm512_fmadd_ps(d, d, var);
    }
    let inv = _mm512_set1_ps(1.0 / (_mm512_reduce_add_ps(var) / n as f32 + eps).sqrt());
    for c in (0..n).step_by(16) {
        let d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(p.add(c)), mean), inv);
        let g = _mm512_loadu_ps(gamma.as_ptr().add(c));
        let b = _mm512_loadu_ps(beta.as_ptr().add(c));
        _mm512_storeu_ps(p.add(c), _mm512_fmadd_ps(d, g, b));
    }
}

#[target_feature(enable = "avx512f,fma")]
unsafe fn l2_normalize(x: &mut [f32]) {
    let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    x.iter_mut().for_each(|v| *v /= norm);
}

/// One call of the encoder as a candle op: u32 token ids in, pooled features out.
struct FusedCall<'a> {
    model: &'a FusedBert,
    lens: &'a [usize],
}

impl CustomOp1 for FusedCall<'_> {
    fn name(&self) -> &'static str {
        "triage-fused-bert"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::U32(ids) = storage else {
            candle_core::bail!("fused encoder: token ids must be u32");
        };
        let ids = match layout.contiguous_offsets() {
            Some((a, b)) => &ids[a..b],
            None => candle_core::bail!("fused encoder: token ids must be contiguous"),
        };
        let out = self
            .model
            .run(ids, self.lens)
            .map_err(candle_core::Error::Msg)?;
        Ok((
            CpuStorage::F32(out),
            Shape::from((self.lens.len(), self.model.features_dim())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_gelu_match_libm() {
        if !Precision::F32.supported() {
            return;
        }
        let xs: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.05).collect();
        for chunk in xs.chunks_exact(16) {
            let mut e = [0f32; 16];
            let mut g = [0f32; 16];
            unsafe {
                let v = _mm512_loadu_ps(chunk.as_ptr());
                _mm512_storeu_ps(e.as_mut_ptr(), exp512(v));
                _mm512_storeu_ps(g.as_mut_ptr(), gelu512(v));
            }
            for (i, &x) in chunk.iter().enumerate() {
                let want = x.exp();
                assert!((e[i] - want).abs() <= 2e-7 * want.max(1e-30), "exp({x})");
                let gw = 0.5 * x as f64 * (1.0 + libm_erf(x as f64 / 2f64.sqrt()));
                assert!(
                    (g[i] as f64 - gw).abs() < 3e-6 * (1.0 + x.abs() as f64),
                    "gelu({x}) {} vs {gw}",
                    g[i]
                );
            }
        }
    }

    /// erf by its series / continued fraction in f64, for reference.
    fn libm_erf(x: f64) -> f64 {
        // Abramowitz & Stegun 7.1.28 is too coarse; integrate numerically instead.
        let n = 20_000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += if i % 2 == 1 { 4.0 } else { 2.0 } * f(i as f64 * h);
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn batches_split_into_contiguous_parts_of_similar_size() {
        let parts = split_by_tokens(&[10, 10, 10, 10], 2);
        assert_eq!(parts, vec![(0, 2, 0, 20), (2, 4, 20, 40)]);
        let parts = split_by_tokens(&[100, 5, 5], 2);
        assert_eq!(parts, vec![(0, 1, 0, 100), (1, 3, 100, 110)]);
        let parts = split_by_tokens(&[3], 4);
        assert_eq!(parts, vec![(0, 1, 0, 3)]);
        let all = split_by_tokens(&[7, 1, 9, 4, 4, 12], 3);
        assert!(all.len() <= 3);
        assert_eq!(all.first().map(|p| p.0), Some(0));
        assert_eq!(all.last().map(|p| (p.1, p.3)), Some((6, 37)));
        assert!(all.windows(2).all(|w| w[0].1 == w[1].0 && w[0].3 == w[1].2));
    }

    #[test]
    fn packed_gemm_matches_naive() {
        for precision in [Precision::F32, Precision::Bf16] {
            if !precision.supported() {
                continue;
            }
            let (n, k, t) = (80, 64, 13);
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
            let x: Vec<f32> = (0..t * k)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 44.0)
                .collect();
            let res: Vec<f32> = (0..t * n).map(|i| i as f32 * 0.001).collect();
            let packed = Packed::new(&w, &b, n, k, precision);
            let mut out = vec![0f32; t * n];
            let mut scratch = Vec::new();
            let model = FusedBert {
                precision,
                hidden: 32,
                heads: 1,
                inter: 32,
                eps: 1e-12,
                word: WordTable::F32(vec![]),
                position: vec![],
                token_type0: vec![],
                emb_ln: (vec![], vec![]),
                layers: vec![],
                pooled_layers: 1,
            };
            unsafe {
                model.gemm(
                    &packed,
                    &x,
                    t,
                    &mut out,
                    Epilogue::Residual(&res),
                    &mut scratch,
                    false,
                )
            };
            let tol = if precision == Precision::F32 {
                1e-4
            } else {
                0.1
            };
            for r in 0..t {
                for c in 0..n {
                    let want: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum::<f32>()
                        + b[c]
                        + res[r * n + c];
                    let got = out[r * n + c];
                    assert!(
                        (got - want).abs() < tol,
                        "{precision:?} [{r},{c}] {got} vs {want}"
                    );
                }
            }
        }
    }
}
