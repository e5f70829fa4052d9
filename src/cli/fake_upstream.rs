//! `triage fake-upstream`: a provider on loopback that speaks OpenAI's chat
//! completions (`/v1/chat/completions`) and Anthropic's Messages API
//! (`/v1/messages`), JSON and SSE. At `--fault-rate 0` it answers every request at
//! once with a fixed reply (`scripts/overhead.sh` measures triage's overhead
//! against it). With `--fault-rate R` each request, with probability R, gets one
//! fault drawn uniformly from [`Fault::ALL`] (`scripts/soak.sh`). It is a benchmark
//! and soak fixture: a real HTTP server speaking the providers' protocols, not a
//! mock of anything in triage.
//!
//! Draws are deterministic per `--seed`: the n-th request to arrive gets the same
//! verdict in every run with that seed (which request is n-th depends on arrival
//! order). Injected faults are counted by kind, served as JSON at `GET /stats` and
//! printed to stderr on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use serde_json::{json, Map, Value};

#[derive(Args, Debug)]
pub struct FakeUpstreamArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18090")]
    pub listen: SocketAddr,
    /// Probability (0 to 1) that a request gets a fault: 500, 503, 429 with
    /// Retry-After: 1, a 30 s hang, a dropped connection mid-body, a slow trickle
    /// (200 ms between events), malformed JSON or malformed SSE, drawn uniformly.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_rate: f64,
    /// Seed of the fault draws (the same seed gives the n-th request the same fault).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .parse()
        .map_err(|e| format!("`{s}` is not a number: {e}"))?;
    if !(0.0..=1.0).contains(&r) {
        return Err(format!("the fault rate must be between 0 and 1, not {r}"));
    }
    Ok(r)
}

/// The complete answer to every request. A cached answer that is not exactly this
/// text was cut short somewhere (`scripts/soak.sh` checks the cache against it).
pub const ANSWER: &str = "This is a fixed answer from the zero-latency upstream.";
/// How a stream carries [`ANSWER`]: a cut after the first piece leaves a prefix.
const PIECES: [&str; 3] = [
    "This is a fixed answer",
    " from the zero-latency",
    " upstream.",
];
/// Time between events (or body pieces) of a trickled response.
const TRICKLE: Duration = Duration::from_millis(200);
/// How long a hung request sleeps before it answers (longer than any sane timeout).
const HANG: Duration = Duration::from_secs(30);

