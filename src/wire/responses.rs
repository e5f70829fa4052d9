//! OpenAI's Responses API, as a client speaks it: `input` (a string or items),
//! `instructions`, function tools and their outputs, to the canonical form; replies
//! as a `response` object and its event stream (`response.created`, …,
//! `response.output_text.delta`, …, `response.completed`). triage keeps no state:
//! `previous_response_id`, stored responses and conversations are refused by name.

use serde_json::{json, Map, Value};

use super::{bad, model_of, opt_bool, opt_f64, opt_u64, unix_now, WireError};
use crate::canonical::{
    Block, BlockStart, Event, Message, Protocol, Reply, Request, Role, StopReason, Tool,
    ToolChoice, Usage,
};

/// Fields that need state triage does not keep.
const STATEFUL: [(&str, &str); 3] = [
    (
        "previous_response_id",
        "triage keeps no responses: send the whole conversation in `input`",
    ),
    (
        "conversation",
        "triage keeps no conversations: send the whole conversation in `input`",
    ),
    ("background", "triage answers in the foreground only"),
];

const MODELED: [&str; 17] = [
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "user",
    "metadata",
    "store",
    "previous_response_id",
    "conversation",
    "background",
    "include",
];

fn content_blocks(content: &Value, p: &str) -> Result<Vec<Block>, WireError> {
    match content {
        Value::String(s) => Ok(vec![Block::text(s.clone())]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| {
                let pp = format!("{p}[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text") => match part.get("text") {
                        Some(Value::String(t)) => Ok(Block::text(t.clone())),
                        _ => Err(bad(format!("`{pp}.text` must be a string"), &pp)),
                    },
                    Some("input_image") => match part.get("image_url").and_then(Value::as_str) {
                        Some(url) => Ok(Block::Image {
                            source: super::openai_chat::image_source(url),
                            cache_control: None,
                        }),
                        None => Ok(Block::Other(part.clone())),
                    },
                    Some(_) => Ok(Block::Other(part.clone())),
                    None => Err(bad(
                        format!("`{pp}` must be an object with a string `type`"),
                        &pp,
                    )),
                }
            })
            .collect(),
        _ => Err(bad(
            format!("`{p}` must be a string or an array of content parts"),
            p,
        )),
    }
}

