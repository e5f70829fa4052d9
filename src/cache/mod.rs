//! Semantic cache: answers a request with a stored answer when an earlier request in
//! the same scope meant the same thing. Similarity finds candidates; `verify`
//! decides; a wrong hit is worse than a miss.
//!
//! - Scope: an exact hash of everything else that shapes the answer (endpoint,
//!   system prompt, earlier turns, tools, response format, sampling parameters,
//!   resolved model). Only entries of the same scope are candidates.
//! - Search: each scope has its own [`index::ScopeIndex`]: its vectors, stored once
//!   as int8, and an HNSW graph over them. Small scopes are scanned exactly; large
//!   ones are searched through the graph.
//!   Removed entries stay as dead slots filtered out of results, and an index is
//!   compacted when they pile up.
//! - Capacity: TTL per entry, and an LRU bound on entries and bytes.
//! - Durability: see [`store`].

pub mod index;
pub mod store;
pub mod verify;
pub mod words;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

pub use index::{ScopeIndex, TopK};
pub use store::{CachedAnswer, EntryRecord, Record, Store, StoreError};
pub use verify::{
    surface_variant, verify, verify_at, verify_with, Mismatch, WordVectors, MISMATCH_KINDS,
    WORD_MATCH,
};
pub use words::ModelWords;

use crate::config::CacheConfig;

/// Whether a stored request's answer may serve a new request, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HitDecision {
    pub hit: bool,
    pub similarity: f32,
    pub reason: String,
    /// The guard that refused it, if one did (`similarity` when below threshold).
    pub rejected_by: Option<&'static str>,
}

/// How far under the similarity threshold a pair that differs only on the surface
/// (typos, casing, spelling) may still be verified: a typo in a short request moves
/// its embedding a long way.
pub const SURFACE_MARGIN: f32 = 0.15;

/// The decision rule without word vectors: only the lexical tables explain
/// reworded words. The live cache and `triage cache explain` call
/// [`decide_hit_with`] with the embedding model's word vectors.
pub fn decide_hit(stored: &str, new: &str, similarity: f32, threshold: f32) -> HitDecision {
    decide_hit_with(stored, new, similarity, threshold, None)
}

/// The one decision rule the live cache and `triage cache explain` share, with word
/// vectors for pairing off reworded words.
pub fn decide_hit_with(
    stored: &str,
    new: &str,
    similarity: f32,
    threshold: f32,
    words: Option<&dyn WordVectors>,
) -> HitDecision {
    let surface = || similarity >= threshold - SURFACE_MARGIN && surface_variant(stored, new);
    if similarity < threshold && !surface() {
        return HitDecision {
            hit: false,
            similarity,
            reason: format!("similarity {similarity:.4} below threshold {threshold:.2}"),
            rejected_by: Some("similarity"),
        };
    }
    match verify_with(stored, new, similarity, words) {
        Ok(()) => HitDecision {
            hit: true,
            similarity,
            reason: format!("similarity {similarity:.4} ≥ {threshold:.2} and no guard objects"),
            rejected_by: None,
        },
        Err(m) => HitDecision {
            hit: false,
            similarity,
            reason: m.to_string(),
            rejected_by: Some(m.kind),
        },
    }
}

/// Dot product; uses AVX2+FMA when the CPU has them (checked once, at run time).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    // The same code, vectorized 8-wide with fused multiply-adds.
    dot_portable(a, b)
}

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    // Sixteen independent accumulators over fixed-size chunks: no bounds checks,
    // and the compiler vectorizes the reduction.
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let x: &[f32; 16] = x.try_into().unwrap_or(&[0.0; 16]);
        let y: &[f32; 16] = y.try_into().unwrap_or(&[0.0; 16]);
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Deterministic pseudo-random unit vectors (benchmarks, fill, tests).
pub fn synthetic_vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

