//! The vector index of one cache scope: every vector stored once, int8-quantized
//! (one byte per dimension plus a scale), and an HNSW graph over them with `u32`
//! neighbour lists in flat arrays.
//!
//! Why not hnsw_rs: it keeps an `f32` copy of every vector plus an `Arc` per graph
//! edge (about 3.5 KB a point at 384 dimensions), and its search allocates a hash
//! map and an `Arc` per visited point. Here a point costs 384 + 4 bytes of vector,
//! 128 bytes of layer-0 links and a few bytes more, and a search reuses per-thread
//! buffers.
//!
//! Slots are append-only. Removed entries stay as dead slots that the caller's
//! filter skips; [`ScopeIndex::live_copy`] compacts. Slots below `graphed` are
//! linked into the graph; the rest (a freshly loaded store, or the tail added while
//! a compaction ran) are scanned exactly until [`ScopeIndex::link_pending`] links
//! them. All graph changes hold `mutate`; a change is planned under the read lock
//! (searches go on meanwhile) and written under a short write lock.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};

use parking_lot::{Mutex, RwLock};

/// Links per node on the upper layers; layer 0 has twice as many.
pub const M: usize = 16;
const M0: usize = 2 * M;
/// Search breadth while inserting.
pub const EF_CONSTRUCTION: usize = 256;

/// A similarity with a total order, for heaps.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Sim(f32);
impl Eq for Sim {}
impl PartialOrd for Sim {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sim {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// Symmetric int8 quantization with one scale per vector: `v ≈ scale · code`.
pub fn quantize(v: &[f32], out: &mut Vec<i8>) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if !(max > 0.0 && max.is_finite()) {
        out.extend(std::iter::repeat_n(0i8, v.len()));
        return 0.0;
    }
    let k = 127.0 / max;
    out.extend(v.iter().map(|x| (x * k).round().clamp(-127.0, 127.0) as i8));
    max / 127.0
}

fn dequantize(code: &[i8], scale: f32, out: &mut Vec<f32>) {
    out.clear();
    out.extend(code.iter().map(|&c| c as f32 * scale));
}

/// Σ a·b for an `f32` vector and an `i8` code; AVX-512 or AVX2 when the CPU has them.
pub fn dot_i8(a: &[f32], b: &[i8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the feature the function is compiled for.
            return unsafe { dot_i8_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { dot_i8_avx2(a, b) };
        }
    }
    dot_i8_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_i8_avx512(a: &[f32], b: &[i8]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY: every load reads within the first `n` elements of both slices.
    unsafe {
        while i + 32 <= n {
            let b0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                pb.add(i) as *const __m128i
            )));
            let b1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                pb.add(i + 16) as *const __m128i
            )));
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), b0, acc0);
            acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i + 16)), b1, acc1);
            i += 32;
        }
        if i + 16 <= n {
            let b0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                pb.add(i) as *const __m128i
            )));
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), b0, acc0);
            i += 16;
        }
    }
    let mut s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for j in i..n {
        s += a[j] * b[j] as f32;
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_i8_avx2(a: &[f32], b: &[i8]) -> f32 {
    dot_i8_portable(a, b)
}

#[inline(always)]
fn dot_i8_portable(a: &[f32], b: &[i8]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i] as f32;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * *y as f32;
    }
    s
}

