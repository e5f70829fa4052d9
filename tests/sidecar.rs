//! The sidecar end to end: real triage server, real HTTP, fake upstream providers.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn post(t: &Triage, path: &str, body: &Value) -> reqwest::Response {
    client().post(t.url(path)).json(body).send().await.unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn assert_openai_error(r: reqwest::Response, status: u16, needle: &str) -> Value {
    assert_eq!(r.status().as_u16(), status);
    let v: Value = r.json().await.unwrap();
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.message in {v}"));
    assert!(v["error"]["type"].is_string(), "{v}");
    assert!(v["error"].get("code").is_some(), "{v}");
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    v
}

#[tokio::test]
async fn routes_each_tier_to_its_model() {
    let fake = start_fake().await;
    let t = start_triage(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], ""),
        false,
    )
    .await;
    let r = post(&t, "/v1/chat/completions", &chat(SIMPLE_TEXT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-triage-tier"), "SIMPLE");
    assert_eq!(header(&r, "x-triage-model"), "ok-simple");
    assert_eq!(header(&r, "x-triage-cache"), "bypass");
    assert!(header(&r, "x-triage-request-id").starts_with("req_"));
    assert!(header(&r, "x-triage-confidence").parse::<f32>().unwrap() > 0.0);
    // Server-Timing splits the request: embedding, upstream wait, triage's own time.
    let timing = header(&r, "server-timing");
    let dur = |name: &str| -> f64 {
        timing
            .split(", ")
            .find_map(|p| p.strip_prefix(&format!("{name};dur=")))
            .unwrap_or_else(|| panic!("no {name} in {timing:?}"))
            .parse()
            .unwrap()
    };
    assert!(dur("embed") > 0.0, "{timing}");
    assert!(dur("upstream") > 0.0, "{timing}");
    let parts = dur("embed") + dur("upstream") + dur("overhead");
    assert!((parts - dur("total")).abs() < 0.01, "{timing}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("answer from ok-simple: {SIMPLE_TEXT}")
    );
    assert_eq!(
        v["system_fingerprint"], "fp_fake",
        "upstream body passes through"
    );

    let r = post(&t, "/v1/chat/completions", &chat(COMPLEX_TEXT)).await;
    assert_eq!(header(&r, "x-triage-tier"), "COMPLEX");
    assert_eq!(header(&r, "x-triage-model"), "ok-complex");
    assert_eq!(fake.count("ok-complex"), 1);
}

#[tokio::test]
async fn request_is_forwarded_untouched_but_for_the_model() {
    let fake = start_fake().await;
    let t = start_triage(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], ""),
        false,
    )
    .await;
    let body = json!({
        "model": "auto",
        "messages": [{"role": "system", "content": "be terse"}, {"role": "user", "content": SIMPLE_TEXT}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_object"}, "n": 2, "stop": ["\n\n"], "seed": 42, "temperature": 0.3,
        "vendor_extension": {"x": 1}
    });
    let r = post(&t, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let sent = fake.last_request();
    let mut expected = body.clone();
    expected["model"] = json!("ok-simple");
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn explicit_models_pass_through_or_are_refused() {
    let fake = start_fake().await;
    let t = start_triage(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], ""),
        false,
    )
    .await;
    let mut body = chat(COMPLEX_TEXT);
    body["model"] = json!("ok-simple");
    let r = post(&t, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-triage-tier"), "passthrough");
    assert_eq!(header(&r, "x-triage-model"), "ok-simple");

    body["model"] = json!("gpt-17");
    let r = post(&t, "/v1/chat/completions", &body).await;
    let v = assert_openai_error(r, 404, "gpt-17").await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("auto") && msg.contains("ok-moderate"), "{msg}");
    assert_eq!(v["error"]["code"], "model_not_found");

    let strict = start_triage(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], "").replace(
            "min_confidence = 0.0",
            "min_confidence = 0.0\nallow_passthrough = false",
        ),
        false,
    )
    .await;
    body["model"] = json!("ok-simple");
    let r = post(&strict, "/v1/chat/completions", &body).await;
    assert_openai_error(r, 400, "auto").await;
}

