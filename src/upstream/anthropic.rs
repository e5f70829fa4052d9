//! Anthropic's Messages API. A request from an Anthropic client goes as it came
//! but for the model id (thinking blocks, `cache_control`, tool ids and beta
//! headers included), and its reply comes back byte for byte; other clients'
//! requests are translated (`wire::anthropic`).

use std::time::Duration;

use super::{
    first_chunk, read_json, send, spawn_pump, AttemptError, Chunk, ForwardBody, StreamConverter,
    Upstream,
};
use crate::canonical::{Protocol, Request};
use crate::config::ModelConfig;
use crate::wire::anthropic::{parse_reply, render_request, StreamDecoder};
use crate::wire::sse::{self, SseEvent};

const DEFAULT_VERSION: &str = "2023-06-01";

pub(super) async fn call(
    up: &Upstream,
    model: &ModelConfig,
    request: &Request,
    timeout: Duration,
) -> Result<(u16, ForwardBody), AttemptError> {
    let body = render_request(request, model.upstream_model());
    let url = format!("{}/messages", up.cfg.base_url.trim_end_matches('/'));
    let own = request.protocol == Protocol::AnthropicMessages;
    let client_version = request
        .forward_headers
        .iter()
        .find(|(k, _)| k == "anthropic-version")
        .map(|(_, v)| v.as_str())
        .filter(|_| own);
    let mut req = up.client.post(url).header(
        "anthropic-version",
        client_version
            .or(up.cfg.anthropic_version.as_deref())
            .unwrap_or(DEFAULT_VERSION),
    );
    if own {
        for (k, v) in request
            .forward_headers
            .iter()
            .filter(|(k, _)| k == "anthropic-beta")
        {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    let mut req = req.json(&body);
    if let Some(key) = up.key()? {
        req = req.header("x-api-key", key);
    }
    let resp = send(req, timeout).await?;
    let status = resp.status().as_u16();
    if !request.stream {
        let (bytes, v) = read_json(resp, timeout).await?;
        let reply = parse_reply(&v).map_err(AttemptError::Protocol)?;
        return Ok((
            status,
            ForwardBody::Json {
                reply,
                raw: own.then_some(bytes),
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
            Events {
                decoder: StreamDecoder::default(),
                passthrough: own,
            },
        ),
    ))
}

struct Events {
    decoder: StreamDecoder,
    /// The client speaks the Messages API: it gets the provider's own events.
    passthrough: bool,
}

impl StreamConverter for Events {
    fn event(&mut self, ev: SseEvent) -> Chunk {
        let events = self.decoder.event(ev.event.as_deref(), &ev.data);
        let passthrough = self.passthrough && !sse::is_malformed(&events);
        let raw = passthrough.then(|| match &ev.event {
            Some(name) => sse::named_event(name, &ev.data),
            None => sse::data_event(&ev.data),
        });
        Chunk { raw, events }
    }
}
