//! What a request is routed and cached on, and which conversation it belongs to.
//!
//! - A person's request (the conversation ends in user text): the head reads that
//!   text with the previous user turn (a follow-up such as "now make it async" is
//!   read with the request it follows); the cache goes by the text alone.
//! - An agent loop (the conversation ends in tool results, or in no user text at
//!   all): the head reads the task, the latest text a person wrote, with the tools
//!   the model just called; such a request is never cached.
//! - The conversation is the `x-triage-conversation` header when there is one;
//!   else its opening (system prompt, first user text) and the first answer (its
//!   text and tool calls), whatever protocol carries it.

use sha2::{Digest, Sha256};

use crate::canonical::{Message, Request, Role};

/// Characters of the routed message that routing and the cache look at. The
/// embedding uses its first 256 word pieces (a few thousand characters); the rest
/// only costs time to carry.
pub const ROUTED_TEXT_MAX_CHARS: usize = 8192;

#[derive(Debug, Clone)]
pub struct RoutedTexts {
    /// The person's last message, at most [`ROUTED_TEXT_MAX_CHARS`] of it: what the
    /// cache compares and the decision log keeps.
    pub routed: String,
    /// When the message was longer than that: a hash of all of it, part of the cache
    /// scope, so two long messages that share their start never share an answer.
    pub cut: Option<[u8; 32]>,
    /// What the head classifies (see the module's doc).
    pub routing: String,
    /// The conversation ends in tool results or has no user text: an agent loop.
    pub agent: bool,
    /// Identifies the conversation when it already has an answer (or a header).
    pub conversation: Option<[u8; 16]>,
    /// Key a first turn's answer will be known by (system + first user text).
    pub opening: [u8; 32],
}

fn bounded(text: &str) -> (String, Option<[u8; 32]>) {
    let cut = crate::embed::prefix_chars(text, ROUTED_TEXT_MAX_CHARS);
    let hash = (cut.len() < text.len()).then(|| Sha256::digest(text.as_bytes()).into());
    (cut.to_string(), hash)
}

/// What an answer says, for the conversation key: its text and its tool calls
/// (name and arguments).
pub fn signature<'a>(
    text: &str,
    tools: impl Iterator<Item = (&'a str, &'a serde_json::Value)>,
) -> String {
    let mut s = text.to_string();
    for (name, input) in tools {
        s.push('\u{1f}');
        s.push_str(name);
        s.push_str(&input.to_string());
    }
    s
}

/// [`signature`] of an assistant message.
pub fn answer_signature(m: &Message) -> String {
    signature(
        &m.text(),
        m.tool_uses().map(|(_, name, input)| (name, input)),
    )
}

fn opening_hash(req: &Request) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"system\0");
    h.update(req.system_text().as_bytes());
    h.update([0]);
    if let Some(u) = req
        .messages
        .iter()
        .find(|m| m.role == Role::User && !m.human_text().is_empty())
    {
        h.update(b"user\0");
        h.update(u.human_text().as_bytes());
    }
    h.finalize().into()
}