#[tokio::test]
async fn falls_back_after_retries_and_retries_transient_errors() {
    let fake = start_fake().await;
    // `fb-broken` is this test's own name for the failing model, so the process-wide
    // metrics below count only this test's attempts.
    let cfg = openai_config(
        &fake,
        ["flaky-429", "flaky-500", "fail-500"],
        "[[models]]\nname = \"fb-broken\"\nupstream = \"fake\"\nupstream_model = \"fail-500\"\n",
    )
    .replace(
        "COMPLEX = [\"fail-500\"]",
        "COMPLEX = [\"fb-broken\", \"ok-complex\"]",
    );
    let t = start_triage(&cfg, false).await;

    let r = post(&t, "/v1/chat/completions", &chat(COMPLEX_TEXT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-triage-model"), "ok-complex");
    assert_eq!(
        fake.count("fail-500"),
        3,
        "first attempt + 2 retries before fallback"
    );
    assert_eq!(fake.count("ok-complex"), 1);
    // Every failed attempt is counted under the model that failed, though the
    // client saw none of them.
    let body = client()
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .sum()
    };
    assert_eq!(
        value(
            "triage_upstream_errors_total",
            &[("model", "fb-broken"), ("reason", "5xx")]
        ),
        3.0,
        "{body}"
    );
    assert_eq!(
        value("triage_upstream_retries_total", &[("model", "fb-broken")]),
        2.0
    );
    assert_eq!(
        value(
            "triage_fallbacks_total",
            &[("model", "fb-broken"), ("to", "ok-complex")]
        ),
        1.0
    );

    let r = post(&t, "/v1/chat/completions", &chat(SIMPLE_TEXT)).await;
    assert_eq!(r.status(), 200, "429 with Retry-After is retried");
    assert_eq!(fake.count("flaky-429"), 2);
}

#[tokio::test]
async fn an_upstream_429_reaches_the_client_when_no_fallback_answers() {
    let fake = start_fake().await;
    let cfg = openai_config(&fake, ["limit-30", "ok-moderate", "limit-30"], "").replace(
        "COMPLEX = [\"limit-30\"]",
        "COMPLEX = [\"limit-30\", \"ok-complex\"]",
    );
    let t = start_triage(&cfg, false).await;
    // Retry-After 30 s is longer than the backoff cap: not waited out, not retried,
    // and passed through with the 429.
    let r = post(&t, "/v1/chat/completions", &chat(SIMPLE_TEXT)).await;
    assert_eq!(header(&r, "retry-after"), "30");
    let v = assert_openai_error(r, 429, "rate limit reached").await;
    assert_eq!(v["error"]["code"], "upstream_rate_limited");
    assert_eq!(
        fake.count("limit-30"),
        1,
        "one attempt: the 30 s wait is not slept"
    );
    // With a fallback that answers, the client never sees the 429.
    let r = post(&t, "/v1/chat/completions", &chat(COMPLEX_TEXT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-triage-model"), "ok-complex");
}

#[tokio::test]
async fn client_errors_from_upstream_are_not_retried() {
    let fake = start_fake().await;
    let t = start_triage(
        &openai_config(&fake, ["bad-request", "ok-moderate", "ok-complex"], ""),
        false,
    )
    .await;
    let r = post(&t, "/v1/chat/completions", &chat(SIMPLE_TEXT)).await;
    assert_openai_error(r, 400, "max_tokens is too large").await;
    assert_eq!(fake.count("bad-request"), 1);
}

#[tokio::test]
async fn all_upstreams_failing_is_502_and_hanging_is_504() {
    let fake = start_fake().await;
    let t = start_triage(
        &openai_config(&fake, ["fail-500", "ok-moderate", "hang"], "")
            .replace("request_timeout_secs = 5", "request_timeout_secs = 0.3")
            .replace("max_retries = 2", "max_retries = 0"),
        false,
    )
    .await;
    let r = post(&t, "/v1/chat/completions", &chat(SIMPLE_TEXT)).await;
    let v = assert_openai_error(r, 502, "boom").await;
    assert_eq!(v["error"]["type"], "upstream_error");
    let r = post(&t, "/v1/chat/completions", &chat(COMPLEX_TEXT)).await;
    assert_openai_error(r, 504, "timed out").await;
}

#[tokio::test]
async fn dead_upstream_is_502_and_the_server_keeps_serving() {
    let fake = start_fake().await;
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/v1", dead.local_addr().unwrap());
    drop(dead);
    let cfg = openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], "")
        .replace(&fake.url(), &dead_url);
    let t = start_triage(&cfg, false).await;
    let r = post(&t, "/v1/chat/completions", &chat(SIMPLE_TEXT)).await;
    assert_openai_error(r, 502, "connect").await;
    let r = client().get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn streaming_passes_chunks_in_order_and_hides_usage_unless_asked() {
    let fake = start_fake().await;
    let t = start_triage(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], ""),
        false,
    )
    .await;
    let mut body = chat(SIMPLE_TEXT);
    body["stream"] = json!(true);
    let r = post(&t, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    assert_eq!(header(&r, "x-triage-tier"), "SIMPLE");
    let text = r.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, STREAM_WORDS.concat());
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "client did not ask for usage"
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    // triage asked the upstream for usage anyway.
    assert_eq!(fake.last_request()["stream_options"]["include_usage"], true);

    body["stream_options"] = json!({"include_usage": true});
    let text = post(&t, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["prompt_tokens"], 11);
}

