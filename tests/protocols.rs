//! One pipeline behind three inbound protocols: an answer cached from chat
//! completions serves Messages and Responses in their own shapes; agent loops keep
//! their task's tier and never touch the cache; local embeddings are accounted.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn post(t: &Triage, path: &str, body: &Value) -> reqwest::Response {
    client().post(t.url(path)).json(body).send().await.unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn config(fake: &FakeUpstream) -> String {
    openai_config(fake, ["ok-simple", "ok-moderate", "ok-complex"], "")
}

/// Every answer queued so far is in the cache; how many entries it holds.
fn cached_entries(t: &Triage) -> usize {
    let cache = t.state.pipeline.cache.clone().unwrap();
    assert!(cache.flush(Duration::from_secs(10)), "cache writer flush");
    cache.len()
}

#[tokio::test]
async fn an_answer_cached_from_chat_completions_serves_messages_and_responses() {
    let fake = start_fake().await;
    let t = start_triage_cached(&config(&fake), None).await;
    let text = "What are your opening hours on Saturdays?";
    let r = post(
        &t,
        "/v1/chat/completions",
        &json!({"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": text}]}),
    )
    .await;
    assert_eq!(header(&r, "x-triage-cache"), "miss");
    let chat: Value = r.json().await.unwrap();
    let answer = chat["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cached_entries(&t), 1);
    let calls = fake.count("ok-simple");

    // Anthropic Messages, JSON: the same answer in Anthropic's shape.
    let msg = json!({"model": "auto", "max_tokens": 200, "temperature": 0,
        "messages": [{"role": "user", "content": text}]});
    let r = post(&t, "/v1/messages", &msg).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-triage-cache"), "hit");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], answer.as_str());
    assert_eq!(v["stop_reason"], "end_turn");
    // Nothing was billed for it.
    assert_eq!(v["usage"]["output_tokens"], 0, "{v}");

    // Anthropic Messages, streamed: the replay is Anthropic's event sequence.
    let mut streamed = msg.clone();
    streamed["stream"] = json!(true);
    let r = post(&t, "/v1/messages", &streamed).await;
    assert_eq!(header(&r, "x-triage-cache"), "hit");
    let body = r.text().await.unwrap();
    let names: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{body}");
    assert_eq!(names.last(), Some(&"message_stop"), "{body}");
    assert!(names.contains(&"content_block_delta"), "{body}");
    let replayed: String = sse_data(&body)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(replayed, answer);

    // OpenAI Responses.
    let r = post(
        &t,
        "/v1/responses",
        &json!({"model": "auto", "temperature": 0, "input": text}),
    )
    .await;
    assert_eq!(header(&r, "x-triage-cache"), "hit");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["content"][0]["text"], answer.as_str());

    // Nothing reached the provider, and another question still does.
    assert_eq!(fake.count("ok-simple"), calls);
    let other = json!({"model": "auto", "max_tokens": 200, "temperature": 0,
        "messages": [{"role": "user", "content": "Do you ship to Canada?"}]});
    let r = post(&t, "/v1/messages", &other).await;
    assert_eq!(header(&r, "x-triage-cache"), "miss");
    assert_eq!(fake.count("ok-simple"), calls + 1);
}

const TASK: &str = "Refactor the payment retry module in src/billing/retry.rs so that \
    retries use exponential backoff with jitter, keep the public API unchanged, and add \
    unit tests for the backoff schedule and for giving up after five attempts.";