/// The conversation key: its opening plus the first answer, so two users who both
/// open with "hi" are told apart by what they were answered.
pub fn conversation_key(opening: &[u8; 32], first_answer: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(opening);
    h.update(first_answer.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

fn header_key(value: &str) -> [u8; 16] {
    let d = Sha256::digest(format!("header\0{value}").as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

impl RoutedTexts {
    pub fn of(req: &Request, conversation_header: Option<&str>) -> Self {
        let last = req.messages.last();
        let person =
            last.is_some_and(|m| m.role == Role::User && !m.human_text().trim().is_empty());
        let (routed, cut, routing) = if person {
            let (routed, cut) = bounded(&last.map(Message::human_text).unwrap_or_default());
            let previous = req
                .messages
                .iter()
                .rev()
                .skip(1)
                .find(|m| m.role == Role::User && !m.human_text().trim().is_empty())
                .map(Message::human_text);
            let routing = crate::classify::routed_text(&routed, previous.as_deref());
            (routed, cut, routing)
        } else {
            let task = req
                .last_human()
                .map(Message::human_text)
                .unwrap_or_default();
            let (routed, cut) = bounded(&task);
            let tools: Vec<&str> = req
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::Assistant)
                .map(|m| m.tool_uses().map(|(_, name, _)| name).collect())
                .unwrap_or_default();
            let context = (!tools.is_empty()).then(|| format!("tool calls: {}", tools.join(", ")));
            let routing = crate::classify::routed_text(&routed, context.as_deref());
            (routed, cut, routing)
        };
        let opening = opening_hash(req);
        let conversation = match conversation_header {
            Some(h) => Some(header_key(h)),
            None => req
                .messages
                .iter()
                .find(|m| m.role == Role::Assistant)
                .map(|a| conversation_key(&opening, &answer_signature(a))),
        };
        RoutedTexts {
            routed,
            cut,
            routing,
            agent: !person,
            conversation,
            opening,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{anthropic, openai_chat};
    use serde_json::json;

    fn chat(v: serde_json::Value) -> Request {
        openai_chat::parse_request(v).unwrap()
    }

    #[test]
    fn a_follow_up_is_routed_with_the_turn_before_it() {
        let r = chat(json!({"model": "auto", "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "write a linked list in python"},
            {"role": "assistant", "content": "class Node: ..."},
            {"role": "user", "content": [{"type": "text", "text": "now make it generic"}]},
        ]}));
        let t = RoutedTexts::of(&r, None);
        assert_eq!(t.routed, "now make it generic");
        assert_eq!(
            t.routing,
            "now make it generic\n\nwrite a linked list in python"
        );
        assert!(!t.agent);
        assert_eq!(
            t.conversation,
            Some(conversation_key(&t.opening, "class Node: ..."))
        );
    }

    #[test]
    fn an_agent_loop_is_routed_on_its_task_and_tools() {
        let r = anthropic::parse_request(json!({"model": "auto", "max_tokens": 100, "messages": [
            {"role": "user", "content": "fix the failing test in parser.rs"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "parser.rs"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "fn parse() {}"}]},
        ]}))
        .unwrap();
        let t = RoutedTexts::of(&r, None);
        assert!(t.agent);
        assert_eq!(t.routed, "fix the failing test in parser.rs");
        assert_eq!(
            t.routing,
            "fix the failing test in parser.rs\n\ntool calls: read_file"
        );
        assert!(t.conversation.is_some());
    }

    #[test]
    fn the_first_turn_has_no_conversation_unless_the_header_names_one() {
        let r = chat(json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}));
        assert!(RoutedTexts::of(&r, None).conversation.is_none());
        assert_eq!(
            RoutedTexts::of(&r, Some("c-1")).conversation,
            Some(header_key("c-1"))
        );
    }

    #[test]
    fn a_huge_message_is_routed_on_a_bounded_prefix() {
        let words = "lorem ipsum dolor sit amet ".repeat(20_000);
        let a = chat(
            json!({"model": "auto", "messages": [{"role": "user", "content": words.clone() + "alpha"}]}),
        );
        let b = chat(
            json!({"model": "auto", "messages": [{"role": "user", "content": words + "beta"}]}),
        );
        let (ta, tb) = (RoutedTexts::of(&a, None), RoutedTexts::of(&b, None));
        assert_eq!(ta.routed.chars().count(), ROUTED_TEXT_MAX_CHARS);
        assert_eq!(ta.routed, tb.routed);
        // The prefixes are equal, the messages are not: the cache must tell them apart.
        assert!(ta.cut.is_some() && ta.cut != tb.cut);
        let short = chat(json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(RoutedTexts::of(&short, None).cut, None);
    }

    #[test]
    fn one_conversation_in_two_protocols_has_one_key() {
        let c = chat(json!({"model": "auto", "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi!"},
            {"role": "user", "content": "more"}]}));
        let a = anthropic::parse_request(
            json!({"model": "auto", "max_tokens": 9, "system": "sys", "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": [{"type": "text", "text": "hi!"}]},
            {"role": "user", "content": "more"}]}),
        )
        .unwrap();
        assert_eq!(
            RoutedTexts::of(&c, None).conversation,
            RoutedTexts::of(&a, None).conversation
        );
    }
}
