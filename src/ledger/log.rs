//! The decision log: one SQLite row per request (WAL mode), written by a batching
//! thread fed through a bounded channel. When the writer falls behind, rows are
//! dropped and counted: the request path never blocks on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use rusqlite::{params, Connection};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("decision log {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("decision log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One request, as the ledger records it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DecisionRow {
    pub id: String,
    /// Unix milliseconds.
    pub ts_ms: i64,
    pub endpoint: String,
    pub tenant: String,
    /// The client's protocol: openai-chat, anthropic-messages, openai-responses,
    /// embeddings.
    pub api: String,
    pub conversation: Option<String>,
    /// Only with `ledger.log_text = true`.
    pub routed_text: Option<String>,
    pub tier: Option<String>,
    pub probs: Option<String>,
    pub confidence: Option<f64>,
    pub chosen_model: Option<String>,
    pub actual_model: Option<String>,
    pub cache_status: String,
    pub cache_similarity: Option<f64>,
    pub input_tokens: i64,
    pub cached_tokens: i64,
    pub output_tokens: i64,
    /// None: the model has no price.
    pub cost_usd: Option<f64>,
    /// What a cache hit saved (the cost of the call it replaced).
    pub saved_usd: Option<f64>,
    /// Cost had the request gone to the strongest tier's model.
    pub top_tier_cost_usd: Option<f64>,
    pub queue_us: i64,
    pub embed_us: i64,
    pub head_us: i64,
    pub route_us: i64,
    pub upstream_ms: i64,
    pub total_ms: i64,
    pub upstream_status: Option<i64>,
    pub retries: i64,
    pub fallback: bool,
    pub error: Option<String>,
    /// Prompt tokens removed by history compression.
    pub tokens_saved: i64,
    /// What the summarizer cost for this request.
    pub summary_cost_usd: Option<f64>,
    /// What the removed prompt tokens would have cost on the model that answered.
    pub compression_saved_usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeedbackRow {
    pub request_id: String,
    pub ts_ms: i64,
    pub correct_tier: Option<String>,
    pub outcome: Option<String>,
    pub note: Option<String>,
}

enum Write {
    Decision(Box<DecisionRow>),
    Feedback(FeedbackRow),
    Flush(crossbeam_channel::Sender<()>),
}

const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE decisions (
        id TEXT PRIMARY KEY,
        ts_ms INTEGER NOT NULL,
        endpoint TEXT NOT NULL,
        tenant TEXT NOT NULL,
        conversation TEXT,
        routed_text TEXT,
        tier TEXT,
        probs TEXT,
        confidence REAL,
        chosen_model TEXT,
        actual_model TEXT,
        cache_status TEXT NOT NULL,
        cache_similarity REAL,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        cached_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL,
        saved_usd REAL,
        top_tier_cost_usd REAL,
        queue_us INTEGER NOT NULL DEFAULT 0,
        embed_us INTEGER NOT NULL DEFAULT 0,
        head_us INTEGER NOT NULL DEFAULT 0,
        route_us INTEGER NOT NULL DEFAULT 0,
        upstream_ms INTEGER NOT NULL DEFAULT 0,
        total_ms INTEGER NOT NULL DEFAULT 0,
        upstream_status INTEGER,
        retries INTEGER NOT NULL DEFAULT 0,
        fallback INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX decisions_ts ON decisions(ts_ms);
    CREATE INDEX decisions_endpoint_ts ON decisions(endpoint, ts_ms);
    CREATE TABLE feedback (
        request_id TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        correct_tier TEXT,
        outcome TEXT,
        note TEXT
    );
    CREATE INDEX feedback_request ON feedback(request_id);",
    // v2: prompt compression
    "ALTER TABLE decisions ADD COLUMN tokens_saved INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE decisions ADD COLUMN summary_cost_usd REAL;
     ALTER TABLE decisions ADD COLUMN compression_saved_usd REAL;",
    // v3: one feedback row per request; a later feedback replaces the earlier one.
    "DELETE FROM feedback WHERE rowid NOT IN (SELECT max(rowid) FROM feedback GROUP BY request_id);
     DROP INDEX feedback_request;
     CREATE UNIQUE INDEX feedback_request ON feedback(request_id);",
    // v4: which API the client spoke.
    "ALTER TABLE decisions ADD COLUMN api TEXT NOT NULL DEFAULT 'openai-chat';",
];