#[tokio::test]
async fn stream_dropped_midway_ends_with_an_error_event() {
    let fake = start_fake().await;
    let t = start_triage(
        &openai_config(&fake, ["drop-stream", "ok-moderate", "ok-complex"], ""),
        false,
    )
    .await;
    let mut body = chat(SIMPLE_TEXT);
    body["stream"] = json!(true);
    let r = post(&t, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let data = sse_data(&text);
    assert!(!data.contains(&"[DONE]".to_string()), "{text}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_interrupted", "{text}");
    // Not retried after the first byte reached the client.
    assert_eq!(fake.count("drop-stream"), 1);
}

#[tokio::test]
async fn anthropic_is_translated_both_ways() {
    std::env::set_var("TRIAGE_TEST_ANTHROPIC_KEY", "sk-ant-test");
    let fake = start_fake().await;
    let t = start_triage(&anthropic_config(&fake), false).await;
    let body = json!({
        "model": "auto",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What's the weather in Paris?"}
        ],
        "max_tokens": 64, "stop": "END", "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    });
    let r = post(&t, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let (kind, sent, headers) = fake.requests().last().cloned().unwrap();
    assert_eq!(kind, "anthropic");
    assert_eq!(headers["x-api-key"], "sk-ant-test");
    assert!(headers.contains_key("anthropic-version"));
    assert_eq!(sent["system"], "You are terse.");
    assert_eq!(sent["model"], "claude-haiku-test");
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["messages"][0]["role"], "user");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(v["usage"]["prompt_tokens"], 24);
    assert_eq!(v["usage"]["completion_tokens"], 9);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);

    // Streaming: Anthropic events become OpenAI chunks.
    let mut body = body;
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = post(&t, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{text}"
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, STREAM_WORDS.concat());
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"city\": \"Paris\"}");
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, vec!["tool_calls"]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 9);
    assert_eq!(usage["usage"]["prompt_tokens"], 24);
}

