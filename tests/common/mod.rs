//! Test harness: a fake upstream that speaks the OpenAI and Anthropic protocols
//! over real HTTP (and can be told to fail), and the real triage server started
//! in-process on an ephemeral port.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};

use triage::cache::SemanticCache;
use triage::config::Config;
use triage::embed::EmbedPool;
use triage::engine::Engine;
use triage::pipeline::Pipeline;
use triage::server::AppState;

/// What the fake upstream saw.
#[derive(Default)]
pub struct Seen {
    pub requests: Vec<(String, Value, HeaderMap)>,
    pub counts: HashMap<String, usize>,
}

#[derive(Clone, Default)]
pub struct Fake {
    pub seen: Arc<Mutex<Seen>>,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub fake: Fake,
}

impl FakeUpstream {
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    pub fn count(&self, model: &str) -> usize {
        self.fake
            .seen
            .lock()
            .unwrap()
            .counts
            .get(model)
            .copied()
            .unwrap_or(0)
    }
    pub fn requests(&self) -> Vec<(String, Value, HeaderMap)> {
        self.fake.seen.lock().unwrap().requests.clone()
    }
    pub fn last_request(&self) -> Value {
        self.requests()
            .last()
            .map(|r| r.1.clone())
            .unwrap_or(Value::Null)
    }
}

fn last_user_text(req: &Value) -> String {
    req["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str().or_else(|| p["content"].as_str()))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        })
        .unwrap_or_default()
}

/// Behaviour by model id:
/// - `fail-500`: always 500; `fail-401`: always 401; `bad-request`: 400
/// - `flaky-429`: 429 (Retry-After: 0) on the first call, then OK
/// - `flaky-500`: 500 on the first call, then OK
/// - `limit-30`: always 429 with `Retry-After: 30`
/// - `hang`: never answers within a test's patience
/// - `drop-stream`: streams two chunks, then drops the connection
/// - `slow-stream`: streams with 150 ms between chunks
/// - anything else: answers "answer from <model>: <last user text>"
async fn behaviour(fake: &Fake, model: &str) -> Option<Response> {
    let n = {
        let mut s = fake.seen.lock().unwrap();
        let c = s.counts.entry(model.to_string()).or_insert(0);
        *c += 1;
        *c
    };
    let err = |status: StatusCode, msg: &str| {
        Some(
            (
                status,
                Json(json!({"error": {"message": msg, "type": "test", "code": null}})),
            )
                .into_response(),
        )
    };
    match model {
        "fail-500" => err(StatusCode::INTERNAL_SERVER_ERROR, "boom"),
        "fail-401" => err(StatusCode::UNAUTHORIZED, "bad key"),
        "bad-request" => err(StatusCode::BAD_REQUEST, "max_tokens is too large"),
        "flaky-429" if n == 1 => {
            let mut r = err(StatusCode::TOO_MANY_REQUESTS, "slow down").unwrap();
            r.headers_mut().insert("retry-after", "0".parse().unwrap());
            Some(r)
        }
        "flaky-500" if n == 1 => err(StatusCode::BAD_GATEWAY, "flaky"),
        "limit-30" => {
            let mut r = err(
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit reached for requests",
            )
            .unwrap();
            r.headers_mut().insert("retry-after", "30".parse().unwrap());
            Some(r)
        }
        "hang" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            err(StatusCode::INTERNAL_SERVER_ERROR, "too late")
        }
        _ => None,
    }
}

fn sse(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn stream_response(events: Vec<Bytes>, model: &str) -> Response {
    let delay = if model == "slow-stream" { 150 } else { 5 };
    let drop_after = (model == "drop-stream").then_some(2);
    let stream = async_stream(events, delay, drop_after);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn async_stream(
    events: Vec<Bytes>,
    delay_ms: u64,
    drop_after: Option<usize>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(
        (events.into_iter(), 0usize),
        move |(mut it, i)| async move {
            if drop_after == Some(i) {
                return Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "dropped",
                    )),
                    (it, usize::MAX - 1),
                ));
            }
            if i == usize::MAX - 1 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            it.next().map(|e| (Ok(e), (it, i + 1)))
        },
    )
}

pub const STREAM_WORDS: [&str; 5] = ["Hello", " from", " the", " fake", " upstream"];

async fn openai_chat(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    let model = req["model"].as_str().unwrap_or("").to_string();
    fake.seen
        .lock()
        .unwrap()
        .requests
        .push(("openai".into(), req.clone(), headers));
    if let Some(r) = behaviour(&fake, &model).await {
        return r;
    }
    let french = req["messages"].as_array().is_some_and(|m| {
        m.iter().any(|m| {
            m["role"] == "system"
                && m["content"]
                    .as_str()
                    .is_some_and(|c| c.contains("in French"))
        })
    });
    let text = if model == "summarizer" {
        // A summarizer answers briefly whatever it is given.
        "answer from summarizer: a short summary of the conversation".to_string()
    } else if french {
        // A system prompt that asks for French changes every answer.
        format!("réponse de {model} : voici la réponse à votre question, en français, avec tous les détails")
    } else {
        format!("answer from {model}: {}", last_user_text(&req))
    };
    let finish = if model == "truncated" {
        "length"
    } else {
        "stop"
    };
    // With tools, a first turn calls `get_weather`; a turn that ends in the tool's
    // result gets a text answer built from it.
    let last_is_tool = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "tool");
    if last_is_tool {
        let result = req["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(|m| m["content"].as_str().unwrap_or("").to_string())
            .unwrap_or_default();
        return openai_answer(
            &req,
            &model,
            &format!("answer from {model}: the tool said {result}"),
            finish,
        );
    }
    if req.get("tools").is_some() {
        return openai_tool_call(&req, &model);
    }
    openai_answer(&req, &model, &text, finish)
}

