//! Anthropic's Messages API, translated to and from OpenAI's chat completions:
//! system prompt, roles, max_tokens, stop sequences, sampling, tools and tool
//! calls, usage (with prompt-cache reads), finish reasons, and streaming events.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::sse::{self, SseEvent};
use super::{
    first_chunk, read_json, send, spawn_pump, AttemptError, ForwardBody, StreamConverter,
    StreamOutcome, Upstream, Usage,
};
use crate::config::ModelConfig;
use crate::pipeline::content_text as text_of;

const DEFAULT_VERSION: &str = "2023-06-01";
/// Anthropic requires max_tokens; used when the client gave none.
const DEFAULT_MAX_TOKENS: u64 = 4096;

pub(super) async fn call(
    up: &Upstream,
    model: &ModelConfig,
    request: &Value,
    stream: bool,
    client_wants_usage: bool,
    timeout: Duration,
) -> Result<(u16, ForwardBody), AttemptError> {
    let body = to_anthropic(request, model.upstream_model(), stream).map_err(|e| {
        AttemptError::Status {
            status: 400,
            message: e,
            retry_after: None,
            body: None,
        }
    })?;
    let url = format!("{}/messages", up.cfg.base_url.trim_end_matches('/'));
    let mut req = up
        .client
        .post(url)
        .header(
            "anthropic-version",
            up.cfg
                .anthropic_version
                .as_deref()
                .unwrap_or(DEFAULT_VERSION),
        )
        .json(&body);
    if let Some(key) = up.key()? {
        req = req.header("x-api-key", key);
    }
    let resp = send(req, timeout).await?;
    let status = resp.status().as_u16();
    if !stream {
        let (_, v) = read_json(resp, timeout).await?;
        let (openai, usage) = from_anthropic(&v)?;
        let body = Bytes::from(openai.to_string());
        return Ok((
            status,
            ForwardBody::Json {
                body,
                usage: Some(usage),
            },
        ));
    }
    let (first, rest) = first_chunk(resp, timeout).await?;
    Ok((
        status,
        spawn_pump(
            first,
            rest,
            timeout,
            StreamTranslator {
                show_usage: client_wants_usage,
                id: String::new(),
                model: model.name.clone(),
                created: now(),
                usage: Usage::default(),
                tool_index: HashMap::new(),
            },
        ),
    ))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn content_blocks(content: &Value) -> Result<Vec<Value>, String> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))})),
                Some("image_url") => {
                    let url = p
                        .pointer("/image_url/url")
                        .and_then(Value::as_str)
                        .ok_or("image_url part without url")?;
                    if let Some(rest) = url.strip_prefix("data:") {
                        let (media, data) = rest
                            .split_once(";base64,")
                            .ok_or("image data URL must be base64")?;
                        Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}))
                    } else {
                        Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
                    }
                }
                other => Err(format!(
                    "content part type {} is not supported by Anthropic models",
                    other.unwrap_or("(none)")
                )),
            })
            .collect(),
        _ => Err("message content must be a string or an array of parts".into()),
    }
}

