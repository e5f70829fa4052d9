//! Upstream providers: OpenAI-compatible APIs and Anthropic's Messages API, each
//! translating the canonical request (`crate::canonical`) to its wire format and
//! its replies back, with retries (exponential backoff with jitter, Retry-After),
//! per-attempt timeouts, an overall deadline, and fallback along the tier's model
//! list. A provider that speaks the client's protocol hands the client its own
//! bytes, so nothing is lost on the way.

mod anthropic;
mod openai;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

pub use crate::canonical::Usage;
use crate::canonical::{Event, Reply, Request, StopReason};
use crate::config::{Config, ModelConfig, UpstreamConfig, UpstreamKind};
use crate::wire::sse;

/// Why one attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttemptError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("upstream answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
        body: Option<Value>,
    },
    #[error("no API key: environment variable {0} is not set")]
    MissingKey(String),
    #[error("bad response: {0}")]
    Protocol(String),
}

impl AttemptError {
    /// A short, bounded name for metrics.
    fn reason(&self) -> &'static str {
        match self {
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Connect(_) => "connect",
            AttemptError::Status { status: 429, .. } => "429",
            AttemptError::Status { status, .. } if *status >= 500 => "5xx",
            AttemptError::Status { .. } => "4xx",
            AttemptError::MissingKey(_) => "missing_key",
            AttemptError::Protocol(_) => "protocol",
        }
    }

    /// Worth another attempt at the same model.
    fn retryable(&self) -> bool {
        match self {
            AttemptError::Timeout(_) | AttemptError::Connect(_) | AttemptError::Protocol(_) => true,
            AttemptError::Status { status, .. } => *status == 429 || *status >= 500,
            AttemptError::MissingKey(_) => false,
        }
    }

    /// The request itself is wrong: another model would reject it too.
    fn is_client_error(&self) -> bool {
        matches!(self, AttemptError::Status { status, .. }
            if (400..500).contains(status) && !matches!(status, 401 | 403 | 408 | 429))
    }
}

/// How the whole forward failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    /// The upstream rejected the request itself (4xx): passed on to the client.
    #[error("upstream rejected the request: {message}")]
    Rejected {
        status: u16,
        message: String,
        body: Option<Value>,
    },
    #[error("all upstream attempts failed; last: {last}")]
    Exhausted { last: String, timed_out: bool },
    /// Every model that could answer is rate-limited: the client should come back
    /// after `retry_after` (the shortest the upstreams asked for).
    #[error("the upstream is rate-limiting requests: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("the request deadline passed after {0} attempts")]
    Deadline(u32),
    #[error("no model to forward to")]
    NoModel,
}

/// A forwarded call's outcome, for headers and the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct CallInfo {
    /// Model name as configured (what clients see in `x-triage-model`).
    pub model: String,
    pub upstream: String,
    /// Attempts beyond the first, over all models.
    pub retries: u32,
    /// True when a model other than the first was used.
    pub fallback_used: bool,
    pub upstream_status: u16,
}

/// How a stream ended.
#[derive(Debug, Clone, Default)]
pub struct StreamOutcome {
    pub usage: Option<Usage>,
    /// The provider said it stopped, and why.
    pub complete: bool,
    pub stop: Option<StopReason>,
    pub client_gone: bool,
    pub error: Option<String>,
    /// The answer's text, assembled from the deltas.
    pub content: String,
    /// The model id the stream's events carried.
    pub response_model: Option<String>,
    /// The answer called a tool.
    pub tool_calls: bool,
    /// The tools it called: name and the arguments JSON as streamed.
    pub tool_uses: Vec<(String, String)>,
    /// Block index → position in `tool_uses`.
    tool_blocks: Vec<(usize, usize)>,
}

impl StreamOutcome {
    /// Takes note of what an event says about the answer.
    fn note(&mut self, ev: &Event) {
        match ev {
            Event::Start { model, usage, .. } => {
                if !model.is_empty() {
                    self.response_model = Some(model.clone());
                }
                self.usage = Some(*usage);
            }
            Event::TextDelta { text, .. } => self.content.push_str(text),
            Event::BlockStart {
                index,
                block: crate::canonical::BlockStart::ToolUse { name, .. },
            } => {
                self.tool_calls = true;
                self.tool_blocks.push((*index, self.tool_uses.len()));
                self.tool_uses.push((name.clone(), String::new()));
            }
            Event::ToolInputDelta { index, json } => {
                if let Some((_, k)) = self.tool_blocks.iter().find(|(b, _)| b == index) {
                    if let Some(t) = self.tool_uses.get_mut(*k) {
                        t.1.push_str(json);
                    }
                }
            }
            Event::Stop { reason, usage, .. } => {
                self.stop = Some(reason.clone());
                self.usage = Some(*usage);
                self.complete = true;
            }
            Event::Error { message } => self.error = Some(message.clone()),
            _ => {}
        }
    }
}