/// Asks for `code` to be brought into the cache (a hint; never faults).
#[inline(always)]
fn prefetch(code: &[i8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for off in (0..code.len()).step_by(64) {
            // SAFETY: a prefetch of an address inside the slice; it reads nothing.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(code.as_ptr().add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = code;
}

/// The best `N` (id, similarity) pairs offered, best first, without allocating.
#[derive(Debug, Clone, Copy)]
pub struct TopK<const N: usize> {
    items: [(u64, f32); N],
    len: usize,
}

impl<const N: usize> Default for TopK<N> {
    fn default() -> Self {
        Self {
            items: [(0, f32::NEG_INFINITY); N],
            len: 0,
        }
    }
}

impl<const N: usize> TopK<N> {
    pub fn offer(&mut self, id: u64, sim: f32) {
        if self.len == N && sim <= self.items[N - 1].1 {
            return;
        }
        let mut i = self.len.min(N - 1);
        if self.len < N {
            self.len += 1;
        }
        while i > 0 && self.items[i - 1].1 < sim {
            self.items[i] = self.items[i - 1];
            i -= 1;
        }
        self.items[i] = (id, sim);
    }

    pub fn as_slice(&self) -> &[(u64, f32)] {
        &self.items[..self.len]
    }

    pub fn best(&self) -> Option<(u64, f32)> {
        self.as_slice().first().copied()
    }
}

/// Per-thread search buffers, reused across searches.
#[derive(Default)]
struct Scratch {
    visited: Vec<u32>,
    epoch: u32,
    cand: BinaryHeap<(Sim, u32)>,
    res: BinaryHeap<Reverse<(Sim, u32)>>,
}

impl Scratch {
    fn start(&mut self, n: usize) {
        if self.visited.len() < n {
            self.visited.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.visited.iter_mut().for_each(|v| *v = 0);
            self.epoch = 1;
        }
        self.cand.clear();
        self.res.clear();
    }

    /// Marks `slot` visited; false if it already was.
    #[inline]
    fn visit(&mut self, slot: u32) -> bool {
        match self.visited.get_mut(slot as usize) {
            Some(v) if *v != self.epoch => {
                *v = self.epoch;
                true
            }
            _ => false,
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Data {
    dim: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
    ids: Vec<u64>,
    levels: Vec<u8>,
    links0: Vec<u32>,
    count0: Vec<u8>,
    /// Nodes above layer 0: for each layer 1..=level, a count then `M` links.
    upper: HashMap<u32, Vec<u32>>,
    /// Slots `0..graphed` are in the graph.
    graphed: usize,
    entry: Option<u32>,
    max_level: u8,
}

/// What linking one node changes: its own lists and its neighbours' lists.
struct Plan {
    slot: u32,
    level: u8,
    own: Vec<Vec<u32>>,
    updates: Vec<(u32, u8, Vec<u32>)>,
}

impl Data {
    fn len(&self) -> usize {
        self.ids.len()
    }

    #[inline]
    fn code(&self, slot: u32) -> &[i8] {
        let s = slot as usize * self.dim;
        self.codes.get(s..s + self.dim).unwrap_or(&[])
    }

    #[inline]
    fn sim(&self, q: &[f32], slot: u32) -> f32 {
        dot_i8(q, self.code(slot)) * self.scales.get(slot as usize).copied().unwrap_or(0.0)
    }

    fn push(&mut self, id: u64, code: &[i8], scale: f32) {
        self.codes.extend_from_slice(code);
        self.scales.push(scale);
        self.ids.push(id);
        self.levels.push(0);
        self.links0.extend_from_slice(&[0; M0]);
        self.count0.push(0);
    }

    fn neighbours(&self, slot: u32, level: u8) -> &[u32] {
        if level == 0 {
            let s = slot as usize * M0;
            let n = self.count0.get(slot as usize).copied().unwrap_or(0) as usize;
            return self.links0.get(s..s + n).unwrap_or(&[]);
        }
        let Some(v) = self.upper.get(&slot) else {
            return &[];
        };
        let s = (level as usize - 1) * (M + 1);
        let n = v.get(s).copied().unwrap_or(0) as usize;
        v.get(s + 1..s + 1 + n).unwrap_or(&[])
    }

    fn set_neighbours(&mut self, slot: u32, level: u8, list: &[u32]) {
        if level == 0 {
            let n = list.len().min(M0);
            let s = slot as usize * M0;
            if let Some(dst) = self.links0.get_mut(s..s + n) {
                dst.copy_from_slice(&list[..n]);
                self.count0[slot as usize] = n as u8;
            }
            return;
        }
        let Some(v) = self.upper.get_mut(&slot) else {
            return;
        };
        let n = list.len().min(M);
        let s = (level as usize - 1) * (M + 1);
        if let Some(dst) = v.get_mut(s..s + 1 + n) {
            dst[0] = n as u32;
            dst[1..].copy_from_slice(&list[..n]);
        }
    }

    /// Greedy descent on one upper layer.
    fn greedy(&self, q: &[f32], mut ep: u32, mut best: f32, level: u8) -> (u32, f32) {
        loop {
            let mut moved = false;
            for &n in self.neighbours(ep, level) {
                let s = self.sim(q, n);
                if s > best {
                    best = s;
                    ep = n;
                    moved = true;
                }
            }
            if !moved {
                return (ep, best);
            }
        }
    }

    /// Beam search of one layer; leaves the best `ef` in `s.res`.
    fn search_layer(&self, q: &[f32], eps: &[(f32, u32)], ef: usize, level: u8, s: &mut Scratch) {
        s.start(self.len());
        for &(d, e) in eps {
            if s.visit(e) {
                s.cand.push((Sim(d), e));
                s.res.push(Reverse((Sim(d), e)));
                if s.res.len() > ef {
                    s.res.pop();
                }
            }
        }
        let mut worst = s.res.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0 .0);
        while let Some((Sim(c), cid)) = s.cand.pop() {
            if c < worst && s.res.len() >= ef {
                break;
            }
            // Unvisited neighbours first, their codes prefetched, then the distances.
            let mut next = [0u32; M0];
            let mut k = 0;
            for &n in self.neighbours(cid, level) {
                if k < M0 && s.visit(n) {
                    prefetch(self.code(n));
                    next[k] = n;
                    k += 1;
                }
            }
            for &n in &next[..k] {
                let d = self.sim(q, n);
                if s.res.len() < ef || d > worst {
                    s.cand.push((Sim(d), n));
                    s.res.push(Reverse((Sim(d), n)));
                    if s.res.len() > ef {
                        s.res.pop();
                    }
                    worst = s.res.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0 .0);
                }
            }
        }
    }

    /// Entry point for layer 0: greedy descent through the upper layers.
    fn descend(&self, q: &[f32], down_to: u8) -> Option<(u32, f32)> {
        let ep = self.entry?;
        let mut cur = (ep, self.sim(q, ep));
        let mut l = self.max_level;
        while l > down_to {
            cur = self.greedy(q, cur.0, cur.1, l);
            l -= 1;
        }
        Some(cur)
    }

    /// Keeps candidates (sorted best first, similarity to the base) that are closer
    /// to the base than to any already kept one (the HNSW heuristic).
    fn select(
        &self,
        cands: &[(f32, u32)],
        m: usize,
        new: u32,
        qnew: &[f32],
        buf: &mut Vec<f32>,
    ) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for &(sim_base, c) in cands {
            if kept.len() >= m {
                break;
            }
            let cv: &[f32] = if c == new {
                qnew
            } else {
                dequantize(
                    self.code(c),
                    self.scales.get(c as usize).copied().unwrap_or(0.0),
                    buf,
                );
                buf
            };
            let dominated = kept.iter().any(|&r| {
                let s = if r == new {
                    crate::cache::dot(cv, qnew)
                } else {
                    self.sim(cv, r)
                };
                s > sim_base
            });
            if !dominated {
                kept.push(c);
            }
        }
        kept
    }

    /// Plans linking `slot` (vector `q`) at `level`. Read-only.
    fn plan(&self, slot: u32, q: &[f32], level: u8) -> Plan {
        let mut plan = Plan {
            slot,
            level,
            own: vec![Vec::new(); level as usize + 1],
            updates: Vec::new(),
        };
        let Some(mut ep) = self.descend(q, level) else {
            return plan;
        };
        let mut buf = Vec::with_capacity(self.dim);
        let mut eps = vec![(ep.1, ep.0)];
        let top = level.min(self.max_level);
        for l in (0..=top).rev() {
            let found: Vec<(f32, u32)> = SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                self.search_layer(q, &eps, EF_CONSTRUCTION, l, &mut s);
                let mut v: Vec<(f32, u32)> =
                    s.res.drain().map(|Reverse((Sim(d), n))| (d, n)).collect();
                v.sort_by(|a, b| b.0.total_cmp(&a.0));
                v
            });
            let mmax = if l == 0 { M0 } else { M };
            let own = self.select(&found, M, slot, q, &mut buf);
            for &n in &own {
                let mut list: Vec<u32> = self.neighbours(n, l).to_vec();
                if list.len() < mmax {
                    list.push(slot);
                } else {
                    dequantize(
                        self.code(n),
                        self.scales.get(n as usize).copied().unwrap_or(0.0),
                        &mut buf,
                    );
                    let base = buf.clone();
                    let mut c: Vec<(f32, u32)> =
                        list.iter().map(|&x| (self.sim(&base, x), x)).collect();
                    c.push((crate::cache::dot(&base, q), slot));
                    c.sort_by(|a, b| b.0.total_cmp(&a.0));
                    list = self.select(&c, mmax, slot, q, &mut buf);
                }
                plan.updates.push((n, l, list));
            }
            plan.own[l as usize] = own;
            if let Some(&(d, n)) = found.first() {
                ep = (n, d);
            }
            eps = found;
        }
        let _ = ep;
        plan
    }

    fn apply(&mut self, p: Plan) {
        let slot = p.slot as usize;
        if slot >= self.len() {
            return;
        }
        self.levels[slot] = p.level;
        if p.level > 0 {
            self.upper
                .insert(p.slot, vec![0; p.level as usize * (M + 1)]);
        }
        for (l, own) in p.own.iter().enumerate() {
            self.set_neighbours(p.slot, l as u8, own);
        }
        for (n, l, list) in &p.updates {
            self.set_neighbours(*n, *l, list);
        }
        if self.entry.is_none() || p.level > self.max_level {
            self.entry = Some(p.slot);
            self.max_level = p.level;
        }
        self.graphed = self.graphed.max(slot + 1);
    }
}