/// Opens (creating and migrating) the database. Several processes may open a new
/// file at the same moment (serve, report, retrain); SQLite then answers "locked"
/// to some of them without waiting, so opening is retried for a few seconds.
pub fn open(path: &Path) -> Result<Connection, LogError> {
    let mut attempt = 0;
    loop {
        match try_open(path) {
            Err(LogError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            }) if attempt < 100
                && matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn try_open(path: &Path) -> Result<Connection, LogError> {
    let err = |source| LogError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| LogError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let conn = Connection::open(path).map_err(err)?;
    // Wait for other processes' locks before anything else needs one.
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    // Migrate inside an immediate transaction: processes opening the same file at
    // once (serve, report, retrain) take turns instead of racing.
    let mut conn = conn;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(m).map_err(err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(err)?;
    }
    tx.commit().map_err(err)?;
    Ok(conn)
}

pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("decisions.sqlite")
}

pub struct DecisionLog {
    tx: Sender<Write>,
    pub dropped: Arc<AtomicU64>,
    pub written: Arc<AtomicU64>,
    path: PathBuf,
    /// Ids of recently recorded requests and their tenants: feedback that arrives
    /// before the writer has stored the row still finds it.
    recent: parking_lot::Mutex<lru::LruCache<String, String>>,
    /// A read connection for feedback lookups.
    reader: parking_lot::Mutex<Option<Connection>>,
}

/// Recently recorded request ids remembered in memory.
const RECENT_IDS: usize = 65_536;

impl DecisionLog {
    /// Starts the writer thread. `retention_days` = 0 keeps everything.
    pub fn start(path: &Path, capacity: usize, retention_days: u64) -> Result<Self, LogError> {
        let conn = open(path)?;
        let (tx, rx) = bounded(capacity.max(1));
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let p = path.to_path_buf();
        std::thread::Builder::new()
            .name("triage-ledger".into())
            .spawn(move || writer(conn, rx, w, retention_days, p))
            .map_err(|source| LogError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            written,
            path: path.to_path_buf(),
            recent: parking_lot::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(RECENT_IDS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            reader: parking_lot::Mutex::new(None),
        })
    }

    /// The tenant of a logged request, or None when no request has this id.
    /// Blocking (SQLite): call it off the async runtime.
    pub fn tenant_of(&self, request_id: &str) -> Result<Option<String>, LogError> {
        if let Some(t) = self.recent.lock().get(request_id) {
            return Ok(Some(t.clone()));
        }
        let mut reader = self.reader.lock();
        if reader.is_none() {
            *reader = Some(open(&self.path)?);
        }
        let Some(conn) = reader.as_ref() else {
            return Ok(None);
        };
        let err = |source| LogError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let mut stmt = conn
            .prepare_cached("SELECT tenant FROM decisions WHERE id = ?1")
            .map_err(err)?;
        let mut rows = stmt.query(params![request_id]).map_err(err)?;
        match rows.next().map_err(err)? {
            Some(r) => Ok(Some(r.get(0).map_err(err)?)),
            None => Ok(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, w: Write) {
        match self.tx.try_send(w) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                metrics::counter!("triage_ledger_dropped_total").increment(1);
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "decision log writer is behind; dropping rows");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("decision log writer has stopped");
            }
        }
    }

    pub fn record(&self, row: DecisionRow) {
        self.recent.lock().put(row.id.clone(), row.tenant.clone());
        self.send(Write::Decision(Box::new(row)));
    }

    pub fn feedback(&self, row: FeedbackRow) {
        self.send(Write::Feedback(row));
    }

    /// Waits until everything queued so far is written (tests, shutdown).
    pub fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = bounded(1);
        if self.tx.send_timeout(Write::Flush(tx), timeout).is_err() {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }
}

fn writer(
    mut conn: Connection,
    rx: Receiver<Write>,
    written: Arc<AtomicU64>,
    retention_days: u64,
    path: PathBuf,
) {
    let mut last_retention = Instant::now() - Duration::from_secs(3600);
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(w) => Some(w),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch: Vec<Write> = first.into_iter().collect();
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        if !batch.is_empty() {
            match write_batch(&mut conn, batch, &mut flushes) {
                Ok(n) => {
                    written.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "decision log write failed")
                }
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
        if retention_days > 0 && last_retention.elapsed() > Duration::from_secs(3600) {
            last_retention = Instant::now();
            let cutoff =
                chrono::Utc::now().timestamp_millis() - (retention_days as i64) * 86_400_000;
            for sql in [
                "DELETE FROM decisions WHERE ts_ms < ?1",
                "DELETE FROM feedback WHERE ts_ms < ?1",
            ] {
                if let Err(e) = conn.execute(sql, params![cutoff]) {
                    tracing::error!(error = %e, "decision log retention failed");
                }
            }
        }
    }
}