#[tokio::test]
async fn a_missing_upstream_key_stops_start_up_except_in_dry_runs() {
    std::env::remove_var("TRIAGE_TEST_MISSING_KEY");
    let fake = start_fake().await;
    let cfg =
        anthropic_config(&fake).replace("TRIAGE_TEST_ANTHROPIC_KEY", "TRIAGE_TEST_MISSING_KEY");
    let cfg = triage::config::Config::parse(&cfg, std::path::Path::new("t.toml")).unwrap();
    let pool = || triage::embed::EmbedPool::start(engine().embedder.clone(), 1, 8, 16);
    let err = triage::pipeline::Pipeline::new(
        std::sync::Arc::new(cfg.clone()),
        pool(),
        engine().head.clone(),
        false,
    )
    .err()
    .expect("a missing key must stop start-up");
    assert!(
        err.contains("TRIAGE_TEST_MISSING_KEY") && err.contains("api_key_env"),
        "{err}"
    );
    // A dry run never calls the upstream, so it may start without the key.
    assert!(triage::pipeline::Pipeline::new(
        std::sync::Arc::new(cfg),
        pool(),
        engine().head.clone(),
        true
    )
    .is_ok());
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let fake = start_fake().await;
    let t = start_triage(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], "")
            .replace("[router]", "[server]\nmax_body_bytes = 4096\n[router]"),
        false,
    )
    .await;
    let url = t.url("/v1/chat/completions");
    let send = |body: Vec<u8>| {
        let url = url.clone();
        async move {
            client()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_openai_error(send(b"{not json".to_vec()).await, 400, "parse the JSON").await;
    assert_openai_error(
        send(b"{\"model\":\"auto\"}".to_vec()).await,
        400,
        "messages",
    )
    .await;
    assert_openai_error(
        send(br#"{"model":"auto","messages":[]}"#.to_vec()).await,
        400,
        "must not be empty",
    )
    .await;
    let v = assert_openai_error(
        send(br#"{"model":"auto","messages":[{"role":"robot","content":"x"}]}"#.to_vec()).await,
        400,
        "robot",
    )
    .await;
    assert_eq!(v["error"]["param"], "messages[0].role");
    assert_openai_error(
        send(br#"{"model":"auto","messages":[{"role":"user","content":{"a":1}}]}"#.to_vec()).await,
        400,
        "content",
    )
    .await;
    let mut invalid = br#"{"model":"auto","messages":[{"role":"user","content":""#.to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe]);
    invalid.extend_from_slice(br#""}]}"#);
    assert_openai_error(send(invalid).await, 400, "UTF-8").await;
    let huge = serde_json::to_vec(&chat(&"x".repeat(10_000))).unwrap();
    assert_openai_error(send(huge).await, 413, "limit").await;
    // Chunked body without content-length, also over the limit.
    let stream = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1000])));
    let r = client()
        .post(&url)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_openai_error(r, 413, "limit").await;
    // A body far larger than the socket buffers, sent whole before the answer is
    // read (as the SDKs do): the client still gets the 413, not a broken pipe.
    let r = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(vec![b' '; 3 << 20])
        .send()
        .await
        .expect("a 413, not a broken pipe");
    assert_openai_error(r, 413, "limit").await;
    let r = client().get(t.url("/v1/nothing")).send().await.unwrap();
    assert!(r.headers().contains_key("x-triage-request-id"));
    let v = assert_openai_error(r, 404, "Unknown request URL").await;
    let msg = v["error"]["message"].as_str().unwrap();
    for e in [
        "/v1/chat/completions",
        "/v1/feedback",
        "/readyz",
        "/admin/cache/purge",
    ] {
        assert!(msg.contains(e), "{msg}");
    }
    // The wrong method gets a JSON error, not an empty 405.
    let r = client().get(&url).send().await.unwrap();
    assert!(r.headers().contains_key("x-triage-request-id"));
    assert_openai_error(r, 405, "GET is not allowed on /v1/chat/completions").await;
    assert!(
        fake.requests().is_empty(),
        "nothing bad reached the upstream"
    );
}

#[tokio::test]
async fn client_keys_are_required_when_configured() {
    std::env::set_var("TRIAGE_TEST_CLIENT_KEY", "tk-secret-1");
    let fake = start_fake().await;
    let cfg = openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], "").replace(
        "[router]",
        "[server]\napi_keys = [{ name = \"support-bot\", key_env = \"TRIAGE_TEST_CLIENT_KEY\" }]\n[router]",
    );
    let t = start_triage(&cfg, false).await;
    let r = post(&t, "/v1/chat/completions", &chat(SIMPLE_TEXT)).await;
    assert_openai_error(r, 401, "Missing API key").await;
    let r = client()
        .post(t.url("/v1/chat/completions"))
        .bearer_auth("wrong")
        .json(&chat(SIMPLE_TEXT))
        .send()
        .await
        .unwrap();
    let v = assert_openai_error(r, 401, "Invalid API key").await;
    assert!(!v.to_string().contains("tk-secret-1"));
    let r = client()
        .post(t.url("/v1/chat/completions"))
        .bearer_auth("tk-secret-1")
        .json(&chat(SIMPLE_TEXT))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(t.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn conversations_never_move_down_a_tier() {
    let fake = start_fake().await;
    let t = start_triage(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], ""),
        false,
    )
    .await;
    // By header.
    let send = |body: Value, conv: Option<&'static str>| {
        let url = t.url("/v1/chat/completions");
        async move {
            let mut req = client().post(url).json(&body);
            if let Some(c) = conv {
                req = req.header("x-triage-conversation", c);
            }
            req.send().await.unwrap()
        }
    };
    let r = send(chat(COMPLEX_TEXT), Some("conv-1")).await;
    assert_eq!(header(&r, "x-triage-tier"), "COMPLEX");
    let r = send(chat("thanks!"), Some("conv-1")).await;
    assert_eq!(header(&r, "x-triage-tier"), "COMPLEX", "sticky by header");
    let r = send(chat("thanks!"), Some("conv-2")).await;
    assert_eq!(
        header(&r, "x-triage-tier"),
        "SIMPLE",
        "another conversation"
    );

    // By history: a conversation is its opening and first answer. A greeting, then a
    // hard question raises it; a later "thanks!" whose previous turn is the greeting
    // would route SIMPLE on its own text and context, but stays COMPLEX.
    let r = send(chat("hi"), None).await;
    let answer: Value = r.json().await.unwrap();
    let first_answer = answer["choices"][0]["message"]["content"].clone();
    let turn2 = json!({"model": "auto", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": first_answer},
        {"role": "user", "content": COMPLEX_TEXT}
    ]});
    let r = send(turn2, None).await;
    assert_eq!(header(&r, "x-triage-tier"), "COMPLEX");
    // The whole conversation is forwarded.
    assert_eq!(fake.last_request()["messages"].as_array().unwrap().len(), 3);
    let turn3 = json!({"model": "auto", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": first_answer},
        {"role": "user", "content": "thanks!"}
    ]});
    let r = send(turn3, None).await;
    assert_eq!(header(&r, "x-triage-tier"), "COMPLEX", "sticky by history");
    // Same opening, different first answer: another conversation.
    let other = json!({"model": "auto", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "something else"},
        {"role": "user", "content": "thanks!"}
    ]});
    let r = send(other, None).await;
    assert_eq!(header(&r, "x-triage-tier"), "SIMPLE");
}

