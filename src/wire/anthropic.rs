//! Anthropic's Messages API: requests to and from the canonical form, replies and
//! their event streams (`message_start`, `content_block_start/delta/stop`,
//! `message_delta`, `message_stop`, `ping`).

use serde_json::{json, Map, Value};

use super::{bad, model_of, opt_bool, opt_f64, opt_u64, stop_list, WireError};
use crate::canonical::{
    Block, BlockStart, Event, ImageSource, Message, Protocol, Reply, Request, Role, StopReason,
    Tool, ToolChoice, Usage,
};

/// Anthropic requires `max_tokens`: used when a client of another protocol gave none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Top-level fields the canonical form models or that only carry the transport.
const MODELED: [&str; 13] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "stream",
    "metadata",
    "service_tier",
    "container",
];

fn cache_control(v: &Value) -> Option<Value> {
    v.get("cache_control").cloned()
}

fn image_source(src: &Value) -> Option<ImageSource> {
    match src.get("type").and_then(Value::as_str)? {
        "base64" => Some(ImageSource::Base64 {
            media_type: src.get("media_type").and_then(Value::as_str)?.to_string(),
            data: src.get("data").and_then(Value::as_str)?.to_string(),
        }),
        "url" => Some(ImageSource::Url(
            src.get("url").and_then(Value::as_str)?.to_string(),
        )),
        _ => None,
    }
}

fn image_json(src: &ImageSource) -> Value {
    match src {
        ImageSource::Url(u) => json!({"type": "url", "url": u}),
        ImageSource::Base64 { media_type, data } => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
    }
}

/// One content block from JSON (lenient: an unknown kind is kept as it is).
fn block_of(b: &Value, p: &str) -> Result<Block, WireError> {
    let ty = b
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("`{p}` must be an object with a string `type`"), p))?;
    Ok(match ty {
        "text" => Block::Text {
            text: b
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("`{p}.text` must be a string"), p))?
                .to_string(),
            cache_control: cache_control(b),
        },
        "image" => match b.get("source").and_then(image_source) {
            Some(source) => Block::Image {
                source,
                cache_control: cache_control(b),
            },
            None => Block::Other(b.clone()),
        },
        "tool_use" => Block::ToolUse {
            id: b
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            name: b
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("`{p}.name` must be a string"), p))?
                .to_string(),
            input: b.get("input").cloned().unwrap_or_else(|| json!({})),
        },
        "tool_result" => Block::ToolResult {
            tool_use_id: b
                .get("tool_use_id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("`{p}.tool_use_id` must be a string"), p))?
                .to_string(),
            content: match b.get("content") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => vec![Block::text(s.clone())],
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(k, c)| block_of(c, &format!("{p}.content[{k}]")))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(bad(format!("`{p}.content` must be a string or blocks"), p)),
            },
            is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        },
        "thinking" => Block::Thinking {
            thinking: b
                .get("thinking")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            signature: b
                .get("signature")
                .and_then(Value::as_str)
                .map(str::to_string),
        },
        "redacted_thinking" => Block::RedactedThinking {
            data: b
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        },
        _ => Block::Other(b.clone()),
    })
}

fn blocks_of(content: &Value, p: &str) -> Result<Vec<Block>, WireError> {
    match content {
        Value::String(s) => Ok(vec![Block::text(s.clone())]),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(k, b)| block_of(b, &format!("{p}[{k}]")))
            .collect(),
        _ => Err(bad(
            format!("`{p}` must be a string or an array of content blocks"),
            p,
        )),
    }
}

