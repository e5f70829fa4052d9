//! `triage prompt audit`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use triage::compress::audit::{audit, split_sentences};
use triage::embed::{cosine, Embedder};
use triage::engine::embed_options;
use triage::upstream::{ForwardBody, Upstreams};

#[derive(Subcommand, Debug)]
pub enum PromptCommand {
    /// Tokens per sentence, near-duplicates, restated defaults, monthly cost; with
    /// --ablate, which sentences change the answers at all.
    Audit(AuditArgs),
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The system prompt (a text file).
    pub file: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pub requests_per_day: u64,
    /// Model the prompt is sent to (token counting, price; with --ablate, called).
    #[arg(long, default_value = "gpt-4o-mini")]
    pub model: String,
    /// Similarity above which two sentences are near-duplicates.
    #[arg(long, default_value_t = 0.8)]
    pub duplicate_threshold: f32,
    /// Drop one sentence at a time and replay --eval against the upstream.
    #[arg(long, requires = "eval")]
    pub ablate: bool,
    /// Eval requests (JSONL: `{"messages": [...]}` or `{"text": ...}`).
    #[arg(long)]
    pub eval: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &super::Global, cmd: PromptCommand) -> anyhow::Result<ExitCode> {
    let PromptCommand::Audit(a) = cmd;
    let cfg = super::load_config(g)?;
    let prompt = std::fs::read_to_string(&a.file)?;
    let embedder = Embedder::load(&embed_options(&cfg)?)?;
    let prices = triage::ledger::Prices::new(&cfg.prices);
    let upstream_model = cfg.model(&a.model).map(|m| m.upstream_model().to_string());
    let price = prices.get(&a.model, upstream_model.as_deref()).copied();
    let mut report = audit(
        &prompt,
        // Tokens are counted by the id the upstream knows the model by.
        cfg.upstream_model_id(&a.model),
        a.requests_per_day,
        price.as_ref(),
        &embedder,
        a.duplicate_threshold,
        0.75,
    )?;
    report.model = a.model.clone();
    let ablation = if a.ablate {
        let eval = a
            .eval
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("--ablate needs --eval FILE"))?;
        Some(ablate(&cfg, &a.model, &prompt, eval, &embedder)?)
    } else {
        None
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"audit": report, "ablation": ablation}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} tokens on {}",
        a.file.display(),
        report.total_tokens,
        report.model
    );
    match (report.monthly_cost_usd, report.monthly_cost_cached_usd) {
        (Some(c), Some(cc)) => println!(
            "at {} requests/day: ${c:.2} per 30 days (${cc:.2} if the provider caches the prompt)",
            report.requests_per_day
        ),
        _ => println!(
            "{} has no price: set [prices.{}] to see the monthly cost",
            a.model, a.model
        ),
    }
    println!("\n{:>3} {:>6}  sentence", "#", "tokens");
    for s in &report.sentences {
        let note = s
            .restates_default
            .as_ref()
            .map(|(d, sim)| format!("   <- restates default behaviour ({sim:.2}: \"{d}\")"))
            .unwrap_or_default();
        println!("{:>3} {:>6}  {}{}", s.index, s.tokens, s.text, note);
    }
    if !report.near_duplicates.is_empty() {
        println!("\nnear-duplicate sentences:");
        for (i, j, sim) in &report.near_duplicates {
            println!(
                "  #{i} ~ #{j} ({sim:.2}): \"{}\" / \"{}\"",
                report.sentences[*i].text, report.sentences[*j].text
            );
        }
    }
    if let Some(ab) = &ablation {
        println!(
            "\nablation (mean similarity of answers without the sentence to answers with it):"
        );
        for row in ab.as_array().into_iter().flatten() {
            println!(
                "  #{:<3} {:.3} {}  {}",
                row["index"],
                row["similarity"].as_f64().unwrap_or(0.0),
                if row["changes_answers"] == true {
                    "changes answers"
                } else {
                    "no effect      "
                },
                row["sentence"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_requests(path: &PathBuf) -> anyhow::Result<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    for (i, line) in std::fs::read_to_string(path)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        let msgs = match (
            v.get("messages").and_then(Value::as_array),
            v.get("text").and_then(Value::as_str),
        ) {
            (Some(m), _) => m
                .iter()
                .filter(|m| m["role"] != "system")
                .cloned()
                .collect(),
            (None, Some(t)) => vec![json!({"role": "user", "content": t})],
            _ => anyhow::bail!("{}:{}: needs `messages` or `text`", path.display(), i + 1),
        };
        out.push(msgs);
    }
    Ok(out)
}

/// For each sentence: answers without it vs. with the whole prompt.
fn ablate(
    cfg: &triage::config::Config,
    model: &str,
    prompt: &str,
    eval: &PathBuf,
    embedder: &Embedder,
) -> anyhow::Result<Value> {
    if cfg.model(model).is_none() {
        anyhow::bail!(
            "--ablate calls the upstream: `{model}` must be a [[models]] entry in the config"
        );
    }
    let requests = eval_requests(eval)?;
    let sentences = split_sentences(prompt);
    let rt = tokio::runtime::Runtime::new()?;
    let upstreams = Upstreams::new(cfg, true).map_err(anyhow::Error::msg)?;
    let ask = |system: &str, msgs: &[Value]| -> anyhow::Result<String> {
        let mut messages = vec![json!({"role": "system", "content": system})];
        messages.extend(msgs.iter().cloned());
        let body = json!({"model": model, "messages": messages, "temperature": 0});
        let request = triage::wire::openai_chat::parse_request(body)
            .map_err(|e| anyhow::anyhow!("{}: {e}", eval.display()))?;
        let fwd = rt
            .block_on(upstreams.forward(
                &[model.to_string()],
                &request,
                Instant::now() + Duration::from_secs(120),
            ))
            .map_err(|e| anyhow::anyhow!("upstream: {e}"))?;
        match fwd.body {
            ForwardBody::Json { reply, .. } => Ok(reply.text()),
            ForwardBody::Stream { .. } => anyhow::bail!("unexpected stream"),
        }
    };
    let baseline: Vec<String> = requests
        .iter()
        .map(|r| ask(prompt, r))
        .collect::<anyhow::Result<_>>()?;
    let (base_emb, _) = embedder.embed(&baseline)?;
    let mut rows = Vec::new();
    for (i, s) in sentences.iter().enumerate() {
        let without: String = sentences
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != i)
            .map(|(_, x)| x.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let answers: Vec<String> = requests
            .iter()
            .map(|r| ask(&without, r))
            .collect::<anyhow::Result<_>>()?;
        let (emb, _) = embedder.embed(&answers)?;
        let sims: Vec<f32> = emb
            .iter()
            .zip(&base_emb)
            .map(|(a, b)| cosine(&a.vector, &b.vector))
            .collect();
        let mean = sims.iter().sum::<f32>() / sims.len().max(1) as f32;
        rows.push(json!({
            "index": i, "sentence": s, "similarity": mean,
            "changes_answers": mean < 0.97,
        }));
    }
    Ok(Value::Array(rows))
}