/// One scope's vectors and graph.
pub struct ScopeIndex {
    data: RwLock<Data>,
    /// Held by whoever changes the graph; the random state for node levels.
    mutate: Mutex<u64>,
}

impl Default for ScopeIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl ScopeIndex {
    pub fn new() -> Self {
        Self {
            data: RwLock::new(Data::default()),
            mutate: Mutex::new(0x2545_F491_4F6C_DD1D),
        }
    }

    /// Slots, dead ones included.
    pub fn len(&self) -> usize {
        self.data.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots not yet linked into the graph.
    pub fn pending(&self) -> usize {
        let d = self.data.read();
        d.len() - d.graphed
    }

    fn push_locked(d: &mut Data, id: u64, v: &[f32]) -> bool {
        if d.len() == 0 && d.dim == 0 {
            d.dim = v.len();
        }
        if v.len() != d.dim {
            return false;
        }
        let mut code = Vec::with_capacity(v.len());
        let scale = quantize(v, &mut code);
        d.push(id, &code, scale);
        true
    }

    /// Adds a vector without linking it (it is scanned exactly until linked).
    pub fn push_unlinked(&self, id: u64, v: &[f32]) {
        Self::push_locked(&mut self.data.write(), id, v);
    }

    fn draw_level(rng: &mut u64) -> u8 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let u = ((*rng >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let ml = 1.0 / (M as f64).ln();
        ((-u.ln() * ml) as u32).min(15) as u8
    }

    /// Adds a vector and links it. Blocking; searches go on meanwhile.
    pub fn insert(&self, id: u64, v: &[f32]) {
        let mut rng = self.mutate.lock();
        self.link_pending_locked(&mut rng);
        let (plan, code, scale) = {
            let d = self.data.read();
            if !(d.len() == 0 && d.dim == 0) && v.len() != d.dim {
                return;
            }
            let mut code = Vec::with_capacity(v.len());
            let scale = quantize(v, &mut code);
            let level = Self::draw_level(&mut rng);
            (d.plan(d.len() as u32, v, level), code, scale)
        };
        let mut d = self.data.write();
        if d.len() == 0 && d.dim == 0 {
            d.dim = v.len();
        }
        d.push(id, &code, scale);
        d.apply(plan);
    }

    /// Links every slot added with [`push_unlinked`](Self::push_unlinked).
    pub fn link_pending(&self) {
        let mut rng = self.mutate.lock();
        self.link_pending_locked(&mut rng);
    }

    fn link_pending_locked(&self, rng: &mut u64) {
        let mut q = Vec::new();
        loop {
            let plan = {
                let d = self.data.read();
                if d.graphed >= d.len() {
                    return;
                }
                let slot = d.graphed as u32;
                dequantize(d.code(slot), d.scales[slot as usize], &mut q);
                d.plan(slot, &q, Self::draw_level(rng))
            };
            self.data.write().apply(plan);
        }
    }

    /// The best matches for `q` among slots whose id `keep` accepts: exactly over
    /// all slots when `exact`, else through the graph (beam `ef`) plus an exact scan
    /// of the unlinked tail.
    pub fn search<const N: usize>(
        &self,
        q: &[f32],
        ef: usize,
        exact: bool,
        keep: impl Fn(u64) -> bool,
        top: &mut TopK<N>,
    ) {
        let d = self.data.read();
        if q.len() != d.dim || d.len() == 0 {
            return;
        }
        let from = if exact || d.entry.is_none() {
            0
        } else {
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                if let Some((ep, sim)) = d.descend(q, 0) {
                    d.search_layer(q, &[(sim, ep)], ef.max(N), 0, &mut s);
                    for Reverse((Sim(sim), slot)) in s.res.iter() {
                        let id = d.ids[*slot as usize];
                        if keep(id) {
                            top.offer(id, *sim);
                        }
                    }
                }
            });
            d.graphed
        };
        for slot in from..d.len() {
            let id = d.ids[slot];
            let sim = d.sim(q, slot as u32);
            if (top.len < N || sim > top.items[N - 1].1) && keep(id) {
                top.offer(id, sim);
            }
        }
    }

