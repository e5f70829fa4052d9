//! Embedding worker threads fed by a bounded queue. Requests that arrive while a
//! worker is busy are embedded together as one batch. Inference never runs on the
//! async runtime's threads, and a full queue is reported at once instead of growing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::{EmbedTimings, Embedder, Embedding};

#[derive(Debug, thiserror::Error, Clone)]
pub enum PoolError {
    #[error("the embedding queue is full ({0} waiting)")]
    Busy(usize),
    #[error("the embedding workers have stopped")]
    Closed,
    #[error("embedding failed: {0}")]
    Failed(String),
}

/// One embedded text, with where its time went.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub embedding: Embedding,
    pub timings: EmbedTimings,
    /// Time spent waiting in the queue, in microseconds.
    pub queue_us: u64,
    /// Size of the batch this text was embedded in.
    pub batch_size: usize,
}

struct Job {
    text: String,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Embedded, PoolError>>,
}

#[derive(Debug, Default)]
pub struct PoolStats {
    pub batches: AtomicU64,
    pub items: AtomicU64,
    pub rejected: AtomicU64,
    pub memo_hits: AtomicU64,
}

#[derive(Clone)]
pub struct EmbedPool {
    tx: Sender<Job>,
    capacity: usize,
    embedder: Arc<Embedder>,
    stats: Arc<PoolStats>,
    /// Recent exact texts and their embeddings ("hi", FAQs repeat verbatim).
    memo: Option<Arc<parking_lot::Mutex<lru::LruCache<String, Embedding>>>>,
}

impl EmbedPool {
    /// Starts `workers` threads, each running batches of at most `max_batch`.
    pub fn start(
        embedder: Arc<Embedder>,
        workers: usize,
        max_batch: usize,
        capacity: usize,
    ) -> Self {
        let (tx, rx) = bounded::<Job>(capacity);
        let stats = Arc::new(PoolStats::default());
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let embedder = embedder.clone();
            let stats = stats.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("triage-embed-{i}"))
                .spawn(move || worker(rx, embedder, max_batch.max(1), stats));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start embedding worker");
            }
        }
        Self {
            tx,
            capacity,
            embedder,
            stats,
            memo: None,
        }
    }

    /// Remembers the embeddings of the last `entries` distinct texts (0: off). Each
    /// entry holds the routing features and the sentence vector (~17 KB for MiniLM).
    pub fn with_memo(mut self, entries: usize) -> Self {
        self.memo = std::num::NonZeroUsize::new(entries)
            .map(|n| Arc::new(parking_lot::Mutex::new(lru::LruCache::new(n))));
        self
    }

    pub fn embedder(&self) -> &Arc<Embedder> {
        &self.embedder
    }

    /// Requests waiting for a worker.
    pub fn queue_depth(&self) -> usize {
        self.tx.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Embeds one text on a worker thread, batched with whatever else is waiting;
    /// a text seen recently comes from the memo without a forward pass.
    pub async fn embed(&self, text: String) -> Result<Embedded, PoolError> {
        if let Some(memo) = &self.memo {
            if let Some(e) = memo.lock().get(&text) {
                self.stats.memo_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Embedded {
                    embedding: e.clone(),
                    timings: EmbedTimings::default(),
                    queue_us: 0,
                    batch_size: 0,
                });
            }
        }
        let key = self.memo.as_ref().map(|_| text.clone());
        let (reply, rx) = oneshot::channel();
        let job = Job {
            text,
            enqueued: Instant::now(),
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(PoolError::Busy(self.tx.len()));
            }
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Closed),
        }
        let out = rx.await.map_err(|_| PoolError::Closed)??;
        if let (Some(memo), Some(key)) = (&self.memo, key) {
            memo.lock().put(key, out.embedding.clone());
        }
        Ok(out)
    }
}

fn worker(rx: Receiver<Job>, embedder: Arc<Embedder>, max_batch: usize, stats: Arc<PoolStats>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // A client that went away no longer needs its embedding.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let started = Instant::now();
        let texts: Vec<&str> = jobs.iter().map(|j| j.text.as_str()).collect();
        let result = embedder.embed(&texts);
        let n = jobs.len();
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.items.fetch_add(n as u64, Ordering::Relaxed);
        match result {
            Ok((embeddings, timings)) => {
                for (job, embedding) in jobs.drain(..).zip(embeddings) {
                    let queue_us =
                        started.saturating_duration_since(job.enqueued).as_micros() as u64;
                    let _ = job.reply.send(Ok(Embedded {
                        embedding,
                        timings,
                        queue_us,
                        batch_size: n,
                    }));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, batch = n, "embedding batch failed");
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(PoolError::Failed(msg.clone())));
                }
            }
        }
    }
}
