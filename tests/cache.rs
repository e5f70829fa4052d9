//! The semantic cache through the real server: hits, scope, guards, bypass rules,
//! streaming replay, TTL, purge, eviction, restart persistence and crash safety.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn q(text: &str) -> Value {
    json!({"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": text}]})
}

async fn send(t: &Triage, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().post(t.url("/v1/chat/completions")).json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn cache_header(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-triage-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Inserts happen off the request path: wait until the cache holds `n` entries.
async fn wait_entries(t: &Triage, n: usize) {
    let cache = t.state.pipeline.cache.clone().unwrap();
    for _ in 0..200 {
        if cache.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("cache never reached {n} entries (has {})", cache.len());
}

fn config(fake: &FakeUpstream, extra: &str) -> String {
    openai_config(fake, ["ok-simple", "ok-moderate", "ok-complex"], extra)
}

#[tokio::test]
async fn a_hit_names_the_model_as_the_answer_it_replays() {
    let fake = start_fake().await;
    // `fa-mini` is the configured name; the upstream knows it as `ok-simple`.
    let cfg = openai_config(&fake, ["fa-mini", "ok-moderate", "ok-complex"], "").replace(
        "[[models]]\nname = \"fa-mini\"\nupstream = \"fake\"\n",
        "[[models]]\nname = \"fa-mini\"\nupstream = \"fake\"\nupstream_model = \"ok-simple\"\n",
    );
    let t = start_triage_cached(&cfg, None).await;
    let r = send(&t, &q("What are your opening hours?"), &[]).await;
    assert_eq!(cache_header(&r), "miss");
    assert_eq!(r.headers()["x-triage-model"], "fa-mini");
    let miss: Value = r.json().await.unwrap();
    assert_eq!(miss["model"], "ok-simple");
    wait_entries(&t, 1).await;
    for stream in [false, true] {
        let mut body = q("what are your opening hours");
        body["stream"] = json!(stream);
        let r = send(&t, &body, &[]).await;
        assert_eq!(cache_header(&r), "hit");
        assert_eq!(r.headers()["x-triage-model"], "fa-mini");
        let text = r.text().await.unwrap();
        let first = if stream {
            serde_json::from_str::<Value>(&sse_data(&text)[0]).unwrap()
        } else {
            serde_json::from_str::<Value>(&text).unwrap()
        };
        assert_eq!(first["model"], miss["model"], "{text}");
    }
}

#[tokio::test]
async fn paraphrase_hits_and_look_alikes_miss() {
    let fake = start_fake().await;
    let t = start_triage_cached(&config(&fake, ""), None).await;
    let r = send(&t, &q("How do I reset my password?"), &[]).await;
    assert_eq!(cache_header(&r), "miss");
    let first: Value = r.json().await.unwrap();
    wait_entries(&t, 1).await;

    let r = send(&t, &q("how do I reset my password"), &[]).await;
    assert_eq!(cache_header(&r), "hit");
    let sim: f32 = r.headers()["x-triage-cache-similarity"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sim > 0.7);
    let hit: Value = r.json().await.unwrap();
    assert_eq!(
        hit["choices"][0]["message"]["content"],
        first["choices"][0]["message"]["content"]
    );
    assert_eq!(hit["object"], "chat.completion");
    let upstream_calls = fake.requests().len();
    assert_eq!(upstream_calls, 1, "the hit did not reach the upstream");

    // A rewording whose swapped words only the model's word vectors explain
    // (bags / luggage, limit / allowed).
    send(&t, &q("What's the liquid limit for carry-on bags?"), &[]).await;
    wait_entries(&t, 2).await;
    let r = send(
        &t,
        &q("How much liquid am I allowed to take in my hand luggage?"),
        &[],
    )
    .await;
    assert_eq!(cache_header(&r), "hit");
    assert_eq!(fake.requests().len(), 2);

    // Look-alikes of every kind stay misses.
    send(&t, &q("What is 12% of 250?"), &[]).await;
    send(&t, &q("train from Berlin to Paris"), &[]).await;
    send(&t, &q("how do I enable two-factor authentication"), &[]).await;
    wait_entries(&t, 5).await;
    for text in [
        "What is 12% of 260?",
        "train from Paris to Berlin",
        "how do I disable two-factor authentication",
    ] {
        let r = send(&t, &q(text), &[]).await;
        assert_eq!(cache_header(&r), "miss", "{text}");
    }
    let stats = t.state.pipeline.cache.as_ref().unwrap().stats_report();
    assert!(
        stats.guard_rejections.values().sum::<u64>() >= 3,
        "{stats:?}"
    );
}

#[tokio::test]
async fn scope_separates_tenants_system_prompts_histories_and_models() {
    let fake = start_fake().await;
    let t = start_triage_cached(&config(&fake, ""), None).await;
    let text = "What are your opening hours?";
    send(&t, &q(text), &[("x-triage-endpoint", "shop")]).await;
    wait_entries(&t, 1).await;
    assert_eq!(
        cache_header(&send(&t, &q(text), &[("x-triage-endpoint", "shop")]).await),
        "hit"
    );
    assert_eq!(
        cache_header(&send(&t, &q(text), &[("x-triage-endpoint", "bank")]).await),
        "miss"
    );
    let with_system = json!({"model": "auto", "temperature": 0, "messages": [
        {"role": "system", "content": "You are the bakery's assistant."},
        {"role": "user", "content": text}]});
    assert_eq!(
        cache_header(&send(&t, &with_system, &[("x-triage-endpoint", "shop")]).await),
        "miss"
    );
    let with_history = json!({"model": "auto", "temperature": 0, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": text}]});
    assert_eq!(
        cache_header(&send(&t, &with_history, &[("x-triage-endpoint", "shop")]).await),
        "miss"
    );
    let mut other_params = q(text);
    other_params["max_tokens"] = json!(5);
    assert_eq!(
        cache_header(&send(&t, &other_params, &[("x-triage-endpoint", "shop")]).await),
        "miss"
    );
}

#[tokio::test]
async fn bypass_rules() {
    let fake = start_fake().await;
    let t = start_triage_cached(
        &config(&fake, "[cache]\nuncached_tiers = [\"COMPLEX\"]\n"),
        None,
    )
    .await;
    let text = "What are your opening hours?";
    let mut hot = q(text);
    hot["temperature"] = json!(1.2);
    assert_eq!(cache_header(&send(&t, &hot, &[]).await), "bypass");
    let mut default_temperature = q(text);
    default_temperature
        .as_object_mut()
        .unwrap()
        .remove("temperature");
    assert_eq!(
        cache_header(&send(&t, &default_temperature, &[]).await),
        "bypass"
    );
    let mut n2 = q(text);
    n2["n"] = json!(2);
    assert_eq!(cache_header(&send(&t, &n2, &[]).await), "bypass");
    assert_eq!(
        cache_header(&send(&t, &q(text), &[("x-triage-cache", "off")]).await),
        "bypass"
    );
    assert_eq!(
        cache_header(&send(&t, &q(text), &[("cache-control", "no-cache")]).await),
        "bypass"
    );
    assert_eq!(
        cache_header(&send(&t, &q(COMPLEX_TEXT), &[]).await),
        "bypass"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        t.state.pipeline.cache.as_ref().unwrap().is_empty(),
        "nothing bypassed was stored"
    );
}

#[tokio::test]
async fn incomplete_answers_are_never_cached() {
    let fake = start_fake().await;
    let t = start_triage_cached(
        &openai_config(&fake, ["truncated", "drop-stream", "ok-complex"], ""),
        None,
    )
    .await;
    // finish_reason "length": truncated.
    send(&t, &q(SIMPLE_TEXT), &[]).await;
    let mut s = q("Summarize the plot of Hamlet in three sentences.");
    s["stream"] = json!(true);
    // A stream the upstream dropped midway.
    let _ = send(&t, &s, &[]).await.text().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = send(&t, &q(SIMPLE_TEXT), &[]).await;
    assert_eq!(cache_header(&r), "miss");
    assert!(t.state.pipeline.cache.as_ref().unwrap().is_empty());
    assert_eq!(fake.count("truncated"), 2);
}

#[tokio::test]
async fn streams_are_cached_when_complete_and_replayed_as_streams() {
    let fake = start_fake().await;
    let t = start_triage_cached(&config(&fake, ""), None).await;
    let mut body = q("What are your opening hours?");
    body["stream"] = json!(true);
    let r = send(&t, &body, &[]).await;
    assert_eq!(cache_header(&r), "miss");
    let _ = r.text().await.unwrap();
    wait_entries(&t, 1).await;
    let r = send(&t, &body, &[]).await;
    assert_eq!(cache_header(&r), "hit");
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let content: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, STREAM_WORDS.concat());
    // The same entry serves a JSON request too.
    let r = send(&t, &q("What are your opening hours?"), &[]).await;
    assert_eq!(cache_header(&r), "hit");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], STREAM_WORDS.concat());
}

#[tokio::test]
async fn ttl_purge_eviction_and_admin_auth() {
    std::env::set_var("TRIAGE_TEST_ADMIN_KEY", "admin-secret");
    let fake = start_fake().await;
    let cfg = config(&fake, "[cache]\nttl_secs = 1\nmax_entries = 2\n").replace(
        "[router]",
        "[server]\nadmin_key_env = \"TRIAGE_TEST_ADMIN_KEY\"\n[router]",
    );
    let t = start_triage_cached(&cfg, None).await;
    send(&t, &q("What are your opening hours?"), &[]).await;
    wait_entries(&t, 1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        cache_header(&send(&t, &q("What are your opening hours?"), &[]).await),
        "miss",
        "expired"
    );

    // Eviction keeps at most two entries.
    for text in [
        "Where is my order?",
        "Do you ship to Canada?",
        "How do I reset my password?",
    ] {
        send(&t, &q(text), &[]).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats: Value = client()
        .get(t.url("/admin/cache/stats"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["stats"]["entries"].as_u64().unwrap() <= 2, "{stats}");
    assert!(
        stats["stats"]["evictions"].as_u64().unwrap() >= 1,
        "{stats}"
    );

    let r = client()
        .get(t.url("/admin/cache/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(t.url("/admin/cache/purge"))
        .bearer_auth("admin-secret")
        .json(&json!({"all": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.json::<Value>().await.unwrap()["removed"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(t.state.pipeline.cache.as_ref().unwrap().is_empty());
    assert_eq!(
        cache_header(&send(&t, &q("How do I reset my password?"), &[]).await),
        "miss"
    );
    let r = client()
        .post(t.url("/admin/cache/purge"))
        .bearer_auth("admin-secret")
        .json(&json!({"everything": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn cache_survives_a_restart() {
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    {
        let t = start_triage_cached(&config(&fake, ""), Some(dir.path())).await;
        send(&t, &q("How do I reset my password?"), &[]).await;
        send(&t, &q("Do you ship to Canada?"), &[]).await;
        wait_entries(&t, 2).await;
        // One snapshot, then one more entry only in the log.
        t.state.pipeline.cache.as_ref().unwrap().snapshot().unwrap();
        send(&t, &q("Where is my order?"), &[]).await;
        wait_entries(&t, 3).await;
    }
    let t = start_triage_cached(&config(&fake, ""), Some(dir.path())).await;
    assert_eq!(t.state.pipeline.cache.as_ref().unwrap().len(), 3);
    for text in [
        "how do i reset my password",
        "Do you ship to Canada?",
        "where is my order",
    ] {
        assert_eq!(
            cache_header(&send(&t, &q(text), &[]).await),
            "hit",
            "{text}"
        );
    }
}

#[test]
fn a_killed_writer_leaves_a_store_that_loads() {
    use triage::cache::SemanticCache;
    use triage::config::CacheConfig;
    for (round, wait_ms) in [30u64, 120, 400].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_triage"))
            .args([
                "cache",
                "fill",
                "--count",
                "100000",
                "--snapshot-every",
                "50",
                "--dir",
            ])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill at different moments after the writer has started writing (a cold
        // binary can take longer than a round's wait just to start).
        let started = std::time::Instant::now();
        let written =
            |name: &str| std::fs::metadata(dir.path().join(name)).is_ok_and(|m| m.len() > 0);
        while !written("cache.log") && !written("cache.snapshot") {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "round {round}: the writer wrote nothing in 30 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(wait_ms));
        let status = std::process::Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = child.wait();
        let cache = SemanticCache::open(CacheConfig::default(), dir.path()).expect("store loads");
        let n = cache.len();
        assert!(n > 0, "round {round}: nothing survived");
        // Every surviving entry is whole: its answer matches its question.
        for e in cache.entries_snapshot() {
            assert_eq!(
                e.answer.content,
                e.text.replace("question", "answer"),
                "round {round}"
            );
            assert_eq!(e.vector.len(), 384);
        }
    }
}