/// OpenAI request → Anthropic request.
pub(crate) fn to_anthropic(req: &Value, model: &str, stream: bool) -> Result<Value, String> {
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`messages` must be an array")?;
    let mut system: Vec<String> = Vec::new();
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    let mut push = |role: &str, blocks: Vec<Value>| {
        if blocks.is_empty() {
            return;
        }
        // Anthropic wants alternating roles: merge neighbours with the same role.
        match out.last_mut() {
            Some((r, b)) if r == role => b.extend(blocks),
            _ => out.push((role.to_string(), blocks)),
        }
    };
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(text_of(content)),
            "user" => push("user", content_blocks(content)?),
            "assistant" => {
                let mut blocks = content_blocks(content)?;
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    for c in calls {
                        let args = c
                            .pointer("/function/arguments")
                            .and_then(Value::as_str)
                            .unwrap_or("{}");
                        let input: Value = serde_json::from_str(args).unwrap_or(json!({}));
                        blocks.push(json!({
                            "type": "tool_use",
                            "id": c.get("id").cloned().unwrap_or(json!("")),
                            "name": c.pointer("/function/name").cloned().unwrap_or(json!("")),
                            "input": input,
                        }));
                    }
                }
                push("assistant", blocks);
            }
            "tool" | "function" => push(
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m.get("tool_call_id").cloned().unwrap_or(json!("")),
                    "content": text_of(content),
                })],
            ),
            other => return Err(format!("role `{other}` cannot be sent to Anthropic")),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "messages".into(),
        Value::Array(
            out.into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    let max_tokens = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    body.insert("max_tokens".into(), json!(max_tokens));
    match req.get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            body.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(t) = req.get("temperature").and_then(Value::as_f64) {
        // OpenAI's range is 0–2, Anthropic's 0–1.
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.get("top_p").and_then(Value::as_f64) {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let converted: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut tool = Map::new();
                tool.insert("name".into(), f.get("name").cloned().unwrap_or(json!("")));
                if let Some(d) = f.get("description") {
                    tool.insert("description".into(), d.clone());
                }
                tool.insert(
                    "input_schema".into(),
                    f.get("parameters")
                        .cloned()
                        .unwrap_or(json!({"type": "object", "properties": {}})),
                );
                Value::Object(tool)
            })
            .collect();
        if !converted.is_empty() {
            body.insert("tools".into(), Value::Array(converted));
        }
    }
    match req.get("tool_choice") {
        Some(Value::String(s)) if s == "auto" => {
            body.insert("tool_choice".into(), json!({"type": "auto"}));
        }
        Some(Value::String(s)) if s == "required" => {
            body.insert("tool_choice".into(), json!({"type": "any"}));
        }
        Some(Value::String(s)) if s == "none" => {
            body.insert("tool_choice".into(), json!({"type": "none"}));
        }
        Some(Value::Object(o)) => {
            if let Some(name) = o.get("function").and_then(|f| f.get("name")) {
                body.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
            }
        }
        _ => {}
    }
    // OpenAI's `parallel_tool_calls: false` is Anthropic's `disable_parallel_tool_use`,
    // a flag of the tool choice (auto when none was given).
    if req.get("parallel_tool_calls") == Some(&Value::Bool(false)) && body.contains_key("tools") {
        let choice = body
            .entry("tool_choice")
            .or_insert_with(|| json!({"type": "auto"}));
        if choice.get("type").and_then(Value::as_str) != Some("none") {
            choice["disable_parallel_tool_use"] = json!(true);
        }
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(body))
}

pub(crate) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

fn usage_of(u: &Value) -> Usage {
    let get = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = get("cache_read_input_tokens");
    Usage {
        // Anthropic counts cache reads and writes apart from input_tokens.
        prompt_tokens: get("input_tokens") + cached + get("cache_creation_input_tokens"),
        completion_tokens: get("output_tokens"),
        cached_tokens: cached,
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// Anthropic response → OpenAI chat completion.
pub(crate) fn from_anthropic(v: &Value) -> Result<(Value, Usage), AttemptError> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| AttemptError::Protocol("response has no `content`".into()))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => tool_calls.push(json!({
                "id": b.get("id").cloned().unwrap_or(json!("")),
                "type": "function",
                "function": {
                    "name": b.get("name").cloned().unwrap_or(json!("")),
                    "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
                }
            })),
            _ => {}
        }
    }
    let usage = v.get("usage").map(usage_of).unwrap_or_default();
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if text.is_empty() && !tool_calls.is_empty() {
            Value::Null
        } else {
            json!(text)
        },
    );
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    let stop = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    Ok((
        json!({
            "id": v.get("id").cloned().unwrap_or(json!("")),
            "object": "chat.completion",
            "created": now(),
            "model": v.get("model").cloned().unwrap_or(json!("")),
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(stop), "logprobs": null}],
            "usage": usage_json(&usage),
        }),
        usage,
    ))
}

struct StreamTranslator {
    show_usage: bool,
    id: String,
    model: String,
    created: u64,
    usage: Usage,
    /// Anthropic content-block index → OpenAI tool-call index.
    tool_index: HashMap<u64, usize>,
}

impl StreamTranslator {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        sse::data_event(
            &json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
            .to_string(),
        )
    }
}