/// Validates a Responses API request and parses it; errors name the field.
pub fn parse_request(raw: Value) -> Result<Request, WireError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| bad("the request body must be a JSON object", "body"))?;
    for (k, why) in STATEFUL {
        if obj
            .get(k)
            .is_some_and(|v| !v.is_null() && v != &json!(false))
        {
            return Err(bad(format!("`{k}` is not supported: {why}"), k));
        }
    }
    if obj.get("store") == Some(&json!(true)) {
        return Err(bad(
            "`store: true` is not supported: triage keeps no responses (send `store: false`, or leave it out)",
            "store",
        ));
    }
    let model = model_of(obj)?;
    let mut system = Vec::new();
    if let Some(i) = obj.get("instructions").filter(|v| !v.is_null()) {
        match i {
            Value::String(s) => system.push(Block::text(s.clone())),
            _ => return Err(bad("`instructions` must be a string", "instructions")),
        }
    }
    let mut messages: Vec<Message> = Vec::new();
    match obj.get("input") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            messages.push(Message::new(Role::User, vec![Block::text(s.clone())]))
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("input[{i}]");
                let ty = item
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("message");
                match ty {
                    "message" => {
                        let content = item
                            .get("content")
                            .ok_or_else(|| bad(format!("`{p}.content` is required"), &format!("{p}.content")))?;
                        let blocks = content_blocks(content, &format!("{p}.content"))?;
                        match item.get("role").and_then(Value::as_str) {
                            Some("system" | "developer") => system.extend(blocks),
                            Some("user") => messages.push(Message::new(Role::User, blocks)),
                            Some("assistant") => {
                                push_assistant(&mut messages, blocks);
                            }
                            _ => {
                                return Err(bad(
                                    format!("`{p}.role` must be one of user, assistant, system, developer"),
                                    &format!("{p}.role"),
                                ))
                            }
                        }
                    }
                    "function_call" => {
                        let s = |k: &str| item.get(k).and_then(Value::as_str);
                        let name = s("name")
                            .ok_or_else(|| bad(format!("`{p}.name` must be a string"), &format!("{p}.name")))?;
                        let call_id = s("call_id")
                            .ok_or_else(|| bad(format!("`{p}.call_id` must be a string"), &format!("{p}.call_id")))?;
                        push_assistant(
                            &mut messages,
                            vec![Block::ToolUse {
                                id: call_id.to_string(),
                                name: name.to_string(),
                                input: super::openai_chat::arguments_value(s("arguments").unwrap_or("{}")),
                            }],
                        );
                    }
                    "function_call_output" => {
                        let call_id = item.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                            bad(format!("`{p}.call_id` must be a string"), &format!("{p}.call_id"))
                        })?;
                        let output = match item.get("output") {
                            Some(Value::String(s)) => vec![Block::text(s.clone())],
                            Some(v @ Value::Array(_)) => content_blocks(v, &format!("{p}.output"))?,
                            _ => {
                                return Err(bad(
                                    format!("`{p}.output` must be a string"),
                                    &format!("{p}.output"),
                                ))
                            }
                        };
                        messages.push(Message::new(
                            Role::Tool,
                            vec![Block::ToolResult {
                                tool_use_id: call_id.to_string(),
                                content: output,
                                is_error: false,
                            }],
                        ));
                    }
                    "item_reference" => {
                        return Err(bad(
                            format!("`{p}` refers to a stored item: triage keeps no items; send its content"),
                            &p,
                        ))
                    }
                    other => {
                        return Err(bad(
                            format!("`{p}.type` `{other}` is not supported (message, function_call, function_call_output)"),
                            &format!("{p}.type"),
                        ))
                    }
                }
            }
        }
        Some(Value::String(_) | Value::Array(_)) => {
            return Err(bad("`input` must not be empty", "input"))
        }
        Some(_) => {
            return Err(bad(
                "`input` must be a string or an array of items",
                "input",
            ))
        }
        None => return Err(bad("`input` is required", "input")),
    }
    let tools = match obj.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let p = format!("tools[{i}]");
                if t.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(bad(
                        format!("`{p}`: only function tools are supported (built-in tools need OpenAI's servers)"),
                        &p,
                    ));
                }
                Ok(Tool {
                    name: t
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad(format!("`{p}.name` must be a string"), &p))?
                        .to_string(),
                    description: t.get("description").and_then(Value::as_str).map(str::to_string),
                    schema: t
                        .get("parameters")
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                    cache_control: None,
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("`tools` must be an array", "tools")),
    };
    let tool_choice = match obj.get("tool_choice") {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => {
                return Err(bad(
                    "`tool_choice` must be auto, none, required or a function",
                    "tool_choice",
                ))
            }
        },
        Some(o) => ToolChoice::Named(
            o.get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("`tool_choice` must name a function", "tool_choice"))?
                .to_string(),
        ),
    };
    let extra: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !MODELED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Request {
        protocol: Protocol::OpenAiResponses,
        model,
        system,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: opt_bool(obj, "parallel_tool_calls")?,
        max_tokens: opt_u64(obj, "max_output_tokens")?,
        temperature: opt_f64(obj, "temperature")?,
        top_p: opt_f64(obj, "top_p")?,
        stop: Vec::new(),
        n: None,
        stream: opt_bool(obj, "stream")?.unwrap_or(false),
        include_usage: true,
        user: obj.get("user").and_then(Value::as_str).map(str::to_string),
        extra,
        messages_changed: false,
        forward_headers: Vec::new(),
        raw,
    })
}

/// Consecutive assistant items (text, then function calls) form one turn.
fn push_assistant(messages: &mut Vec<Message>, blocks: Vec<Block>) {
    match messages.last_mut() {
        Some(m) if m.role == Role::Assistant => m.blocks.extend(blocks),
        _ => messages.push(Message::new(Role::Assistant, blocks)),
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

fn status(stop: &StopReason) -> (&'static str, Value) {
    match stop {
        StopReason::MaxTokens => ("incomplete", json!({"reason": "max_output_tokens"})),
        StopReason::ContentFilter | StopReason::Refusal => {
            ("incomplete", json!({"reason": "content_filter"}))
        }
        _ => ("completed", Value::Null),
    }
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
           "arguments": arguments, "status": status})
}

