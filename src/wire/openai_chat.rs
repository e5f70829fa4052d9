//! OpenAI chat completions: requests to and from the canonical form, replies and
//! their streamed chunks.

use serde_json::{json, Map, Value};

use super::{bad, model_of, opt_bool, opt_f64, opt_u64, stop_list, unix_now, WireError};
use crate::canonical::{
    Block, BlockStart, Event, ImageSource, Message, Protocol, Reply, Request, Role, StopReason,
    Tool, ToolChoice, Usage,
};

const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Top-level fields the canonical form models or that only carry the transport;
/// every other field shapes the answer and is kept in `Request::extra`.
const MODELED: [&str; 17] = [
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "functions",
];

/// Text of a message's content: a string, or the text parts of an array.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn parts_to_blocks(content: &Value, p: &str) -> Result<Vec<Block>, WireError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![Block::text(s.clone())]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| {
                let pp = format!("{p}.content[{j}]");
                let ty = part.get("type").and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        format!("`{pp}` must be an object with a string `type`"),
                        &pp,
                    )
                })?;
                match ty {
                    "text" => match part.get("text") {
                        Some(Value::String(t)) => Ok(Block::text(t.clone())),
                        _ => Err(bad(format!("`{pp}.text` must be a string"), &pp)),
                    },
                    "image_url" => {
                        let url = part
                            .pointer("/image_url/url")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                bad(format!("`{pp}.image_url.url` must be a string"), &pp)
                            })?;
                        Ok(Block::Image {
                            source: image_source(url),
                            cache_control: None,
                        })
                    }
                    _ => Ok(Block::Other(part.clone())),
                }
            })
            .collect(),
        _ => Err(bad(
            format!("`{p}.content` must be a string or an array of content parts"),
            &format!("{p}.content"),
        )),
    }
}

/// A data URL becomes base64 data; anything else stays a URL.
pub fn image_source(url: &str) -> ImageSource {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((media, data)) = rest.split_once(";base64,") {
            return ImageSource::Base64 {
                media_type: media.to_string(),
                data: data.to_string(),
            };
        }
    }
    ImageSource::Url(url.to_string())
}

fn image_url(src: &ImageSource) -> String {
    match src {
        ImageSource::Url(u) => u.clone(),
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
    }
}

/// A tool call's `arguments` string as JSON (kept as a string when it is none).
pub fn arguments_value(args: &str) -> Value {
    serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_string()))
}