/// Validates a Messages API request and parses it; errors name the field.
pub fn parse_request(raw: Value) -> Result<Request, WireError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| bad("the request body must be a JSON object", "body"))?;
    let model = model_of(obj)?;
    let max_tokens =
        opt_u64(obj, "max_tokens")?.ok_or_else(|| bad("`max_tokens` is required", "max_tokens"))?;
    let messages = match obj.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(bad("`messages` must not be empty", "messages")),
        Some(_) => return Err(bad("`messages` must be an array", "messages")),
        None => return Err(bad("`messages` is required", "messages")),
    };
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let p = format!("messages[{i}]");
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some(r) => {
                return Err(bad(
                    format!("`{p}.role` `{r}` is not one of user, assistant"),
                    &format!("{p}.role"),
                ))
            }
            None => {
                return Err(bad(
                    format!("`{p}.role` is required and must be a string"),
                    &format!("{p}.role"),
                ))
            }
        };
        let content = m.get("content").ok_or_else(|| {
            bad(
                format!("`{p}.content` is required"),
                &format!("{p}.content"),
            )
        })?;
        out.push(Message {
            role,
            blocks: blocks_of(content, &format!("{p}.content"))?,
            raw: Some(m.clone()),
        });
    }
    let system = match obj.get("system") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => blocks_of(v, "system")?,
    };
    let tools = match obj.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        format!("`tools[{i}].name` must be a string"),
                        &format!("tools[{i}]"),
                    )
                })?;
                Ok(Tool {
                    name: name.to_string(),
                    description: t
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    schema: t
                        .get("input_schema")
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                    cache_control: cache_control(t),
                })
            })
            .collect::<Result<_, WireError>>()?,
        Some(_) => return Err(bad("`tools` must be an array", "tools")),
    };
    let (tool_choice, parallel) = match obj.get("tool_choice") {
        None | Some(Value::Null) => (ToolChoice::Auto, None),
        Some(c) => {
            let disable = c.get("disable_parallel_tool_use").and_then(Value::as_bool);
            let choice = match c.get("type").and_then(Value::as_str) {
                Some("auto") => ToolChoice::Auto,
                Some("any") => ToolChoice::Required,
                Some("none") => ToolChoice::None,
                Some("tool") => ToolChoice::Named(
                    c.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("`tool_choice.name` must be a string", "tool_choice"))?
                        .to_string(),
                ),
                _ => {
                    return Err(bad(
                        "`tool_choice.type` must be one of auto, any, tool, none",
                        "tool_choice",
                    ))
                }
            };
            (choice, disable.map(|d| !d))
        }
    };
    let extra: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !MODELED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Request {
        protocol: Protocol::AnthropicMessages,
        model,
        system,
        messages: out,
        tools,
        tool_choice,
        parallel_tool_calls: parallel,
        max_tokens: Some(max_tokens),
        temperature: opt_f64(obj, "temperature")?,
        top_p: opt_f64(obj, "top_p")?,
        stop: stop_list(obj.get("stop_sequences"), "stop_sequences")?,
        n: None,
        stream: opt_bool(obj, "stream")?.unwrap_or(false),
        include_usage: true,
        user: obj
            .get("metadata")
            .and_then(|m| m.get("user_id"))
            .and_then(Value::as_str)
            .map(str::to_string),
        extra,
        messages_changed: false,
        forward_headers: Vec::new(),
        raw,
    })
}

fn block_json(b: &Block) -> Option<Value> {
    let with_cache = |mut v: Value, cc: &Option<Value>| {
        if let Some(c) = cc {
            v["cache_control"] = c.clone();
        }
        v
    };
    Some(match b {
        Block::Text {
            text,
            cache_control,
        } => {
            if text.is_empty() {
                return None;
            }
            with_cache(json!({"type": "text", "text": text}), cache_control)
        }
        Block::Image {
            source,
            cache_control,
        } => with_cache(
            json!({"type": "image", "source": image_json(source)}),
            cache_control,
        ),
        Block::ToolUse { id, name, input } => {
            let input = match input {
                Value::Object(_) => input.clone(),
                Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| json!({})),
                _ => json!({}),
            };
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Block::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut v = json!({"type": "tool_result", "tool_use_id": tool_use_id,
                "content": content.iter().filter_map(block_json).collect::<Vec<_>>()});
            if *is_error {
                v["is_error"] = json!(true);
            }
            v
        }
        Block::Thinking {
            thinking,
            signature,
        } => {
            let mut v = json!({"type": "thinking", "thinking": thinking});
            if let Some(s) = signature {
                v["signature"] = json!(s);
            }
            v
        }
        Block::RedactedThinking { data } => json!({"type": "redacted_thinking", "data": data}),
        Block::Other(v) => v.clone(),
    })
}