/// One kind of injected failure. Each has a JSON and a streaming form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 with an error body in the provider's shape.
    Status500,
    /// 503 (overloaded).
    Status503,
    /// 429 with `Retry-After: 1`.
    RateLimited,
    /// No response for 30 s, then a 500: past any client's timeout.
    Hang,
    /// The connection drops mid-body: after the first events of a stream, or
    /// halfway through a JSON body.
    Reset,
    /// A complete answer, 200 ms between SSE events (or between five pieces of a
    /// JSON body).
    Trickle,
    /// 200 with a truncated, invalid JSON body (also for stream requests: the
    /// provider ignored `stream: true` and broke its JSON).
    MalformedJson,
    /// 200 with SSE: the first events, then an event whose data is not JSON, then
    /// the end without `[DONE]` or a finish reason (also for JSON requests: the
    /// provider streamed when it was asked not to).
    MalformedSse,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::Status500,
        Fault::Status503,
        Fault::RateLimited,
        Fault::Hang,
        Fault::Reset,
        Fault::Trickle,
        Fault::MalformedJson,
        Fault::MalformedSse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Status500 => "status_500",
            Fault::Status503 => "status_503",
            Fault::RateLimited => "rate_limit_429",
            Fault::Hang => "hang",
            Fault::Reset => "reset",
            Fault::Trickle => "trickle",
            Fault::MalformedJson => "malformed_json",
            Fault::MalformedSse => "malformed_sse",
        }
    }

    fn index(self) -> usize {
        Fault::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// SplitMix64: a well-mixed 64-bit hash, enough for reproducible draws.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The verdict for the n-th request: a fault with probability `rate`, its kind
/// uniform over [`Fault::ALL`].
pub fn draw(seed: u64, n: u64, rate: f64) -> Option<Fault> {
    let h = mix(seed ^ mix(n));
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    if u >= rate {
        return None;
    }
    Some(Fault::ALL[(mix(h) % Fault::ALL.len() as u64) as usize])
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    openai: AtomicU64,
    anthropic: AtomicU64,
    streams: AtomicU64,
    faults: [AtomicU64; 8],
}

struct Fake {
    rate: f64,
    seed: u64,
    next: AtomicU64,
    counts: Counters,
}

impl Fake {
    fn stats(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let faults: Map<String, Value> = Fault::ALL
            .iter()
            .map(|f| {
                (
                    f.name().to_string(),
                    json!(get(&self.counts.faults[f.index()])),
                )
            })
            .collect();
        let total: u64 = self.counts.faults.iter().map(get).sum();
        json!({
            "requests": get(&self.counts.requests),
            "openai": get(&self.counts.openai),
            "anthropic": get(&self.counts.anthropic),
            "streams": get(&self.counts.streams),
            "faults_total": total,
            "faults": faults,
            "fault_rate": self.rate,
            "seed": self.seed,
            "answer": ANSWER,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Provider {
    OpenAi,
    Anthropic,
}

impl Provider {
    /// An error in the provider's own shape.
    fn error(self, status: StatusCode, kind: &str, message: &str) -> Response {
        let body = match self {
            Provider::OpenAi => {
                json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
            }
            Provider::Anthropic => {
                json!({"type": "error", "error": {"type": kind, "message": message}})
            }
        };
        (status, Json(body)).into_response()
    }

    fn complete(self, model: &str) -> Value {
        match self {
            Provider::OpenAi => json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 11, "total_tokens": 23}
            }),
            Provider::Anthropic => json!({
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": ANSWER}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 11}
            }),
        }
    }

    /// The events of a complete stream.
    fn events(self, model: &str, usage: bool) -> Vec<Bytes> {
        match self {
            Provider::OpenAi => {
                let mut ev = vec![openai_chunk(
                    model,
                    json!({"role": "assistant", "content": ""}),
                    Value::Null,
                )];
                for p in PIECES {
                    ev.push(openai_chunk(model, json!({"content": p}), Value::Null));
                }
                ev.push(openai_chunk(model, json!({}), json!("stop")));
                if usage {
                    ev.push(data(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                        "created": 0, "model": model, "choices": [],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 11, "total_tokens": 23}})));
                }
                ev.push(Bytes::from_static(b"data: [DONE]\n\n"));
                ev
            }
            Provider::Anthropic => {
                let mut ev = vec![
                    named(
                        "message_start",
                        &json!({"type": "message_start", "message": {
                        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                        "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": 12, "output_tokens": 1}}}),
                    ),
                    named(
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}),
                    ),
                ];
                for p in PIECES {
                    ev.push(named(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": p}}),
                    ));
                }
                ev.push(named(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                ));
                ev.push(named(
                    "message_delta",
                    &json!({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": 11}}),
                ));
                ev.push(named("message_stop", &json!({"type": "message_stop"})));
                ev
            }
        }
    }

    /// A stream's opening events (up to the first piece of the answer).
    fn opening(self, model: &str) -> Vec<Bytes> {
        let n = match self {
            Provider::OpenAi => 2,
            Provider::Anthropic => 3,
        };
        self.events(model, false).into_iter().take(n).collect()
    }

    /// The opening, an event whose data is not JSON, and no end.
    fn malformed_sse(self, model: &str) -> Vec<Bytes> {
        let mut ev = self.opening(model);
        ev.push(match self {
            Provider::OpenAi => Bytes::from_static(
                b"data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": oops\n\n",
            ),
            Provider::Anthropic => Bytes::from_static(
                b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"delta\": oops\n\n",
            ),
        });
        ev
    }
}

