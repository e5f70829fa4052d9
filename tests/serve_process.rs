//! `triage serve` as a real process: startup, SIGTERM draining.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("triage exited early: {status}");
        }
        if let Ok(r) = client()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "triage did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_streams_then_exits() {
    let fake = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("triage.toml");
    std::fs::write(
        &cfg,
        openai_config(&fake, ["slow-stream", "ok-moderate", "ok-complex"], "")
            .replace("[router]", "[server]\nshutdown_grace_secs = 10\n[router]"),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_triage"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&cfg)
        // Each server its own data directory: tests run in parallel.
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(port, &mut child).await;

    let mut body = chat(SIMPLE_TEXT);
    body["stream"] = json!(true);
    let r = client()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    // The stream in flight still completes.
    let mut rest = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = stream.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    let content: String = sse_data(&rest)
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, STREAM_WORDS.concat());

    // Then the process exits cleanly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "triage did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn bench_against_a_running_dry_run_server() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_triage"))
        .args([
            "serve",
            "--dry-run",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(port, &mut child).await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_triage"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "bench",
                "--duration",
                "1s",
                "--concurrency",
                "4",
                "--json",
                "--url",
            ])
            .arg(format!("http://127.0.0.1:{port}"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "http");
    assert!(v["requests"].as_u64().unwrap() > 0);
    assert_eq!(v["errors"], 0);
}
