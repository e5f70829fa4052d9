//! Prompt compression: long histories keep their system messages and last turns;
//! older turns become one `Previous conversation summary: …` system message written
//! by a cheap model. Summaries are cached by a hash of the summarized prefix and
//! extended incrementally. A tool call and its results stay together, no message is
//! cut, and a failed summary never fails the request.

pub mod audit;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::pipeline::content_text;
use crate::upstream::{ForwardBody, Upstreams, Usage};

/// What to send when no summary can be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Drop the older turns without a summary.
    #[default]
    Trim,
    /// Send the request as it came.
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressConfig {
    pub enabled: bool,
    /// History (all messages) above this many tokens is compressed.
    pub max_history_tokens: usize,
    /// Turns kept verbatim at the end (a turn: a user message, or an assistant
    /// message with the tool results that answer its calls).
    pub keep_last_turns: usize,
    /// Model (a `[[models]]` name) that writes summaries.
    pub summarizer_model: Option<String>,
    pub summary_max_tokens: u32,
    /// Seconds a summary may take before the fallback is used.
    pub summary_timeout_secs: f64,
    /// Without a cached summary, send this turn plainly trimmed and summarize in
    /// the background (true), or wait for the summary (false).
    pub background: bool,
    pub on_failure: OnFailure,
    /// Summaries remembered.
    pub cache_entries: usize,
    /// Per-endpoint overrides.
    pub endpoints: BTreeMap<String, EndpointCompress>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EndpointCompress {
    pub enabled: Option<bool>,
    pub max_history_tokens: Option<usize>,
    pub keep_last_turns: Option<usize>,
}

impl Default for CompressConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_history_tokens: 6000,
            keep_last_turns: 6,
            summarizer_model: None,
            summary_max_tokens: 400,
            summary_timeout_secs: 20.0,
            background: true,
            on_failure: OnFailure::Trim,
            cache_entries: 10_000,
            endpoints: BTreeMap::new(),
        }
    }
}

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

/// Tokens of a message list (content, tool calls, and ~4 tokens of framing each).
pub fn count_tokens(model: &str, messages: &[Value]) -> usize {
    messages
        .iter()
        .map(|m| {
            let mut n = 4 + count_text_tokens(
                model,
                &content_text(m.get("content").unwrap_or(&Value::Null)),
            );
            if let Some(calls) = m.get("tool_calls") {
                n += count_text_tokens(model, &calls.to_string());
            }
            n
        })
        .sum()
}

fn role(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("")
}

/// Splits non-system messages into turns that are never separated: a tool result
/// belongs to the assistant message whose call it answers.
fn turns(messages: &[Value]) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = Vec::new();
    for m in messages {
        match role(m) {
            "tool" | "function" if !out.is_empty() => {
                if let Some(last) = out.last_mut() {
                    last.push(m.clone());
                }
            }
            _ => out.push(vec![m.clone()]),
        }
    }
    out
}

/// Hashes of every prefix of `turns` (at turn boundaries).
fn prefix_hashes(turns: &[Vec<Value>]) -> Vec<[u8; 32]> {
    let mut h = [0u8; 32];
    turns
        .iter()
        .map(|t| {
            let mut d = Sha256::new();
            d.update(h);
            d.update(Value::Array(t.clone()).to_string().as_bytes());
            h = d.finalize().into();
            h
        })
        .collect()
}

fn transcript(turns: &[Vec<Value>]) -> String {
    let mut s = String::new();
    for t in turns {
        for m in t {
            let text = content_text(m.get("content").unwrap_or(&Value::Null));
            s.push_str(&format!("{}: {}\n", role(m), text));
            if let Some(calls) = m.get("tool_calls") {
                s.push_str(&format!("(tool calls: {calls})\n"));
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

    /// Compresses `request`'s messages in place when over budget. `model` is the
    /// model the request goes to (token counting).
    pub async fn compress(
        self: &Arc<Self>,
        request: &mut Value,
        model: &str,
        endpoint: &str,
        live: Arc<crate::pipeline::Live>,
    ) -> Compression {
        let (enabled, budget, keep) = self.settings(endpoint);
        let Some(messages) = request.get("messages").and_then(Value::as_array).cloned() else {
            return Compression::default();
        };
        let before = count_tokens(model, &messages);
        let none = Compression {
            tokens_before: before,
            tokens_after: before,
            mode: "none",
            summary_usage: None,
        };
        if !enabled || before <= budget {
            return none;
        }
        let (system, rest): (Vec<Value>, Vec<Value>) = messages
            .iter()
            .cloned()
            .partition(|m| matches!(role(m), "system" | "developer"));
        let all = turns(&rest);
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
                    let live = live.clone();
                    let claimed = self.pending.lock().insert(full);
                    if claimed {
                        tokio::spawn(async move {
                            let _ = this.summarize(&older, &hashes, &live).await;
                            this.pending.lock().remove(&full);
                        });
                    }
                    None
                } else {
                    match self.summarize(older, &hashes, &live).await {
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
        let mut out = system;
        let mode = match summary {
            Some(s) => {
                out.push(json!({"role": "system", "content": format!("Previous conversation summary: {s}")}));
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
        out.extend(kept.iter().flatten().cloned());
        let after = count_tokens(model, &out);
        request["messages"] = Value::Array(out);
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
        older: &[Vec<Value>],
        hashes: &[[u8; 32]],
        live: &crate::pipeline::Live,
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
        let request = json!({
            "model": model,
            "messages": [
                {"role": "system", "content": SUMMARY_PROMPT},
                {"role": "user", "content": input},
            ],
            "max_tokens": self.cfg.summary_max_tokens,
            "temperature": 0,
        });
        self.summarizer_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs_f64(self.cfg.summary_timeout_secs);
        let fwd = tokio::time::timeout(
            Duration::from_secs_f64(self.cfg.summary_timeout_secs),
            forward_summary(&live.upstreams, &model, &request, deadline),
        )
        .await
        .map_err(|_| "summary timed out".to_string())??;
        let (text, usage) = fwd;
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
        Ok((text, usage.map(|u| (model, u))))
    }
}

async fn forward_summary(
    upstreams: &Upstreams,
    model: &str,
    request: &Value,
    deadline: Instant,
) -> Result<(String, Option<Usage>), String> {
    let fwd = upstreams
        .forward(&[model.to_string()], request, false, false, deadline)
        .await
        .map_err(|e| e.to_string())?;
    match fwd.body {
        ForwardBody::Json { body, usage } => {
            let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let text = v
                .pointer("/choices/0/message/content")
                .map(content_text)
                .unwrap_or_default();
            Ok((text, usage))
        }
        ForwardBody::Stream { .. } => Err("the summarizer streamed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_results_stay_with_their_call() {
        let msgs = vec![
            json!({"role": "user", "content": "weather?"}),
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}),
            json!({"role": "tool", "tool_call_id": "1", "content": "18C"}),
            json!({"role": "tool", "tool_call_id": "2", "content": "rain"}),
            json!({"role": "assistant", "content": "18C and rain"}),
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
        assert!(count_tokens("gpt-4o", &[json!({"role": "user", "content": text})]) >= 14);
    }

    #[test]
    fn prefix_hashes_extend() {
        let t = turns(&[
            json!({"role": "user", "content": "a"}),
            json!({"role": "assistant", "content": "b"}),
            json!({"role": "user", "content": "c"}),
        ]);
        let h2 = prefix_hashes(&t[..2]);
        let h3 = prefix_hashes(&t);
        assert_eq!(h2[..], h3[..2]);
    }
}