fn arguments_string(input: &Value) -> String {
    match input {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Validates a chat completions request and parses it; every error names the
/// offending field.
pub fn parse_request(raw: Value) -> Result<Request, WireError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| bad("the request body must be a JSON object", "body"))?;
    let model = model_of(obj)?;
    let messages = match obj.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(bad("`messages` must not be empty", "messages")),
        Some(_) => return Err(bad("`messages` must be an array", "messages")),
        None => return Err(bad("`messages` is required", "messages")),
    };
    let mut system = Vec::new();
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let p = format!("messages[{i}]");
        let mo = m
            .as_object()
            .ok_or_else(|| bad(format!("`{p}` must be an object"), &p))?;
        let role = match mo.get("role") {
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.as_str(),
            Some(Value::String(r)) => {
                return Err(bad(
                    format!("`{p}.role` `{r}` is not one of {}", ROLES.join(", ")),
                    &format!("{p}.role"),
                ))
            }
            _ => {
                return Err(bad(
                    format!("`{p}.role` is required and must be a string"),
                    &format!("{p}.role"),
                ))
            }
        };
        let content = mo.get("content").unwrap_or(&Value::Null);
        let has_calls = mo.contains_key("tool_calls") || mo.contains_key("function_call");
        if content.is_null() && !(role == "assistant" && has_calls) {
            return Err(bad(
                format!("`{p}.content` is required for role `{role}`"),
                &format!("{p}.content"),
            ));
        }
        let blocks = parts_to_blocks(content, &p)?;
        match role {
            "system" | "developer" => system.extend(blocks),
            "user" => out.push(Message {
                role: Role::User,
                blocks,
                raw: Some(m.clone()),
            }),
            "assistant" => {
                let mut blocks = blocks;
                if let Some(calls) = mo.get("tool_calls") {
                    let calls = calls.as_array().ok_or_else(|| {
                        bad(
                            format!("`{p}.tool_calls` must be an array"),
                            &format!("{p}.tool_calls"),
                        )
                    })?;
                    for (j, c) in calls.iter().enumerate() {
                        let name = c
                            .pointer("/function/name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                bad(
                                    format!("`{p}.tool_calls[{j}].function.name` must be a string"),
                                    &format!("{p}.tool_calls[{j}]"),
                                )
                            })?;
                        blocks.push(Block::ToolUse {
                            id: c
                                .get("id")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            name: name.to_string(),
                            input: arguments_value(
                                c.pointer("/function/arguments")
                                    .and_then(Value::as_str)
                                    .unwrap_or("{}"),
                            ),
                        });
                    }
                }
                out.push(Message {
                    role: Role::Assistant,
                    blocks,
                    raw: Some(m.clone()),
                });
            }
            _ => {
                // `tool` (and the legacy `function`): a result for one call.
                let id = match mo.get("tool_call_id").or_else(|| mo.get("name")) {
                    Some(Value::String(s)) => s.clone(),
                    _ => {
                        return Err(bad(
                            format!("`{p}.tool_call_id` is required for role `{role}`"),
                            &format!("{p}.tool_call_id"),
                        ))
                    }
                };
                out.push(Message {
                    role: Role::Tool,
                    blocks: vec![Block::ToolResult {
                        tool_use_id: id,
                        content: blocks,
                        is_error: false,
                    }],
                    raw: Some(m.clone()),
                });
            }
        }
    }
    let stream = opt_bool(obj, "stream")?.unwrap_or(false);
    let n = opt_u64(obj, "n")?;
    if n.is_some_and(|n| n == 0 || n > 128) {
        return Err(bad("`n` must be an integer between 1 and 128", "n"));
    }
    let tools = parse_tools(obj.get("tools"))?;
    let tool_choice = parse_tool_choice(obj.get("tool_choice"))?;
    let extra: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !MODELED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Request {
        protocol: Protocol::OpenAiChat,
        model,
        system,
        messages: out,
        tools,
        tool_choice,
        parallel_tool_calls: opt_bool(obj, "parallel_tool_calls")?,
        max_tokens: match opt_u64(obj, "max_completion_tokens")? {
            Some(m) => Some(m),
            None => opt_u64(obj, "max_tokens")?,
        },
        temperature: opt_f64(obj, "temperature")?,
        top_p: opt_f64(obj, "top_p")?,
        stop: stop_list(obj.get("stop"), "stop")?,
        n,
        stream,
        include_usage: obj
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        user: obj.get("user").and_then(Value::as_str).map(str::to_string),
        extra,
        messages_changed: false,
        forward_headers: Vec::new(),
        raw,
    })
}

fn parse_tools(v: Option<&Value>) -> Result<Vec<Tool>, WireError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let arr = v
        .as_array()
        .ok_or_else(|| bad("`tools` must be an array", "tools"))?;
    arr.iter()
        .enumerate()
        .map(|(i, t)| {
            let f = t.get("function").ok_or_else(|| {
                bad(
                    format!("`tools[{i}]` must be a function tool with a `function`"),
                    &format!("tools[{i}]"),
                )
            })?;
            let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    format!("`tools[{i}].function.name` must be a string"),
                    &format!("tools[{i}]"),
                )
            })?;
            Ok(Tool {
                name: name.to_string(),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                schema: f
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                cache_control: None,
            })
        })
        .collect()
}

fn parse_tool_choice(v: Option<&Value>) -> Result<ToolChoice, WireError> {
    match v {
        None | Some(Value::Null) => Ok(ToolChoice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(bad(
                format!("`tool_choice` `{other}` is not one of auto, none, required"),
                "tool_choice",
            )),
        },
        Some(o) => o
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Named(n.to_string()))
            .ok_or_else(|| bad("`tool_choice` must name a function", "tool_choice")),
    }
}

