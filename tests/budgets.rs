//! Budgets through the server, on a test clock: alerts once per window and
//! threshold, `reject` and `downgrade`, a new hour resetting spend, and a webhook
//! that is down at first.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use common::*;
use serde_json::Value;

/// A webhook receiver that fails its first `fail_first` deliveries.
async fn webhook(fail_first: usize) -> (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<usize>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(0usize));
    let (g, a) = (got.clone(), attempts.clone());
    let app = Router::new().route(
        "/hook",
        post(move |Json(v): Json<Value>| {
            let (g, a) = (g.clone(), a.clone());
            async move {
                let n = {
                    let mut a = a.lock().unwrap();
                    *a += 1;
                    *a
                };
                if n <= fail_first {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                g.lock().unwrap().push(v);
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got, attempts)
}

// 8 fresh prompt tokens × $1250 per 1M = $0.01 per request on every fake model.
const PRICES: &str = r#"
[prices.ok-simple]
input = 1250.0
cached_input = 0.0
output = 0.0
[prices.ok-complex]
input = 1250.0
cached_input = 0.0
output = 0.0
"#;

async fn ask(t: &Triage, text: &str, endpoint: &str) -> reqwest::Response {
    client()
        .post(t.url("/v1/chat/completions"))
        .header("x-triage-endpoint", endpoint)
        .json(&chat(text))
        .send()
        .await
        .unwrap()
}

async fn wait_for(got: &Arc<Mutex<Vec<Value>>>, n: usize) {
    for _ in 0..300 {
        if got.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "webhook got {} alerts, expected {n}",
        got.lock().unwrap().len()
    );
}

#[tokio::test]
async fn alerts_reject_downgrade_and_new_windows() {
    let hour = 1_767_225_600; // 2026-01-01T00:00:00Z
    CLOCK.store(hour + 10, Ordering::Relaxed);
    let fake = start_fake().await;
    let (url, got, _) = webhook(2).await;
    let extra = format!(
        r#"
[alerts]
webhook_url = "{url}"
webhook_attempts = 5

[[budgets]]
window = "hour"
usd = 0.03
endpoint = "shop"
thresholds = [0.5, 1.0]
enforcement = "reject"

[[budgets]]
window = "hour"
usd = 0.01
endpoint = "blog"
thresholds = [1.0]
enforcement = "alert"

[[budgets]]
window = "day"
usd = 0.05
endpoint = "docs"
thresholds = [1.0]
enforcement = "downgrade"
{PRICES}"#
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = triage::cache::SemanticCache::in_memory(Default::default());
    let t = start_triage_logged(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], &extra),
        dir.path(),
        Some(cache),
    )
    .await;

    // shop: $0.01, $0.02 (50% alert), $0.03 (100% alert), then refused. The third
    // answer goes into the cache (temperature 0).
    for _ in 0..2 {
        assert_eq!(ask(&t, SIMPLE_TEXT, "shop").await.status(), 200);
    }
    let cached_question = serde_json::json!({"model": "auto", "temperature": 0,
        "messages": [{"role": "user", "content": "What are your opening hours?"}]});
    let ask_cached = || {
        client()
            .post(t.url("/v1/chat/completions"))
            .header("x-triage-endpoint", "shop")
            .json(&cached_question)
            .send()
    };
    assert_eq!(ask_cached().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = ask(&t, SIMPLE_TEXT, "shop").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3590");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "budget_exceeded");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("shop $0.03 hour budget"));
    // A cache hit costs nothing, so it is still served.
    let r = ask_cached().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-triage-cache"], "hit");

    // `alert` only: blog goes over its budget and is still served.
    for _ in 0..2 {
        assert_eq!(ask(&t, SIMPLE_TEXT, "blog").await.status(), 200);
    }

    // Webhook was down for its first two attempts: delivered anyway, once each.
    wait_for(&got, 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    {
        let mut alerts = got.lock().unwrap().clone();
        assert_eq!(alerts.len(), 3, "{alerts:?}");
        let blog: Vec<Value> = alerts
            .iter()
            .filter(|a| a["endpoint"] == "blog")
            .cloned()
            .collect();
        assert_eq!(blog.len(), 1, "once per window and threshold: {alerts:?}");
        alerts.retain(|a| a["endpoint"] == "shop");
        assert_eq!(alerts[0]["threshold"], 0.5);
        assert_eq!(alerts[1]["threshold"], 1.0);
        assert_eq!(alerts[1]["endpoint"], "shop");
        assert_eq!(alerts[1]["window"], "hour");
        assert!((alerts[1]["spend_usd"].as_f64().unwrap() - 0.03).abs() < 1e-9);
        assert_eq!(alerts[1]["top_models"][0]["model"], "ok-simple");
    }

    // A new hour: shop may spend again, and alerts fire again in the new window.
    CLOCK.store(hour + 3600 + 5, Ordering::Relaxed);
    assert_eq!(ask(&t, SIMPLE_TEXT, "shop").await.status(), 200);
    assert_eq!(ask(&t, SIMPLE_TEXT, "shop").await.status(), 200);
    wait_for(&got, 4).await;

    // docs: a spent daily budget with `downgrade` sends COMPLEX work to SIMPLE's model.
    for _ in 0..5 {
        let r = ask(&t, COMPLEX_TEXT, "docs").await;
        assert_eq!(r.headers()["x-triage-model"], "ok-complex");
    }
    let r = ask(&t, COMPLEX_TEXT, "docs").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-triage-model"], "ok-simple");
    assert_eq!(r.headers()["x-triage-tier"], "SIMPLE");
    assert_eq!(r.headers()["x-triage-budget"], "downgraded");
    // A model the client names explicitly is left alone by `downgrade` (only
    // `reject` refuses it), and the reply says the budget is spent.
    let r = client()
        .post(t.url("/v1/chat/completions"))
        .header("x-triage-endpoint", "docs")
        .json(&serde_json::json!({"model": "ok-complex", "messages": [{"role": "user", "content": COMPLEX_TEXT}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-triage-model"], "ok-complex");
    assert_eq!(r.headers()["x-triage-budget"], "spent");
    // The next day it is lifted.
    CLOCK.store(hour + 86_400 + 5, Ordering::Relaxed);
    let r = ask(&t, COMPLEX_TEXT, "docs").await;
    assert_eq!(r.headers()["x-triage-model"], "ok-complex");
}
