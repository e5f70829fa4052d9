//! History compression through the server, with the fake upstream as summarizer.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn config(fake: &FakeUpstream, summarizer: &str, extra: &str) -> String {
    config_with(fake, summarizer, 120, extra)
}

fn config_with(fake: &FakeUpstream, summarizer: &str, budget: usize, extra: &str) -> String {
    let models = format!(
        "[[models]]\nname = \"{summarizer}\"\nupstream = \"fake\"\n\n[prices.{summarizer}]\ninput = 1.0\noutput = 2.0\n"
    );
    openai_config(
        fake,
        ["ok-simple", "ok-moderate", "ok-complex"],
        &format!(
            "[compress]\nenabled = true\nmax_history_tokens = {budget}\nkeep_last_turns = 2\nsummarizer_model = \"{summarizer}\"\n{extra}\n{models}"
        ),
    )
}

/// A conversation of `n` exchanges about a trip, then a final question.
fn conversation(n: usize) -> Vec<Value> {
    let mut m = vec![json!({"role": "system", "content": "You are a travel assistant."})];
    for i in 0..n {
        m.push(json!({"role": "user", "content": format!("Day {i}: we want to visit museums, eat local food and walk along the river in Lisbon. Any tips for day {i}?")}));
        m.push(json!({"role": "assistant", "content": format!("For day {i}, start at the Gulbenkian museum, lunch in Alfama, then walk the riverside from Cais do Sodré to Belém.")}));
    }
    m.push(json!({"role": "user", "content": "thanks! what about the last evening?"}));
    m
}

async fn send(t: &Triage, messages: &[Value], headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client()
        .post(t.url("/v1/chat/completions"))
        .json(&json!({"model": "auto", "messages": messages}));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

/// The last request that went to a tier model (not the summarizer).
fn forwarded(fake: &FakeUpstream) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .rev()
        .find(|(_, r, _)| r["model"].as_str().is_some_and(|m| m.starts_with("ok-")))
        .map(|(_, r, _)| r["messages"].as_array().unwrap().clone())
        .unwrap()
}

#[tokio::test]
async fn trims_at_the_budget_and_caches_summaries_across_turns() {
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let t = start_triage_logged(
        &config(&fake, "summarizer", "background = false"),
        dir.path(),
        None,
    )
    .await;

    // Under budget: untouched.
    let short = conversation(0);
    let r = send(&t, &short, &[]).await;
    assert!(r.headers().get("x-triage-compressed").is_none());
    assert_eq!(forwarded(&fake).len(), short.len());

    let long = conversation(6);
    let r = send(&t, &long, &[]).await;
    assert_eq!(r.status(), 200);
    let header = r.headers()["x-triage-compressed"]
        .to_str()
        .unwrap()
        .to_string();
    eprintln!("long sample conversation: x-triage-compressed {header}");
    let (before, after) = header.split_once("->").unwrap();
    let (before, after): (usize, usize) = (before.parse().unwrap(), after.parse().unwrap());
    assert!(after < before / 2, "{header}: {:#?}", forwarded(&fake));
    let sent = forwarded(&fake);
    assert_eq!(
        sent[0]["content"], "You are a travel assistant.",
        "system messages stay"
    );
    assert!(sent[1]["content"]
        .as_str()
        .unwrap()
        .starts_with("Previous conversation summary: answer from summarizer"));
    // Last 2 turns verbatim: the last assistant answer and the final question.
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[3], long[long.len() - 1]);
    assert_eq!(sent[2], long[long.len() - 2]);
    assert_eq!(fake.count("summarizer"), 1);

    // The same history again: the cached summary, no new summarizer call.
    send(&t, &long, &[]).await;
    assert_eq!(fake.count("summarizer"), 1);

    // One more exchange: the summary is extended from the cached one.
    let mut longer = long.clone();
    longer.pop();
    longer.push(json!({"role": "user", "content": "and day 7?"}));
    longer.push(json!({"role": "assistant", "content": "Day 7: Sintra."}));
    longer.push(json!({"role": "user", "content": "thanks! what about the last evening?"}));
    send(&t, &longer, &[]).await;
    assert_eq!(fake.count("summarizer"), 2);
    let summarizer_input = fake
        .requests()
        .into_iter()
        .filter(|(_, r, _)| r["model"] == "summarizer")
        .last()
        .unwrap()
        .1["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        summarizer_input.starts_with("Summary so far:"),
        "{summarizer_input}"
    );
    send(&t, &longer, &[]).await;
    assert_eq!(
        fake.count("summarizer"),
        2,
        "once per new prefix, not per request"
    );

    // Opt-out.
    let r = send(&t, &long, &[("x-triage-compress", "off")]).await;
    assert!(r.headers().get("x-triage-compressed").is_none());
    assert_eq!(forwarded(&fake).len(), long.len());

    // The ledger has the tokens saved and the summarizer's cost.
    assert!(t
        .state
        .pipeline
        .ledger
        .as_ref()
        .unwrap()
        .log
        .as_ref()
        .unwrap()
        .flush(Duration::from_secs(10)));
    let conn = triage::ledger::log::open(&triage::ledger::log::db_path(dir.path())).unwrap();
    let (saved, summary_cost): (i64, f64) = conn
        .query_row(
            "SELECT sum(tokens_saved), sum(summary_cost_usd) FROM decisions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(saved > 0);
    // Two summarizer calls × (11 × $1 + 7 × $2 per 1M).
    assert!((summary_cost - 2.0 * 25e-6).abs() < 1e-12, "{summary_cost}");
    let rep = triage::ledger::report::build(
        &triage::ledger::log::db_path(dir.path()),
        0,
        i64::MAX,
        triage::ledger::report::GroupBy::Model,
    )
    .unwrap();
    assert_eq!(rep.compression_tokens_saved, saved as u64);
    assert!((rep.summary_cost_usd - summary_cost).abs() < 1e-12);
    assert!(rep.render("model").contains("history compression"));
}

