//! Prompt compression: long histories keep their system prompt and last turns;
//! older turns become one `Previous conversation summary: …` system block written
//! by a cheap model. Summaries are cached by a hash of the summarized prefix and
//! extended incrementally. A tool call and its results stay together, no message is
//! cut, and a failed summary never fails the request. Works on the canonical
//! request, whatever protocol it came in.

pub mod audit;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::canonical::{text_of, Block, Message, Protocol, Request, Role, ToolChoice};
use crate::upstream::{ForwardBody, Upstreams, Usage};

pub use crate::config::{CompressConfig, EndpointCompress, OnFailure};

/// Tokens of a text for a model family: tiktoken's encodings for OpenAI models
/// (o200k_base for the GPT-4o/4.1/5 and o-series, cl100k_base for older ones);
/// for other models an estimate of one token per 4 characters (at least one per
/// word), which is within about 15% for English prose on Claude and Gemini.
pub fn count_text_tokens(model: &str, text: &str) -> usize {
    let m = model.to_ascii_lowercase();
    if m.starts_with("gpt-4o")
        || m.starts_with("gpt-4.1")
        || m.starts_with("gpt-5")
        || m.starts_with('o') && m.chars().nth(1).is_some_and(|c| c.is_ascii_digit())
    {
        return tiktoken_rs::o200k_base_singleton()
            .encode_with_special_tokens(text)
            .len();
    }
    if m.starts_with("gpt-") {
        return tiktoken_rs::cl100k_base_singleton()
            .encode_with_special_tokens(text)
            .len();
    }
    let by_chars = text.chars().count().div_ceil(4);
    by_chars.max(text.split_whitespace().count())
}

/// Tokens of messages (text, tool calls and results, ~4 tokens of framing each).
pub fn count_tokens(model: &str, messages: &[Message]) -> usize {
    messages
        .iter()
        .map(|m| {
            let mut n = 4 + count_text_tokens(model, &m.text());
            for (_, name, input) in m.tool_uses() {
                n += count_text_tokens(model, name) + count_text_tokens(model, &input.to_string());
            }
            n
        })
        .sum()
}

/// Tokens of the system prompt and the messages.
pub fn count_request_tokens(model: &str, req: &Request) -> usize {
    let system = if req.system.is_empty() {
        0
    } else {
        4 + count_text_tokens(model, &text_of(&req.system))
    };
    system + count_tokens(model, &req.messages)
}

/// Splits messages into turns that are never separated: tool results belong to
/// the assistant message whose calls they answer.
fn turns(messages: &[Message]) -> Vec<Vec<Message>> {
    let mut out: Vec<Vec<Message>> = Vec::new();
    for m in messages {
        match out.last_mut() {
            Some(last) if m.is_tool_result() => last.push(m.clone()),
            _ => out.push(vec![m.clone()]),
        }
    }
    out
}

/// What a message says, for hashing: role, text and tool calls.
fn fingerprint(m: &Message, h: &mut Sha256) {
    h.update(m.role.name().as_bytes());
    h.update([0]);
    h.update(m.text().as_bytes());
    for (id, name, input) in m.tool_uses() {
        h.update([1]);
        h.update(id.as_bytes());
        h.update(name.as_bytes());
        h.update(input.to_string().as_bytes());
    }
    h.update([2]);
}

/// Hashes of every prefix of `turns` (at turn boundaries).
fn prefix_hashes(turns: &[Vec<Message>]) -> Vec<[u8; 32]> {
    let mut h = [0u8; 32];
    turns
        .iter()
        .map(|t| {
            let mut d = Sha256::new();
            d.update(h);
            for m in t {
                fingerprint(m, &mut d);
            }
            h = d.finalize().into();
            h
        })
        .collect()
}

fn transcript(turns: &[Vec<Message>]) -> String {
    let mut s = String::new();
    for t in turns {
        for m in t {
            s.push_str(&format!("{}: {}\n", m.role.name(), m.text()));
            let calls: Vec<String> = m
                .tool_uses()
                .map(|(_, name, input)| format!("{name}({input})"))
                .collect();
            if !calls.is_empty() {
                s.push_str(&format!("(tool calls: {})\n", calls.join(", ")));
            }
        }
    }
    s
}

