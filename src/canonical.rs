//! The one request and reply every inbound protocol parses into and renders from,
//! and every provider translates to and from. Nothing here knows a wire format.
//!
//! A request keeps, beside its parsed fields, the body as the client sent it
//! (`raw`, and each message's own `raw`): a provider that speaks the client's
//! protocol forwards exactly that, so nothing the canonical form does not model
//! (vendor fields, `cache_control`, thinking signatures) is lost on the way.

use serde::Serialize;
use serde_json::{Map, Value};

/// The wire protocols triage speaks to clients and to providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// OpenAI chat completions (`/v1/chat/completions`).
    OpenAiChat,
    /// Anthropic's Messages API (`/v1/messages`).
    AnthropicMessages,
    /// OpenAI's Responses API (`/v1/responses`).
    OpenAiResponses,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::OpenAiChat => "openai-chat",
            Protocol::AnthropicMessages => "anthropic-messages",
            Protocol::OpenAiResponses => "openai-responses",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    User,
    Assistant,
    /// A tool's result (OpenAI's `tool` role; Anthropic carries it as a user-side
    /// `tool_result` block).
    Tool,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ImageSource {
    Url(String),
    Base64 { media_type: String, data: String },
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Block {
    Text {
        text: String,
        /// Anthropic's prompt-cache marker, kept as sent.
        cache_control: Option<Value>,
    },
    Image {
        source: ImageSource,
        cache_control: Option<Value>,
    },
    /// A call of a tool by the assistant; `input` is the arguments object.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// A tool's result, for the call `tool_use_id`.
    ToolResult {
        tool_use_id: String,
        content: Vec<Block>,
        is_error: bool,
    },
    Thinking {
        thinking: String,
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
    /// A part of a kind triage does not model, forwarded as it came.
    Other(Value),
}

impl Block {
    pub fn text(text: impl Into<String>) -> Self {
        Block::Text {
            text: text.into(),
            cache_control: None,
        }
    }
}

/// A message of the conversation (system prompts are kept apart, in `system`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: Role,
    pub blocks: Vec<Block>,
    /// The message as the client's protocol wrote it, when it came from a client.
    #[serde(skip)]
    pub raw: Option<Value>,
}

impl Message {
    pub fn new(role: Role, blocks: Vec<Block>) -> Self {
        Self {
            role,
            blocks,
            raw: None,
        }
    }

    /// The text of the message's text blocks (and of tool results' text), joined.
    pub fn text(&self) -> String {
        text_of(&self.blocks)
    }

    /// Whether the message is only tool results (the usual last message of an
    /// agent loop).
    pub fn is_tool_result(&self) -> bool {
        self.role == Role::Tool
            || (!self.blocks.is_empty()
                && self
                    .blocks
                    .iter()
                    .all(|b| matches!(b, Block::ToolResult { .. })))
    }

    /// Text a person typed: user text, not tool results.
    pub fn human_text(&self) -> String {
        if self.role != Role::User {
            return String::new();
        }
        let parts: Vec<&str> = self
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        parts.join("\n")
    }

    /// The calls this (assistant) message makes: (id, name, input).
    pub fn tool_uses(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.blocks.iter().filter_map(|b| match b {
            Block::ToolUse { id, name, input } => Some((id.as_str(), name.as_str(), input)),
            _ => None,
        })
    }
}

/// The text of blocks: text, and the text inside tool results.
pub fn text_of(blocks: &[Block]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for b in blocks {
        match b {
            Block::Text { text, .. } => parts.push(text.clone()),
            Block::ToolResult { content, .. } => {
                let t = text_of(content);
                if !t.is_empty() {
                    parts.push(t);
                }
            }
            _ => {}
        }
    }
    parts.join("\n")
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub schema: Value,
    /// Anthropic's prompt-cache marker on the tool, kept as sent.
    pub cache_control: Option<Value>,
}

/// Which tool the model must call, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    /// Some tool (OpenAI's `required`, Anthropic's `any`).
    Required,
    Named(String),
}

