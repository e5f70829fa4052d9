//! Every kind of upstream fault, through the real server with a semantic cache and
//! a decision log in a temporary directory, for both providers (OpenAI-compatible
//! and Anthropic), JSON and streaming, with and without a fallback model.
//!
//! For each fault the client must get a clean answer: the whole answer with 200
//! (by retry, fallback, or because the fault only slowed it down), an error in
//! OpenAI's shape, or a stream that ends with an OpenAI error event
//! (`stream_interrupted`) and no `[DONE]`. The server keeps serving afterwards, an
//! identical request is a cache hit exactly when the first answer was complete
//! (nothing cut short is ever cached), and the decision log holds exactly one row
//! per request the client saw an id for.
//!
//! The fake upstream (`tests/common/faults.rs`) picks the fault by model id.

mod common;
#[path = "common/faults.rs"]
mod faulty;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use faulty::*;
use serde_json::{json, Value};
use triage::cache::SemanticCache;

const PROMPT: &str = "What is the boiling point of water at sea level?";
const HEALTHY_PROMPT: &str = "Name three primary colours.";

/// What the client got, once its shape was checked.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// 200 and the whole answer (`finish_reason: "stop"`, and `[DONE]` for streams).
    Complete { model: String, content: String },
    /// An error status with an OpenAI error body.
    Error {
        status: u16,
        code: String,
        retry_after: Option<String>,
    },
    /// 200, then a stream that ended with an OpenAI error event and no `[DONE]`.
    /// `content` is what arrived before; `unparsed` counts data lines that were
    /// not JSON.
    Interrupted { content: String, unparsed: usize },
}

struct Answer {
    id: String,
    cache: String,
    outcome: Outcome,
}

fn body(stream: bool, prompt: &str) -> Value {
    json!({"model": "auto", "temperature": 0, "stream": stream,
           "messages": [{"role": "user", "content": prompt}]})
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An OpenAI error object: message, type and code are strings; a response body
/// has `param` too (a stream's error event leaves it out).
fn assert_error_shape(v: &Value, what: &str, with_param: bool) -> String {
    let e = &v["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {v}"
    );
    assert!(e["type"].as_str().is_some(), "{what}: {v}");
    assert!(!with_param || e.get("param").is_some(), "{what}: {v}");
    e["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no code in {v}"))
        .to_string()
}