impl StreamConverter for StreamTranslator {
    fn event(&mut self, ev: SseEvent, out: &mut StreamOutcome) -> Vec<Bytes> {
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            return Vec::new();
        };
        let kind = ev
            .event
            .as_deref()
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or("");
        match kind {
            "message_start" => {
                if let Some(m) = v.get("message") {
                    self.id = m
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    if let Some(model) = m.get("model").and_then(Value::as_str) {
                        self.model = model.to_string();
                        out.response_model = Some(model.to_string());
                    }
                    if let Some(u) = m.get("usage") {
                        self.usage = usage_of(u);
                    }
                }
                vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            "content_block_start" => {
                let block = v.get("content_block").cloned().unwrap_or(Value::Null);
                if block.get("type").and_then(Value::as_str) != Some("tool_use") {
                    return Vec::new();
                }
                let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let ti = self.tool_index.len();
                self.tool_index.insert(idx, ti);
                vec![self.chunk(
                    json!({"tool_calls": [{
                        "index": ti,
                        "id": block.get("id").cloned().unwrap_or(json!("")),
                        "type": "function",
                        "function": {"name": block.get("name").cloned().unwrap_or(json!("")), "arguments": ""},
                    }]}),
                    None,
                )]
            }
            "content_block_delta" => {
                let d = v.get("delta").cloned().unwrap_or(Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = d.get("text").and_then(Value::as_str).unwrap_or("");
                        out.content.push_str(t);
                        vec![self.chunk(json!({"content": t}), None)]
                    }
                    Some("input_json_delta") => {
                        let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let ti = self.tool_index.get(&idx).copied().unwrap_or(0);
                        let part = d.get("partial_json").cloned().unwrap_or(json!(""));
                        vec![self.chunk(
                            json!({"tool_calls": [{"index": ti, "function": {"arguments": part}}]}),
                            None,
                        )]
                    }
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    if let Some(o) = u.get("output_tokens").and_then(Value::as_u64) {
                        self.usage.completion_tokens = o;
                    }
                }
                let stop = v
                    .pointer("/delta/stop_reason")
                    .and_then(Value::as_str)
                    .map(finish_reason);
                match stop {
                    Some(r) => {
                        out.finish_reason = Some(r.to_string());
                        vec![self.chunk(json!({}), Some(r))]
                    }
                    None => Vec::new(),
                }
            }
            "message_stop" => {
                out.complete = out.finish_reason.is_some();
                out.usage = Some(self.usage);
                let mut v = Vec::new();
                if self.show_usage {
                    v.push(sse::data_event(
                        &json!({
                            "id": self.id,
                            "object": "chat.completion.chunk",
                            "created": self.created,
                            "model": self.model,
                            "choices": [],
                            "usage": usage_json(&self.usage),
                        })
                        .to_string(),
                    ));
                }
                v.push(sse::done_event());
                v
            }
            "error" => {
                let msg = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error")
                    .to_string();
                out.error = Some(msg.clone());
                vec![sse::data_event(
                    &json!({"error": {"message": msg, "type": "upstream_error", "code": v.pointer("/error/type")}})
                        .to_string(),
                )]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_translation() {
        let req = json!({
            "model": "auto",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]}
            ],
            "max_tokens": 100,
            "stop": "END",
            "temperature": 1.5,
            "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        });
        let a = to_anthropic(&req, "claude-x", true).unwrap();
        assert_eq!(a["system"], "Be brief.");
        assert_eq!(a["model"], "claude-x");
        assert_eq!(a["max_tokens"], 100);
        assert_eq!(a["stop_sequences"], json!(["END"]));
        assert_eq!(a["temperature"], 1.0);
        assert_eq!(a["stream"], true);
        assert_eq!(a["tool_choice"], json!({"type": "any"}));
        let mut serial = req.clone();
        serial["parallel_tool_calls"] = json!(false);
        let a2 = to_anthropic(&serial, "claude-x", false).unwrap();
        assert_eq!(
            a2["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        serial.as_object_mut().unwrap().remove("tool_choice");
        let a3 = to_anthropic(&serial, "claude-x", false).unwrap();
        assert_eq!(
            a3["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert_eq!(a["tools"][0]["input_schema"], json!({"type": "object"}));
        let msgs = a["messages"].as_array().unwrap();
        // The tool result and the next user turn merge into one user message.
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][0]["input"]["city"], "Paris");
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][1]["text"], "And tomorrow?");
    }

    #[test]
    fn response_translation() {
        let resp = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Calling."}, {"type": "tool_use", "id": "tu_1", "name": "f", "input": {"a": 1}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 6}
        });
        let (o, u) = from_anthropic(&resp).unwrap();
        assert_eq!(o["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(o["choices"][0]["message"]["content"], "Calling.");
        assert_eq!(
            o["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(u.prompt_tokens, 16);
        assert_eq!(u.cached_tokens, 6);
        assert_eq!(o["usage"]["total_tokens"], 20);
    }
}