/// Scopes at or below this many live entries are scanned exactly instead of
/// searched through the graph.
const EXACT_SCAN_LIMIT: usize = 256;
/// Candidates a lookup verifies at most.
const CANDIDATES: usize = 4;

struct Entry {
    /// The record without its vector (which lives, quantized, in the scope's index).
    rec: EntryRecord,
    bytes: usize,
}

struct Scope {
    index: Arc<ScopeIndex>,
    live: usize,
}

struct Inner {
    entries: HashMap<u64, Entry>,
    scopes: HashMap<[u8; 16], Scope>,
    lru: lru::LruCache<u64, ()>,
    bytes: usize,
    next_id: u64,
    /// Dead slots in the scope indexes.
    tombstones: usize,
}

/// Bytes an entry is charged: its texts, its int8 vector and graph links, and
/// bookkeeping.
fn entry_bytes(rec: &EntryRecord, dim: usize) -> usize {
    rec.text.len()
        + rec.tenant.len()
        + rec.answer.content.len()
        + rec.answer.model.len()
        + dim
        + 128
        + 256
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        self.lru.pop(&id);
        self.bytes -= e.bytes;
        if let Some(s) = self.scopes.get_mut(&e.rec.scope) {
            s.live = s.live.saturating_sub(1);
            if s.live == 0 {
                self.scopes.remove(&e.rec.scope);
            }
        }
        self.tombstones += 1;
        Some(e)
    }

    /// Adds an entry whose vector is already in its scope's index.
    fn put(&mut self, mut rec: EntryRecord, dim: usize) {
        let id = rec.id;
        if self.entries.contains_key(&id) {
            self.remove(id);
        }
        rec.vector = Vec::new();
        let bytes = entry_bytes(&rec, dim);
        self.next_id = self.next_id.max(id + 1);
        if let Some(s) = self.scopes.get_mut(&rec.scope) {
            s.live += 1;
        }
        self.lru.put(id, ());
        self.bytes += bytes;
        self.entries.insert(id, Entry { rec, bytes });
    }

    fn scope_index(&mut self, scope: [u8; 16]) -> Arc<ScopeIndex> {
        self.scopes
            .entry(scope)
            .or_insert_with(|| Scope {
                index: Arc::new(ScopeIndex::new()),
                live: 0,
            })
            .index
            .clone()
    }

    fn is_current(&self, scope: &[u8; 16], index: &Arc<ScopeIndex>) -> bool {
        self.scopes
            .get(scope)
            .is_some_and(|s| Arc::ptr_eq(&s.index, index))
    }
}

/// Counters for `/admin/cache/stats` and metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bypasses: AtomicU64,
    pub inserts: AtomicU64,
    pub evictions: AtomicU64,
    pub expirations: AtomicU64,
    /// Answers not stored because the writer's queue was full.
    pub dropped: AtomicU64,
    /// Rejections by guard kind (and `similarity`).
    pub rejected: Mutex<HashMap<&'static str, u64>>,
}

/// The outcome of a lookup.
#[derive(Debug, Clone)]
pub enum Lookup {
    Hit {
        answer: CachedAnswer,
        similarity: f32,
        id: u64,
    },
    Miss {
        /// The closest candidate's refusal, when there was a candidate.
        rejected: Option<HitDecision>,
    },
}

pub struct SemanticCache {
    cfg: CacheConfig,
    inner: RwLock<Inner>,
    /// Set once the graphs of the loaded entries are built.
    indexed: std::sync::atomic::AtomicBool,
    store: Option<Mutex<Store>>,
    pub stats: CacheStats,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    /// The embedding model's word vectors, for hit verification (set by
    /// `Pipeline::with_cache`).
    words: std::sync::OnceLock<Arc<dyn WordVectors>>,
    /// The one thread that stores queued answers (started by the first
    /// [`SemanticCache::queue_insert`]).
    writer: std::sync::OnceLock<Writer>,
}