/// A piece of a stream: the provider's own bytes when it speaks the client's
/// protocol (`raw`), and what they mean.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    pub raw: Option<Bytes>,
    pub events: Vec<Event>,
}

pub enum ForwardBody {
    /// A complete answer; `raw` is the provider's body when it speaks the
    /// client's protocol.
    Json { reply: Reply, raw: Option<Bytes> },
    /// The stream for the client, and how it ended.
    Stream {
        rx: mpsc::Receiver<Chunk>,
        done: oneshot::Receiver<StreamOutcome>,
    },
}

pub struct Forwarded {
    pub info: CallInfo,
    pub body: ForwardBody,
}

struct Upstream {
    cfg: UpstreamConfig,
    api_key: Option<String>,
    client: reqwest::Client,
}

impl Upstream {
    /// The API key to send, or why there is none when the config names one.
    fn key(&self) -> Result<Option<&str>, AttemptError> {
        match (&self.cfg.api_key_env, &self.api_key) {
            (_, Some(key)) => Ok(Some(key)),
            (Some(var), None) => Err(AttemptError::MissingKey(var.clone())),
            (None, None) => Ok(None),
        }
    }
}

/// Reads a whole non-streaming body and parses it as JSON.
async fn read_json(
    resp: reqwest::Response,
    timeout: Duration,
) -> Result<(Bytes, Value), AttemptError> {
    let bytes = read_body(resp, timeout).await?;
    let v = serde_json::from_slice(&bytes)
        .map_err(|e| AttemptError::Protocol(format!("response is not JSON: {e}")))?;
    Ok((bytes, v))
}

/// The configured upstreams and models.
pub struct Upstreams {
    upstreams: HashMap<String, Upstream>,
    models: HashMap<String, ModelConfig>,
}

/// Largest upstream response body accepted for a non-streaming call.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

