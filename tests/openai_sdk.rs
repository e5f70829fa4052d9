//! The official `openai` Python SDK talks to a running triage. `.ci/run` installs the
//! pinned SDK into a venv and points TRIAGE_TEST_PYTHON at it; elsewhere the test
//! uses `python3` and skips (with a notice) only when the SDK is missing outside CI.

mod common;

use common::*;

#[tokio::test]
async fn official_openai_sdk_works_unchanged() {
    let python = std::env::var("TRIAGE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_sdk = std::process::Command::new(&python)
        .args(["-c", "import openai"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_sdk {
        assert!(
            std::env::var("CI").is_err(),
            "the openai SDK is required in CI (TRIAGE_TEST_PYTHON={python})"
        );
        eprintln!(
            "SKIPPED: `{python}` has no openai module; run .ci/run or set TRIAGE_TEST_PYTHON"
        );
        return;
    }
    let fake = start_fake().await;
    let t = start_triage(
        &openai_config(&fake, ["ok-simple", "ok-moderate", "ok-complex"], ""),
        false,
    )
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_sdk_check.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(t.url("/v1"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok"), "{stdout}");
}