    /// Calls `f(slot, id)` for each slot whose id `keep` accepts.
    pub fn for_each_slot(&self, keep: impl Fn(u64) -> bool, mut f: impl FnMut(u32, u64)) {
        let d = self.data.read();
        for (slot, &id) in d.ids.iter().enumerate() {
            if keep(id) {
                f(slot as u32, id);
            }
        }
    }

    /// The (dequantized) vector of `slot`.
    pub fn vector(&self, slot: u32) -> Vec<f32> {
        let d = self.data.read();
        let mut v = Vec::with_capacity(d.dim);
        if (slot as usize) < d.len() {
            dequantize(d.code(slot), d.scales[slot as usize], &mut v);
        }
        v
    }

    /// Adds an already quantized vector without linking it.
    pub fn push_code(&self, id: u64, code: &[i8], scale: f32) {
        let mut d = self.data.write();
        if d.len() == 0 && d.dim == 0 {
            d.dim = code.len();
        }
        if code.len() == d.dim {
            d.push(id, code, scale);
        }
    }

    /// An unlinked copy of the slots whose ids `keep` accepts, and those ids.
    pub fn live_copy(&self, keep: impl Fn(u64) -> bool) -> (ScopeIndex, HashSet<u64>) {
        let out = ScopeIndex::new();
        let mut ids = HashSet::new();
        self.copy_into(&out, |id| keep(id) && ids.insert(id));
        (out, ids)
    }