/// A chat completion (or its stream) calling `get_weather` for Paris.
fn openai_tool_call(req: &Value, model: &str) -> Response {
    let call = |args: &str| {
        json!({"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": args}})
    };
    if req["stream"] == true {
        let chunk = |delta: Value, finish: Value| {
            sse(
                &json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
            )
        };
        let events = vec![
            chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [call("")]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
            Bytes::from_static(b"data: [DONE]\n\n"),
        ];
        return stream_response(events, model);
    }
    let mut c = call("{\"city\": \"Paris\"}");
    if let Some(o) = c.as_object_mut() {
        o.remove("index");
    }
    Json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [c]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    }))
    .into_response()
}

/// A text answer, JSON or streamed in [`STREAM_WORDS`].
fn openai_answer(req: &Value, model: &str, text: &str, finish: &str) -> Response {
    let model = model.to_string();
    if req["stream"] == true {
        let usage = req["stream_options"]["include_usage"] == true;
        let chunk = |delta: Value, finish: Value| {
            let mut c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            if usage {
                c["usage"] = Value::Null;
            }
            sse(&c)
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        for w in STREAM_WORDS {
            events.push(chunk(json!({"content": w}), Value::Null));
        }
        events.push(chunk(json!({}), json!(finish)));
        if usage {
            events.push(sse(
                &json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                "model": model, "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
                          "prompt_tokens_details": {"cached_tokens": 3}}}),
            ));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        return stream_response(events, &model);
    }
    Json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                  "prompt_tokens_details": {"cached_tokens": 3}},
        "system_fingerprint": "fp_fake"
    }))
    .into_response()
}

async fn anthropic_messages(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    let model = req["model"].as_str().unwrap_or("").to_string();
    fake.seen
        .lock()
        .unwrap()
        .requests
        .push(("anthropic".into(), req.clone(), headers));
    if let Some(r) = behaviour(&fake, &model).await {
        return r;
    }
    let last_is_tool_result = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_array())
        .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"));
    let wants_tool = req.get("tools").is_some() && !last_is_tool_result;
    if req["stream"] == true {
        let ev = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
        let mut events = vec![ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null,
                "usage": {"input_tokens": 20, "output_tokens": 1, "cache_read_input_tokens": 4}}}),
        )];
        events.push(ev("ping", json!({"type": "ping"})));
        events.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ));
        for w in STREAM_WORDS {
            events.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
            ));
        }
        events.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        let stop = if wants_tool {
            events.push(ev("content_block_start", json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}})));
            events.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
            ));
            events.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            ));
            events.push(ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ));
            "tool_use"
        } else {
            "end_turn"
        };
        events.push(ev(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 9}}),
        ));
        events.push(ev("message_stop", json!({"type": "message_stop"})));
        return stream_response(events, &model);
    }
    let mut content = vec![
        json!({"type": "text", "text": format!("answer from {model}: {}", last_user_text(&req))}),
    ];
    if wants_tool {
        content.push(json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}));
    }
    Json(json!({
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": content,
        "stop_reason": if wants_tool { "tool_use" } else { "end_turn" },
        "stop_sequence": null,
        "usage": {"input_tokens": 20, "output_tokens": 9, "cache_read_input_tokens": 4}
    }))
    .into_response()
}

pub async fn start_fake() -> FakeUpstream {
    let fake = Fake::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/messages", post(anthropic_messages))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    FakeUpstream { addr, fake }
}

/// The routing engine is loaded once per test binary and shared.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::load(&Config::default()).expect("engine loads"))
}

/// A test clock (unix seconds) the budget tests move by hand.
pub static CLOCK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// The ledger's clock: the real one unless a test set CLOCK.
fn clock() -> Option<triage::ledger::budget::Clock> {
    if CLOCK.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        return None;
    }
    Some(Arc::new(|| {
        CLOCK.load(std::sync::atomic::Ordering::Relaxed)
    }))
}