/// Whether a model id takes `max_completion_tokens` (the o-series and GPT-5 reject
/// `max_tokens`).
fn takes_max_completion_tokens(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    m.starts_with("gpt-5")
        || (m.starts_with('o') && m.chars().nth(1).is_some_and(|c| c.is_ascii_digit()))
}

fn blocks_to_content(blocks: &[Block]) -> Value {
    let texts_only = blocks.iter().all(|b| matches!(b, Block::Text { .. }));
    if texts_only {
        return json!(crate::canonical::text_of(blocks));
    }
    Value::Array(
        blocks
            .iter()
            .filter_map(|b| match b {
                Block::Text { text, .. } => Some(json!({"type": "text", "text": text})),
                Block::Image { source, .. } => {
                    Some(json!({"type": "image_url", "image_url": {"url": image_url(source)}}))
                }
                Block::Other(v) => Some(v.clone()),
                _ => None,
            })
            .collect(),
    )
}

/// The canonical messages as chat completion messages (system first). A message
/// that came from an OpenAI client is written as it came.
pub fn render_messages(req: &Request) -> Vec<Value> {
    // One system message per system block (a summary stays apart from the prompt).
    let mut out: Vec<Value> = req
        .system
        .iter()
        .filter_map(|b| match b {
            Block::Text { text, .. } => Some(json!({"role": "system", "content": text})),
            _ => None,
        })
        .collect();
    let own = req.protocol == Protocol::OpenAiChat;
    for m in &req.messages {
        if let (true, Some(raw)) = (own, &m.raw) {
            out.push(raw.clone());
            continue;
        }
        match m.role {
            Role::User | Role::Tool => {
                // Tool results first (each its own `tool` message), then any text.
                let mut rest = Vec::new();
                for b in &m.blocks {
                    match b {
                        Block::ToolResult {
                            tool_use_id,
                            content,
                            ..
                        } => out.push(json!({
                            "role": "tool",
                            "tool_call_id": tool_use_id,
                            "content": crate::canonical::text_of(content),
                        })),
                        other => rest.push(other.clone()),
                    }
                }
                if !rest.is_empty() {
                    out.push(json!({"role": "user", "content": blocks_to_content(&rest)}));
                }
            }
            Role::Assistant => {
                let text: Vec<Block> = m
                    .blocks
                    .iter()
                    .filter(|b| matches!(b, Block::Text { .. }))
                    .cloned()
                    .collect();
                let calls: Vec<Value> = m
                    .tool_uses()
                    .map(|(id, name, input)| {
                        json!({"id": id, "type": "function",
                               "function": {"name": name, "arguments": arguments_string(input)}})
                    })
                    .collect();
                let mut msg = json!({"role": "assistant",
                    "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(crate::canonical::text_of(&text)) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                out.push(msg);
            }
        }
    }
    out
}

/// The request for an OpenAI-compatible provider serving `model`. A request from
/// an OpenAI client goes as it came but for the model (and the messages, when
/// compression rewrote them); streams always ask for usage.
pub fn render_request(req: &Request, model: &str) -> Value {
    let mut body = match (req.protocol, &req.raw) {
        (Protocol::OpenAiChat, Value::Object(o)) => o.clone(),
        _ => {
            let mut b = Map::new();
            if let Some(m) = req.max_tokens {
                let key = if takes_max_completion_tokens(model) {
                    "max_completion_tokens"
                } else {
                    "max_tokens"
                };
                b.insert(key.into(), json!(m));
            }
            if let Some(t) = req.temperature {
                b.insert("temperature".into(), json!(t));
            }
            if let Some(p) = req.top_p {
                b.insert("top_p".into(), json!(p));
            }
            if !req.stop.is_empty() {
                b.insert("stop".into(), json!(req.stop));
            }
            if let Some(u) = &req.user {
                b.insert("user".into(), json!(u));
            }
            if !req.tools.is_empty() {
                b.insert(
                    "tools".into(),
                    Value::Array(
                        req.tools
                            .iter()
                            .map(|t| {
                                let mut f = json!({"name": t.name, "parameters": t.schema});
                                if let Some(d) = &t.description {
                                    f["description"] = json!(d);
                                }
                                json!({"type": "function", "function": f})
                            })
                            .collect(),
                    ),
                );
                let choice = match &req.tool_choice {
                    ToolChoice::Auto => json!("auto"),
                    ToolChoice::None => json!("none"),
                    ToolChoice::Required => json!("required"),
                    ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
                };
                b.insert("tool_choice".into(), choice);
                if let Some(p) = req.parallel_tool_calls {
                    b.insert("parallel_tool_calls".into(), json!(p));
                }
            }
            b
        }
    };
    body.insert("model".into(), json!(model));
    if req.protocol != Protocol::OpenAiChat || req.messages_changed {
        body.insert("messages".into(), Value::Array(render_messages(req)));
    }
    if req.stream {
        body.insert("stream".into(), json!(true));
        let opts = body.entry("stream_options").or_insert_with(|| json!({}));
        if let Value::Object(o) = opts {
            o.insert("include_usage".into(), json!(true));
        } else {
            *opts = json!({"include_usage": true});
        }
    }
    Value::Object(body)
}

pub fn finish_reason(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn | StopReason::StopSequence | StopReason::Other(_) => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::ContentFilter | StopReason::Refusal => "content_filter",
    }
}

pub fn stop_reason(finish: &str) -> StopReason {
    match finish {
        "stop" => StopReason::EndTurn,
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::ContentFilter,
        other => StopReason::Other(other.to_string()),
    }
}

pub fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// A provider's chat completion as a reply.
pub fn parse_reply(v: &Value) -> Result<Reply, String> {
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("response has no `choices`")?;
    let choice = choices.first().ok_or("response has no choices")?;
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut blocks = Vec::new();
    let text = content_text(msg.get("content").unwrap_or(&Value::Null));
    if !text.is_empty() {
        blocks.push(Block::text(text));
    }
    if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
        for c in calls {
            blocks.push(Block::ToolUse {
                id: c
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                name: c
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                input: arguments_value(
                    c.pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}"),
                ),
            });
        }
    }
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
            choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .unwrap_or("stop"),
        ),
        stop_sequence: None,
        usage: v
            .get("usage")
            .and_then(Usage::from_openai)
            .unwrap_or_default(),
        more_choices: choices.len().saturating_sub(1),
    })
}