    /// Appends (unlinked) to `out` the slots whose ids `keep` accepts.
    pub fn copy_into(&self, out: &ScopeIndex, mut keep: impl FnMut(u64) -> bool) {
        let d = self.data.read();
        let mut o = out.data.write();
        if o.len() == 0 {
            o.dim = d.dim;
        }
        for slot in 0..d.len() {
            let id = d.ids[slot];
            if keep(id) {
                o.push(id, d.code(slot as u32), d.scales[slot]);
            }
        }
    }

    /// Approximate heap bytes.
    pub fn bytes(&self) -> usize {
        let d = self.data.read();
        d.codes.capacity()
            + d.scales.capacity() * 4
            + d.ids.capacity() * 8
            + d.levels.capacity()
            + d.links0.capacity() * 4
            + d.count0.capacity()
            + d.upper.len() * (M + 1) * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::synthetic_vector;

    #[test]
    fn kernels_agree() {
        let a = synthetic_vector(1, 389);
        let b = synthetic_vector(2, 389);
        let mut code = Vec::new();
        let scale = quantize(&b, &mut code);
        let exact = crate::cache::dot(&a, &b);
        let q = dot_i8(&a, &code) * scale;
        let p = dot_i8_portable(&a, &code) * scale;
        assert!((q - p).abs() < 1e-5, "{q} {p}");
        assert!((q - exact).abs() < 2e-3, "{q} {exact}");
    }

    #[test]
    fn topk_keeps_best_first() {
        let mut t = TopK::<3>::default();
        for (i, s) in [0.1, 0.9, 0.5, 0.7, 0.2].iter().enumerate() {
            t.offer(i as u64, *s);
        }
        let ids: Vec<u64> = t.as_slice().iter().map(|x| x.0).collect();
        assert_eq!(ids, vec![1, 3, 2]);
    }

    #[test]
    fn graph_finds_stored_vectors_and_skips_dead() {
        let idx = ScopeIndex::new();
        let n = 3000;
        for i in 0..n {
            idx.insert(i, &synthetic_vector(i, 64));
        }
        // Half loaded unlinked, then linked.
        for i in n..n + 500 {
            idx.push_unlinked(i, &synthetic_vector(i, 64));
        }
        assert_eq!(idx.pending(), 500);
        let mut found = 0;
        for i in (0..n + 500).step_by(7) {
            let mut top = TopK::<1>::default();
            idx.search(&synthetic_vector(i, 64), 64, false, |_| true, &mut top);
            found += usize::from(top.best().map(|b| b.0) == Some(i));
        }
        idx.link_pending();
        assert_eq!(idx.pending(), 0);
        let total = (n + 500).div_ceil(7) as usize;
        assert!(found * 100 >= total * 98, "{found}/{total}");
        let mut top = TopK::<1>::default();
        idx.search(&synthetic_vector(5, 64), 64, false, |id| id != 5, &mut top);
        assert_ne!(top.best().map(|b| b.0), Some(5));
        // Wrong dimension: nothing, no panic.
        let mut top = TopK::<1>::default();
        idx.search(&[1.0, 0.0], 64, false, |_| true, &mut top);
        idx.insert(99_999, &[1.0, 0.0]);
        assert!(top.best().is_none());
    }
}