/// The canonical messages as Messages API messages: tool results go on the user
/// side, neighbours of one role merge (the API wants them alternating), and a
/// message that came from an Anthropic client is written as it came.
pub fn render_messages(req: &Request) -> Vec<Value> {
    let own = req.protocol == Protocol::AnthropicMessages;
    let mut out: Vec<(String, Vec<Value>, Option<Value>)> = Vec::new();
    for m in &req.messages {
        let role = match m.role {
            Role::Assistant => "assistant",
            Role::User | Role::Tool => "user",
        };
        if let (true, Some(raw)) = (own, &m.raw) {
            out.push((role.to_string(), Vec::new(), Some(raw.clone())));
            continue;
        }
        let blocks: Vec<Value> = m.blocks.iter().filter_map(block_json).collect();
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((r, b, None)) if r == role => b.extend(blocks),
            _ => out.push((role.to_string(), blocks, None)),
        }
    }
    out.into_iter()
        .map(|(role, blocks, raw)| raw.unwrap_or_else(|| json!({"role": role, "content": blocks})))
        .collect()
}

fn system_json(req: &Request) -> Option<Value> {
    if req.system.is_empty() {
        return None;
    }
    let plain = req.system.iter().all(|b| {
        matches!(
            b,
            Block::Text {
                cache_control: None,
                ..
            }
        )
    });
    Some(if plain {
        json!(crate::canonical::text_of(&req.system))
    } else {
        Value::Array(req.system.iter().filter_map(block_json).collect())
    })
}

/// The request for an Anthropic provider serving `model`. A request from an
/// Anthropic client goes as it came but for the model (and the messages and system
/// prompt, when compression rewrote them).
pub fn render_request(req: &Request, model: &str) -> Value {
    let mut body = match (req.protocol, &req.raw) {
        (Protocol::AnthropicMessages, Value::Object(o)) => o.clone(),
        _ => {
            let mut b = Map::new();
            b.insert(
                "max_tokens".into(),
                json!(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
            );
            if let Some(t) = req.temperature {
                // OpenAI's range is 0–2, Anthropic's 0–1.
                b.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
            }
            if let Some(p) = req.top_p {
                b.insert("top_p".into(), json!(p));
            }
            if !req.stop.is_empty() {
                b.insert("stop_sequences".into(), json!(req.stop));
            }
            if let Some(u) = &req.user {
                b.insert("metadata".into(), json!({"user_id": u}));
            }
            if !req.tools.is_empty() {
                b.insert(
                    "tools".into(),
                    Value::Array(
                        req.tools
                            .iter()
                            .map(|t| {
                                let mut v = json!({"name": t.name, "input_schema": t.schema});
                                if let Some(d) = &t.description {
                                    v["description"] = json!(d);
                                }
                                if let Some(c) = &t.cache_control {
                                    v["cache_control"] = c.clone();
                                }
                                v
                            })
                            .collect(),
                    ),
                );
                let mut choice = match &req.tool_choice {
                    ToolChoice::Auto => json!({"type": "auto"}),
                    ToolChoice::None => json!({"type": "none"}),
                    ToolChoice::Required => json!({"type": "any"}),
                    ToolChoice::Named(n) => json!({"type": "tool", "name": n}),
                };
                // OpenAI's `parallel_tool_calls: false` is `disable_parallel_tool_use`.
                if req.parallel_tool_calls == Some(false) && req.tool_choice != ToolChoice::None {
                    choice["disable_parallel_tool_use"] = json!(true);
                }
                b.insert("tool_choice".into(), choice);
            }
            b
        }
    };
    body.insert("model".into(), json!(model));
    if req.protocol != Protocol::AnthropicMessages || req.messages_changed {
        body.insert("messages".into(), Value::Array(render_messages(req)));
        match system_json(req) {
            Some(s) => {
                body.insert("system".into(), s);
            }
            None => {
                body.remove("system");
            }
        }
    }
    if req.stream {
        body.insert("stream".into(), json!(true));
    } else {
        body.remove("stream");
    }
    Value::Object(body)
}

pub fn stop_reason(s: &str) -> StopReason {
    match s {
        "end_turn" | "pause_turn" => StopReason::EndTurn,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "refusal" => StopReason::Refusal,
        other => StopReason::Other(other.to_string()),
    }
}

pub fn stop_reason_name(s: &StopReason) -> String {
    match s {
        StopReason::EndTurn => "end_turn".into(),
        StopReason::MaxTokens => "max_tokens".into(),
        StopReason::StopSequence => "stop_sequence".into(),
        StopReason::ToolUse => "tool_use".into(),
        StopReason::ContentFilter | StopReason::Refusal => "refusal".into(),
        StopReason::Other(o) => o.clone(),
    }
}

pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens + u.cache_write_tokens),
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
    })
}

