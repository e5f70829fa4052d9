//! `triage bench`: routing latency and throughput, in-process or against a server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use serde_json::json;
use triage::embed::EmbedPool;
use triage::engine::Engine;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Prompts: JSONL with `text`, or plain lines (default: training/validation.jsonl).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// How long to run: 30s, 2m.
    #[arg(long, default_value = "30s")]
    pub duration: String,
    /// Benchmark a running server's POST /v1/route instead of in-process routing.
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: send whole chat completions (model "auto") instead of /v1/route,
    /// and break each one down by the server's Server-Timing header (embedding,
    /// upstream, triage's own overhead). Point the server at `triage fake-upstream`
    /// to measure the sidecar's overhead against a zero-latency provider.
    #[arg(long, requires = "url")]
    pub chat: bool,
    /// With --chat: the inbound API the requests speak.
    #[arg(long, value_enum, default_value_t = BenchApi::Chat, requires = "chat")]
    pub api: BenchApi,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchApi {
    /// POST /v1/chat/completions
    Chat,
    /// POST /v1/messages (Anthropic Messages)
    Messages,
    /// POST /v1/responses (OpenAI Responses)
    Responses,
}

impl BenchApi {
    /// The path under /v1 and the body for one prompt.
    fn request(self, text: &str) -> (&'static str, serde_json::Value) {
        match self {
            BenchApi::Chat => (
                "chat/completions",
                json!({"model": "auto", "messages": [{"role": "user", "content": text}]}),
            ),
            BenchApi::Messages => (
                "messages",
                json!({"model": "auto", "max_tokens": 256, "messages": [{"role": "user", "content": text}]}),
            ),
            BenchApi::Responses => ("responses", json!({"model": "auto", "input": text})),
        }
    }
}

fn load_prompts(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    let out: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_string))
                .unwrap_or_else(|| l.to_string())
        })
        .collect();
    if out.is_empty() {
        anyhow::bail!("{} has no prompts", path.display());
    }
    Ok(out)
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn summary(mut v: Vec<u64>) -> serde_json::Value {
    v.sort_unstable();
    let mean = if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<u64>() as f64 / v.len() as f64
    };
    json!({"p50_us": pct(&v, 0.5), "p95_us": pct(&v, 0.95), "p99_us": pct(&v, 0.99), "mean_us": mean.round()})
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_server_timing() {
        let h = "embed;dur=0.812, upstream;dur=0.050, overhead;dur=0.121, total;dur=0.983";
        assert_eq!(super::server_timing(h, "embed"), Some(812));
        assert_eq!(super::server_timing(h, "overhead"), Some(121));
        assert_eq!(super::server_timing(h, "missing"), None);
        assert_eq!(super::server_timing("embed;desc=x", "embed"), None);
    }
}

#[derive(Default)]
struct Samples {
    total: Vec<u64>,
    queue: Vec<u64>,
    tokenize: Vec<u64>,
    embed: Vec<u64>,
    pool: Vec<u64>,
    head: Vec<u64>,
    batch: Vec<u64>,
    /// From Server-Timing, with --chat.
    upstream: Vec<u64>,
    overhead: Vec<u64>,
    errors: u64,
}

/// `name;dur=MS` entries of a Server-Timing header, in microseconds.
fn server_timing(h: &str, name: &str) -> Option<u64> {
    h.split(',').find_map(|part| {
        let mut it = part.trim().split(';');
        if it.next()?.trim() != name {
            return None;
        }
        it.find_map(|p| p.trim().strip_prefix("dur="))
            .and_then(|d| d.parse::<f64>().ok())
            .map(|ms| (ms * 1000.0).round() as u64)
    })
}