/// A request in no protocol's shape.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    /// Whose shape the client sent.
    pub protocol: Protocol,
    /// The model the client named (an alias such as `auto`, or a model).
    pub model: String,
    /// System prompts (OpenAI's system and developer messages, Anthropic's
    /// `system`, the Responses API's `instructions`).
    pub system: Vec<Block>,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    /// False when the client asked for at most one tool call per turn.
    pub parallel_tool_calls: Option<bool>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    /// Choices asked for (OpenAI's `n`).
    pub n: Option<u64>,
    pub stream: bool,
    /// The client asked for usage in the stream.
    pub include_usage: bool,
    /// The end user, for the provider's abuse monitoring.
    pub user: Option<String>,
    /// Fields of the body that shape the answer and that the canonical form does
    /// not model (`response_format`, `seed`, `reasoning_effort`, `thinking`, …),
    /// by name; part of the cache scope.
    pub extra: Map<String, Value>,
    /// Set when a step rewrote the messages (compression): a provider of the
    /// client's protocol then renders them instead of forwarding `raw`'s.
    pub messages_changed: bool,
    /// Headers a provider of the client's protocol gets as the client sent them
    /// (`anthropic-beta`, `anthropic-version`).
    pub forward_headers: Vec<(String, String)>,
    /// The body as the client sent it.
    #[serde(skip)]
    pub raw: Value,
}

impl Request {
    /// The last user message that a person wrote (not only tool results).
    pub fn last_human(&self) -> Option<&Message> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User && !m.human_text().trim().is_empty())
    }

    /// Whether the conversation ends in a tool result: the model is in an agent
    /// loop, not answering a person.
    pub fn ends_in_tool_result(&self) -> bool {
        self.messages.last().is_some_and(Message::is_tool_result)
    }

    /// Whether the request makes the model call a tool.
    pub fn forces_tool_call(&self) -> bool {
        !self.tools.is_empty()
            && matches!(
                self.tool_choice,
                ToolChoice::Required | ToolChoice::Named(_)
            )
    }

    /// The system prompt's text.
    pub fn system_text(&self) -> String {
        text_of(&self.system)
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    ContentFilter,
    Refusal,
    /// A provider's reason triage does not know, as it named it.
    Other(String),
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Prompt tokens, including those read from or written to the provider's
    /// prompt cache.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
}

impl Usage {
    /// From an OpenAI-shaped `usage` object (chat completions).
    pub fn from_openai(v: &Value) -> Option<Self> {
        let u = v.as_object()?;
        Some(Self {
            prompt_tokens: u.get("prompt_tokens")?.as_u64()?,
            completion_tokens: u
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            cached_tokens: u
                .get("prompt_tokens_details")
                .and_then(|d| d.get("cached_tokens"))
                .and_then(Value::as_u64)
                .unwrap_or(0),
            cache_write_tokens: 0,
        })
    }

    /// From an Anthropic `usage` object: its `input_tokens` leave out the cache
    /// reads and writes, which count as prompt tokens here.
    pub fn from_anthropic(v: &Value) -> Self {
        let get = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let read = get("cache_read_input_tokens");
        let write = get("cache_creation_input_tokens");
        Self {
            prompt_tokens: get("input_tokens") + read + write,
            completion_tokens: get("output_tokens"),
            cached_tokens: read,
            cache_write_tokens: write,
        }
    }
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    pub id: String,
    /// The model id the provider answered as.
    pub model: String,
    pub blocks: Vec<Block>,
    pub stop: StopReason,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
    /// Answers beyond the first (OpenAI's `n > 1`), each as text.
    pub more_choices: usize,
}

impl Reply {
    /// The answer's text.
    pub fn text(&self) -> String {
        text_of(&self.blocks)
    }

    pub fn has_tool_calls(&self) -> bool {
        self.blocks
            .iter()
            .any(|b| matches!(b, Block::ToolUse { .. }))
    }
}

/// What a content block of a stream is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum BlockStart {
    Text,
    ToolUse { id: String, name: String },
    Thinking,
    RedactedThinking { data: String },
}