/// A provider's message as a reply.
pub fn parse_reply(v: &Value) -> Result<Reply, String> {
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or("response has no `content`")?;
    let blocks = content
        .iter()
        .enumerate()
        .map(|(i, b)| block_of(b, &format!("content[{i}]")).map_err(|e| e.message))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Reply {
        id: v
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        blocks,
        stop: stop_reason(
            v.get("stop_reason")
                .and_then(Value::as_str)
                .unwrap_or("end_turn"),
        ),
        stop_sequence: v
            .get("stop_sequence")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage: v
            .get("usage")
            .map(Usage::from_anthropic)
            .unwrap_or_default(),
        more_choices: 0,
    })
}

/// A reply as a Messages API message.
pub fn render_reply(r: &Reply, id: &str, model: &str) -> Value {
    json!({
        "id": format!("msg_{id}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": r.blocks.iter().filter_map(block_json).collect::<Vec<_>>(),
        "stop_reason": stop_reason_name(&r.stop),
        "stop_sequence": r.stop_sequence,
        "usage": usage_json(&r.usage),
    })
}

/// Reads a provider's event stream into canonical events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    usage: Usage,
    stop: Option<(StopReason, Option<String>)>,
}

impl StreamDecoder {
    /// Events for one SSE event (`kind` is its `event:` line, when it has one).
    pub fn event(&mut self, kind: Option<&str>, data: &str) -> Vec<Event> {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            if data.trim().is_empty() {
                return Vec::new();
            }
            return vec![Event::Error {
                message: crate::wire::sse::MALFORMED.into(),
            }];
        };
        let kind = kind
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or("");
        let index = || v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        match kind {
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                self.usage = m
                    .get("usage")
                    .map(Usage::from_anthropic)
                    .unwrap_or_default();
                vec![Event::Start {
                    id: m
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    model: m
                        .get("model")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    usage: self.usage,
                }]
            }
            "content_block_start" => {
                let b = v.get("content_block").unwrap_or(&Value::Null);
                let block = match b.get("type").and_then(Value::as_str) {
                    Some("tool_use") => BlockStart::ToolUse {
                        id: b
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        name: b
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    },
                    Some("thinking") => BlockStart::Thinking,
                    Some("redacted_thinking") => BlockStart::RedactedThinking {
                        data: b
                            .get("data")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    },
                    _ => BlockStart::Text,
                };
                let mut out = vec![Event::BlockStart {
                    index: index(),
                    block,
                }];
                // A text block may start with text already in it.
                if let Some(t) = b
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    out.push(Event::TextDelta {
                        index: index(),
                        text: t.to_string(),
                    });
                }
                out
            }
            "content_block_delta" => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => vec![Event::TextDelta {
                        index: index(),
                        text: s("text"),
                    }],
                    Some("input_json_delta") => vec![Event::ToolInputDelta {
                        index: index(),
                        json: s("partial_json"),
                    }],
                    Some("thinking_delta") => vec![Event::ThinkingDelta {
                        index: index(),
                        thinking: s("thinking"),
                    }],
                    Some("signature_delta") => vec![Event::SignatureDelta {
                        index: index(),
                        signature: s("signature"),
                    }],
                    _ => Vec::new(),
                }
            }
            "content_block_stop" => vec![Event::BlockStop { index: index() }],
            "message_delta" => {
                if let Some(o) = v.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.usage.completion_tokens = o;
                }
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some((
                        stop_reason(r),
                        v.pointer("/delta/stop_sequence")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    ));
                }
                Vec::new()
            }
            "message_stop" => match self.stop.take() {
                Some((reason, stop_sequence)) => vec![Event::Stop {
                    reason,
                    stop_sequence,
                    usage: self.usage,
                }],
                None => Vec::new(),
            },
            "error" => vec![Event::Error {
                message: v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error")
                    .to_string(),
            }],
            _ => Vec::new(),
        }
    }
}