pub struct Triage {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Triage {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Triage {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts triage in-process with a config given as TOML (no semantic cache).
pub async fn start_triage(toml: &str, dry_run: bool) -> Triage {
    start_triage_with(toml, dry_run, None).await
}

/// Starts triage with a semantic cache: in memory, or kept in `dir`.
pub async fn start_triage_cached(toml: &str, dir: Option<&std::path::Path>) -> Triage {
    let cfg = Config::parse(toml, std::path::Path::new("test.toml")).expect("config");
    let cache = match dir {
        Some(d) => SemanticCache::open(cfg.cache.clone(), d).unwrap(),
        None => SemanticCache::in_memory(cfg.cache.clone()),
    };
    start_triage_with(toml, false, Some(cache)).await
}

pub async fn start_triage_with(
    toml: &str,
    dry_run: bool,
    cache: Option<Arc<SemanticCache>>,
) -> Triage {
    start_triage_full(toml, dry_run, cache, None).await
}

/// Starts triage with a decision log in `data_dir` (and optionally a cache).
pub async fn start_triage_logged(
    toml: &str,
    data_dir: &std::path::Path,
    cache: Option<Arc<SemanticCache>>,
) -> Triage {
    start_triage_full(toml, false, cache, Some(data_dir)).await
}

pub async fn start_triage_full(
    toml: &str,
    dry_run: bool,
    cache: Option<Arc<SemanticCache>>,
    data_dir: Option<&std::path::Path>,
) -> Triage {
    let cfg = Config::parse(toml, std::path::Path::new("test.toml")).expect("config");
    start_with_config(cfg, dry_run, cache, data_dir, None).await
}

/// Starts triage from a config file (relative paths resolve against it); the same
/// file is what /admin/reload re-reads.
pub async fn start_triage_from_file(path: &std::path::Path, data_dir: &std::path::Path) -> Triage {
    let cfg = Config::load(path).expect("config file");
    start_with_config(cfg, false, None, Some(data_dir), Some(path.to_path_buf())).await
}

async fn start_with_config(
    cfg: Config,
    dry_run: bool,
    cache: Option<Arc<SemanticCache>>,
    data_dir: Option<&std::path::Path>,
    config_path: Option<std::path::PathBuf>,
) -> Triage {
    let log = data_dir.map(|d| {
        triage::ledger::DecisionLog::start(&triage::ledger::log::db_path(d), 1000, 0).unwrap()
    });
    let ledger = triage::ledger::Ledger::new(&cfg, log, clock());
    let engine = engine();
    let pool = EmbedPool::start(
        engine.embedder.clone(),
        cfg.embed.workers,
        cfg.embed.max_batch,
        cfg.embed.queue_capacity,
    )
    .with_memo(cfg.embed.memo_entries);
    let cfg = Arc::new(cfg);
    let pipeline = Arc::new(
        Pipeline::new(cfg.clone(), pool, engine.head.clone(), dry_run)
            .unwrap()
            .with_cache(cache)
            .with_ledger(Some(ledger)),
    );
    let state = Arc::new(
        AppState::new(pipeline)
            .unwrap()
            .with_config_path(config_path),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let st = state.clone();
    tokio::spawn(async move {
        triage::server::serve(
            listener,
            st,
            async {
                let _ = rx.await;
            },
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    });
    Triage {
        addr,
        state,
        shutdown: Some(tx),
    }
}

/// A config routing the tiers to fake Anthropic models (key in
/// `TRIAGE_TEST_ANTHROPIC_KEY`): SIMPLE and MODERATE to `claude-small`, COMPLEX to
/// `claude-big`.
pub fn anthropic_config(fake: &FakeUpstream) -> String {
    format!(
        r#"
[router]
min_confidence = 0.0
[router.tiers]
SIMPLE = ["claude-small"]
MODERATE = ["claude-small"]
COMPLEX = ["claude-big"]
[[upstreams]]
name = "anthropic"
kind = "anthropic"
base_url = "{}"
api_key_env = "TRIAGE_TEST_ANTHROPIC_KEY"
[[models]]
name = "claude-small"
upstream = "anthropic"
upstream_model = "claude-haiku-test"
[[models]]
name = "claude-big"
upstream = "anthropic"
"#,
        fake.url()
    )
}

/// A config routing the three tiers to fake OpenAI models, with `extra` appended.
pub fn openai_config(fake: &FakeUpstream, tiers: [&str; 3], extra: &str) -> String {
    let mut models: Vec<&str> = tiers.to_vec();
    models.extend(["ok-simple", "ok-moderate", "ok-complex"]);
    models.sort();
    models.dedup();
    let model_entries: String = models
        .iter()
        .map(|m| format!("[[models]]\nname = \"{m}\"\nupstream = \"fake\"\n"))
        .collect();
    format!(
        r#"
[router]
min_confidence = 0.0
[router.tiers]
SIMPLE = ["{}"]
MODERATE = ["{}"]
COMPLEX = ["{}"]

[[upstreams]]
name = "fake"
kind = "openai"
base_url = "{}"
request_timeout_secs = 5
max_retries = 2
backoff_base_ms = 10
backoff_max_ms = 50

{model_entries}
{extra}
"#,
        tiers[0],
        tiers[1],
        tiers[2],
        fake.url()
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn chat(text: &str) -> Value {
    json!({"model": "auto", "messages": [{"role": "user", "content": text}]})
}

/// Data lines of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}

pub const SIMPLE_TEXT: &str = "hi there, good morning!";
pub const COMPLEX_TEXT: &str = "Write a Rust function that parses RFC 3339 timestamps, handles leap seconds and time zones, and include unit tests for the edge cases.";