fn data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn named(event: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {v}\n\n"))
}

fn openai_chunk(model: &str, delta: Value, finish: Value) -> Bytes {
    data(
        &json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
    )
}

/// A body that yields `pieces` with `gap` before each one after the first, then
/// (when `drop_at_end`) fails, which aborts the connection mid-body.
fn paced(pieces: Vec<Bytes>, gap: Duration, drop_at_end: bool) -> Body {
    let stream = futures::stream::unfold(
        (pieces.into_iter(), true, drop_at_end),
        move |(mut it, first, drop_at_end)| async move {
            match it.next() {
                Some(p) => {
                    if !first && !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    Some((Ok::<Bytes, std::io::Error>(p), (it, false, drop_at_end)))
                }
                None if drop_at_end => {
                    // Let the pieces so far reach the client before the drop.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "injected fault: connection dropped mid-body",
                        )),
                        (it, false, false),
                    ))
                }
                None => None,
            }
        },
    );
    Body::from_stream(stream)
}

fn with_type(content_type: &'static str, body: Body) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    (StatusCode::OK, h, body).into_response()
}

/// `len` bytes split into `n` roughly equal pieces.
fn split(b: Bytes, n: usize) -> Vec<Bytes> {
    let step = b.len().div_ceil(n.max(1)).max(1);
    (0..b.len())
        .step_by(step)
        .map(|i| b.slice(i..(i + step).min(b.len())))
        .collect()
}

async fn answer(fake: &Fake, provider: Provider, raw: &[u8]) -> Response {
    let req: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => {
            return provider.error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("request body is not JSON: {e}"),
            )
        }
    };
    let c = &fake.counts;
    c.requests.fetch_add(1, Ordering::Relaxed);
    match provider {
        Provider::OpenAi => c.openai.fetch_add(1, Ordering::Relaxed),
        Provider::Anthropic => c.anthropic.fetch_add(1, Ordering::Relaxed),
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or("fake");
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    if stream {
        c.streams.fetch_add(1, Ordering::Relaxed);
    }
    let usage = provider == Provider::OpenAi
        && req.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
    let n = fake.next.fetch_add(1, Ordering::Relaxed);
    let fault = draw(fake.seed, n, fake.rate);
    if let Some(f) = fault {
        c.faults[f.index()].fetch_add(1, Ordering::Relaxed);
    }
    let json_body = || Bytes::from(provider.complete(model).to_string());
    let sse = |events: Vec<Bytes>, gap: Duration, drop: bool| {
        with_type("text/event-stream", paced(events, gap, drop))
    };
    let kind = |openai: &'static str, anthropic: &'static str| match provider {
        Provider::OpenAi => openai,
        Provider::Anthropic => anthropic,
    };
    match fault {
        None if stream => sse(provider.events(model, usage), Duration::ZERO, false),
        None => with_type("application/json", Body::from(json_body())),
        Some(Fault::Status500) => provider.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            kind("server_error", "api_error"),
            "injected fault: internal error",
        ),
        Some(Fault::Status503) => provider.error(
            StatusCode::SERVICE_UNAVAILABLE,
            kind("server_error", "overloaded_error"),
            "injected fault: overloaded",
        ),
        Some(Fault::RateLimited) => {
            let mut r = provider.error(
                StatusCode::TOO_MANY_REQUESTS,
                kind("rate_limit_error", "rate_limit_error"),
                "injected fault: rate limit reached",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(HANG).await;
            provider.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                kind("server_error", "api_error"),
                "injected fault: answered after a 30 s hang",
            )
        }
        Some(Fault::Reset) if stream => sse(provider.opening(model), Duration::ZERO, true),
        Some(Fault::Reset) => {
            let b = json_body();
            let half = b.slice(..b.len() / 2);
            with_type("application/json", paced(vec![half], Duration::ZERO, true))
        }
        Some(Fault::Trickle) if stream => sse(provider.events(model, usage), TRICKLE, false),
        Some(Fault::Trickle) => with_type(
            "application/json",
            paced(split(json_body(), 5), TRICKLE, false),
        ),
        Some(Fault::MalformedJson) => {
            let b = json_body();
            let cut = b.slice(..b.len() * 2 / 3);
            with_type("application/json", Body::from(cut))
        }
        Some(Fault::MalformedSse) => sse(provider.malformed_sse(model), Duration::ZERO, false),
    }
}