/// Writes canonical events as the Messages API's event stream.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
}

impl StreamEncoder {
    pub fn new(id: &str, model: &str) -> Self {
        Self {
            id: format!("msg_{id}"),
            model: model.to_string(),
        }
    }

    /// (event name, data) pairs for one event.
    pub fn event(&mut self, ev: &Event) -> Vec<(&'static str, Value)> {
        match ev {
            Event::Start { usage, model, .. } => {
                if !model.is_empty() {
                    self.model = model.clone();
                }
                vec![
                    (
                        "message_start",
                        json!({"type": "message_start", "message": {
                        "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                        "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": usage_json(usage)}}),
                    ),
                    ("ping", json!({"type": "ping"})),
                ]
            }
            Event::BlockStart { index, block } => {
                let b = match block {
                    BlockStart::Text => json!({"type": "text", "text": ""}),
                    BlockStart::ToolUse { id, name } => {
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}})
                    }
                    BlockStart::Thinking => json!({"type": "thinking", "thinking": ""}),
                    BlockStart::RedactedThinking { data } => {
                        json!({"type": "redacted_thinking", "data": data})
                    }
                };
                vec![(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index, "content_block": b}),
                )]
            }
            Event::TextDelta { index, text } => {
                vec![delta(*index, json!({"type": "text_delta", "text": text}))]
            }
            Event::ToolInputDelta { index, json } => vec![delta(
                *index,
                serde_json::json!({"type": "input_json_delta", "partial_json": json}),
            )],
            Event::ThinkingDelta { index, thinking } => {
                vec![delta(
                    *index,
                    json!({"type": "thinking_delta", "thinking": thinking}),
                )]
            }
            Event::SignatureDelta { index, signature } => {
                vec![delta(
                    *index,
                    json!({"type": "signature_delta", "signature": signature}),
                )]
            }
            Event::BlockStop { index } => vec![(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            )],
            Event::Stop {
                reason,
                stop_sequence,
                usage,
            } => vec![
                (
                    "message_delta",
                    json!({"type": "message_delta",
                           "delta": {"stop_reason": stop_reason_name(reason), "stop_sequence": stop_sequence},
                           "usage": {"output_tokens": usage.completion_tokens}}),
                ),
                ("message_stop", json!({"type": "message_stop"})),
            ],
            Event::Error { message } => vec![(
                "error",
                json!({"type": "error", "error": {"type": "api_error", "message": message}}),
            )],
        }
    }
}

