//! The dashboard in headless Chromium against a server with recorded traffic. The
//! screenshot is kept in target/test-artifacts/dashboard.png. `.ci/run` installs
//! Debian's chromium; elsewhere the test skips (with a notice) only outside CI.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn chromium() -> Option<String> {
    let bin = std::env::var("TRIAGE_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| bin)
}

fn headless(bin: &str, profile: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--virtual-time-budget=5000",
        "--window-size=1280,1100",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[tokio::test]
async fn dashboard_renders_charts_with_data() {
    let Some(bin) = chromium() else {
        assert!(std::env::var("CI").is_err(), "chromium is required in CI");
        eprintln!("SKIPPED: no chromium; run .ci/run or set TRIAGE_TEST_CHROMIUM");
        return;
    };
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"
[[budgets]]
window = "hour"
usd = 0.0001
endpoint = "shop"
[prices.ok-simple]
input = 1.0
output = 2.0
[prices.ok-complex]
input = 10.0
output = 40.0
"#;
    let cache = triage::cache::SemanticCache::in_memory(Default::default());
    let t = start_triage_logged(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], extra),
        dir.path(),
        Some(cache),
    )
    .await;
    for (text, endpoint) in [
        (SIMPLE_TEXT, "shop"),
        (COMPLEX_TEXT, "docs"),
        (
            "Summarize this paragraph about tides for a ten year old.",
            "docs",
        ),
        (SIMPLE_TEXT, "shop"),
    ] {
        let mut body = chat(text);
        body["temperature"] = json!(0);
        client()
            .post(t.url("/v1/chat/completions"))
            .header("x-triage-endpoint", endpoint)
            .json(&body)
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ledger = t.state.pipeline.ledger.as_ref().unwrap();
    assert!(ledger.log.as_ref().unwrap().flush(Duration::from_secs(10)));

    let url = t.url("/dashboard");
    let profile = tempfile::tempdir().unwrap();
    let dom = tokio::task::spawn_blocking({
        let (bin, url, profile) = (bin.clone(), url.clone(), profile.path().to_path_buf());
        move || {
            headless(&bin, &profile)
                .arg("--dump-dom")
                .arg(&url)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.contains("data-rendered=\"4\""),
        "charts did not render with data:\n{dom}"
    );
    assert!(dom.matches("class=\"bar\"").count() >= 4, "{dom}");
    assert!(dom.contains("class=\"trend\""), "{dom}");
    assert!(dom.contains("shop · hour"), "budget status: {dom}");

    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let profile2 = tempfile::tempdir().unwrap();
    let shot = tokio::task::spawn_blocking({
        let (bin, url, p, png) = (bin, url, profile2.path().to_path_buf(), png.clone());
        move || {
            headless(&bin, &p)
                .arg(format!("--screenshot={}", png.display()))
                .arg(&url)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    assert!(
        std::fs::metadata(&png).unwrap().len() > 10_000,
        "screenshot too small"
    );
}