/// One event of a streamed answer, in order: `Start`, then per content block
/// `BlockStart`, deltas and `BlockStop`, then `Stop`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Event {
    Start {
        id: String,
        model: String,
        usage: Usage,
    },
    BlockStart {
        index: usize,
        block: BlockStart,
    },
    TextDelta {
        index: usize,
        text: String,
    },
    /// A piece of a tool call's arguments JSON.
    ToolInputDelta {
        index: usize,
        json: String,
    },
    ThinkingDelta {
        index: usize,
        thinking: String,
    },
    SignatureDelta {
        index: usize,
        signature: String,
    },
    BlockStop {
        index: usize,
    },
    Stop {
        reason: StopReason,
        stop_sequence: Option<String>,
        usage: Usage,
    },
    /// The provider reported an error mid-stream.
    Error {
        message: String,
    },
}

impl Reply {
    /// The events a stream of this reply would have had (cache hits and dry runs
    /// are replayed this way).
    pub fn events(&self) -> Vec<Event> {
        let mut out = vec![Event::Start {
            id: self.id.clone(),
            model: self.model.clone(),
            usage: Usage {
                completion_tokens: 0,
                ..self.usage
            },
        }];
        for (index, b) in self.blocks.iter().enumerate() {
            match b {
                Block::Text { text, .. } => {
                    out.push(Event::BlockStart {
                        index,
                        block: BlockStart::Text,
                    });
                    out.push(Event::TextDelta {
                        index,
                        text: text.clone(),
                    });
                }
                Block::ToolUse { id, name, input } => {
                    out.push(Event::BlockStart {
                        index,
                        block: BlockStart::ToolUse {
                            id: id.clone(),
                            name: name.clone(),
                        },
                    });
                    out.push(Event::ToolInputDelta {
                        index,
                        json: input.to_string(),
                    });
                }
                _ => continue,
            }
            out.push(Event::BlockStop { index });
        }
        out.push(Event::Stop {
            reason: self.stop.clone(),
            stop_sequence: self.stop_sequence.clone(),
            usage: self.usage,
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_turns_and_human_text() {
        let req = Request {
            protocol: Protocol::AnthropicMessages,
            model: "auto".into(),
            system: vec![Block::text("be terse")],
            messages: vec![
                Message::new(Role::User, vec![Block::text("fix the failing test")]),
                Message::new(
                    Role::Assistant,
                    vec![Block::ToolUse {
                        id: "t1".into(),
                        name: "run_tests".into(),
                        input: json!({}),
                    }],
                ),
                Message::new(
                    Role::User,
                    vec![Block::ToolResult {
                        tool_use_id: "t1".into(),
                        content: vec![Block::text("1 failed")],
                        is_error: false,
                    }],
                ),
            ],
            tools: vec![Tool {
                name: "run_tests".into(),
                description: None,
                schema: json!({"type": "object"}),
                cache_control: None,
            }],
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: None,
            max_tokens: Some(100),
            temperature: None,
            top_p: None,
            stop: vec![],
            n: None,
            stream: false,
            include_usage: false,
            user: None,
            extra: Map::new(),
            messages_changed: false,
            forward_headers: Vec::new(),
            raw: Value::Null,
        };
        assert!(req.ends_in_tool_result());
        assert!(!req.forces_tool_call());
        assert_eq!(
            req.last_human().map(Message::human_text).as_deref(),
            Some("fix the failing test")
        );
        assert_eq!(req.messages[2].text(), "1 failed");
        assert_eq!(req.system_text(), "be terse");
    }

    #[test]
    fn usage_from_both_shapes() {
        let u = Usage::from_openai(&json!({
            "prompt_tokens": 10, "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 4}
        }))
        .unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (10, 5, 4)
        );
        assert!(Usage::from_openai(&Value::Null).is_none());
        let a = Usage::from_anthropic(&json!({
            "input_tokens": 20, "output_tokens": 9,
            "cache_read_input_tokens": 4, "cache_creation_input_tokens": 6
        }));
        assert_eq!(
            a,
            Usage {
                prompt_tokens: 30,
                completion_tokens: 9,
                cached_tokens: 4,
                cache_write_tokens: 6
            }
        );
    }
}
