//! `triage cache explain`: would B be served A's cached answer?

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use triage::cache::{decide_hit_with, ModelWords};
use triage::embed::{cosine, Embedder};
use triage::engine::embed_options;

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Would request B be served the cached answer of request A (same scope)?
    Explain(ExplainArgs),
    /// Fill a cache directory with synthetic entries (benchmarks, crash tests).
    #[command(hide = true)]
    Fill(FillArgs),
}

#[derive(Args, Debug)]
pub struct FillArgs {
    #[arg(long)]
    pub dir: std::path::PathBuf,
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Write a snapshot after every N inserts (0: never).
    #[arg(long, default_value_t = 0)]
    pub snapshot_every: usize,
    /// Scopes the entries are spread over.
    #[arg(long, default_value_t = 1)]
    pub scopes: usize,
    /// Pad each question to this many bytes (RSS measurements with realistic sizes).
    #[arg(long, default_value_t = 0)]
    pub text_bytes: usize,
    /// Pad each answer to this many bytes.
    #[arg(long, default_value_t = 0)]
    pub answer_bytes: usize,
}

/// `s`, padded with filler words to `len` bytes.
fn padded(mut s: String, len: usize) -> String {
    while s.len() < len {
        s.push_str(" lorem");
    }
    s
}

fn fill(a: FillArgs) -> anyhow::Result<ExitCode> {
    use triage::cache::{CachedAnswer, SemanticCache};
    let cfg = triage::config::CacheConfig {
        max_entries: a.count.max(1),
        max_bytes: usize::MAX,
        ..Default::default()
    };
    let cache = SemanticCache::open(cfg, &a.dir)?;
    let start = cache.len();
    for i in start..start + a.count {
        let mut scope = [0u8; 16];
        scope[..8].copy_from_slice(&((i % a.scopes.max(1)) as u64).to_le_bytes());
        cache.insert(
            scope,
            "fill",
            &padded(format!("question {i}"), a.text_bytes),
            triage::cache::synthetic_vector(i as u64, 384),
            CachedAnswer {
                content: padded(format!("answer {i}"), a.answer_bytes),
                model: "synthetic".into(),
                response_model: "synthetic".into(),
                finish_reason: "stop".into(),
                prompt_tokens: 10,
                completion_tokens: 20,
                cached_tokens: 0,
            },
        );
        if a.snapshot_every > 0 && (i + 1) % a.snapshot_every == 0 {
            cache.snapshot()?;
        }
    }
    println!("{} entries in {}", cache.len(), a.dir.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The earlier (cached) request.
    pub a: Option<String>,
    /// The new request.
    pub b: Option<String>,
    /// Read `{"a": ..., "b": ...}` lines from stdin; write `{"hit", "similarity", "reason"}`.
    #[arg(long)]
    pub jsonl: bool,
    /// Use this tier's threshold (cache.tier_similarity).
    #[arg(long)]
    pub tier: Option<String>,
}

pub fn run(g: &super::Global, cmd: CacheCommand) -> anyhow::Result<ExitCode> {
    let a = match cmd {
        CacheCommand::Explain(a) => a,
        CacheCommand::Fill(f) => return fill(f),
    };
    let cfg = super::load_config(g)?;
    let threshold = cfg.cache.threshold(a.tier.as_deref());
    let embedder = std::sync::Arc::new(Embedder::load(&embed_options(&cfg)?)?);
    let words = ModelWords::new(embedder.clone());
    let judge = |x: &str, y: &str| -> anyhow::Result<serde_json::Value> {
        let (e, _) = embedder.embed(&[x, y])?;
        let sim = cosine(&e[0].vector, &e[1].vector);
        let d = decide_hit_with(x, y, sim, threshold, Some(&words));
        Ok(json!({
            "hit": d.hit,
            "similarity": triage::classify::round4(d.similarity),
            "reason": d.reason,
            "rejected_by": d.rejected_by,
        }))
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.jsonl {
        for (i, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let v = match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(v) => match (
                    v.get("a").and_then(|x| x.as_str()),
                    v.get("b").and_then(|x| x.as_str()),
                ) {
                    (Some(x), Some(y)) => judge(x, y)?,
                    _ => {
                        json!({"line": i + 1, "error": "each line needs string fields `a` and `b`"})
                    }
                },
                Err(e) => json!({"line": i + 1, "error": format!("malformed JSON: {e}")}),
            };
            writeln!(out, "{v}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(x), Some(y)) = (a.a.as_deref(), a.b.as_deref()) else {
        anyhow::bail!("give two requests A and B, or --jsonl");
    };
    let v = judge(x, y)?;
    writeln!(
        out,
        "{}\n  similarity {} (threshold {threshold:.2})\n  {}",
        if v["hit"] == true {
            "HIT: B would be served A's answer"
        } else {
            "MISS: B would go upstream"
        },
        v["similarity"],
        v["reason"].as_str().unwrap_or("")
    )?;
    Ok(ExitCode::SUCCESS)
}