#[tokio::test]
async fn tool_calls_stay_with_their_results() {
    let fake = start_fake().await;
    let t = start_triage(
        &config_with(&fake, "summarizer", 40, "background = false"),
        false,
    )
    .await;
    let mut m = conversation(2);
    m.pop();
    m.push(json!({"role": "user", "content": "what's the weather there tomorrow?"}));
    m.push(json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Lisbon\"}"}}]}));
    m.push(json!({"role": "tool", "tool_call_id": "c1", "content": "sunny, 24C"}));
    m.push(json!({"role": "user", "content": "great, thanks"}));
    let r = send(&t, &m, &[]).await;
    assert_eq!(r.status(), 200);
    let sent = forwarded(&fake);
    for (i, msg) in sent.iter().enumerate() {
        if msg["role"] == "tool" {
            let prev = &sent[i - 1];
            assert!(
                prev["tool_calls"].is_array() || prev["role"] == "tool",
                "orphaned tool result: {sent:?}"
            );
        }
    }
    assert!(
        sent.iter().any(|x| x["role"] == "tool"),
        "the call and its result are kept together: {sent:?}"
    );
}

#[tokio::test]
async fn a_failing_summarizer_never_fails_the_request() {
    let fake = start_fake().await;
    // Trim: the older turns go, without a summary.
    let t = start_triage(
        &config(
            &fake,
            "fail-500",
            "background = false\non_failure = \"trim\"",
        ),
        false,
    )
    .await;
    let long = conversation(6);
    let r = send(&t, &long, &[]).await;
    assert_eq!(r.status(), 200);
    let sent = forwarded(&fake);
    assert_eq!(sent.len(), 3, "system + last two turns: {sent:?}");
    assert!(!sent.iter().any(|m| m["content"]
        .as_str()
        .is_some_and(|c| c.starts_with("Previous conversation summary"))));
    // None: the request goes as it came.
    let t2 = start_triage(
        &config(
            &fake,
            "fail-500",
            "background = false\non_failure = \"none\"",
        ),
        false,
    )
    .await;
    let r = send(&t2, &long, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(forwarded(&fake).len(), long.len());
}

#[tokio::test]
async fn background_mode_trims_first_then_uses_the_summary() {
    let fake = start_fake().await;
    let t = start_triage(&config(&fake, "summarizer", "background = true"), false).await;
    let long = conversation(6);
    send(&t, &long, &[]).await;
    assert_eq!(
        forwarded(&fake).len(),
        3,
        "first over-budget turn goes out trimmed"
    );
    for _ in 0..100 {
        if fake.count("summarizer") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    send(&t, &long, &[]).await;
    let sent = forwarded(&fake);
    assert!(
        sent[1]["content"]
            .as_str()
            .unwrap()
            .starts_with("Previous conversation summary"),
        "{sent:?}"
    );
    assert_eq!(fake.count("summarizer"), 1);
}