/// A Claude Code-style loop on /v1/messages: after the task, every request ends in a
/// user turn holding only tool results ("ok", file contents). Routing the last user
/// text would route on "ok"; triage routes on the task and the tool calls.
#[tokio::test]
async fn an_agent_loop_keeps_its_tasks_tier_and_never_touches_the_cache() {
    let fake = start_fake().await;
    let t = start_triage_cached(&config(&fake), None).await;
    let tools = json!([
        {"name": "read_file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
        {"name": "run_tests", "input_schema": {"type": "object", "properties": {}}}
    ]);
    let r = post(
        &t,
        "/v1/route",
        &json!({"model": "auto", "messages": [{"role": "user", "content": "ok"}]}),
    )
    .await;
    let alone: Value = r.json().await.unwrap();
    assert_ne!(
        alone["tier"], "COMPLEX",
        "a bare tool result must not look like the task: {alone}"
    );

    let mut messages = vec![json!({"role": "user", "content": TASK})];
    let results = [
        "ok",
        "pub fn retry(op: impl Fn() -> Result<(), E>) { for _ in 0..3 { if op().is_ok() { return; } } }",
        "ok",
        "test result: ok. 4 passed; 0 failed",
    ];
    for turn in 0..5 {
        let body = json!({"model": "auto", "max_tokens": 1024, "temperature": 0,
            "tools": tools, "messages": messages});
        let r = post(&t, "/v1/messages", &body).await;
        assert_eq!(r.status(), 200, "turn {turn}");
        assert_eq!(header(&r, "x-triage-tier"), "COMPLEX", "turn {turn}");
        if turn > 0 {
            assert_eq!(header(&r, "x-triage-cache"), "bypass", "turn {turn}");
        }
        let v: Value = r.json().await.unwrap();
        let Some(result) = results.get(turn) else {
            break;
        };
        // The model's reply (a tool call, or text), then the tool's result.
        let id = format!("toolu_{turn}");
        messages.push(json!({"role": "assistant", "content": [
            {"type": "text", "text": v["content"][0]["text"].as_str().unwrap_or("working")},
            {"type": "tool_use", "id": id, "name": if turn % 2 == 0 { "read_file" } else { "run_tests" },
             "input": {"path": "src/billing/retry.rs"}}
        ]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": result}
        ]}));
    }
    // Four answers came back as plain text to tool results: none was stored.
    assert_eq!(cached_entries(&t), 0);

    // The same loop in chat completions: tool messages last, same rule.
    let body = json!({"model": "auto", "temperature": 0,
    "tools": [{"type": "function", "function": {"name": "run_tests", "parameters": {"type": "object"}}}],
    "messages": [
        {"role": "user", "content": TASK},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "run_tests", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
    ]});
    let r = post(&t, "/v1/chat/completions", &body).await;
    assert_eq!(header(&r, "x-triage-tier"), "COMPLEX");
    assert_eq!(header(&r, "x-triage-cache"), "bypass");
    // A request that forces a tool call is not cached either.
    let forced = json!({"model": "auto", "temperature": 0,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}]});
    let r = post(&t, "/v1/chat/completions", &forced).await;
    assert_eq!(header(&r, "x-triage-cache"), "bypass");
    assert_eq!(cached_entries(&t), 0);
}

#[tokio::test]
async fn local_embeddings_answer_without_an_upstream_and_are_accounted_at_zero_cost() {
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let t = start_triage_logged(&config(&fake), dir.path(), None).await;
    let r = post(
        &t,
        "/v1/embeddings",
        &json!({"model": "triage-embed", "input": ["a red apple", "a green pear"]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-triage-request-id");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let a: Vec<f64> = serde_json::from_value(v["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(a.len(), 384);
    let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() >= 6, "{v}");
    assert!(fake.requests().is_empty(), "no upstream call");

    // base64: little-endian f32, the same vector.
    let r = post(
        &t,
        "/v1/embeddings",
        &json!({"model": "triage-embed", "input": "a red apple", "encoding_format": "base64"}),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let b: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect();
    assert_eq!(b.len(), 384);
    let cos: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!(cos > 0.9999, "{cos}");

    // Bad input names the field, in OpenAI's error shape.
    for bad in [
        json!({"model": "triage-embed", "input": []}),
        json!({"model": "triage-embed", "input": [1, 2]}),
        json!({"model": "triage-embed", "input": "x", "encoding_format": "int8"}),
        json!({"model": "gpt-4o", "input": "x"}),
    ] {
        let r = post(&t, "/v1/embeddings", &bad).await;
        assert!(r.status().is_client_error(), "{bad}: {}", r.status());
        let e: Value = r.json().await.unwrap();
        assert!(e["error"]["message"].as_str().is_some(), "{e}");
    }

    // The ledger has the row, at zero cost, under the embeddings API.
    let log = t
        .state
        .pipeline
        .ledger
        .as_ref()
        .and_then(|l| l.log.as_ref())
        .unwrap();
    assert!(log.flush(Duration::from_secs(10)));
    let conn = triage::ledger::log::open(&triage::ledger::log::db_path(dir.path())).unwrap();
    let (api, cost, tokens): (String, f64, i64) = conn
        .query_row(
            "SELECT api, cost_usd, input_tokens FROM decisions WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(api, "embeddings");
    assert_eq!(cost, 0.0);
    assert!(tokens >= 6);
}