#[tokio::test]
async fn models_route_health_and_readiness() {
    let fake = start_fake().await;
    std::env::set_var("TRIAGE_TEST_SECRET_FOR_MODELS", "sk-should-never-show");
    let cfg = openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], "").replace(
        "request_timeout_secs = 5",
        "request_timeout_secs = 5\napi_key_env = \"TRIAGE_TEST_SECRET_FOR_MODELS\"",
    );
    let t = start_triage(&cfg, false).await;
    let v: Value = client()
        .get(t.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], "auto");
    assert!(ids.contains(&"ok-complex"));
    assert!(!v.to_string().contains("sk-should-never-show"));

    let r = post(&t, "/v1/route", &chat(COMPLEX_TEXT)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tier"], "COMPLEX");
    assert_eq!(v["model"], "ok-complex");
    let p: f64 = ["SIMPLE", "MODERATE", "COMPLEX"]
        .iter()
        .map(|k| v["probs"][k].as_f64().unwrap())
        .sum();
    assert!((p - 1.0).abs() < 1e-3);
    assert!(v["latency_us"]["total_us"].as_u64().unwrap() > 0);
    assert!(fake.requests().is_empty(), "/v1/route does not forward");

    assert_eq!(
        client()
            .get(t.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = client().get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["embedding_model"],
        "sentence-transformers/all-MiniLM-L6-v2"
    );
}

#[tokio::test]
async fn dry_run_answers_with_the_decision() {
    let t = start_triage("", true).await;
    let r = post(&t, "/v1/chat/completions", &chat(COMPLEX_TEXT)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-triage-tier"), "COMPLEX");
    let v: Value = r.json().await.unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.contains("tier COMPLEX") && content.contains("gpt-4.1"),
        "{content}"
    );
    let mut body = chat(SIMPLE_TEXT);
    body["stream"] = json!(true);
    let text = post(&t, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("tier SIMPLE") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    // Without upstreams, readiness says so unless in dry-run mode.
    let r = client().get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let live = start_triage("", false).await;
    let r = client().get(live.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let t = start_triage(
        "[embed]\nqueue_capacity = 1\nworkers = 1\nmax_batch = 1\n",
        true,
    )
    .await;
    let long = "Explain in detail how a modern CPU pipeline works. ".repeat(30);
    let reqs = (0..24).map(|_| {
        let body = chat(&long);
        let url = t.url("/v1/chat/completions");
        async move { client().post(url).json(&body).send().await.unwrap() }
    });
    let responses = futures::future::join_all(reqs).await;
    let busy: Vec<_> = responses.iter().filter(|r| r.status() == 503).collect();
    assert!(!busy.is_empty(), "some requests must be turned away");
    assert!(responses.iter().any(|r| r.status() == 200));
    assert_eq!(header(busy[0], "retry-after"), "1");
    // And it recovers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = post(&t, "/v1/chat/completions", &chat(SIMPLE_TEXT)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn repeated_texts_are_routed_from_the_memo() {
    let t = start_triage("", true).await;
    let first: Value = post(&t, "/v1/route", &chat(SIMPLE_TEXT))
        .await
        .json()
        .await
        .unwrap();
    let again: Value = post(&t, "/v1/route", &chat(SIMPLE_TEXT))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["probs"], again["probs"], "same decision");
    assert!(first["latency_us"]["batch_size"].as_u64().unwrap() >= 1);
    assert_eq!(
        again["latency_us"]["batch_size"], 0,
        "no forward pass the second time"
    );
    assert!(
        t.state
            .pipeline
            .pool
            .stats()
            .memo_hits
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}