/// An answer waiting to be stored.
struct Pending {
    scope: [u8; 16],
    tenant: String,
    text: String,
    vector: Vec<f32>,
    answer: CachedAnswer,
}

enum Job {
    Put(Box<Pending>),
    /// Answered once every job queued before it is stored.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// How many answers may wait for the writer; beyond it they are dropped (counted in
/// `dropped`). A cache may miss; it never grows memory or threads without bound.
const WRITER_QUEUE: usize = 1024;
/// At most this many answers reach the log with one sync.
const WRITER_BATCH: usize = 256;

/// One thread stores answers in arrival order: graph inserts, then one log append
/// and sync per batch. It holds the cache weakly and ends when the cache is dropped.
struct Writer {
    tx: std::sync::mpsc::SyncSender<Job>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

impl Writer {
    fn start(cache: std::sync::Weak<SemanticCache>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(WRITER_QUEUE);
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let q = queued.clone();
        std::thread::Builder::new()
            .name("triage-cache-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < WRITER_BATCH {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let Some(cache) = cache.upgrade() else {
                        return;
                    };
                    let mut records = Vec::new();
                    let mut flushes = Vec::new();
                    for job in jobs {
                        match job {
                            Job::Put(p) => {
                                q.fetch_sub(1, Ordering::Relaxed);
                                let p = *p;
                                records.extend(cache.insert_in_memory(
                                    p.scope, &p.tenant, &p.text, p.vector, p.answer,
                                ));
                            }
                            Job::Flush(done) => flushes.push(done),
                        }
                    }
                    if !records.is_empty() {
                        cache.persist(&records);
                        cache.maybe_rebuild();
                    }
                    for done in flushes {
                        let _ = done.send(());
                    }
                }
            })?;
        Ok(Self { tx, queued })
    }

    fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Per-kind snapshot of the stats.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub entries: usize,
    pub bytes: usize,
    pub scopes: usize,
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub inserts: u64,
    pub evictions: u64,
    pub expirations: u64,
    /// Answers not stored because the writer's queue was full.
    pub dropped: u64,
    /// Answers waiting for the writer.
    pub queued: usize,
    pub hit_ratio: f64,
    pub guard_rejections: HashMap<String, u64>,
    pub index_ready: bool,
    pub tombstones: usize,
    pub persistent: bool,
}

/// What `/admin/cache/purge` removes.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purge {
    #[serde(default)]
    pub all: bool,
    pub tenant: Option<String>,
    /// Entries created more than this many seconds ago.
    pub older_than_secs: Option<u64>,
}

impl SemanticCache {
    /// An in-memory cache (nothing survives a restart).
    pub fn in_memory(cfg: CacheConfig) -> Arc<Self> {
        Arc::new(Self::build(cfg, None, Box::new(unix_now)))
    }

