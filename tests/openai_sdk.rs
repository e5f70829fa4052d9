//! The official `openai` and `anthropic` Python SDKs talk to a running triage.
//! `.ci/run` installs the pinned SDKs into a venv and points TRIAGE_TEST_PYTHON at it;
//! elsewhere the tests use `python3` and skip (with a notice) only when an SDK is
//! missing outside CI.

mod common;

use common::*;

/// The Python that has `module`, or None (skip) outside CI.
fn python_with(module: &str) -> Option<String> {
    let python = std::env::var("TRIAGE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if has {
        return Some(python);
    }
    assert!(
        std::env::var("CI").is_err(),
        "the {module} SDK is required in CI (TRIAGE_TEST_PYTHON={python})"
    );
    eprintln!("SKIPPED: `{python}` has no {module} module; run .ci/run or set TRIAGE_TEST_PYTHON");
    None
}

async fn run_script(python: &str, script: &str, args: &[String]) {
    let path = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
}

#[tokio::test]
async fn official_openai_sdk_works_unchanged() {
    let Some(python) = python_with("openai") else {
        return;
    };
    let fake = start_fake().await;
    let t = start_triage(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], ""),
        false,
    )
    .await;
    run_script(&python, "openai_sdk_check.py", &[t.url("/v1")]).await;
}

/// Messages from the Anthropic SDK, answered by an OpenAI-compatible provider and by
/// an Anthropic one.
#[tokio::test]
async fn official_anthropic_sdk_works_unchanged_against_either_provider() {
    let Some(python) = python_with("anthropic") else {
        return;
    };
    std::env::set_var("TRIAGE_TEST_ANTHROPIC_KEY", "sk-ant-test");
    let fake = start_fake().await;
    let openai = start_triage(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], ""),
        false,
    )
    .await;
    run_script(
        &python,
        "anthropic_sdk_check.py",
        &[openai.url(""), "openai".into()],
    )
    .await;
    let anthropic = start_triage(&anthropic_config(&fake), false).await;
    run_script(
        &python,
        "anthropic_sdk_check.py",
        &[anthropic.url(""), "anthropic".into()],
    )
    .await;
}