const SUMMARY_PROMPT: &str = "You maintain the memory of a conversation between a user and an assistant. \
Write a concise summary of the conversation below for the assistant to continue from: facts, decisions, \
names, numbers, code or file names, and open questions. Write only the summary.";

/// The result of compressing one request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Compression {
    pub tokens_before: usize,
    pub tokens_after: usize,
    /// `summary`, `trimmed`, `untouched` (fallback), or `none`.
    pub mode: &'static str,
    /// The summarizer model and its usage, when it ran for this request.
    pub summary_usage: Option<(String, Usage)>,
}

struct Cached {
    summary: String,
}

pub struct Compressor {
    cfg: CompressConfig,
    summaries: Mutex<HashMap<[u8; 32], Arc<Cached>>>,
    /// Prefixes being summarized in the background.
    pending: Mutex<std::collections::HashSet<[u8; 32]>>,
    pub summarizer_calls: std::sync::atomic::AtomicU64,
}

impl Compressor {
    pub fn new(cfg: CompressConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            summaries: Mutex::new(HashMap::new()),
            pending: Mutex::new(Default::default()),
            summarizer_calls: Default::default(),
        })
    }

    pub fn config(&self) -> &CompressConfig {
        &self.cfg
    }

    /// Whether requests of `endpoint` are compressed at all.
    pub fn active(&self, endpoint: &str) -> bool {
        self.settings(endpoint).0
    }

    fn settings(&self, endpoint: &str) -> (bool, usize, usize) {
        let o = self.cfg.endpoints.get(endpoint);
        (
            o.and_then(|o| o.enabled).unwrap_or(self.cfg.enabled),
            o.and_then(|o| o.max_history_tokens)
                .unwrap_or(self.cfg.max_history_tokens),
            o.and_then(|o| o.keep_last_turns)
                .unwrap_or(self.cfg.keep_last_turns)
                .max(1),
        )
    }

    /// Compresses `request`'s history in place when over budget. `model` is the
    /// id the request's model is known by upstream (token counting).
    pub async fn compress(
        self: &Arc<Self>,
        request: &mut Request,
        model: &str,
        endpoint: &str,
        upstreams: Arc<Upstreams>,
    ) -> Compression {
        let (enabled, budget, keep) = self.settings(endpoint);
        let before = count_request_tokens(model, request);
        let none = Compression {
            tokens_before: before,
            tokens_after: before,
            mode: "none",
            summary_usage: None,
        };
        if !enabled || before <= budget {
            return none;
        }
        let all = turns(&request.messages);
        if all.len() <= keep {
            return none;
        }
        let (older, kept) = all.split_at(all.len() - keep);
        let hashes = prefix_hashes(older);
        let Some(full) = hashes.last().copied() else {
            return none;
        };
        let mut usage = None;
        let cached = self.summaries.lock().get(&full).cloned();
        let summary = match cached {
            Some(c) => Some(c.summary.clone()),
            None => {
                if self.cfg.background {
                    let this = self.clone();
                    let older = older.to_vec();
                    let upstreams = upstreams.clone();
                    let claimed = self.pending.lock().insert(full);
                    if claimed {
                        tokio::spawn(async move {
                            let _ = this.summarize(&older, &hashes, &upstreams).await;
                            this.pending.lock().remove(&full);
                        });
                    }
                    None
                } else {
                    match self.summarize(older, &hashes, &upstreams).await {
                        Ok((s, u)) => {
                            usage = u;
                            Some(s)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "summary failed; using the fallback");
                            None
                        }
                    }
                }
            }
        };
        let mode = match summary {
            Some(s) => {
                request
                    .system
                    .push(Block::text(format!("Previous conversation summary: {s}")));
                "summary"
            }
            None if self.cfg.on_failure == OnFailure::Trim => "trimmed",
            None => {
                return Compression {
                    mode: "untouched",
                    ..none
                }
            }
        };
        request.messages = kept.iter().flatten().cloned().collect();
        request.messages_changed = true;
        let after = count_request_tokens(model, request);
        Compression {
            tokens_before: before,
            tokens_after: after,
            mode,
            summary_usage: usage,
        }
    }

    /// Summarizes `older`, starting from the longest prefix already summarized.
    async fn summarize(
        &self,
        older: &[Vec<Message>],
        hashes: &[[u8; 32]],
        upstreams: &Upstreams,
    ) -> Result<(String, Option<(String, Usage)>), String> {
        let model = self
            .cfg
            .summarizer_model
            .clone()
            .ok_or("compress.summarizer_model is not set")?;
        let start = {
            let cache = self.summaries.lock();
            (0..hashes.len())
                .rev()
                .find_map(|k| cache.get(&hashes[k]).map(|c| (k + 1, c.clone())))
        };
        let input = match &start {
            Some((n, c)) => format!(
                "Summary so far:\n{}\n\nThe conversation continues:\n{}",
                c.summary,
                transcript(&older[*n..])
            ),
            None => transcript(older),
        };
        let request = Request {
            protocol: Protocol::OpenAiChat,
            model: model.clone(),
            system: vec![Block::text(SUMMARY_PROMPT)],
            messages: vec![Message::new(Role::User, vec![Block::text(input)])],
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: None,
            max_tokens: Some(u64::from(self.cfg.summary_max_tokens)),
            temperature: Some(0.0),
            top_p: None,
            stop: Vec::new(),
            n: None,
            stream: false,
            include_usage: false,
            user: None,
            extra: Default::default(),
            messages_changed: true,
            forward_headers: Vec::new(),
            raw: serde_json::Value::Null,
        };
        self.summarizer_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs_f64(self.cfg.summary_timeout_secs);
        let fwd = tokio::time::timeout(
            Duration::from_secs_f64(self.cfg.summary_timeout_secs),
            upstreams.forward(std::slice::from_ref(&model), &request, deadline),
        )
        .await
        .map_err(|_| "summary timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let (text, usage) = match fwd.body {
            ForwardBody::Json { reply, .. } => (reply.text(), reply.usage),
            ForwardBody::Stream { .. } => return Err("the summarizer streamed".into()),
        };
        if text.trim().is_empty() {
            return Err("the summarizer returned nothing".into());
        }
        let mut cache = self.summaries.lock();
        if cache.len() >= self.cfg.cache_entries.max(1) {
            cache.clear();
        }
        if let Some(h) = hashes.last() {
            cache.insert(
                *h,
                Arc::new(Cached {
                    summary: text.clone(),
                }),
            );
        }
        Ok((text, Some((model, usage))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(t: &str) -> Message {
        Message::new(Role::User, vec![Block::text(t)])
    }

    #[test]
    fn tool_results_stay_with_their_call() {
        let call = Message::new(
            Role::Assistant,
            vec![Block::ToolUse {
                id: "1".into(),
                name: "weather".into(),
                input: json!({}),
            }],
        );
        let result = |id: &str, t: &str| {
            Message::new(
                Role::Tool,
                vec![Block::ToolResult {
                    tool_use_id: id.into(),
                    content: vec![Block::text(t)],
                    is_error: false,
                }],
            )
        };
        let msgs = vec![
            user("weather?"),
            call,
            result("1", "18C"),
            result("2", "rain"),
            Message::new(Role::Assistant, vec![Block::text("18C and rain")]),
        ];
        let t = turns(&msgs);
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].len(), 3, "call + both results");
    }

    #[test]
    fn token_counts_by_family() {
        let text = "The quick brown fox jumps over the lazy dog.";
        assert_eq!(count_text_tokens("gpt-4o-mini", text), 10);
        assert_eq!(count_text_tokens("gpt-3.5-turbo", text), 10);
        // Estimate for other families: max(chars / 4, words).
        assert_eq!(count_text_tokens("claude-sonnet-4-5", text), 11);
        assert!(count_tokens("gpt-4o", &[user(text)]) >= 14);
    }

    #[test]
    fn prefix_hashes_extend() {
        let t = turns(&[
            user("a"),
            Message::new(Role::Assistant, vec![Block::text("b")]),
            user("c"),
        ]);
        let h2 = prefix_hashes(&t[..2]);
        let h3 = prefix_hashes(&t);
        assert_eq!(h2[..], h3[..2]);
    }
}