fn delta(index: usize, d: Value) -> (&'static str, Value) {
    (
        "content_block_delta",
        json!({"type": "content_block_delta", "index": index, "delta": d}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        for (body, param) in [
            (
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
                "model",
            ),
            (
                json!({"model": "auto", "messages": [{"role": "user", "content": "x"}]}),
                "max_tokens",
            ),
            (
                json!({"model": "auto", "max_tokens": 5, "messages": []}),
                "messages",
            ),
            (
                json!({"model": "auto", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": 3}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
                "messages[0].content[0]",
            ),
        ] {
            let e = parse_request(body.clone())
                .err()
                .unwrap_or_else(|| panic!("{body} accepted"));
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn an_anthropic_request_reaches_an_anthropic_provider_unchanged() {
        let raw = json!({
            "model": "auto", "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are a coder.", "cache_control": {"type": "ephemeral"}}],
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "messages": [
                {"role": "user", "content": "fix the bug"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "look at it", "signature": "sig=="},
                    {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a.rs"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "fn main(){}"}]}
            ],
            "tools": [{"name": "read", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
            "metadata": {"user_id": "u1"}
        });
        let r = parse_request(raw.clone()).unwrap();
        assert!(r.ends_in_tool_result());
        assert_eq!(r.last_human().unwrap().human_text(), "fix the bug");
        assert!(r.extra.contains_key("thinking"));
        let out = render_request(&r, "claude-x");
        let mut expect = raw.clone();
        expect["model"] = json!("claude-x");
        assert_eq!(out, expect, "nothing lost on the way");
        // Compressed messages are rendered, keeping thinking and its signature.
        let mut c = r.clone();
        c.messages_changed = true;
        c.messages[0].raw = None;
        c.messages[1].raw = None;
        let out = render_request(&c, "claude-x");
        assert_eq!(out["messages"][1]["content"][0]["signature"], "sig==");
        assert_eq!(out["system"][0]["cache_control"]["type"], "ephemeral");
    }

    #[test]
    fn openai_shaped_requests_become_alternating_messages() {
        let r = super::super::openai_chat::parse_request(json!({"model": "auto", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]}
        ], "max_tokens": 100, "stop": "END", "temperature": 1.5,
           "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
           "tool_choice": "required", "parallel_tool_calls": false}))
        .unwrap();
        let a = render_request(&r, "claude-x");
        assert_eq!(a["system"], "Be brief.");
        assert_eq!(a["max_tokens"], 100);
        assert_eq!(a["stop_sequences"], json!(["END"]));
        assert_eq!(a["temperature"], 1.0);
        assert_eq!(
            a["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        let msgs = a["messages"].as_array().unwrap();
        assert_eq!(
            msgs.len(),
            3,
            "the tool result and the next user turn merge"
        );
        assert_eq!(msgs[1]["content"][0]["input"], json!({"city": "Paris"}));
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][1]["text"], "And tomorrow?");
    }

    #[test]
    fn replies_and_streams_keep_usage_with_cache_tokens() {
        let v = json!({"id": "msg_1", "model": "claude-x", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "ok"}, {"type": "tool_use", "id": "t", "name": "n", "input": {"a": 1}}],
            "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2}});
        let r = parse_reply(&v).unwrap();
        assert_eq!(r.usage.prompt_tokens, 16);
        let back = render_reply(&r, "x", "claude-x");
        assert_eq!(back["usage"], v["usage"]);
        assert_eq!(back["stop_reason"], "tool_use");
        assert_eq!(back["content"], v["content"]);
        let mut d = StreamDecoder::default();
        let mut events = Vec::new();
        for (k, data) in [
            (
                "message_start",
                r#"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":5,"output_tokens":1}}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#,
            ),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ] {
            events.extend(d.event(Some(k), data));
        }
        assert_eq!(events.len(), 5);
        let mut e = StreamEncoder::new("x", "c");
        let names: Vec<&str> = events
            .iter()
            .flat_map(|ev| e.event(ev))
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }
}
