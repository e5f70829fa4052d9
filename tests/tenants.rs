//! Tenant isolation: a request authenticated by a client key is always that key's
//! tenant. `x-triage-endpoint` may name only the tenant or a sub-endpoint of it;
//! the cache scope, the budgets, the decision log and feedback all go by the
//! authenticated tenant.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const KEYS: &str = "[server]\napi_keys = [{ name = \"tenant-a\", key_env = \"TRIAGE_TEST_TENANT_A\" }, { name = \"tenant-b\", key_env = \"TRIAGE_TEST_TENANT_B\" }]\n";

fn q(text: &str) -> Value {
    json!({"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": text}]})
}

async fn send(
    t: &Triage,
    path: &str,
    key: &str,
    endpoint: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut r = client().post(t.url(path)).bearer_auth(key).json(body);
    if let Some(e) = endpoint {
        r = r.header("x-triage-endpoint", e);
    }
    r.send().await.unwrap()
}

async fn wait_entries(t: &Triage, n: usize) {
    let cache = t.state.pipeline.cache.clone().unwrap();
    for _ in 0..200 {
        if cache.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("cache never reached {n} entries");
}

fn rows(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let conn = triage::ledger::log::open(&triage::ledger::log::db_path(dir)).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, endpoint, tenant FROM decisions ORDER BY ts_ms")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn a_key_cannot_act_as_another_tenant() {
    std::env::set_var("TRIAGE_TEST_TENANT_A", "key-of-a");
    std::env::set_var("TRIAGE_TEST_TENANT_B", "key-of-b");
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    // tenant-a may spend nothing: its budget rejects at once (any spend exceeds it).
    let cfg = openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], "")
        .replace("[router]", &format!("{KEYS}[router]"))
        + "\n[prices.ok-simple]\ninput = 1.0\noutput = 1.0\n\
           [[budgets]]\nwindow = \"day\"\nusd = 0.000001\nendpoint = \"tenant-a\"\nenforcement = \"reject\"\n";
    let cache = triage::cache::SemanticCache::in_memory(Default::default());
    let t = start_triage_logged(&cfg, dir.path(), Some(cache)).await;

    // B asks; its answer is cached in B's scope.
    let question = "What are your opening hours on Sunday?";
    let r = send(&t, "/v1/chat/completions", "key-of-b", None, &q(question)).await;
    assert_eq!(r.status(), 200);
    let b_id = r.headers()["x-triage-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    wait_entries(&t, 1).await;

    // A names B as its endpoint, on every path that takes one: refused with 403.
    for path in ["/v1/chat/completions", "/v1/route", "/v1/feedback"] {
        for header in ["tenant-b", "tenant-b/docs-bot", "other", "tenant-ab"] {
            let body = if path == "/v1/feedback" {
                json!({"request_id": b_id, "outcome": "failure"})
            } else {
                q(question)
            };
            let r = send(&t, path, "key-of-a", Some(header), &body).await;
            assert_eq!(r.status(), 403, "{path} with {header}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "endpoint_not_allowed", "{v}");
            assert!(!v.to_string().contains("key-of"), "no secret in {v}");
        }
    }
    assert_eq!(
        fake.requests().len(),
        1,
        "nothing A sent as B went upstream"
    );

    // A under its own sub-endpoint: B's cached answer is not served to A, and A's
    // own spent budget applies to its sub-endpoint.
    let r = send(
        &t,
        "/v1/chat/completions",
        "key-of-a",
        Some("tenant-a/docs-bot"),
        &q(question),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-triage-cache"],
        "miss",
        "B's entry is not A's"
    );
    let r = send(
        &t,
        "/v1/chat/completions",
        "key-of-a",
        Some("tenant-a/docs-bot"),
        &q("How do I reset my password?"),
    )
    .await;
    assert_eq!(
        r.status(),
        429,
        "tenant-a's budget covers tenant-a/docs-bot"
    );
    let r = send(
        &t,
        "/v1/chat/completions",
        "key-of-a",
        None,
        &q("How do I change my email address?"),
    )
    .await;
    assert_eq!(r.status(), 429, "and tenant-a itself");
    // B is unaffected by A's budget.
    let r = send(
        &t,
        "/v1/chat/completions",
        "key-of-b",
        Some("tenant-b/shop"),
        &q("How do I reset my password?"),
    )
    .await;
    assert_eq!(r.status(), 200);

    // Feedback: A cannot touch B's request, even without naming an endpoint.
    let r = send(
        &t,
        "/v1/feedback",
        "key-of-a",
        None,
        &json!({"request_id": b_id, "correct_tier": "COMPLEX"}),
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = send(
        &t,
        "/v1/feedback",
        "key-of-b",
        None,
        &json!({"request_id": b_id, "correct_tier": "COMPLEX"}),
    )
    .await;
    assert_eq!(r.status(), 202);

    // The decision log books every request to the authenticated tenant.
    let ledger = t.state.pipeline.ledger.as_ref().unwrap();
    assert!(ledger.log.as_ref().unwrap().flush(Duration::from_secs(10)));
    let rows = rows(dir.path());
    assert!(!rows.is_empty());
    for (id, endpoint, tenant) in &rows {
        assert!(
            triage::config::endpoint_covers(tenant, endpoint),
            "{id}: endpoint {endpoint} outside tenant {tenant}"
        );
    }
    assert!(rows
        .iter()
        .any(|(_, e, t)| e == "tenant-a/docs-bot" && t == "tenant-a"));

    // A purge by tenant removes that tenant's entries only.
    let cache = t.state.pipeline.cache.clone().unwrap();
    let before = cache.len();
    let removed = cache.purge(&serde_json::from_value(json!({"tenant": "tenant-a"})).unwrap());
    assert!(removed >= 1, "A's entry is stored under tenant-a");
    assert_eq!(cache.len(), before - removed);
    let r = send(&t, "/v1/chat/completions", "key-of-b", None, &q(question)).await;
    assert_eq!(
        r.headers()["x-triage-cache"],
        "hit",
        "B's entry survives A's purge"
    );
}