    /// A cache kept in `dir`: loads what is there (searchable at once, by exact
    /// scan), then links the graphs in the background.
    pub fn open(cfg: CacheConfig, dir: &Path) -> Result<Arc<Self>, StoreError> {
        // Replay to the final state first, so each id takes one slot; vectors are
        // quantized as they are read, so the f32 copies never pile up.
        let mut last: HashMap<u64, (EntryRecord, Vec<i8>, f32)> = HashMap::new();
        let store = Store::open_with(dir, |r| match r {
            Record::Put(mut e) => {
                let mut code = Vec::with_capacity(e.vector.len());
                let scale = index::quantize(&e.vector, &mut code);
                e.vector = Vec::new();
                last.insert(e.id, (e, code, scale));
            }
            Record::Delete(ids) => {
                for id in ids {
                    last.remove(&id);
                }
            }
        })?;
        let cache = Arc::new(Self::build(cfg, Some(store), Box::new(unix_now)));
        let mut recs: Vec<(EntryRecord, Vec<i8>, f32)> = last.into_values().collect();
        recs.sort_by_key(|r| r.0.id);
        {
            let mut inner = cache.inner.write();
            for (r, code, scale) in recs {
                let index = inner.scope_index(r.scope);
                index.push_code(r.id, &code, scale);
                inner.put(r, code.len());
            }
            inner.tombstones = 0;
        }
        cache.expire();
        let c = cache.clone();
        std::thread::Builder::new()
            .name("triage-cache-index".into())
            .spawn(move || c.link_all())
            .map_err(|e| StoreError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
        Ok(cache)
    }

    fn build(
        cfg: CacheConfig,
        store: Option<Store>,
        clock: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        let store_is_none = store.is_none();
        Self {
            inner: RwLock::new(Inner {
                entries: HashMap::new(),
                scopes: HashMap::new(),
                // Unbounded: eviction is ours, by entries and bytes, with the log.
                lru: lru::LruCache::unbounded(),
                bytes: 0,
                next_id: 1,
                tombstones: 0,
            }),
            indexed: std::sync::atomic::AtomicBool::new(store_is_none),
            store: store.map(Mutex::new),
            cfg,
            stats: CacheStats::default(),
            clock,
            words: std::sync::OnceLock::new(),
            writer: std::sync::OnceLock::new(),
        }
    }

    /// Lets hit verification pair off reworded words by the model's word vectors, as
    /// `triage cache explain` does. Set once; later calls are ignored.
    pub fn set_word_vectors(&self, words: Arc<dyn WordVectors>) {
        let _ = self.words.set(words);
    }

    /// Replaces the clock (tests cross TTLs without sleeping).
    pub fn with_clock(mut self: Arc<Self>, clock: Box<dyn Fn() -> u64 + Send + Sync>) -> Arc<Self> {
        if let Some(c) = Arc::get_mut(&mut self) {
            c.clock = clock;
        }
        self
    }

    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    fn all_indexes(&self) -> Vec<([u8; 16], Arc<ScopeIndex>)> {
        self.inner
            .read()
            .scopes
            .iter()
            .map(|(k, s)| (*k, s.index.clone()))
            .collect()
    }

    /// Links every unlinked vector into its scope's graph.
    fn link_all(&self) {
        let indexes = self.all_indexes();
        for (_, index) in &indexes {
            index.link_pending();
        }
        self.indexed.store(true, Ordering::Relaxed);
        tracing::info!(scopes = indexes.len(), "cache indexes ready");
    }

    /// Rebuilds one scope's index from its live entries (drops dead slots).
    fn compact_scope(&self, scope: &[u8; 16], old: &Arc<ScopeIndex>) {
        let (fresh, copied) = {
            let inner = self.inner.read();
            old.live_copy(|id| inner.entries.contains_key(&id))
        };
        fresh.link_pending();
        let fresh = Arc::new(fresh);
        {
            let mut inner = self.inner.write();
            let Some(s) = inner.scopes.get_mut(scope) else {
                return;
            };
            if !Arc::ptr_eq(&s.index, old) {
                return;
            }
            // Entries that became live while the copy was linked.
            let entries = &inner.entries;
            old.copy_into(&fresh, |id| {
                !copied.contains(&id) && entries.get(&id).is_some_and(|e| e.rec.scope == *scope)
            });
            if let Some(s) = inner.scopes.get_mut(scope) {
                s.index = fresh.clone();
            }
        }
        fresh.link_pending();
    }

    /// Rebuilds the index of every scope (dropping dead slots) and links them all.
    pub fn rebuild_index(&self) {
        let indexes = self.all_indexes();
        for (scope, index) in &indexes {
            self.compact_scope(scope, index);
        }
        self.inner.write().tombstones = 0;
        self.indexed.store(true, Ordering::Relaxed);
        tracing::info!(scopes = indexes.len(), "cache indexes ready");
    }

    pub fn len(&self) -> usize {
        self.inner.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn reject(&self, kind: &'static str) {
        *self.stats.rejected.lock().entry(kind).or_default() += 1;
    }

    /// Live, unexpired candidates of `scope`, best first.
    fn candidates(
        &self,
        inner: &Inner,
        scope: &[u8; 16],
        vector: &[f32],
        now: u64,
        ef: usize,
    ) -> TopK<CANDIDATES> {
        let mut top = TopK::default();
        let Some(s) = inner.scopes.get(scope) else {
            return top;
        };
        let keep = |id: u64| inner.entries.get(&id).is_some_and(|e| e.rec.expires > now);
        let exact = s.live <= EXACT_SCAN_LIMIT;
        s.index.search(vector, ef, exact, keep, &mut top);
        top
    }

    /// The index search alone (no verification): the best live match in `scope`,
    /// searched with beam `ef` (or exactly). For benchmarks and diagnostics.
    pub fn nearest(
        &self,
        scope: &[u8; 16],
        vector: &[f32],
        ef: Option<usize>,
    ) -> Option<(u64, f32)> {
        let now = (self.clock)();
        let inner = self.inner.read();
        let s = inner.scopes.get(scope)?;
        let mut top = TopK::<1>::default();
        let keep = |id: u64| inner.entries.get(&id).is_some_and(|e| e.rec.expires > now);
        s.index.search(
            vector,
            ef.unwrap_or(self.cfg.ef_search),
            ef.is_none(),
            keep,
            &mut top,
        );
        top.best()
    }

    /// Looks for a stored answer that serves `text` (embedded as `vector`).
    pub fn lookup(&self, scope: &[u8; 16], text: &str, vector: &[f32], threshold: f32) -> Lookup {
        let now = (self.clock)();
        // The candidates' texts are read under the lock; the decision, which may
        // embed a few words, runs outside it.
        let candidates: Vec<(u64, String, f32)> = {
            let inner = self.inner.read();
            let found = self.candidates(&inner, scope, vector, now, self.cfg.ef_search);
            let mut out = Vec::new();
            for &(id, sim) in found.as_slice() {
                let Some(e) = inner.entries.get(&id) else {
                    continue;
                };
                let sim = sim.clamp(-1.0, 1.0);
                out.push((id, e.rec.text.clone(), sim));
                if sim < threshold - SURFACE_MARGIN {
                    break;
                }
            }
            out
        };
        let words = self.words.get().map(|w| w.as_ref());
        let mut rejected: Option<HitDecision> = None;
        let mut hit = None;
        for (id, stored, sim) in candidates {
            let d = decide_hit_with(&stored, text, sim, threshold, words);
            if d.hit {
                // Gone since (evicted, purged): try the next one.
                if let Some(answer) = self
                    .inner
                    .read()
                    .entries
                    .get(&id)
                    .map(|e| e.rec.answer.clone())
                {
                    hit = Some((id, answer, sim));
                    break;
                }
                continue;
            }
            if rejected.is_none() {
                rejected = Some(d);
            }
        }
        match hit {
            Some((id, answer, similarity)) => {
                self.inner.write().lru.get(&id);
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Lookup::Hit {
                    answer,
                    similarity,
                    id,
                }
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                if let Some(kind) = rejected.as_ref().and_then(|d| d.rejected_by) {
                    self.reject(kind);
                }
                Lookup::Miss { rejected }
            }
        }
    }

    pub fn note_bypass(&self) {
        self.stats.bypasses.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores an answer now. Blocking (graph insert, log append and sync): the
    /// server queues answers with [`SemanticCache::queue_insert`] instead.
    pub fn insert(
        &self,
        scope: [u8; 16],
        tenant: &str,
        text: &str,
        vector: Vec<f32>,
        answer: CachedAnswer,
    ) {
        let records = self.insert_in_memory(scope, tenant, text, vector, answer);
        self.persist(&records);
        self.maybe_rebuild();
    }

    /// Queues an answer for the writer thread and returns at once; false when the
    /// queue is full and the answer is dropped.
    pub fn queue_insert(
        self: &Arc<Self>,
        scope: [u8; 16],
        tenant: &str,
        text: &str,
        vector: Vec<f32>,
        answer: CachedAnswer,
    ) -> bool {
        let writer = match self.writer.get() {
            Some(w) => w,
            None => match Writer::start(Arc::downgrade(self)) {
                Ok(w) => self.writer.get_or_init(|| w),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the cache writer");
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            },
        };
        let job = Job::Put(Box::new(Pending {
            scope,
            tenant: tenant.to_string(),
            text: text.to_string(),
            vector,
            answer,
        }));
        writer.queued.fetch_add(1, Ordering::Relaxed);
        match writer.tx.try_send(job) {
            Ok(()) => true,
            Err(_) => {
                writer.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("cache writer queue full: answer not stored");
                false
            }
        }
    }

    /// Waits (up to `timeout`) until every answer queued so far is stored; false
    /// when the writer did not answer in time.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let Some(writer) = self.writer.get() else {
            return true;
        };
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        if writer.tx.send(Job::Flush(done_tx)).is_err() {
            return false;
        }
        done_rx.recv_timeout(timeout).is_ok()
    }

    /// Puts an answer in the index and the entry table (evicting over the limits)
    /// and returns the records its log append needs.
    fn insert_in_memory(
        &self,
        scope: [u8; 16],
        tenant: &str,
        text: &str,
        vector: Vec<f32>,
        answer: CachedAnswer,
    ) -> Vec<Record> {
        let now = (self.clock)();
        let dim = vector.len();
        let id = {
            let mut inner = self.inner.write();
            let id = inner.next_id;
            inner.next_id += 1;
            id
        };
        let mut rec = EntryRecord {
            id,
            scope,
            tenant: tenant.to_string(),
            text: text.to_string(),
            vector: Vec::new(),
            answer,
            created: now,
            expires: now.saturating_add(self.cfg.ttl_secs),
        };
        let mut evicted = Vec::new();
        // The vector goes into the scope's index outside the cache lock; the entry
        // becomes visible once that index is still the scope's current one (a
        // compaction or an emptied scope may have replaced it meanwhile).
        loop {
            let index = self.inner.write().scope_index(scope);
            index.insert(id, &vector);
            let mut inner = self.inner.write();
            if !inner.is_current(&scope, &index) {
                continue;
            }
            inner.put(rec.clone(), dim);
            while inner.entries.len() > self.cfg.max_entries || inner.bytes > self.cfg.max_bytes {
                let Some((old, _)) = inner.lru.pop_lru() else {
                    break;
                };
                if old == id {
                    inner.lru.put(old, ());
                    break;
                }
                if inner.remove(old).is_some() {
                    evicted.push(old);
                }
            }
            break;
        }
        self.stats.inserts.fetch_add(1, Ordering::Relaxed);
        self.stats
            .evictions
            .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        if self.store.is_none() {
            return Vec::new();
        }
        rec.vector = vector;
        let mut records = vec![Record::Put(rec)];
        if !evicted.is_empty() {
            records.push(Record::Delete(evicted));
        }
        records
    }

    fn persist(&self, records: &[Record]) {
        if records.is_empty() {
            return;
        }
        if let Some(store) = &self.store {
            if let Err(e) = store.lock().append(records) {
                tracing::error!(error = %e, "cache log append failed");
            }
        }
    }

    fn maybe_rebuild(&self) {
        let (tomb, live) = {
            let inner = self.inner.read();
            (inner.tombstones, inner.entries.len())
        };
        if tomb > 1024 && tomb * 5 > live {
            self.rebuild_index();
        }
    }

    /// Removes the entries `which` selects, logs the removal, and says how many.
    fn remove_where(&self, which: impl Fn(&EntryRecord) -> bool) -> usize {
        let ids: Vec<u64> = {
            let mut inner = self.inner.write();
            let ids: Vec<u64> = inner
                .entries
                .values()
                .filter(|e| which(&e.rec))
                .map(|e| e.rec.id)
                .collect();
            for id in &ids {
                inner.remove(*id);
            }
            ids
        };
        let n = ids.len();
        if n > 0 {
            self.persist(&[Record::Delete(ids)]);
            self.maybe_rebuild();
        }
        n
    }

    /// Drops expired entries.
    pub fn expire(&self) -> usize {
        let now = (self.clock)();
        let n = self.remove_where(|e| e.expires <= now);
        self.stats
            .expirations
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Removes entries: all, a tenant's, or those older than an age.
    pub fn purge(&self, p: &Purge) -> usize {
        let now = (self.clock)();
        self.remove_where(|e| {
            p.all
                || p.tenant.as_deref() == Some(e.tenant.as_str())
                || p.older_than_secs
                    .is_some_and(|age| now.saturating_sub(e.created) >= age)
        })
    }

    /// Writes a snapshot of the live entries and starts a fresh log.
    pub fn snapshot(&self) -> Result<(), StoreError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut store = store.lock();
        store.rotate()?;
        Store::write_snapshot(store.dir(), self.live_records())
    }

    /// A copy of every live entry (vectors dequantized from the index: within
    /// about 1e-3 of the originals).
    pub fn entries_snapshot(&self) -> Vec<EntryRecord> {
        self.live_records().collect()
    }

    /// Every live entry with its vector. The records (without vectors: those stay in
    /// the indexes) are copied under the lock; each vector is dequantized only when
    /// its record is taken, so a snapshot never holds the f32 copies of all entries
    /// at once.
    fn live_records(&self) -> impl Iterator<Item = EntryRecord> {
        type Part = (Arc<ScopeIndex>, Vec<(u32, EntryRecord)>);
        let mut parts: Vec<Part> = Vec::new();
        {
            let inner = self.inner.read();
            for (scope, s) in &inner.scopes {
                let mut recs = Vec::with_capacity(s.live);
                s.index.for_each_slot(
                    |id| {
                        inner
                            .entries
                            .get(&id)
                            .is_some_and(|e| e.rec.scope == *scope)
                    },
                    |slot, id| {
                        if let Some(e) = inner.entries.get(&id) {
                            recs.push((slot, e.rec.clone()));
                        }
                    },
                );
                parts.push((s.index.clone(), recs));
            }
        }
        parts.into_iter().flat_map(|(index, recs)| {
            recs.into_iter().map(move |(slot, mut rec)| {
                rec.vector = index.vector(slot);
                rec
            })
        })
    }

    pub fn stats_report(&self) -> StatsReport {
        let inner = self.inner.read();
        let hits = self.stats.hits.load(Ordering::Relaxed);
        let misses = self.stats.misses.load(Ordering::Relaxed);
        StatsReport {
            entries: inner.entries.len(),
            bytes: inner.bytes,
            scopes: inner.scopes.len(),
            hits,
            misses,
            bypasses: self.stats.bypasses.load(Ordering::Relaxed),
            inserts: self.stats.inserts.load(Ordering::Relaxed),
            evictions: self.stats.evictions.load(Ordering::Relaxed),
            expirations: self.stats.expirations.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            queued: self.writer.get().map_or(0, Writer::queued),
            hit_ratio: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
            guard_rejections: self
                .stats
                .rejected
                .lock()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            index_ready: self.indexed.load(Ordering::Relaxed),
            tombstones: inner.tombstones,
            persistent: self.store.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(s: &str) -> CachedAnswer {
        CachedAnswer {
            content: s.into(),
            model: "m".into(),
            response_model: "m".into(),
            finish_reason: "stop".into(),
            prompt_tokens: 1,
            completion_tokens: 1,
            cached_tokens: 0,
        }
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn typo_only_pairs_are_verified_a_little_under_the_threshold() {
        let (a, b) = (
            "Where can I find my order history?",
            "where can i find my order histroy",
        );
        // A typo moved the embedding under the threshold: still the same words.
        assert!(decide_hit(a, b, 0.62, 0.70).hit);
        // Not that far under, and not for another word.
        assert!(!decide_hit(a, b, 0.50, 0.70).hit);
        let d = decide_hit(a, "Where can I find my order number?", 0.62, 0.70);
        assert_eq!(d.rejected_by, Some("similarity"));
    }

    #[test]
    fn queued_answers_are_stored_by_one_writer_and_reach_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SemanticCache::open(CacheConfig::default(), dir.path()).unwrap();
        cache.rebuild_index();
        for i in 0..300u32 {
            let v = unit(&[1.0, i as f32, 3.0, 4.0]);
            assert!(cache.queue_insert([1; 16], "t", &format!("question {i}"), v, answer("a")));
        }
        assert!(cache.flush(std::time::Duration::from_secs(30)));
        let r = cache.stats_report();
        assert_eq!((r.entries, r.queued, r.dropped), (300, 0, 0));
        drop(cache);
        let again = SemanticCache::open(CacheConfig::default(), dir.path()).unwrap();
        assert_eq!(again.stats_report().entries, 300);
    }

    #[test]
    fn exact_duplicate_does_not_panic_and_hits() {
        let cache = SemanticCache::in_memory(CacheConfig::default());
        cache.rebuild_index();
        let v = unit(&[1.0, 2.0, 3.0, 4.0]);
        cache.insert([1; 16], "t", "hello there", v.clone(), answer("hi!"));
        match cache.lookup(&[1; 16], "hello there", &v, 0.9) {
            Lookup::Hit {
                answer, similarity, ..
            } => {
                assert_eq!(answer.content, "hi!");
                assert!(similarity > 0.999);
            }
            other => panic!("{other:?}"),
        }
        // Another scope never sees it.
        assert!(matches!(
            cache.lookup(&[2; 16], "hello there", &v, 0.9),
            Lookup::Miss { .. }
        ));
    }

    #[test]
    fn ttl_lru_and_purge() {
        let now = Arc::new(AtomicU64::new(1000));
        let n2 = now.clone();
        let cfg = CacheConfig {
            ttl_secs: 10,
            max_entries: 2,
            ..CacheConfig::default()
        };
        let cache =
            SemanticCache::in_memory(cfg).with_clock(Box::new(move || n2.load(Ordering::Relaxed)));
        let v = unit(&[1.0, 0.0, 0.0, 0.0]);
        cache.insert([1; 16], "a", "q1", v.clone(), answer("1"));
        cache.insert([2; 16], "b", "q2", v.clone(), answer("2"));
        cache.insert([3; 16], "a", "q3", v.clone(), answer("3"));
        assert_eq!(cache.len(), 2, "least recently used evicted");
        assert!(matches!(
            cache.lookup(&[1; 16], "q1", &v, 0.5),
            Lookup::Miss { .. }
        ));
        now.store(1011, Ordering::Relaxed);
        assert!(
            matches!(cache.lookup(&[3; 16], "q3", &v, 0.5), Lookup::Miss { .. }),
            "expired"
        );
        assert_eq!(cache.expire(), 2);
        now.store(2000, Ordering::Relaxed);
        cache.insert([1; 16], "a", "q1", v.clone(), answer("1"));
        cache.insert([2; 16], "b", "q2", v.clone(), answer("2"));
        assert_eq!(
            cache.purge(&Purge {
                tenant: Some("a".into()),
                ..Purge::default()
            }),
            1
        );
        assert_eq!(
            cache.purge(&Purge {
                all: true,
                ..Purge::default()
            }),
            1
        );
        assert!(cache.is_empty());
    }
}