/// The `response` object around `output`.
fn response(
    id: &str,
    model: &str,
    req: &Request,
    status: &str,
    output: Vec<Value>,
    usage: Option<&Usage>,
    incomplete: Value,
) -> Value {
    json!({
        "id": format!("resp_{id}"),
        "object": "response",
        "created_at": unix_now(),
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": req.raw.get("instructions").cloned().unwrap_or(Value::Null),
        "max_output_tokens": req.max_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls.unwrap_or(true),
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": req.temperature,
        "text": {"format": {"type": "text"}},
        "tool_choice": req.raw.get("tool_choice").cloned().unwrap_or(json!("auto")),
        "tools": req.raw.get("tools").cloned().unwrap_or(json!([])),
        "top_p": req.top_p,
        "truncation": "disabled",
        "usage": usage.map(usage_json),
        "user": req.user,
        "metadata": req.raw.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// A reply as a `response` object.
pub fn render_reply(r: &Reply, id: &str, model: &str, req: &Request) -> Value {
    let (status, incomplete) = status(&r.stop);
    let mut output = Vec::new();
    let text = r.text();
    if !text.is_empty() {
        output.push(message_item(&format!("msg_{id}"), &text, status));
    }
    for (k, b) in r.blocks.iter().enumerate() {
        if let Block::ToolUse {
            id: call_id,
            name,
            input,
        } = b
        {
            let args = match input {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            output.push(call_item(
                &format!("fc_{id}_{k}"),
                call_id,
                name,
                &args,
                "completed",
            ));
        }
    }
    response(id, model, req, status, output, Some(&r.usage), incomplete)
}

/// Writes canonical events as the Responses API's event stream.
pub struct StreamEncoder {
    id: String,
    model: String,
    req: Request,
    seq: u64,
    /// Block index → (output index, item id, kind, accumulated text or arguments,
    /// call id and name).
    items: Vec<(usize, usize, String, bool, String, String, String)>,
    done: Vec<Value>,
}

impl StreamEncoder {
    pub fn new(id: &str, model: &str, req: &Request) -> Self {
        Self {
            id: id.to_string(),
            model: model.to_string(),
            req: req.clone(),
            seq: 0,
            items: Vec::new(),
            done: Vec::new(),
        }
    }

    fn ev(&mut self, kind: &'static str, mut data: Value) -> (&'static str, Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        (kind, data)
    }

    /// (event name, data) pairs for one event.
    pub fn event(&mut self, ev: &Event) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        match ev {
            Event::Start { model, .. } => {
                if !model.is_empty() {
                    self.model = model.clone();
                }
                let r = response(
                    &self.id,
                    &self.model,
                    &self.req,
                    "in_progress",
                    Vec::new(),
                    None,
                    Value::Null,
                );
                out.push(self.ev("response.created", json!({"response": r.clone()})));
                out.push(self.ev("response.in_progress", json!({"response": r})));
            }
            Event::BlockStart { index, block } => {
                let oi = self.items.len();
                match block {
                    BlockStart::Text => {
                        let item_id = format!("msg_{}_{index}", self.id);
                        self.items.push((
                            *index,
                            oi,
                            item_id.clone(),
                            true,
                            String::new(),
                            String::new(),
                            String::new(),
                        ));
                        let item = json!({"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []});
                        out.push(self.ev(
                            "response.output_item.added",
                            json!({"output_index": oi, "item": item}),
                        ));
                        out.push(self.ev("response.content_part.added", json!({"item_id": item_id, "output_index": oi,
                            "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})));
                    }
                    BlockStart::ToolUse { id, name } => {
                        let item_id = format!("fc_{}_{index}", self.id);
                        self.items.push((
                            *index,
                            oi,
                            item_id.clone(),
                            false,
                            String::new(),
                            id.clone(),
                            name.clone(),
                        ));
                        let item = call_item(&item_id, id, name, "", "in_progress");
                        out.push(self.ev(
                            "response.output_item.added",
                            json!({"output_index": oi, "item": item}),
                        ));
                    }
                    _ => {}
                }
            }
            Event::TextDelta { index, text } => {
                if let Some(i) = self.items.iter().position(|it| it.0 == *index) {
                    self.items[i].4.push_str(text);
                    let (oi, item_id) = (self.items[i].1, self.items[i].2.clone());
                    out.push(self.ev(
                        "response.output_text.delta",
                        json!({"item_id": item_id,
                        "output_index": oi, "content_index": 0, "delta": text}),
                    ));
                }
            }
            Event::ToolInputDelta { index, json } => {
                if let Some(i) = self.items.iter().position(|it| it.0 == *index) {
                    self.items[i].4.push_str(json);
                    let (oi, item_id) = (self.items[i].1, self.items[i].2.clone());
                    out.push(self.ev(
                        "response.function_call_arguments.delta",
                        serde_json::json!({"item_id": item_id, "output_index": oi, "delta": json}),
                    ));
                }
            }
            Event::BlockStop { index } => {
                if let Some(i) = self.items.iter().position(|it| it.0 == *index) {
                    let (_, oi, item_id, is_text, acc, call_id, name) = self.items[i].clone();
                    if is_text {
                        out.push(self.ev(
                            "response.output_text.done",
                            json!({"item_id": item_id,
                            "output_index": oi, "content_index": 0, "text": acc}),
                        ));
                        out.push(self.ev("response.content_part.done", json!({"item_id": item_id, "output_index": oi,
                            "content_index": 0, "part": {"type": "output_text", "text": acc, "annotations": []}})));
                        let item = message_item(&item_id, &acc, "completed");
                        self.done.push(item.clone());
                        out.push(self.ev(
                            "response.output_item.done",
                            json!({"output_index": oi, "item": item}),
                        ));
                    } else {
                        out.push(self.ev(
                            "response.function_call_arguments.done",
                            json!({"item_id": item_id, "output_index": oi, "arguments": acc}),
                        ));
                        let item = call_item(&item_id, &call_id, &name, &acc, "completed");
                        self.done.push(item.clone());
                        out.push(self.ev(
                            "response.output_item.done",
                            json!({"output_index": oi, "item": item}),
                        ));
                    }
                }
            }
            Event::Stop { reason, usage, .. } => {
                let (status, incomplete) = status(reason);
                let r = response(
                    &self.id,
                    &self.model,
                    &self.req,
                    status,
                    self.done.clone(),
                    Some(usage),
                    incomplete,
                );
                let kind = if status == "completed" {
                    "response.completed"
                } else {
                    "response.incomplete"
                };
                out.push(self.ev(kind, json!({"response": r})));
            }
            Event::Error { message } => {
                out.push(self.ev(
                    "error",
                    json!({"code": "stream_interrupted", "message": message, "param": null}),
                ));
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_items_instructions_and_function_outputs() {
        let r = parse_request(json!({
            "model": "auto", "instructions": "be brief",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "weather in Paris?"}]},
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "18C"}
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "max_output_tokens": 64
        }))
        .unwrap();
        assert_eq!(r.system_text(), "be brief");
        assert_eq!(r.messages.len(), 3);
        assert!(r.ends_in_tool_result());
        assert_eq!(r.max_tokens, Some(64));
        assert_eq!(r.tools[0].name, "weather");
        let s = parse_request(json!({"model": "auto", "input": "hi"})).unwrap();
        assert_eq!(s.messages[0].human_text(), "hi");
    }

    #[test]
    fn state_it_would_need_is_refused_by_name() {
        for (body, param) in [
            (
                json!({"model": "auto", "input": "hi", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"model": "auto", "input": "hi", "store": true}),
                "store",
            ),
            (
                json!({"model": "auto", "input": [{"type": "item_reference", "id": "x"}]}),
                "input[0]",
            ),
            (json!({"model": "auto"}), "input"),
            (
                json!({"model": "auto", "input": "hi", "tools": [{"type": "web_search"}]}),
                "tools[0]",
            ),
        ] {
            let e = parse_request(body.clone())
                .err()
                .unwrap_or_else(|| panic!("{body}"));
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
        assert!(parse_request(json!({"model": "auto", "input": "hi", "store": false})).is_ok());
    }

    #[test]
    fn the_event_stream_names_every_step() {
        let req = parse_request(json!({"model": "auto", "input": "hi"})).unwrap();
        let mut e = StreamEncoder::new("r1", "m", &req);
        let events = [
            Event::Start {
                id: "x".into(),
                model: "m".into(),
                usage: Usage::default(),
            },
            Event::BlockStart {
                index: 0,
                block: BlockStart::Text,
            },
            Event::TextDelta {
                index: 0,
                text: "Hel".into(),
            },
            Event::TextDelta {
                index: 0,
                text: "lo".into(),
            },
            Event::BlockStop { index: 0 },
            Event::Stop {
                reason: StopReason::EndTurn,
                stop_sequence: None,
                usage: Usage {
                    prompt_tokens: 3,
                    completion_tokens: 2,
                    ..Usage::default()
                },
            },
        ];
        let out: Vec<(&str, Value)> = events.iter().flat_map(|ev| e.event(ev)).collect();
        let names: Vec<&str> = out.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let done = &out.last().unwrap().1["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["usage"]["total_tokens"], 5);
        assert!(out
            .iter()
            .enumerate()
            .all(|(i, (_, d))| d["sequence_number"] == i));
    }
}