/// Sends one request and checks that whatever came back is clean.
async fn ask(t: &Triage, endpoint: &str, body: Value, what: String) -> Answer {
    let what = what.as_str();
    let r = client()
        .post(t.url("/v1/chat/completions"))
        .header("x-triage-endpoint", endpoint)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
    let id = header(&r, "x-triage-request-id").unwrap_or_else(|| panic!("{what}: no request id"));
    let cache = header(&r, "x-triage-cache").unwrap_or_default();
    let model = header(&r, "x-triage-model").unwrap_or_default();
    let status = r.status().as_u16();
    let retry_after = header(&r, "retry-after");
    let is_sse = header(&r, "content-type").is_some_and(|c| c.starts_with("text/event-stream"));
    let text = r
        .text()
        .await
        .unwrap_or_else(|e| panic!("{what}: the body broke off: {e}"));
    if status != 200 {
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{what}: {status} body is not JSON ({e}): {text}"));
        let code = assert_error_shape(&v, what, true);
        return Answer {
            id,
            cache,
            outcome: Outcome::Error {
                status,
                code,
                retry_after,
            },
        };
    }
    if !is_sse {
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{what}: 200 body is not JSON ({e}): {text}"));
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{what}: {v}");
        let content = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no content: {v}"))
            .to_string();
        return Answer {
            id,
            cache,
            outcome: Outcome::Complete { model, content },
        };
    }
    let data = sse_data(&text);
    let (mut content, mut finished, mut unparsed, mut error) = (String::new(), false, 0, None);
    for (i, d) in data.iter().enumerate() {
        if d == "[DONE]" {
            assert_eq!(i + 1, data.len(), "{what}: events after [DONE]: {text}");
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(d) else {
            unparsed += 1;
            continue;
        };
        if v.get("error").is_some() {
            assert_eq!(i + 1, data.len(), "{what}: events after the error: {text}");
            error = Some(assert_error_shape(&v, what, false));
            continue;
        }
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
        finished |= v["choices"][0]["finish_reason"] == "stop";
    }
    let outcome = match (data.last().map(String::as_str), error) {
        (Some("[DONE]"), None) => {
            assert!(finished, "{what}: [DONE] without a finish reason: {text}");
            assert_eq!(unparsed, 0, "{what}: a complete stream with junk: {text}");
            Outcome::Complete { model, content }
        }
        (_, Some(code)) => {
            assert_eq!(code, "stream_interrupted", "{what}: {text}");
            Outcome::Interrupted { content, unparsed }
        }
        _ => panic!("{what}: a stream that ends with neither [DONE] nor an error: {text}"),
    };
    Answer { id, cache, outcome }
}

/// What the client should get.
#[derive(Debug)]
enum Expect {
    /// The whole answer, from this model.
    Complete(&'static str),
    Error(u16, &'static str),
    Interrupted,
}

fn expect(fault: &str, fallback: bool, stream: bool) -> Expect {
    let failed = |status, code| {
        if fallback {
            Expect::Complete("ok-fallback")
        } else {
            Expect::Error(status, code)
        }
    };
    match (fault, stream) {
        // Slow is not broken: the answer arrives whole.
        ("fault-trickle", _) => Expect::Complete("fault-trickle"),
        // The stream's first bytes reached the client: it cannot be retried.
        ("fault-reset" | "fault-badjson" | "fault-badsse", true) => Expect::Interrupted,
        // Retry-After (1 s) is longer than the backoff cap: no retry on this model.
        ("fault-429", _) => failed(429, "upstream_rate_limited"),
        ("fault-hang", _) => failed(504, "upstream_timeout"),
        // 5xx, a body cut short, broken JSON, SSE where JSON was asked: retried, then.
        _ => failed(502, "upstream_unavailable"),
    }
}

fn check(what: &str, a: &Answer, fault: &str, want: &Expect) {
    match (want, &a.outcome) {
        (Expect::Complete(m), Outcome::Complete { model, content }) => {
            assert_eq!(model, m, "{what}");
            assert_eq!(content, &answer_for(m, PROMPT), "{what}");
        }
        (
            Expect::Error(s, c),
            Outcome::Error {
                status,
                code,
                retry_after,
            },
        ) => {
            assert_eq!((status, code.as_str()), (s, *c), "{what}");
            if *s == 429 {
                assert_eq!(retry_after.as_deref(), Some("1"), "{what}");
            }
        }
        (Expect::Interrupted, Outcome::Interrupted { content, unparsed }) => {
            let whole = answer_for(fault, PROMPT);
            assert!(
                whole.starts_with(content.as_str()) && content.len() < whole.len(),
                "{what}: {content:?} is no strict prefix of the answer"
            );
            // A provider's malformed event reaches the client as an error in its
            // protocol, never as the line.
            assert_eq!(*unparsed, 0, "{what}");
        }
        (want, got) => panic!("{what}: expected {want:?}, got {got:?}"),
    }
}

/// Cache inserts run off the request path: wait until `n` entries are in.
async fn wait_entries(cache: &SemanticCache, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.len() < n {
        assert!(
            Instant::now() < deadline,
            "{what}: the cache never reached {n} entries (has {})",
            cache.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `(id, cache_status, error)` of every row, once every id in `ids` is written
/// (a stream's row is recorded when it ends, just after the client saw its end).
async fn wait_rows(
    t: &Triage,
    dir: &Path,
    ids: &[String],
    what: &str,
) -> Vec<(String, String, Option<String>)> {
    let log = t
        .state
        .pipeline
        .ledger
        .as_ref()
        .and_then(|l| l.log.as_ref())
        .expect("decision log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(log.flush(Duration::from_secs(10)), "{what}: flush");
        let conn = triage::ledger::log::open(&triage::ledger::log::db_path(dir)).unwrap();
        let rows: Vec<(String, String, Option<String>)> = conn
            .prepare("SELECT id, cache_status, error FROM decisions")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        if ids.iter().all(|id| rows.iter().any(|r| &r.0 == id)) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: rows for {ids:?} never all arrived; have {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One provider, one fault, with or without a fallback model behind it.
async fn scenario(fault: &'static str, provider: Provider, fallback: bool) {
    let what = format!(
        "{fault} on {} {}",
        provider.kind(),
        if fallback { "with a fallback" } else { "alone" }
    );
    let up = start_faulty().await;
    let dir = tempfile::tempdir().unwrap();
    let models: &[&str] = if fallback {
        &[fault, "ok-fallback"]
    } else {
        &[fault]
    };
    let toml = faulty_config(&up, provider, models);
    let cfg = triage::config::Config::parse(&toml, Path::new("test.toml")).unwrap();
    let cache: Arc<SemanticCache> =
        SemanticCache::open(cfg.cache.clone(), &dir.path().join("cache")).unwrap();
    let t = start_triage_full(&toml, false, Some(cache.clone()), Some(dir.path())).await;

    // 1. The faulted request, as JSON and as a stream at once. The endpoints keep
    //    their cache scopes apart (the scope ignores `stream`).
    let (json_a, stream_a) = tokio::join!(
        ask(&t, "json", body(false, PROMPT), format!("{what}, JSON")),
        ask(&t, "stream", body(true, PROMPT), format!("{what}, stream")),
    );
    let firsts = [(&json_a, false), (&stream_a, true)];
    for (a, stream) in firsts {
        let w = format!("{what}, {}", if stream { "stream" } else { "JSON" });
        // Errors carry no x-triage-cache header; answers say the lookup missed.
        let looked_up = if a.cache.is_empty() { "miss" } else { &a.cache };
        assert_eq!(looked_up, "miss", "{w}");
        check(&w, a, fault, &expect(fault, fallback, stream));
    }
    let mut ids = vec![json_a.id.clone(), stream_a.id.clone()];
    let complete = firsts
        .iter()
        .filter(|(a, _)| matches!(a.outcome, Outcome::Complete { .. }))
        .count();
    // Whole answers go into the cache. Once both requests are accounted for (a
    // stream's insert is decided right after its row), nothing else may follow.
    wait_entries(&cache, complete, &what).await;
    wait_rows(&t, dir.path(), &ids, &what).await;

    // 2. The identical requests: a hit exactly when the first answer was whole.
    let (json_b, stream_b) = tokio::join!(
        ask(
            &t,
            "json",
            body(false, PROMPT),
            format!("{what}, JSON again")
        ),
        ask(
            &t,
            "stream",
            body(true, PROMPT),
            format!("{what}, stream again")
        ),
    );
    for (first, again) in [(&json_a, &json_b), (&stream_a, &stream_b)] {
        match &first.outcome {
            Outcome::Complete { .. } => {
                assert_eq!(again.cache, "hit", "{what}: a whole answer is served again");
                assert_eq!(again.outcome, first.outcome, "{what}");
            }
            other => {
                assert_ne!(again.cache, "hit", "{what}: {other:?} was cached");
                assert_eq!(&again.outcome, other, "{what}: the fault again");
            }
        }
    }
    ids.extend([json_b.id.clone(), stream_b.id.clone()]);

    // 3. The server still serves: ready, and a healthy model answers in full.
    let r = client().get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{what}");
    let mut healthy = body(false, HEALTHY_PROMPT);
    healthy["model"] = json!("ok-healthy");
    let h = ask(&t, "json", healthy, format!("{what}, healthy")).await;
    assert_eq!(
        h.outcome,
        Outcome::Complete {
            model: "ok-healthy".into(),
            content: answer_for("ok-healthy", HEALTHY_PROMPT)
        },
        "{what}"
    );
    ids.push(h.id.clone());

    // 4. One row per request, none twice, none dropped; errors where the client
    //    saw one.
    let rows = wait_rows(&t, dir.path(), &ids, &what).await;
    assert_eq!(rows.len(), ids.len(), "{what}: {rows:?}");
    let log = t
        .state
        .pipeline
        .ledger
        .as_ref()
        .and_then(|l| l.log.as_ref())
        .unwrap();
    assert_eq!(
        log.written.load(std::sync::atomic::Ordering::Relaxed),
        ids.len() as u64,
        "{what}: a request was recorded twice"
    );
    assert_eq!(log.dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
    let answers = [&json_a, &stream_a, &json_b, &stream_b, &h];
    for a in answers {
        let row = rows.iter().find(|r| r.0 == a.id).unwrap();
        let whole = matches!(a.outcome, Outcome::Complete { .. });
        assert_eq!(
            row.2.is_none(),
            whole,
            "{what}: row {row:?} for {:?}",
            a.outcome
        );
        let looked_up = if a.cache.is_empty() { "miss" } else { &a.cache };
        assert_eq!(row.1, looked_up, "{what}: row {row:?}");
    }

    // 5. The cache holds exactly the whole answers.
    assert_eq!(cache.len(), complete, "{what}");
    for e in cache.entries_snapshot() {
        assert_eq!(
            e.answer.content,
            answer_for(&e.answer.model, &e.text),
            "{what}: a cached answer is not whole"
        );
    }
    if !fallback && fault != "fault-trickle" {
        assert!(up.calls(fault) >= 2, "{what}: the fault was met");
    }
}

/// Both providers, with and without a fallback, at once.
async fn fault_kind(fault: &'static str) {
    assert!(FAULTS.contains(&fault), "{fault} is one the fake serves");
    futures::future::join_all(
        [Provider::OpenAi, Provider::Anthropic]
            .into_iter()
            .flat_map(|p| [(p, true), (p, false)])
            .map(|(p, fallback)| scenario(fault, p, fallback)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_500() {
    fault_kind("fault-500").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_503() {
    fault_kind("fault-503").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_429_with_retry_after() {
    fault_kind("fault-429").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_past_the_attempt_timeout() {
    fault_kind("fault-hang").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_mid_body() {
    fault_kind("fault-reset").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_trickle() {
    fault_kind("fault-trickle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json() {
    fault_kind("fault-badjson").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sse() {
    fault_kind("fault-badsse").await;
}

/// A client that gives up while triage waits on a hung upstream still gets its
/// decision row (with the error). Today it does not: the server drops the request's
/// future when the client goes away, so the row is never recorded (and the
/// fallback is never tried). Un-ignore once the pipeline records dropped requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_up_still_leaves_a_decision_row() {
    let up = start_faulty().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = faulty_config(&up, Provider::OpenAi, &["fault-hang", "ok-fallback"]);
    let t = start_triage_full(&toml, false, None, Some(dir.path())).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = impatient
        .post(t.url("/v1/chat/completions"))
        .json(&body(false, PROMPT))
        .send()
        .await;
    assert!(r.is_err(), "the client gave up first");
    // The id never reached the client: wait for any row.
    let log = t
        .state
        .pipeline
        .ledger
        .as_ref()
        .and_then(|l| l.log.as_ref())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(log.flush(Duration::from_secs(10)));
        let conn = triage::ledger::log::open(&triage::ledger::log::db_path(dir.path())).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM decisions", [], |r| r.get(0))
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no decision row for the request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
