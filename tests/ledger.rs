//! Costs, the decision log, feedback, the report and /metrics, through the server.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use triage::ledger::report::{build, GroupBy};

const PRICES: &str = r#"
[prices.ok-simple]
input = 1.0
cached_input = 0.5
output = 2.0
[prices.ok-complex]
input = 10.0
output = 40.0
"#;

fn q(text: &str) -> Value {
    json!({"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": text}]})
}

async fn post(t: &Triage, body: &Value, endpoint: &str) -> reqwest::Response {
    client()
        .post(t.url("/v1/chat/completions"))
        .header("x-triage-endpoint", endpoint)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn flush(t: &Triage) {
    let ledger = t.state.pipeline.ledger.as_ref().unwrap();
    assert!(ledger.log.as_ref().unwrap().flush(Duration::from_secs(10)));
}

fn rows(dir: &std::path::Path) -> Vec<Value> {
    let conn = triage::ledger::log::open(&triage::ledger::log::db_path(dir)).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, endpoint, tier, actual_model, cache_status, input_tokens, cached_tokens, output_tokens, cost_usd, saved_usd, top_tier_cost_usd, routed_text, error FROM decisions ORDER BY ts_ms")
        .unwrap();
    stmt.query_map([], |r| {
        Ok(json!({
            "id": r.get::<_, String>(0)?, "endpoint": r.get::<_, String>(1)?,
            "tier": r.get::<_, Option<String>>(2)?, "model": r.get::<_, Option<String>>(3)?,
            "cache": r.get::<_, String>(4)?, "input": r.get::<_, i64>(5)?, "cached": r.get::<_, i64>(6)?,
            "output": r.get::<_, i64>(7)?, "cost": r.get::<_, Option<f64>>(8)?, "saved": r.get::<_, Option<f64>>(9)?,
            "top": r.get::<_, Option<f64>>(10)?, "text": r.get::<_, Option<String>>(11)?,
            "error": r.get::<_, Option<String>>(12)?,
        }))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test]
async fn costs_usage_savings_feedback_and_report() {
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{}\n{PRICES}",
        openai_config(
            &fake,
            ["ok-simple", "ok-moderate", "ok-complex"],
            "[ledger]\nlog_text = true\n"
        )
    );
    let cache = triage::cache::SemanticCache::in_memory(Default::default());
    let t = start_triage_logged(&cfg, dir.path(), Some(cache)).await;

    // 1. Priced JSON call: 11 prompt (3 cached) + 7 completion tokens on ok-simple.
    let r = post(&t, &q("What are your opening hours?"), "shop").await;
    let id1 = r.headers()["x-triage-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(r.status(), 200);
    // 2. A stream whose client did not ask for usage: triage still counts it (11/5/3).
    let mut s = q("Where is my order?");
    s["stream"] = json!(true);
    s["temperature"] = json!(1.0);
    let _ = post(&t, &s, "shop").await.text().await.unwrap();
    // 3. A cache hit of the first request.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = post(&t, &q("What are your opening hours?"), "shop").await;
    assert_eq!(r.headers()["x-triage-cache"], "hit");
    // 4. An unpriced model (ok-moderate has no price).
    let mut explicit = q("hello");
    explicit["model"] = json!("ok-moderate");
    post(&t, &explicit, "docs").await;
    // 5. COMPLEX, priced, on another endpoint.
    let r = post(&t, &q(COMPLEX_TEXT), "docs").await;
    let id5 = r.headers()["x-triage-request-id"]
        .to_str()
        .unwrap()
        .to_string();

    // Feedback: request 1 should have been MODERATE (a misroute); 5 was right and succeeded.
    for body in [
        json!({"request_id": id1, "correct_tier": "MODERATE"}),
        json!({"request_id": id5, "correct_tier": "COMPLEX", "outcome": "success"}),
    ] {
        let r = client()
            .post(t.url("/v1/feedback"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let r = client()
        .post(t.url("/v1/feedback"))
        .json(&json!({"request_id": id1, "correct_tier": "GIGANTIC"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Feedback sent twice for one request replaces the earlier one.
    let r = client()
        .post(t.url("/v1/feedback"))
        .json(&json!({"request_id": id1, "correct_tier": "MODERATE", "note": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // An id no request had is not "recorded".
    let r = client()
        .post(t.url("/v1/feedback"))
        .json(&json!({"request_id": "req_does_not_exist", "outcome": "success"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_not_found", "{v}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    flush(&t);

    let rows = rows(dir.path());
    assert_eq!(rows.len(), 5, "{rows:#?}");
    let (r1, r2, r3, r4, r5) = (&rows[0], &rows[1], &rows[2], &rows[3], &rows[4]);
    // (11 - 3) × $1 + 3 × $0.5 + 7 × $2 per 1M = $23.5 per 1M.
    let c1 = 23.5e-6;
    assert!(close(r1["cost"].as_f64().unwrap(), c1), "{r1}");
    assert_eq!(
        (
            r1["input"].as_i64(),
            r1["cached"].as_i64(),
            r1["output"].as_i64()
        ),
        (Some(11), Some(3), Some(7))
    );
    assert_eq!(
        r1["text"], "What are your opening hours?",
        "log_text = true keeps the text"
    );
    // Strongest tier (ok-complex): 11 × $10 + 7 × $40 per 1M (no cached price: full input).
    assert!(close(r1["top"].as_f64().unwrap(), 390e-6), "{r1}");
    let c2 = (8.0 * 1.0 + 3.0 * 0.5 + 5.0 * 2.0) * 1e-6;
    assert!(
        close(r2["cost"].as_f64().unwrap(), c2),
        "stream usage: {r2}"
    );
    assert_eq!(r3["cache"], "hit");
    assert_eq!(r3["cost"].as_f64(), Some(0.0));
    assert!(close(r3["saved"].as_f64().unwrap(), c1), "{r3}");
    assert_eq!(r4["tier"], Value::Null);
    assert_eq!(r4["cost"], Value::Null, "unpriced is not free");
    assert_eq!(r5["tier"], "COMPLEX");
    let c5 = (11.0 * 10.0 + 7.0 * 40.0) * 1e-6;
    assert!(close(r5["cost"].as_f64().unwrap(), c5));

    // The report, against the same hand-computed numbers.
    let db = triage::ledger::log::db_path(dir.path());
    let rep = build(&db, 0, i64::MAX, GroupBy::Endpoint).unwrap();
    assert_eq!(rep.totals.requests, 5);
    assert!(close(rep.totals.cost_usd, c1 + c2 + c5), "{:?}", rep.totals);
    assert_eq!(rep.totals.unpriced_requests, 1);
    assert_eq!(rep.totals.cache_hits, 1);
    assert!(close(rep.totals.cache_hit_rate, 0.2));
    assert!(close(rep.saved_by_cache_usd, c1));
    assert_eq!(rep.corrections, 2);
    assert_eq!(rep.misroute_rate, Some(0.5));
    let shop = rep.groups.iter().find(|g| g.key == "shop").unwrap();
    assert_eq!(shop.totals.requests, 3);
    let docs = rep.endpoints.iter().find(|e| e.endpoint == "docs").unwrap();
    // docs spent 18 + 18 tokens; one success.
    assert_eq!(docs.tokens_per_success, Some(36.0));
    assert_eq!(docs.p95_tokens, 18);
    let shop_tokens = rep.endpoints.iter().find(|e| e.endpoint == "shop").unwrap();
    // shop: 18, 16, 0 (hit) → p50 16, p95 18.
    assert_eq!((shop_tokens.p50_tokens, shop_tokens.p95_tokens), (16, 18));
    let text = rep.render("endpoint");
    assert!(text.contains("misroute rate 50.0%"), "{text}");
    // An unpriced model's row says so instead of showing a cost of zero.
    let by_model = build(&db, 0, i64::MAX, GroupBy::Model)
        .unwrap()
        .render("model");
    let row = by_model
        .lines()
        .find(|l| l.starts_with("ok-moderate"))
        .unwrap_or_else(|| panic!("{by_model}"));
    assert!(row.contains("unpriced") && !row.contains("0.0000"), "{row}");
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text() {
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{}\n{PRICES}",
        openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], "")
    );
    let t = start_triage_logged(&cfg, dir.path(), None).await;
    post(&t, &q(SIMPLE_TEXT), "metrics-test").await;
    post(&t, &q(COMPLEX_TEXT), "metrics-test").await;
    let body = client()
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses as Prometheus text");
    let find = |name: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && s.labels.get("endpoint") == Some("metrics-test"))
            .collect::<Vec<_>>()
    };
    let requests = find("triage_requests_total");
    assert_eq!(requests.len(), 2, "{body}");
    assert!(requests
        .iter()
        .any(|s| s.labels.get("tier") == Some("COMPLEX")
            && s.labels.get("model") == Some("ok-complex")
            && s.labels.get("cache") == Some("bypass")));
    assert!(!find("triage_cost_usd_total").is_empty());
    assert!(
        body.contains("# TYPE triage_cost_usd_total counter"),
        "spend is a counter: {body}"
    );
    assert!(
        !find("triage_request_input_tokens").is_empty(),
        "token histograms per endpoint"
    );
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "triage_routing_latency_seconds"));
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "triage_embed_queue_depth"));
}
