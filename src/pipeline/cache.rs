//! Step: the semantic cache. A request may use it when everything else that shapes
//! the answer is equal (the scope, an exact hash of the tenant, endpoint, resolved
//! model, system prompt, earlier turns, tools, sampling and every field the
//! canonical form does not model) and its last message is a person's text. The
//! scope is built from the canonical request, so an answer cached from one protocol
//! serves an equivalent request in another.

use sha2::{Digest, Sha256};

use super::{CacheStatus, Live, Pipeline, RequestCtx, Turn};
use crate::cache::{CachedAnswer, Lookup};
use crate::canonical::{Block, Message, Request, ToolChoice};

/// Where a cacheable request's answer lives.
pub struct CacheKey {
    pub scope: [u8; 16],
    pub threshold: f32,
    pub vector: Vec<f32>,
}

fn message_bytes(m: &Message, h: &mut Sha256) {
    h.update(m.role.name().as_bytes());
    h.update([0]);
    for b in &m.blocks {
        match b {
            Block::Text { text, .. } => {
                h.update(b"t");
                h.update(text.as_bytes());
            }
            Block::ToolUse { id, name, input } => {
                h.update(b"u");
                h.update(id.as_bytes());
                h.update(name.as_bytes());
                h.update(input.to_string().as_bytes());
            }
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                h.update(b"r");
                h.update(tool_use_id.as_bytes());
                h.update(crate::canonical::text_of(content).as_bytes());
                h.update([u8::from(*is_error)]);
            }
            Block::Image { source, .. } => {
                h.update(b"i");
                h.update(serde_json::to_string(source).unwrap_or_default().as_bytes());
            }
            other => {
                h.update(b"o");
                h.update(serde_json::to_string(other).unwrap_or_default().as_bytes());
            }
        }
        h.update([0]);
    }
    h.update([1]);
}

/// The exact part of the scope: everything but the routed message itself.
fn scope(ctx: &RequestCtx, req: &Request, model: &str, cut: Option<&[u8; 32]>) -> [u8; 16] {
    let mut h = Sha256::new();
    // The authenticated tenant first: no header can reach another tenant's entries.
    for part in [ctx.tenant.as_str(), ctx.endpoint.as_str(), model] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(req.system_text().as_bytes());
    h.update([0]);
    for m in &req.messages[..req.messages.len().saturating_sub(1)] {
        message_bytes(m, &mut h);
    }
    for t in &req.tools {
        h.update(t.name.as_bytes());
        h.update(t.description.as_deref().unwrap_or("").as_bytes());
        h.update(t.schema.to_string().as_bytes());
        h.update([0]);
    }
    let choice = match &req.tool_choice {
        ToolChoice::Auto => "auto".to_string(),
        ToolChoice::None => "none".to_string(),
        ToolChoice::Required => "required".to_string(),
        ToolChoice::Named(n) => format!("tool:{n}"),
    };
    h.update(choice.as_bytes());
    let sampling = serde_json::json!([req.temperature, req.top_p, req.stop]);
    h.update(sampling.to_string().as_bytes());
    // serde_json's maps are ordered by key: equal fields hash equally.
    h.update(
        serde_json::Value::Object(req.extra.clone())
            .to_string()
            .as_bytes(),
    );
    if let Some(cut) = cut {
        h.update(b"\0cut\0");
        h.update(cut);
    }
    let mut scope = [0u8; 16];
    scope.copy_from_slice(&h.finalize()[..16]);
    scope
}

/// Whether the request may use the cache, and under which scope: not for explicit
/// models, dry runs, `x-triage-cache: off`, sampling above `cache.max_temperature`
/// (a request without `temperature` counts as 1.0, the APIs' default), several
/// choices, uncached tiers, or agent traffic (the conversation ends in tool
/// results, or the request forces a tool call).
fn key(p: &Pipeline, ctx: &RequestCtx, t: &Turn) -> Option<CacheKey> {
    let cache = p.cache.as_ref()?;
    let cfg = cache.config();
    let d = t.routing.decision.as_ref()?;
    let vector = t.routing.vector.clone()?;
    let req = &t.req;
    let bypass = ctx.cache_off
        || p.dry_run
        || t.texts.agent
        || req.forces_tool_call()
        || req.temperature.unwrap_or(1.0) > cfg.max_temperature as f64
        || req.n.unwrap_or(1) > 1
        || cfg.uncached_tiers.contains(&d.tier);
    if bypass {
        return None;
    }
    let model = t.routing.models.first().map_or("", String::as_str);
    Some(CacheKey {
        scope: scope(ctx, req, model, t.texts.cut.as_ref()),
        threshold: cfg.threshold(Some(&d.tier)),
        vector,
    })
}

/// A hit: the cached answer and how alike the requests were.
pub(super) struct Hit {
    pub answer: CachedAnswer,
    pub similarity: f32,
}

/// Looks the request up; sets the turn's cache status and key (for the insert).
pub(super) fn lookup(p: &Pipeline, _live: &Live, ctx: &RequestCtx, t: &mut Turn) -> Option<Hit> {
    let Some(cache) = &p.cache else {
        return None;
    };
    let Some(k) = key(p, ctx, t) else {
        cache.note_bypass();
        t.cache = CacheStatus::Bypass;
        return None;
    };
    let found = cache.lookup(&k.scope, &t.texts.routed, &k.vector, k.threshold);
    t.cache_key = Some(k);
    match found {
        // An answer longer than this request allows is not its answer.
        Lookup::Hit {
            answer, similarity, ..
        } if t
            .req
            .max_tokens
            .is_none_or(|m| answer.completion_tokens <= m) =>
        {
            t.cache = CacheStatus::Hit { similarity };
            Some(Hit { answer, similarity })
        }
        _ => {
            t.cache = CacheStatus::Miss;
            None
        }
    }
}

/// Queues a complete answer for the cache's writer thread.
pub(super) fn store(p: &Pipeline, key: CacheKey, tenant: &str, text: &str, answer: CachedAnswer) {
    if let Some(cache) = &p.cache {
        cache.queue_insert(key.scope, tenant, text, key.vector, answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{anthropic, openai_chat};
    use serde_json::json;

    fn ctx() -> RequestCtx {
        RequestCtx {
            request_id: "r".into(),
            tenant: "t".into(),
            endpoint: "t".into(),
            conversation_header: None,
            cache_off: false,
            compress_off: false,
        }
    }

    #[test]
    fn the_scope_is_the_same_in_every_protocol_and_sees_what_shapes_the_answer() {
        let chat = openai_chat::parse_request(json!({"model": "auto", "temperature": 0, "max_tokens": 50,
            "stream": true,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hours?"}]}))
        .unwrap();
        let messages = anthropic::parse_request(json!({"model": "auto", "temperature": 0, "max_tokens": 1024,
            "system": "Be brief.", "messages": [{"role": "user", "content": "when are you open?"}]}))
        .unwrap();
        assert_eq!(
            scope(&ctx(), &chat, "m", None),
            scope(&ctx(), &messages, "m", None)
        );
        let mut other = chat.clone();
        other.system = vec![Block::text("Answer in French.")];
        assert_ne!(
            scope(&ctx(), &chat, "m", None),
            scope(&ctx(), &other, "m", None)
        );
        let mut seeded = chat.clone();
        seeded.extra.insert("seed".into(), json!(3));
        assert_ne!(
            scope(&ctx(), &chat, "m", None),
            scope(&ctx(), &seeded, "m", None)
        );
        assert_ne!(
            scope(&ctx(), &chat, "m", None),
            scope(&ctx(), &chat, "other-model", None)
        );
    }
}