/// A reply as a chat completion.
pub fn render_reply(r: &Reply, id: &str, model: &str) -> Value {
    let text: String = r
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let calls: Vec<Value> = r
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::ToolUse { id, name, input } => Some(json!({
                "id": id, "type": "function",
                "function": {"name": name, "arguments": arguments_string(input)}})),
            _ => None,
        })
        .collect();
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(&r.stop), "logprobs": null}],
        "usage": usage_json(&r.usage),
    })
}

/// Reads a provider's chunk stream into canonical events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    /// The open text block's index.
    text_block: Option<usize>,
    /// Provider tool-call index → (block index).
    tool_blocks: Vec<(u64, usize)>,
    next_block: usize,
    finish: Option<StopReason>,
    usage: Usage,
    done: bool,
}

impl StreamDecoder {
    /// Events for one chunk's data (`[DONE]` ends the stream).
    pub fn data(&mut self, data: &str) -> Vec<Event> {
        let mut out = Vec::new();
        if data.trim() == "[DONE]" {
            self.done = true;
            self.close(&mut out);
            if let Some(reason) = self.finish.clone() {
                out.push(Event::Stop {
                    reason,
                    stop_sequence: None,
                    usage: self.usage,
                });
            }
            return out;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            if !data.trim().is_empty() {
                out.push(Event::Error {
                    message: crate::wire::sse::MALFORMED.into(),
                });
            }
            return out;
        };
        if let Some(err) = v.get("error") {
            out.push(Event::Error {
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error")
                    .to_string(),
            });
            return out;
        }
        if !self.started {
            self.started = true;
            out.push(Event::Start {
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
                usage: Usage::default(),
            });
        }
        if let Some(u) = v.get("usage").and_then(Usage::from_openai) {
            self.usage = u;
        }
        let Some(choice) = v.pointer("/choices/0") else {
            return out;
        };
        if let Some(t) = choice.pointer("/delta/content").and_then(Value::as_str) {
            if !t.is_empty() {
                let index = match self.text_block {
                    Some(i) => i,
                    None => {
                        let i = self.next_block;
                        self.next_block += 1;
                        self.text_block = Some(i);
                        out.push(Event::BlockStart {
                            index: i,
                            block: BlockStart::Text,
                        });
                        i
                    }
                };
                out.push(Event::TextDelta {
                    index,
                    text: t.to_string(),
                });
            }
        }
        if let Some(calls) = choice
            .pointer("/delta/tool_calls")
            .and_then(Value::as_array)
        {
            for c in calls {
                let ti = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                let index = match self.tool_blocks.iter().find(|(t, _)| *t == ti) {
                    Some((_, b)) => *b,
                    None => {
                        let b = self.next_block;
                        self.next_block += 1;
                        self.tool_blocks.push((ti, b));
                        out.push(Event::BlockStart {
                            index: b,
                            block: BlockStart::ToolUse {
                                id: c
                                    .get("id")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .to_string(),
                                name: c
                                    .pointer("/function/name")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .to_string(),
                            },
                        });
                        b
                    }
                };
                if let Some(a) = c.pointer("/function/arguments").and_then(Value::as_str) {
                    if !a.is_empty() {
                        out.push(Event::ToolInputDelta {
                            index,
                            json: a.to_string(),
                        });
                    }
                }
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(stop_reason(f));
        }
        out
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        let mut open: Vec<usize> = self.text_block.take().into_iter().collect();
        open.extend(self.tool_blocks.drain(..).map(|(_, b)| b));
        open.sort_unstable();
        out.extend(open.into_iter().map(|index| Event::BlockStop { index }));
    }
}

/// Writes canonical events as chat completion chunks.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    show_usage: bool,
    /// Block index → tool-call index.
    tools: Vec<(usize, usize)>,
}

