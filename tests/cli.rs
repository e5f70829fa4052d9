//! The `triage` binary as a user runs it.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn triage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triage"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("TRIAGE_CONFIG");
    c
}

#[test]
fn route_prints_tier_model_and_latency() {
    let out = triage()
        .args(["route", "What are your business hours?"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("tier SIMPLE"), "{s}");
    assert!(s.contains("model gpt-4o-mini"), "{s}");
    assert!(s.contains("latency tokenize"), "{s}");
}

#[test]
fn route_jsonl_reports_bad_lines_and_carries_on() {
    let mut child = triage()
        .args(["route", "--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"{\"text\": \"hello!\"}\n{\"text\": broken\n\nWrite a quicksort in Rust with generics and tests\n{\"txt\": 1}\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "blank lines are skipped: {lines:?}");
    assert_eq!(lines[0]["text"], "hello!");
    assert_eq!(lines[0]["tier"], "SIMPLE");
    for key in ["confidence", "probs", "model", "latency_us"] {
        assert!(lines[0].get(key).is_some(), "{key} missing: {}", lines[0]);
    }
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));
    assert_eq!(lines[2]["tier"], "COMPLEX");
    assert!(lines[3]["error"].as_str().unwrap().contains("text"));
}

#[test]
fn route_uses_the_config_routing_table() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        "[router.tiers]\nSIMPLE = [\"tiny\"]\nMODERATE = [\"mid\"]\nCOMPLEX = [\"huge\"]\n",
    )
    .unwrap();
    let out = triage()
        .args(["route", "--json", "--config"])
        .arg(&cfg)
        .arg("hi!")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "tiny");
}

#[test]
fn bad_config_names_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[router]\nmin_confidense = 0.4\n").unwrap();
    let out = triage()
        .args(["route", "x", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("min_confidense") && err.contains("bad.toml"),
        "{err}"
    );
}

#[test]
fn eval_reports_metrics_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("e.jsonl");
    std::fs::write(
        &f,
        "{\"text\": \"hello there\", \"tier\": \"SIMPLE\"}\n{\"text\": \"Write a Python function that merges overlapping intervals and explain its complexity\", \"tier\": \"COMPLEX\"}\n",
    )
    .unwrap();
    let out = triage()
        .args(["eval", "--json", "--data-dir"])
        .arg(dir.path())
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["head"]["examples"], 2);
    assert_eq!(v["head"]["accuracy"], 1.0);
    assert_eq!(v["head"]["confusion"].as_array().unwrap().len(), 3);
    assert!(v["routed"]["top_to_bottom_rate"].is_number());
}

#[test]
fn a_head_for_another_embedding_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let head = dir.path().join("h.safetensors");
    std::fs::copy(root.join("models/tier-head.safetensors"), &head).unwrap();
    let mut meta: Value =
        serde_json::from_slice(&std::fs::read(root.join("models/tier-head.json")).unwrap())
            .unwrap();
    meta["embedding_sha256"] = "0000".into();
    meta["embedding_model"] = "some/other-model".into();
    std::fs::write(dir.path().join("h.json"), meta.to_string()).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[router]\nhead = {:?}\n", head.to_string_lossy()),
    )
    .unwrap();
    let out = triage()
        .args(["route", "hi", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("some/other-model") && err.contains("triage train"),
        "{err}"
    );
}

#[test]
fn bench_reports_latency_throughput_and_stages() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("p.txt");
    std::fs::write(
        &prompts,
        "hello\nWrite a haiku about rain\n{\"text\": \"What is 2+2?\"}\n",
    )
    .unwrap();
    let out = triage()
        .args([
            "bench",
            "--duration",
            "1s",
            "--concurrency",
            "2",
            "--json",
            "--prompts",
        ])
        .arg(&prompts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["requests"].as_u64().unwrap() > 0);
    assert_eq!(v["errors"], 0);
    assert!(v["latency"]["p99_us"].as_u64().unwrap() >= v["latency"]["p50_us"].as_u64().unwrap());
    assert!(v["stages"]["embed"]["p50_us"].as_u64().unwrap() > 0);
    assert!(v["throughput_rps"].as_f64().unwrap() > 0.0);
}

#[test]
fn start_up_errors_are_said_once_and_name_what_is_wrong() {
    // A missing config file: the OS reason once, not twice.
    let out = triage()
        .args(["--config", "missing.toml", "route", "hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.toml"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");

    // A port in use: the address is named.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = triage()
        .args(["serve", "--dry-run", "--listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.contains("in use"), "{err}");

    // An upstream key that is configured but not set stops start-up, naming the
    // variable; a dry run starts without it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        "[[upstreams]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"TRIAGE_TEST_NOT_SET\"\n",
    )
    .unwrap();
    let out = triage()
        .env_remove("TRIAGE_TEST_NOT_SET")
        .args(["--config", cfg.to_str().unwrap(), "--data-dir"])
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TRIAGE_TEST_NOT_SET"), "{err}");
}

#[test]
fn eval_outcomes_reports_the_curve_against_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("curve.svg");
    let out = triage()
        .args([
            "eval",
            "--outcomes",
            "tests/fixtures/outcomes/small.jsonl",
            "--models",
            "cheap,mid,strong",
            "--price",
            "cheap=1:0",
            "--price",
            "mid=2:0",
            "--price",
            "strong=10:0",
            "--json",
            "--plot",
        ])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = &v["overall"];
    let d = &o["decisions"];
    let close = |a: &Value, b: f64| (a.as_f64().unwrap() - b).abs() < 1e-9;
    // Each model alone: cheap 2/4 quality for $4, mid 2.5/4 for $8, strong 3.5/4 for $40.
    assert!(
        close(&d["each_model"][0]["quality"], 0.5) && close(&d["each_model"][0]["cost"], 4.0),
        "{d}"
    );
    assert!(
        close(&d["each_model"][1]["quality"], 0.625) && close(&d["each_model"][1]["cost"], 8.0)
    );
    assert!(
        close(&d["each_model"][2]["quality"], 0.875) && close(&d["each_model"][2]["cost"], 40.0)
    );
    // Oracle: cheap, cheap, strong, strong → quality 1.0 for $22.
    assert!(
        close(&d["oracle"]["quality"], 1.0) && close(&d["oracle"]["cost"], 22.0),
        "{d}"
    );
    // The random router with the routed mix costs what that mix costs on average.
    let mix: Vec<f64> = d["mix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_f64().unwrap())
        .collect();
    assert!((mix.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(close(
        &d["random_same_mix"]["cost"],
        mix[0] * 4.0 + mix[1] * 8.0 + mix[2] * 40.0
    ));
    // The curve runs between cheap and strong. Oracle order by gain (1, 1, 0, -½):
    // PGR 0, 2/3, 4/3, 4/3, 1 → APGR ¼·(⅓ + 1 + 4/3 + 7/6) = 0.9583.
    let c = &o["curve"];
    assert!(close(&c["oracle_apgr"], 23.0 / 24.0), "{c}");
    let apgr = c["apgr"].as_f64().unwrap();
    assert!(close(&c["lift"], (apgr - 0.5) / (23.0 / 24.0 - 0.5)), "{c}");
    // The shipped head ranks the proof and the code above the greeting and the FAQ.
    assert!(apgr > 0.5, "{c}");
    assert!(v["benchmarks"]["code"]["curve"]["requests"] == 2);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("oracle") && plot.contains("random"));
}
