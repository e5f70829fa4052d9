//! `kill -9` of the real `triage serve` while it writes its semantic cache and its
//! decision log under load, 20 times over one data directory. After every kill:
//! the SQLite decision log passes `PRAGMA integrity_check`, no row is half-written
//! and no committed row was lost; a copy of the cache directory loads and holds only
//! whole answers; and the restarted server on the same directory becomes ready,
//! loads its cache and serves, including a cached answer from an earlier round.

mod common;
#[path = "common/faults.rs"]
mod faulty;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client;
use faulty::*;
use serde_json::{json, Value};

const ROUNDS: u64 = 20;
/// Concurrent clients, each sending distinct prompts until the kill.
const WORKERS: usize = 6;
/// Responses that must have arrived before the kill: the writers are busy by then.
const FIRST_RESPONSES: usize = 4;
const MODEL: &str = "ok-crash";
const ADMIN_KEY_ENV: &str = "TRIAGE_CRASH_TEST_ADMIN_KEY";
const ADMIN_KEY: &str = "crash-admin";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(cfg: &Path, data: &Path, port: u16, log: &Path) -> Child {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_triage"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(cfg)
        .arg("--data-dir")
        .arg(data)
        .env(ADMIN_KEY_ENV, ADMIN_KEY)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

async fn wait_ready(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "triage exited before it was ready: {status}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Ok(r) = client()
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "triage did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn body(prompt: &str, stream: bool) -> Value {
    json!({"model": "auto", "temperature": 0, "stream": stream,
           "messages": [{"role": "user", "content": prompt}]})
}

/// The answer's text when it is whole (JSON or SSE), else None.
async fn whole_answer(r: reqwest::Response) -> Option<String> {
    if r.status() != 200 {
        return None;
    }
    let sse = r
        .headers()
        .get("content-type")
        .is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"));
    let text = r.text().await.ok()?;
    if !sse {
        let v: Value = serde_json::from_str(&text).ok()?;
        return v["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_string);
    }
    let data = common::sse_data(&text);
    if data.last().map(String::as_str) != Some("[DONE]") {
        return None;
    }
    Some(
        data.iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect(),
    )
}

/// The decision log as the kill left it: intact, every row whole. Returns the row
/// count.
fn check_decision_log(data: &Path, round: u64) -> i64 {
    let conn = rusqlite::Connection::open(triage::ledger::log::db_path(data)).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "round {round}");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(version >= 1, "round {round}: schema version {version}");
    // Every request here is routed and answered by MODEL: a row missing any of these
    // was cut off halfway.
    let half_written: i64 = conn
        .query_row(
            "SELECT count(*) FROM decisions WHERE id IS NULL OR id = '' OR ts_ms IS NULL
               OR endpoint IS NULL OR tenant IS NULL OR cache_status IS NULL
               OR tier IS NULL OR probs IS NULL OR NOT json_valid(probs) OR confidence IS NULL
               OR chosen_model IS NOT ?1 OR input_tokens IS NULL OR total_ms IS NULL",
            [MODEL],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(half_written, 0, "round {round}: half-written rows");
    conn.query_row("SELECT count(*) FROM decisions", [], |r| r.get(0))
        .unwrap()
}

/// A copy of the cache directory as the kill left it loads, and every entry in it
/// is a whole answer to its own question. (A copy: the restarted server repairs
/// the original itself.)
fn check_cache_copy(cache_dir: &Path, round: u64) -> usize {
    let copy = tempfile::tempdir().unwrap();
    if let Ok(files) = std::fs::read_dir(cache_dir) {
        for f in files {
            let f = f.unwrap();
            std::fs::copy(f.path(), copy.path().join(f.file_name())).unwrap();
        }
    }
    let cache =
        triage::cache::SemanticCache::open(triage::config::CacheConfig::default(), copy.path())
            .unwrap_or_else(|e| panic!("round {round}: the cache does not load: {e}"));
    for e in cache.entries_snapshot() {
        assert_eq!(e.answer.model, MODEL, "round {round}");
        assert_eq!(
            e.answer.content,
            answer_for(MODEL, &e.text),
            "round {round}: a torn answer"
        );
        assert_eq!(e.vector.len(), 384, "round {round}");
    }
    cache.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_leaves_a_cache_and_a_decision_log_that_load() {
    let up = start_faulty().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("triage.toml");
    let log = dir.path().join("serve.log");
    // Snapshots every second, so some kills land during one.
    let toml = faulty_config(&up, Provider::OpenAi, &[MODEL]).replace(
        "[router]",
        &format!("[server]\nadmin_key_env = \"{ADMIN_KEY_ENV}\"\n[cache]\nsnapshot_interval_secs = 1\n[router]"),
    );
    std::fs::write(&cfg, toml).unwrap();

    let mut rows_before = 0i64;
    // A prompt answered whole in an earlier round, and its answer.
    let mut answered: Option<String> = None;
    for round in 0..=ROUNDS {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = start(&cfg, &data, port, &log);
        wait_ready(port, &mut child, &log).await;

        // It loaded its cache and serves, an earlier answer too.
        let stats: Value = client()
            .get(format!("{base}/admin/cache/stats"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats["enabled"], true, "round {round}: {stats}");
        assert_eq!(stats["stats"]["persistent"], true, "round {round}: {stats}");
        if let Some(prompt) = &answered {
            let r = client()
                .post(format!("{base}/v1/chat/completions"))
                .json(&body(prompt, false))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "round {round}");
            assert_eq!(
                whole_answer(r).await.as_deref(),
                Some(answer_for(MODEL, prompt).as_str()),
                "round {round}"
            );
        }
        if round == ROUNDS {
            // The last restart: stop it cleanly and look once more.
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            assert!(child.wait().unwrap().success(), "round {round}: clean exit");
            assert!(check_decision_log(&data, round) >= rows_before);
            check_cache_copy(&data.join("cache"), round);
            break;
        }

        // Load: distinct prompts, JSON and streams, until the kill.
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let last_whole: Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (stop, done, last_whole, base) =
                    (stop.clone(), done.clone(), last_whole.clone(), base.clone());
                tokio::spawn(async move {
                    let c = client();
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let prompt = format!(
                            "Round {round}, client {w}, question {i}: what is {} plus {}?",
                            round * 1000 + i,
                            w
                        );
                        let Ok(r) = c
                            .post(format!("{base}/v1/chat/completions"))
                            .json(&body(&prompt, i % 2 == 1))
                            .send()
                            .await
                        else {
                            break;
                        };
                        if whole_answer(r).await.as_deref()
                            == Some(answer_for(MODEL, &prompt).as_str())
                        {
                            *last_whole.lock().unwrap() = Some(prompt);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while done.load(Ordering::Relaxed) < FIRST_RESPONSES {
            assert!(
                Instant::now() < deadline,
                "round {round}: no responses under load"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A different moment each round, 0 to 1.2 s into the writes (snapshots
        // come every second).
        let delay = (round * 383) % 1201;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let served = done.load(Ordering::Relaxed);
        child.kill().unwrap();
        let _ = child.wait();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        if let Some(p) = last_whole.lock().unwrap().take() {
            answered = Some(p);
        }

        let rows = check_decision_log(&data, round);
        assert!(
            rows >= rows_before,
            "round {round}: committed rows were lost ({rows} < {rows_before})"
        );
        rows_before = rows;
        let entries = check_cache_copy(&data.join("cache"), round);
        eprintln!(
            "round {round}: killed {delay} ms after the first responses, {served} served; \
             {rows} rows, {entries} cache entries"
        );
    }
    assert!(rows_before > 0, "the decision log kept rows");
    let serve_log = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "torn cache-log tails cut on restart: {}",
        serve_log.matches("cutting a torn record").count()
    );
}