impl StreamEncoder {
    pub fn new(id: &str, model: &str, show_usage: bool) -> Self {
        Self {
            id: format!("chatcmpl-{id}"),
            model: model.to_string(),
            created: unix_now(),
            show_usage,
            tools: Vec::new(),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
               "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    /// The data lines (JSON, or `[DONE]`) for one event.
    pub fn event(&mut self, ev: &Event) -> Vec<String> {
        match ev {
            Event::Start { model, .. } => {
                if !model.is_empty() {
                    self.model = model.clone();
                }
                vec![self
                    .chunk(json!({"role": "assistant", "content": ""}), None)
                    .to_string()]
            }
            Event::TextDelta { text, .. } => {
                vec![self.chunk(json!({"content": text}), None).to_string()]
            }
            Event::BlockStart {
                index,
                block: BlockStart::ToolUse { id, name },
            } => {
                let ti = self.tools.len();
                self.tools.push((*index, ti));
                vec![self
                    .chunk(
                        json!({"tool_calls": [{"index": ti, "id": id, "type": "function",
                                "function": {"name": name, "arguments": ""}}]}),
                        None,
                    )
                    .to_string()]
            }
            Event::ToolInputDelta { index, json } => {
                let ti = self
                    .tools
                    .iter()
                    .find(|(b, _)| b == index)
                    .map_or(0, |(_, t)| *t);
                vec![self
                    .chunk(
                        json!({"tool_calls": [{"index": ti, "function": {"arguments": json}}]}),
                        None,
                    )
                    .to_string()]
            }
            Event::Stop { reason, usage, .. } => {
                let mut v = vec![self
                    .chunk(json!({}), Some(finish_reason(reason)))
                    .to_string()];
                if self.show_usage {
                    v.push(
                        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model, "choices": [], "usage": usage_json(usage)})
                        .to_string(),
                    );
                }
                v.push("[DONE]".to_string());
                v
            }
            Event::Error { message } => vec![json!({"error": {"message": message,
                "type": "upstream_error", "param": null, "code": "stream_interrupted"}})
            .to_string()],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (json!([]), "body"),
            (
                json!({"messages": [{"role": "user", "content": "x"}]}),
                "model",
            ),
            (json!({"model": "auto"}), "messages"),
            (json!({"model": "auto", "messages": []}), "messages"),
            (
                json!({"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "auto", "messages": [{"role": "user", "content": 5}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "auto", "messages": [{"role": "user"}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "auto", "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"model": "auto", "messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (
                json!({"model": "auto", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}),
                "stream",
            ),
            (
                json!({"model": "auto", "n": 0, "messages": [{"role": "user", "content": "x"}]}),
                "n",
            ),
            (
                json!({"model": "auto", "temperature": "hot", "messages": [{"role": "user", "content": "x"}]}),
                "temperature",
            ),
        ];
        for (body, param) in cases {
            match parse_request(body.clone()) {
                Err(e) => assert_eq!(e.param.as_deref(), Some(param), "{body}"),
                Ok(_) => panic!("{body} accepted"),
            }
        }
    }

    #[test]
    fn a_request_round_trips_and_keeps_what_it_does_not_model() {
        let raw = json!({"model": "auto", "seed": 7, "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "18C"}
            ],
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
            "tool_choice": "required", "parallel_tool_calls": false, "max_tokens": 50});
        let r = parse_request(raw.clone()).unwrap();
        assert_eq!(r.system_text(), "sys");
        assert_eq!(r.messages.len(), 3);
        assert!(r.ends_in_tool_result() && r.forces_tool_call());
        assert_eq!(r.extra.get("seed"), Some(&json!(7)));
        assert!(r.extra.contains_key("response_format"));
        assert!(matches!(
            &r.messages[0].blocks[1],
            Block::Image {
                source: ImageSource::Base64 { .. },
                ..
            }
        ));
        // To an OpenAI provider the request goes as it came but for the model.
        let out = render_request(&r, "gpt-x");
        let mut expect = raw.clone();
        expect["model"] = json!("gpt-x");
        assert_eq!(out, expect);
        // Rewritten messages are rendered from the canonical form.
        let mut changed = r.clone();
        changed.messages_changed = true;
        changed.protocol = Protocol::AnthropicMessages;
        let out = render_request(&changed, "gpt-x");
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "sys"})
        );
        assert_eq!(
            out["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(
            out["messages"][3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "18C"})
        );
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
    }

    #[test]
    fn a_stream_decodes_into_events_and_encodes_back() {
        let mut d = StreamDecoder::default();
        let mut events = Vec::new();
        for data in [
            r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"w","arguments":"{\"a\""}}]}}]}"#,
            r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#,
            r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
            "[DONE]",
        ] {
            events.extend(d.data(data));
        }
        assert!(matches!(events[0], Event::Start { .. }));
        assert_eq!(
            events[1],
            Event::BlockStart {
                index: 0,
                block: BlockStart::Text
            }
        );
        assert!(events.contains(&Event::BlockStop { index: 1 }));
        match events.last() {
            Some(Event::Stop { reason, usage, .. }) => {
                assert_eq!(*reason, StopReason::ToolUse);
                assert_eq!(usage.completion_tokens, 2);
            }
            e => panic!("{e:?}"),
        }
        let mut enc = StreamEncoder::new("r1", "m", true);
        let lines: Vec<String> = events.iter().flat_map(|e| enc.event(e)).collect();
        assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
        assert!(lines.iter().any(|l| l.contains("\"usage\"")));
        assert!(lines.iter().any(|l| l.contains("\"arguments\":\":1}\"")));
    }
}