fn write_batch(
    conn: &mut Connection,
    batch: Vec<Write>,
    flushes: &mut Vec<Sender<()>>,
) -> Result<u64, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut n = 0;
    {
        let mut ins = tx.prepare_cached(
            "INSERT OR REPLACE INTO decisions (id, ts_ms, endpoint, tenant, conversation, routed_text,
             tier, probs, confidence, chosen_model, actual_model, cache_status, cache_similarity,
             input_tokens, cached_tokens, output_tokens, cost_usd, saved_usd, top_tier_cost_usd,
             queue_us, embed_us, head_us, route_us, upstream_ms, total_ms, upstream_status,
             retries, fallback, error, tokens_saved, summary_cost_usd, compression_saved_usd, api)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
             ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33)",
        )?;
        let mut fb = tx.prepare_cached(
            // A repeated feedback replaces the earlier one; a field it leaves out keeps
            // its earlier value.
            "INSERT INTO feedback (request_id, ts_ms, correct_tier, outcome, note) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(request_id) DO UPDATE SET ts_ms = excluded.ts_ms,
               correct_tier = coalesce(excluded.correct_tier, correct_tier),
               outcome = coalesce(excluded.outcome, outcome),
               note = coalesce(excluded.note, note)",
        )?;
        for w in batch {
            match w {
                Write::Decision(r) => {
                    ins.execute(params![
                        r.id,
                        r.ts_ms,
                        r.endpoint,
                        r.tenant,
                        r.conversation,
                        r.routed_text,
                        r.tier,
                        r.probs,
                        r.confidence,
                        r.chosen_model,
                        r.actual_model,
                        r.cache_status,
                        r.cache_similarity,
                        r.input_tokens,
                        r.cached_tokens,
                        r.output_tokens,
                        r.cost_usd,
                        r.saved_usd,
                        r.top_tier_cost_usd,
                        r.queue_us,
                        r.embed_us,
                        r.head_us,
                        r.route_us,
                        r.upstream_ms,
                        r.total_ms,
                        r.upstream_status,
                        r.retries,
                        r.fallback,
                        r.error,
                        r.tokens_saved,
                        r.summary_cost_usd,
                        r.compression_saved_usd,
                        r.api,
                    ])?;
                    n += 1;
                }
                Write::Feedback(f) => {
                    fb.execute(params![
                        f.request_id,
                        f.ts_ms,
                        f.correct_tier,
                        f.outcome,
                        f.note
                    ])?;
                    n += 1;
                }
                Write::Flush(s) => flushes.push(s),
            }
        }
    }
    tx.commit()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_written_and_schema_is_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(dir.path());
        let log = DecisionLog::start(&path, 100, 30).unwrap();
        log.record(DecisionRow {
            id: "r1".into(),
            ts_ms: chrono::Utc::now().timestamp_millis(),
            endpoint: "e".into(),
            tenant: "t".into(),
            cache_status: "miss".into(),
            input_tokens: 10,
            cost_usd: Some(0.5),
            ..DecisionRow::default()
        });
        log.feedback(FeedbackRow {
            request_id: "r1".into(),
            ts_ms: 1,
            correct_tier: Some("COMPLEX".into()),
            outcome: None,
            note: None,
        });
        assert!(log.flush(Duration::from_secs(5)));
        let conn = open(&path).unwrap();
        let (n, cost): (i64, f64) = conn
            .query_row("SELECT count(*), sum(cost_usd) FROM decisions", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n, cost), (1, 0.5));
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn processes_opening_a_new_log_at_once_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(dir.path());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || open(&p).map(|_| ()).map_err(|e| e.to_string()))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::start(&db_path(dir.path()), 1, 0).unwrap();
        for i in 0..20_000 {
            log.record(DecisionRow {
                id: format!("r{i}"),
                cache_status: "miss".into(),
                ..DecisionRow::default()
            });
        }
        // Sends never wait for the writer: what did not fit was dropped and counted.
        assert!(log.dropped.load(Ordering::Relaxed) > 0);
        assert!(log.flush(Duration::from_secs(10)));
        let written = log.written.load(Ordering::Relaxed);
        assert_eq!(written + log.dropped.load(Ordering::Relaxed), 20_000);
    }
}
