//! `triage prompt audit` on a sample prompt, and its ablation against a fake upstream.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/prompts/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn audit_counts_tokens_finds_duplicates_defaults_and_cost() {
    let out = Command::new(env!("CARGO_BIN_EXE_triage"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("TRIAGE_CONFIG")
        .args([
            "prompt",
            "audit",
            "--json",
            "--requests-per-day",
            "10000",
            "--model",
            "gpt-4o-mini",
        ])
        .arg(fixture("support_prompt.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &v["audit"];
    let sentences = a["sentences"].as_array().unwrap();
    assert_eq!(sentences.len(), 9);
    let total = a["total_tokens"].as_u64().unwrap();
    assert!(total > 80 && total < 200, "{total}");
    // The two return-policy sentences say the same thing.
    let dups: Vec<(u64, u64)> = a["near_duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d[0].as_u64().unwrap(), d[1].as_u64().unwrap()))
        .collect();
    assert!(dups.contains(&(5, 6)), "{dups:?}");
    // "You are a helpful assistant." and "If you don't know…" restate defaults; the
    // shop's facts do not.
    assert!(sentences[0]["restates_default"].is_array());
    assert!(sentences[8]["restates_default"].is_array());
    assert!(sentences[4]["restates_default"].is_null());
    // gpt-4o-mini input: $0.15 per 1M tokens.
    let monthly = a["monthly_cost_usd"].as_f64().unwrap();
    assert!((monthly - total as f64 * 10000.0 * 30.0 * 0.15 / 1e6).abs() < 1e-9);

    // A configured name for the same model counts with the model's own tokenizer
    // (its `upstream_model`), not with the estimate for unknown families.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        "[[upstreams]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[models]]\nname = \"house-mini\"\nupstream = \"up\"\nupstream_model = \"gpt-4o-mini\"\n\
         [router.tiers]\nSIMPLE = [\"house-mini\"]\nMODERATE = [\"house-mini\"]\nCOMPLEX = [\"house-mini\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_triage"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("TRIAGE_CONFIG")
        .arg("--config")
        .arg(&cfg)
        .args(["prompt", "audit", "--json", "--model", "house-mini"])
        .arg(fixture("support_prompt.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["audit"]["total_tokens"].as_u64(), Some(total));
    assert_eq!(v["audit"]["model"], "house-mini");
}

#[tokio::test]
async fn ablation_finds_the_sentences_that_change_answers() {
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], ""),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_triage"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("TRIAGE_CONFIG")
            .args([
                "prompt",
                "audit",
                "--json",
                "--model",
                "ok-simple",
                "--ablate",
                "--eval",
            ])
            .arg(fixture("support_eval.jsonl"))
            .arg("--config")
            .arg(&cfg)
            .arg(fixture("support_prompt.txt"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["ablation"].as_array().unwrap();
    assert_eq!(rows.len(), 9);
    let changing: Vec<u64> = rows
        .iter()
        .filter(|r| r["changes_answers"] == true)
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    // Only the French instruction changes what the (fake) model answers.
    assert_eq!(changing, vec![2], "{rows:#?}");
    // Baseline + 9 ablations, for each of the 2 eval requests.
    assert_eq!(fake.count("ok-simple"), 20);
}
