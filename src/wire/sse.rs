//! Server-sent events: incremental parsing of an upstream byte stream into events,
//! and rendering of events for the client.

use bytes::Bytes;

/// One complete event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Splits a byte stream into events; partial events wait for the next chunk.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

/// Largest event accepted before the stream is considered broken.
/// The error a stream event that is not JSON becomes: the client gets this error
/// in its protocol's shape instead of the line.
pub const MALFORMED: &str = "upstream sent a malformed stream event";

/// Whether `events` say their stream event was malformed (its bytes must not reach
/// the client).
pub fn is_malformed(events: &[crate::canonical::Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, crate::canonical::Event::Error { message } if message == MALFORMED))
}

pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some((end, sep)) = find_boundary(&self.buf) {
            let raw: Vec<u8> = self.buf.drain(..end + sep).collect();
            if let Some(ev) = parse_event(&raw[..end]) {
                events.push(ev);
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err("upstream sent an oversized stream event".into());
        }
        Ok(events)
    }

    /// Whatever is left when the stream ends (an event without its blank line).
    pub fn finish(&mut self) -> Option<SseEvent> {
        let rest = std::mem::take(&mut self.buf);
        parse_event(&rest)
    }
}

fn find_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if i + 3 < buf.len() && &buf[i..i + 4] == b"\r\n\r\n" {
            return Some((i, 4));
        }
        i += 1;
    }
    None
}

fn parse_event(raw: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(raw);
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_string()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() && event.is_none() {
        return None;
    }
    Some(SseEvent {
        event,
        data: data.join("\n"),
    })
}

/// `data: …\n\n` for the client.
pub fn data_event(data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 8);
    s.push_str("data: ");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

pub fn done_event() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// `event: NAME\ndata: …\n\n` for the client.
pub fn named_event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"a\"").unwrap().is_empty());
        let evs = p.push(b":1}\n\ndata: [DONE]\n\n").unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].data, "[DONE]");
    }

    #[test]
    fn named_events_comments_and_crlf() {
        let mut p = SseParser::default();
        let evs = p
            .push(b": ping\r\n\r\nevent: message_start\r\ndata: {}\r\n\r\n")
            .unwrap();
        assert_eq!(
            evs,
            vec![SseEvent {
                event: Some("message_start".into()),
                data: "{}".into()
            }]
        );
    }

    #[test]
    fn unterminated_tail_is_returned_by_finish() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: x").unwrap().is_empty());
        assert_eq!(p.finish().unwrap().data, "x");
    }
}