async fn openai(State(fake): State<Arc<Fake>>, body: Bytes) -> Response {
    answer(&fake, Provider::OpenAi, &body).await
}

async fn anthropic(State(fake): State<Arc<Fake>>, body: Bytes) -> Response {
    answer(&fake, Provider::Anthropic, &body).await
}

async fn stats(State(fake): State<Arc<Fake>>) -> Response {
    Json(fake.stats()).into_response()
}

/// SIGTERM or Ctrl-C.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn summary(stats: &Value) -> String {
    let faults = stats["faults"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!(
        "fake upstream: {} requests ({} OpenAI, {} Anthropic, {} streams), {} faults injected: {faults}",
        stats["requests"],
        stats["openai"],
        stats["anthropic"],
        stats["streams"],
        stats["faults_total"]
    )
}

pub fn run(a: FakeUpstreamArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let fake = Arc::new(Fake {
        rate: a.fault_rate,
        seed: a.seed,
        next: AtomicU64::new(0),
        counts: Counters::default(),
    });
    rt.block_on(async {
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/stats", get(stats))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", a.listen))?;
        eprintln!(
            "fake upstream on http://{}/v1 (OpenAI and Anthropic), fault rate {}, seed {}",
            a.listen, a.fault_rate, a.seed
        );
        // Hung requests would hold a graceful shutdown for 30 s: stop at once.
        tokio::select! {
            r = axum::serve(listener, app) => r?,
            _ = stop_signal() => {}
        }
        let s = fake.stats();
        eprintln!("{}", summary(&s));
        eprintln!("{s}");
        Ok::<_, anyhow::Error>(())
    })?;
    // Hung handlers are still sleeping: do not wait for them.
    rt.shutdown_background();
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_near_the_rate() {
        let a: Vec<_> = (0..10_000).map(|n| draw(7, n, 0.1)).collect();
        let b: Vec<_> = (0..10_000).map(|n| draw(7, n, 0.1)).collect();
        assert_eq!(a, b);
        let c: Vec<_> = (0..10_000).map(|n| draw(8, n, 0.1)).collect();
        assert_ne!(a, c, "another seed, other draws");
        let faults = a.iter().filter(|f| f.is_some()).count();
        assert!((800..1200).contains(&faults), "{faults}");
        for f in Fault::ALL {
            let k = a.iter().filter(|d| **d == Some(f)).count();
            assert!(k > 60, "{f:?}: {k}");
        }
        assert!((0..1000).all(|n| draw(1, n, 0.0).is_none()));
        assert!((0..1000).all(|n| draw(1, n, 1.0).is_some()));
    }

    #[test]
    fn streams_carry_the_whole_answer_and_cuts_leave_a_prefix() {
        assert_eq!(PIECES.concat(), ANSWER);
        for p in [Provider::OpenAi, Provider::Anthropic] {
            let all = p.events("m", true);
            let opening = p.opening("m");
            assert!(opening.len() < all.len());
            assert_eq!(&all[..opening.len()], &opening[..]);
            let bad = p.malformed_sse("m");
            let last = String::from_utf8_lossy(bad.last().unwrap()).to_string();
            let data = last.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            assert!(serde_json::from_str::<Value>(data).is_err());
        }
    }

    #[test]
    fn rates_outside_zero_to_one_are_refused() {
        assert!(parse_rate("0.1").is_ok());
        assert!(parse_rate("1").is_ok());
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("-0.1").is_err());
        assert!(parse_rate("x").is_err());
    }
}
