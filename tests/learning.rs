//! The learning loop end to end: serve with text logging → requests → feedback
//! correcting their tier → `triage retrain` → `/admin/reload` while traffic flows →
//! the corrected requests (and close paraphrases) route to the corrected tier; then
//! a rollback with `triage head use`. Random labels are refused by the gate.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/learning/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .lines()
    .filter(|l| !l.trim().is_empty())
    .map(str::to_string)
    .collect()
}

fn triage_cmd(cfg: &Path, data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triage"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("TRIAGE_CONFIG")
        .arg("--config")
        .arg(cfg)
        .arg("--data-dir")
        .arg(data);
    c
}

async fn tier_of(t: &Triage, text: &str) -> String {
    let r = client()
        .post(t.url("/v1/route"))
        .json(&chat(text))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["tier"].as_str().unwrap_or("").to_string()
}

async fn send_with_feedback(
    t: &Triage,
    texts: &[String],
    tier_for: impl Fn(usize) -> &'static str,
) {
    for (i, text) in texts.iter().enumerate() {
        let r = client()
            .post(t.url("/v1/chat/completions"))
            .header("x-triage-endpoint", "tax")
            .json(&chat(text))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-triage-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let r = client()
            .post(t.url("/v1/feedback"))
            .json(&json!({"request_id": id, "correct_tier": tier_for(i)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
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
}

fn setup(fake: &FakeUpstream, dir: &Path) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("models")).unwrap();
    for f in ["tier-head.safetensors", "tier-head.json"] {
        std::fs::copy(root.join("models").join(f), dir.join("models").join(f)).unwrap();
    }
    let cfg = openai_config(
        fake,
        ["ok-simple", "ok-moderate", "ok-complex"],
        "[ledger]\nlog_text = true\n",
    )
    .replace(
        "[router]\nmin_confidence = 0.0",
        "[router]\nmin_confidence = 0.0\nhead = \"models/tier-head.safetensors\"",
    )
    .replace(
        "[router]",
        "[server]\nadmin_key_env = \"TRIAGE_TEST_LEARN_ADMIN\"\n[router]",
    );
    let path = dir.join("triage.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrections_retrain_reload_and_roll_back_and_random_labels_are_refused() {
    std::env::set_var("TRIAGE_TEST_LEARN_ADMIN", "learn-admin");
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Embeddings of the base training set are shared by both retrains.
    let embed_cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-embed-cache");
    let cfg_path = setup(&fake, dir.path());
    let t = start_triage_from_file(&cfg_path, &data).await;

    let corrected = lines("tax_corrections.txt");
    let paraphrases = lines("tax_paraphrases.txt");
    let mut before = Vec::new();
    for text in corrected.iter().chain(&paraphrases) {
        before.push(tier_of(&t, text).await);
    }
    let simple_before = before.iter().filter(|t| *t == "SIMPLE").count();
    assert!(
        simple_before >= 20,
        "the theme starts out SIMPLE: {before:?}"
    );

    // The team says tax questions need the strong model.
    send_with_feedback(&t, &corrected, |_| "COMPLEX").await;
    let export = triage_cmd(&cfg_path, &data)
        .args(["misroutes", "export", "--since", "1d"])
        .output()
        .unwrap();
    assert!(export.status.success());
    let exported: Vec<Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(exported.iter().filter(|e| e["flag"] == "misroute").count() >= 20);
    assert!(exported.iter().all(|e| e["text"].is_string()));

    // `head list` only reads: before the first retrain it lists the installed head
    // and writes nothing.
    let list = triage_cmd(&cfg_path, &data)
        .args(["head", "list"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(listing.contains("* installed"), "{listing}");
    assert!(
        !dir.path().join("models/heads").exists(),
        "head list wrote models/heads"
    );

    let out = triage_cmd(&cfg_path, &data)
        .args([
            "retrain",
            "--since",
            "1d",
            "--outcomes",
            "tests/fixtures/outcomes/routellm-300.jsonl",
            "--cache-dir",
        ])
        .arg(&embed_cache)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("retrain with the corrections:\n{stdout}");
    assert!(stdout.contains("ACCEPTED"), "{stdout}");
    assert!(stdout.contains("held-out corrections"), "{stdout}");
    // A correct tier of COMPLEX is also an outcome: a stronger model was needed.
    assert!(stdout.contains("held-out outcomes"), "{stdout}");

    // Reload while traffic flows: nothing fails.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let url = t.url("/v1/chat/completions");
    let traffic = {
        let (stop, failures, sent, url) =
            (stop.clone(), failures.clone(), sent.clone(), url.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client().post(&url).json(&chat(SIMPLE_TEXT)).send().await;
                sent.fetch_add(1, Ordering::Relaxed);
                if !matches!(r, Ok(ref r) if r.status() == 200) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = client()
        .post(t.url("/admin/reload"))
        .bearer_auth("learn-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) > 2);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed during the reload"
    );

    let mut after = Vec::new();
    for text in &corrected {
        after.push(tier_of(&t, text).await);
    }
    let fixed = after.iter().filter(|t| *t == "COMPLEX").count();
    // All the corrections used for training, and most of the held-out ones.
    assert!(
        fixed * 5 >= corrected.len() * 4,
        "corrected requests now COMPLEX: {after:?}"
    );
    let mut para = Vec::new();
    for text in &paraphrases {
        para.push(tier_of(&t, text).await);
    }
    assert!(
        para.iter().all(|t| t == "COMPLEX"),
        "paraphrases follow: {para:?}"
    );
    // Unrelated traffic is unchanged.
    assert_eq!(tier_of(&t, SIMPLE_TEXT).await, "SIMPLE");

    // Roll back to the baseline head.
    let list = triage_cmd(&cfg_path, &data)
        .args(["head", "list"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&list.stdout).into_owned();
    let baseline = listing
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("baseline-")))
        .unwrap_or_else(|| panic!("no baseline in {listing}"))
        .to_string();
    assert_eq!(listing.lines().count(), 2, "{listing}");
    // Newest last, the retrained head current, both with their routed accuracy.
    let lines: Vec<&str> = listing.lines().collect();
    assert!(
        lines[0].contains("baseline-") && !lines[0].starts_with('*'),
        "{listing}"
    );
    assert!(lines[1].starts_with('*'), "{listing}");
    for l in &lines {
        assert!(
            l.contains("routed validation accuracy") && l.contains('%'),
            "{listing}"
        );
    }
    let used = triage_cmd(&cfg_path, &data)
        .args(["head", "use", &baseline])
        .output()
        .unwrap();
    assert!(used.status.success());
    let r = client()
        .post(t.url("/admin/reload"))
        .bearer_auth("learn-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(tier_of(&t, &corrected[0]).await, before[0], "rolled back");

    // A failed reload (broken head file) keeps the running head and says why.
    std::fs::write(dir.path().join("models/tier-head.json"), "{ not json").unwrap();
    let r = client()
        .post(t.url("/admin/reload"))
        .bearer_auth("learn-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("unchanged"));
    assert_eq!(tier_of(&t, &corrected[0]).await, before[0]);
    triage_cmd(&cfg_path, &data)
        .args(["head", "use", &baseline])
        .output()
        .unwrap();

    // Random labels on varied requests: the gate refuses them.
    let varied: Vec<String> = std::fs::read_to_string(format!(
        "{}/training/validation.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .lines()
    .step_by(23)
    .take(36)
    .map(|l| {
        serde_json::from_str::<Value>(l).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .collect();
    let tiers = ["SIMPLE", "MODERATE", "COMPLEX"];
    let mut seed = 12345u64;
    let labels: Vec<&'static str> = (0..varied.len())
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            tiers[(seed >> 33) as usize % 3]
        })
        .collect();
    let data2 = dir.path().join("data2");
    let t2 = start_triage_from_file(&cfg_path, &data2).await;
    send_with_feedback(&t2, &varied, |i| labels[i]).await;
    let out = triage_cmd(&cfg_path, &data2)
        .args([
            "retrain",
            "--since",
            "1d",
            "--outcomes",
            "tests/fixtures/outcomes/routellm-300.jsonl",
            "--cache-dir",
        ])
        .arg(&embed_cache)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("retrain with random labels:\n{stdout}");
    assert!(stdout.contains("REFUSED"), "{stdout}");
}