impl Upstreams {
    /// Builds clients and reads API keys from the environment. A configured key
    /// whose variable is unset or empty is an error naming the variable (never a
    /// value) when `require_keys`; otherwise (dry runs) it is logged and reported on use.
    pub fn new(cfg: &Config, require_keys: bool) -> Result<Self, String> {
        let mut upstreams = HashMap::new();
        for (i, u) in cfg.upstreams.iter().enumerate() {
            let api_key = match &u.api_key_env {
                Some(var) => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => Some(v),
                    _ if require_keys => {
                        return Err(format!(
                        "upstreams[{i}] (`{}`).api_key_env: environment variable {var} is not set",
                        u.name
                    ))
                    }
                    _ => {
                        tracing::warn!(upstream = %u.name, variable = %var, "API key variable is not set");
                        None
                    }
                },
                None => None,
            };
            let client = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs_f64(u.connect_timeout_secs))
                .pool_idle_timeout(Duration::from_secs(90))
                .tcp_nodelay(true)
                .build()
                .map_err(|e| format!("upstreams `{}`: cannot build HTTP client: {e}", u.name))?;
            upstreams.insert(
                u.name.clone(),
                Upstream {
                    cfg: u.clone(),
                    api_key,
                    client,
                },
            );
        }
        let models = cfg
            .models
            .iter()
            .map(|m| (m.name.clone(), m.clone()))
            .collect();
        Ok(Self { upstreams, models })
    }

    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    pub fn has_model(&self, name: &str) -> bool {
        self.models.contains_key(name)
    }

    /// Sends `request` to the first model that answers, retrying each model on
    /// transient failures before moving to the next.
    pub async fn forward(
        &self,
        models: &[String],
        request: &Request,
        deadline: Instant,
    ) -> Result<Forwarded, ForwardError> {
        let mut retries = 0u32;
        let mut attempts = 0u32;
        let mut last: Option<AttemptError> = None;
        // Models that failed before the one that answers, for the fallback counter.
        let mut failed: Vec<&str> = Vec::new();
        // A model whose last answer was 429: (the upstream's message, its Retry-After).
        let mut limited: Option<(String, Option<Duration>)> = None;
        for (i, name) in models.iter().enumerate() {
            let Some(model) = self.models.get(name) else {
                tracing::warn!(model = %name, "routed model has no [[models]] entry; skipping");
                continue;
            };
            let Some(up) = self.upstreams.get(&model.upstream) else {
                continue;
            };
            for attempt in 0..=up.cfg.max_retries {
                let now = Instant::now();
                if now >= deadline {
                    return Err(ForwardError::Deadline(attempts));
                }
                if attempts > 0 {
                    retries += 1;
                }
                attempts += 1;
                let per_attempt =
                    Duration::from_secs_f64(up.cfg.request_timeout_secs).min(deadline - now);
                let result = match up.cfg.kind {
                    UpstreamKind::Openai => openai::call(up, model, request, per_attempt).await,
                    UpstreamKind::Anthropic => {
                        anthropic::call(up, model, request, per_attempt).await
                    }
                };
                match result {
                    Ok((status, body)) => {
                        for f in &failed {
                            metrics::counter!("triage_fallbacks_total",
                                "model" => f.to_string(), "to" => name.clone())
                            .increment(1);
                        }
                        return Ok(Forwarded {
                            info: CallInfo {
                                model: name.clone(),
                                upstream: up.cfg.name.clone(),
                                retries,
                                fallback_used: i > 0,
                                upstream_status: status,
                            },
                            body,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(model = %name, upstream = %up.cfg.name, attempt, error = %e, "upstream attempt failed");
                        metrics::counter!("triage_upstream_errors_total",
                            "model" => name.clone(), "reason" => e.reason())
                        .increment(1);
                        if e.is_client_error() {
                            let AttemptError::Status {
                                status,
                                message,
                                body,
                                ..
                            } = e
                            else {
                                unreachable!("is_client_error implies Status")
                            };
                            return Err(ForwardError::Rejected {
                                status,
                                message,
                                body,
                            });
                        }
                        let cap = Duration::from_millis(up.cfg.backoff_max_ms);
                        let (wait, too_long) = match &e {
                            // A wait longer than the backoff cap is not waited out here:
                            // the next model is tried, and the client hears the 429.
                            AttemptError::Status {
                                retry_after: Some(ra),
                                ..
                            } => (*ra, *ra > cap),
                            _ => (backoff(attempt, up.cfg.backoff_base_ms).min(cap), false),
                        };
                        let again = e.retryable() && attempt < up.cfg.max_retries && !too_long;
                        if let AttemptError::Status {
                            status: 429,
                            message,
                            retry_after,
                            ..
                        } = &e
                        {
                            if !again {
                                let shortest =
                                    match (limited.as_ref().and_then(|l| l.1), *retry_after) {
                                        (Some(a), Some(b)) => Some(a.min(b)),
                                        (a, b) => a.or(b),
                                    };
                                limited = Some((message.clone(), shortest));
                            }
                        }
                        last = Some(e);
                        if !again {
                            failed.push(name);
                            break;
                        }
                        metrics::counter!("triage_upstream_retries_total", "model" => name.clone())
                            .increment(1);
                        let now = Instant::now();
                        if now + wait >= deadline {
                            return Err(ForwardError::Deadline(attempts));
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        if let Some((message, retry_after)) = limited {
            return Err(ForwardError::RateLimited {
                message,
                retry_after,
            });
        }
        match last {
            None => Err(ForwardError::NoModel),
            Some(e) => Err(ForwardError::Exhausted {
                timed_out: matches!(e, AttemptError::Timeout(_)),
                last: e.to_string(),
            }),
        }
    }
}

/// Exponential backoff with full jitter: uniform in [base·2^n / 2, base·2^n].
fn backoff(attempt: u32, base_ms: u64) -> Duration {
    let exp = base_ms.saturating_mul(1u64 << attempt.min(16));
    let low = exp / 2;
    let ms = rand::rng().random_range(low..=exp.max(low));
    Duration::from_millis(ms)
}

/// Retry-After as seconds (HTTP dates are treated as "soon").
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    match v.trim().parse::<f64>() {
        Ok(s) if s >= 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
        _ => Some(Duration::from_secs(1)),
    }
}

/// Sends a prepared request with the attempt's timeout; non-2xx becomes an error.
async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<reqwest::Response, AttemptError> {
    let resp = match tokio::time::timeout(timeout, req.send()).await {
        Err(_) => return Err(AttemptError::Timeout(timeout)),
        Ok(Err(e)) if e.is_timeout() => return Err(AttemptError::Timeout(timeout)),
        Ok(Err(e)) => return Err(AttemptError::Connect(without_url(&e))),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let ra = retry_after(resp.headers());
    let body = tokio::time::timeout(timeout, resp.bytes())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let message = json
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    Err(AttemptError::Status {
        status: status.as_u16(),
        message,
        retry_after: ra,
        body: json,
    })
}

/// reqwest errors print the URL; keep them short and free of query strings.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = if e.is_connect() {
        "connect error"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() {
        "body error"
    } else if e.is_decode() {
        "decode error"
    } else {
        "request error"
    }
    .to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Reads a whole non-streaming body within the attempt's timeout.
async fn read_body(resp: reqwest::Response, timeout: Duration) -> Result<Bytes, AttemptError> {
    let fut = async {
        let mut out = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| AttemptError::Protocol(without_url(&e)))?;
            if out.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(AttemptError::Protocol("response too large".into()));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| AttemptError::Timeout(timeout))?
}

type ByteStream = futures::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>;

/// Waits for the first chunk of a stream so that a dead stream can still be retried
/// (nothing has reached the client yet).
async fn first_chunk(
    resp: reqwest::Response,
    timeout: Duration,
) -> Result<(Bytes, ByteStream), AttemptError> {
    let mut stream: ByteStream = resp.bytes_stream().boxed();
    match tokio::time::timeout(timeout, stream.next()).await {
        Err(_) => Err(AttemptError::Timeout(timeout)),
        Ok(None) => Err(AttemptError::Protocol(
            "stream ended before any data".into(),
        )),
        Ok(Some(Err(e))) => Err(AttemptError::Protocol(without_url(&e))),
        Ok(Some(Ok(b))) => Ok((b, stream)),
    }
}

/// Turns upstream events into chunks for the client.
trait StreamConverter: Send + 'static {
    fn event(&mut self, ev: sse::SseEvent) -> Chunk;
}

/// Reads the upstream stream on its own task and feeds the client through a bounded
/// channel, chunk by chunk as events complete. Ends early when the client goes away.
/// A stream that breaks after its first byte ends with an error event (the client's
/// protocol renders it) and no end marker.
fn spawn_pump(
    first: Bytes,
    mut stream: ByteStream,
    idle: Duration,
    mut conv: impl StreamConverter,
) -> ForwardBody {
    let (tx, rx) = mpsc::channel::<Chunk>(64);
    let (done_tx, done) = oneshot::channel();
    tokio::spawn(async move {
        let mut parser = sse::SseParser::default();
        let mut out = StreamOutcome::default();
        let mut next: Option<Bytes> = Some(first);
        // The provider sent an error event of its own: the client has seen it.
        let mut reported = false;
        'outer: loop {
            let chunk = match next.take() {
                Some(c) => c,
                None => match tokio::time::timeout(idle, stream.next()).await {
                    Err(_) => {
                        out.error = Some(format!("upstream stream idle for {idle:?}"));
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        out.error = Some(format!("upstream stream broke: {}", without_url(&e)));
                        break;
                    }
                    Ok(Some(Ok(c))) => c,
                },
            };
            let events = match parser.push(&chunk) {
                Ok(evs) => evs,
                Err(e) => {
                    out.error = Some(e);
                    break;
                }
            };
            for ev in events {
                let c = conv.event(ev);
                c.events.iter().for_each(|e| out.note(e));
                reported |= c.events.iter().any(|e| matches!(e, Event::Error { .. }));
                if c.raw.is_none() && c.events.is_empty() {
                    continue;
                }
                let failed = c.events.iter().any(|e| matches!(e, Event::Error { .. }));
                if tx.send(c).await.is_err() {
                    out.client_gone = true;
                    break 'outer;
                }
                if failed {
                    // The client has its error; nothing after it is an answer.
                    break 'outer;
                }
            }
        }
        if !out.client_gone {
            if let Some(ev) = parser.finish() {
                let c = conv.event(ev);
                c.events.iter().for_each(|e| out.note(e));
                let _ = tx.send(c).await;
            }
            if !out.complete && out.error.is_none() {
                out.error = Some("upstream stream ended before it was complete".into());
            }
            if out.complete || reported {
                // Complete, or the client already has the provider's error.
            } else if let Some(e) = &out.error {
                tracing::warn!(error = %e, "stream interrupted after the first byte");
                let _ = tx
                    .send(Chunk {
                        raw: None,
                        events: vec![Event::Error { message: e.clone() }],
                    })
                    .await;
            }
        }
        let _ = done_tx.send(out);
    });
    ForwardBody::Stream { rx, done }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_bounds() {
        for attempt in 0..5 {
            let d = backoff(attempt, 100).as_millis() as u64;
            let exp = 100 * (1 << attempt);
            assert!(d >= exp / 2 && d <= exp, "{attempt}: {d}");
        }
    }

    #[test]
    fn which_errors_retry_and_which_go_to_the_client() {
        let st = |s: u16| AttemptError::Status {
            status: s,
            message: String::new(),
            retry_after: None,
            body: None,
        };
        assert!(st(429).retryable() && st(500).retryable() && st(503).retryable());
        assert!(!st(400).retryable() && st(400).is_client_error());
        assert!(!st(401).is_client_error(), "a bad upstream key falls back");
        assert!(AttemptError::Timeout(Duration::from_secs(1)).retryable());
        assert!(!AttemptError::MissingKey("X".into()).retryable());
    }
}