fn bar(secs: u64) -> ProgressBar {
    let pb = ProgressBar::new(secs);
    pb.set_style(
        ProgressStyle::with_template("bench [{bar:40}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

pub fn run(g: &super::Global, a: BenchArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    let duration =
        triage::ledger::report::parse_duration(&a.duration).map_err(anyhow::Error::msg)?;
    let prompts_path = a.prompts.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("training/validation.jsonl")
    });
    let prompts = Arc::new(load_prompts(&prompts_path)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let samples = Arc::new(Mutex::new(Samples::default()));
    let concurrency = a.concurrency.max(1);
    let engine = if a.url.is_none() {
        let e = Engine::load(&cfg)?;
        e.warm_up();
        Some(e)
    } else {
        None
    };
    let started = Instant::now();
    let pb = bar(duration.as_secs().max(1));
    rt.block_on(async {
        let deadline = Instant::now() + duration;
        let mut tasks = Vec::new();
        // No memo here: the bench measures the forward pass, and its prompts repeat.
        let pool = engine.as_ref().map(|e| {
            EmbedPool::start(e.embedder.clone(), cfg.embed.workers, cfg.embed.max_batch, cfg.embed.queue_capacity)
        });
        let client = reqwest::Client::new();
        for w in 0..concurrency {
            let (prompts, samples, pool, client) = (prompts.clone(), samples.clone(), pool.clone(), client.clone());
            let head = engine.as_ref().map(|e| e.head.clone());
            let url = a.url.clone();
            let chat = a.chat;
            let api = a.api;
            let router = cfg.router.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while Instant::now() < deadline {
                    let text = &prompts[i % prompts.len()];
                    i += concurrency;
                    let t = Instant::now();
                    match (&url, &pool, &head) {
                        (Some(url), _, _) => {
                            let (path, body) = if chat {
                                api.request(text)
                            } else {
                                ("route", json!({"model": "auto", "messages": [{"role": "user", "content": text}]}))
                            };
                            let r = client.post(format!("{}/v1/{path}", url.trim_end_matches('/'))).json(&body).send().await;
                            let r = match r {
                                Ok(r) if r.status().is_success() => r,
                                _ => {
                                    samples.lock().errors += 1;
                                    continue;
                                }
                            };
                            let timing = r.headers().get("server-timing").and_then(|v| v.to_str().ok()).map(str::to_string);
                            let read = r.bytes().await.is_ok();
                            let mut s = samples.lock();
                            if !read {
                                s.errors += 1;
                                continue;
                            }
                            s.total.push(t.elapsed().as_micros() as u64);
                            if let Some(h) = timing {
                                if let (Some(e), Some(u), Some(o)) = (server_timing(&h, "embed"), server_timing(&h, "upstream"), server_timing(&h, "overhead")) {
                                    s.embed.push(e);
                                    s.upstream.push(u);
                                    s.overhead.push(o);
                                }
                            }
                        }
                        (None, Some(pool), Some(head)) => match pool.embed(text.clone()).await {
                            Ok(e) => {
                                let th = Instant::now();
                                let pred = head.predict(&e.embedding.features);
                                let _ = triage::classify::apply_policy(&pred, router.min_confidence, router.top_tier_guard);
                                let head_us = th.elapsed().as_micros() as u64;
                                let mut s = samples.lock();
                                s.total.push(t.elapsed().as_micros() as u64);
                                s.queue.push(e.queue_us);
                                s.tokenize.push(e.timings.tokenize_us);
                                s.embed.push(e.timings.forward_us);
                                s.pool.push(e.timings.pool_us);
                                s.head.push(head_us);
                                s.batch.push(e.batch_size as u64);
                            }
                            Err(_) => samples.lock().errors += 1,
                        },
                        _ => break,
                    }
                }
            }));
        }
        let ticker = {
            let (pb, samples) = (pb.clone(), samples.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let n = samples.lock().total.len();
                    pb.inc(1);
                    pb.set_message(format!("{n} requests"));
                }
            })
        };
        for t in tasks {
            let _ = t.await;
        }
        ticker.abort();
    });
    pb.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let s = std::mem::take(&mut *samples.lock());
    let n = s.total.len();
    let mean_batch = if s.batch.is_empty() {
        0.0
    } else {
        s.batch.iter().sum::<u64>() as f64 / s.batch.len() as f64
    };
    let report = json!({
        "mode": if a.url.is_some() { "http" } else { "in-process" },
        "prompts": prompts_path,
        "concurrency": concurrency,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "requests": n,
        "errors": s.errors,
        "seconds": elapsed,
        "throughput_rps": n as f64 / elapsed,
        "latency": summary(s.total),
        "stages": if a.url.is_none() { json!({
            "queue": summary(s.queue), "tokenize": summary(s.tokenize), "embed": summary(s.embed),
            "pool": summary(s.pool), "head": summary(s.head), "mean_batch": mean_batch,
        }) } else if !s.overhead.is_empty() { json!({
            "embed": summary(s.embed), "upstream": summary(s.upstream), "overhead": summary(s.overhead),
        }) } else { json!(null) },
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let l = &report["latency"];
        println!(
            "{} requests in {:.1}s ({} errors), {:.1} decisions/s at concurrency {}",
            n,
            elapsed,
            s.errors,
            report["throughput_rps"].as_f64().unwrap_or(0.0),
            concurrency
        );
        println!(
            "latency p50 {} us  p95 {} us  p99 {} us",
            l["p50_us"], l["p95_us"], l["p99_us"]
        );
        if let Some(st) = report["stages"].as_object() {
            for k in [
                "queue", "tokenize", "embed", "pool", "head", "upstream", "overhead",
            ] {
                if !st.contains_key(k) {
                    continue;
                }
                println!(
                    "  {k:<9} p50 {:>7} us  p95 {:>7} us  p99 {:>7} us",
                    st[k]["p50_us"], st[k]["p95_us"], st[k]["p99_us"]
                );
            }
            if a.url.is_none() {
                println!("  mean batch size {:.2}", mean_batch);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
