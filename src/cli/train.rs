//! `triage train` and `triage eval`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use triage::classify::{
    apply_policy, evaluate, read_examples, tier_index, train_head, EmbeddingCache, HeadMeta,
    LabeledExample, TrainOptions,
};
use triage::embed::Embedder;
use triage::engine::{embed_options, head_path, load_head};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training split (JSONL: text, tier, kind, source).
    #[arg(long, default_value = "training/train.jsonl")]
    pub train: PathBuf,
    /// Validation split, used for early stopping and the reported metrics.
    #[arg(long, default_value = "training/validation.jsonl")]
    pub validation: PathBuf,
    /// Where to write the head (default: router.head from config).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Tier names, cheapest first.
    #[arg(long, value_delimiter = ',', default_value = "SIMPLE,MODERATE,COMPLEX")]
    pub labels: Vec<String>,
    #[arg(long, default_value_t = 2000)]
    pub max_epochs: usize,
    #[arg(long, default_value_t = 0.01)]
    pub learning_rate: f64,
    /// L2 penalty on the weights (over standardized features).
    #[arg(long, default_value_t = 0.07)]
    pub l2: f64,
    #[arg(long, default_value_t = 100)]
    pub patience: usize,
    /// Embedding cache directory (default: DATA_DIR/embed-cache).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Outcome data the "needs a stronger model" output is trained on (prompts with
    /// each model's measured score; see training/outcomes/README.md).
    #[arg(long, default_value = "training/outcomes/routellm.jsonl")]
    pub outcomes: PathBuf,
    /// The (cheaper, stronger) models of --outcomes, as the file names them.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview"
    )]
    pub outcome_models: Vec<String>,
    /// Their prices, for the cost shares of the operating points: a JSON object
    /// of MODEL: [input, output] USD per 1M tokens.
    #[arg(long, default_value = "training/outcomes/prices.json")]
    pub outcome_prices: PathBuf,
    /// Train the tiers only, without the outcome output.
    #[arg(long)]
    pub no_outcomes: bool,
    /// Weight of the expected tier in the strength (the outcome output gets the rest).
    #[arg(long, default_value_t = 0.5)]
    pub blend: f32,
    /// L2 penalty of the outcome output.
    #[arg(long, default_value_t = 1.0)]
    pub outcome_l2: f64,
}

/// The outcome rows and features `triage train` and `triage retrain` use.
pub struct LoadedOutcomes {
    pub rows: Vec<triage::classify::outcomes::OutcomeRow>,
    pub features: Vec<Vec<f32>>,
    pub costs: Vec<Vec<f64>>,
    pub data: String,
    pub models: Vec<String>,
}

impl LoadedOutcomes {
    /// The data, with `extra` labeled requests (weighted `extra_weight`) for the fit.
    pub fn data<'a>(
        &'a self,
        extra: &'a [(Vec<f32>, f32)],
        extra_weight: f32,
    ) -> triage::classify::outcome_head::OutcomeData<'a> {
        triage::classify::outcome_head::OutcomeData {
            rows: &self.rows,
            features: &self.features,
            costs: &self.costs,
            data: self.data.clone(),
            models: self.models.clone(),
            extra,
            extra_weight,
        }
    }
}

/// Reads and embeds the outcome file for the outcome output.
pub fn load_outcomes(
    path: &Path,
    models: &[String],
    prices: &Path,
    embedder: &Embedder,
    cache: &mut EmbeddingCache,
) -> anyhow::Result<LoadedOutcomes> {
    if models.len() != 2 {
        anyhow::bail!("--outcome-models takes two names: the cheaper model, then the stronger");
    }
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let rows = triage::classify::outcomes::read_outcomes(&text, models)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let table: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prices).with_context(|| prices.display().to_string())?,
    )
    .with_context(|| prices.display().to_string())?;
    let price = |m: &str| -> anyhow::Result<(f64, f64)> {
        let p = table.get(m).and_then(|v| v.as_array());
        match p.map(|a| {
            a.iter()
                .filter_map(serde_json::Value::as_f64)
                .collect::<Vec<_>>()
        }) {
            Some(v) if v.len() == 2 => Ok((v[0], v[1])),
            _ => anyhow::bail!("{}: no [input, output] price for `{m}`", prices.display()),
        }
    };
    let costs = triage::classify::outcomes::costs(&rows, &[price(&models[0])?, price(&models[1])?]);
    let texts: Vec<&str> = rows.iter().map(|r| r.prompt.as_str()).collect();
    let features = embed_all(embedder, cache, &texts)?;
    Ok(LoadedOutcomes {
        data: format!("{} (sha256 {})", path.display(), sha256_files(&[path])?),
        models: models.to_vec(),
        rows,
        features,
        costs,
    })
}

/// The cross-fitted outcome figures, as `train` and `retrain` print them.
pub fn render_outcome_report(r: &triage::classify::outcome_head::OutcomeReport) -> String {
    let row = |name: &str,
               s: &triage::classify::outcomes::CurveSummary,
               t: &triage::classify::outcomes::CurveSummary| {
        format!(
            "{name:<10} {:>7} {:>7.3} {:>7.3} {:>8.3} {:>12.3} {:>12.3}\n",
            s.requests, s.apgr, s.lift, s.oracle_apgr, t.apgr, t.lift
        )
    };
    let mut out = format!(
        "{:<10} {:>7} {:>7} {:>7} {:>8} {:>12} {:>12}\n",
        "outcomes", "prompts", "APGR", "lift", "oracle", "tier APGR", "tier lift"
    );
    out.push_str(&row("all", &r.overall, &r.overall_tier_only));
    for (b, s, t) in &r.benchmarks {
        out.push_str(&row(b, s, t));
    }
    let p = &r.taxonomy_point;
    out.push_str(&format!(
        "(cross-fitted over 5 folds; \"tier\" ranks by the expected tier alone)\n\
         the task-type decision alone keeps {:.1}% of the stronger model's quality with {:.1}% strong calls ({:.1}% of its cost)\n",
        p.quality_share * 100.0,
        p.strong_share * 100.0,
        p.cost_share * 100.0
    ));
    out
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Labeled JSONL file (text, tier): accuracy and the confusion matrix.
    #[arg(required_unless_present = "outcomes", conflicts_with = "outcomes")]
    pub file: Option<PathBuf>,
    /// Outcome JSONL (prompts with each model's measured score): quality and cost of
    /// the routed decisions and the cost/quality curve of the head's ranking.
    #[arg(long, requires = "models")]
    pub outcomes: Option<PathBuf>,
    /// With --outcomes: two or three model names as they appear in the file,
    /// cheapest first.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// With --outcomes: a model's price, MODEL=INPUT:OUTPUT in USD per 1M tokens
    /// (else the ledger's price table). Repeatable.
    #[arg(long)]
    pub price: Vec<String>,
    /// With --outcomes: draw the curve (router, random, oracle) as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Embeds every text, reusing and filling the cache.
pub fn embed_all(
    embedder: &Embedder,
    cache: &mut EmbeddingCache,
    texts: &[&str],
) -> anyhow::Result<Vec<Vec<f32>>> {
    let missing: Vec<&str> = {
        let mut seen = std::collections::HashSet::new();
        texts
            .iter()
            .copied()
            .filter(|t| cache.get(t).is_none() && seen.insert(*t))
            .collect()
    };
    if !missing.is_empty() {
        let pb = bar(missing.len(), "embedding");
        // Sorting by length keeps padding (wasted work) small inside a batch.
        let mut sorted = missing.clone();
        sorted.sort_by_key(|t| t.len());
        for chunk in sorted.chunks(32) {
            let (vecs, _) = embedder.embed(chunk)?;
            for (t, v) in chunk.iter().zip(vecs) {
                cache.insert(t, v.features);
            }
            pb.inc(chunk.len() as u64);
        }
        pb.finish_and_clear();
        cache.save()?;
    }
    texts
        .iter()
        .map(|t| {
            cache
                .get(t)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("embedding missing after embedding pass"))
        })
        .collect()
}

/// Borrowed views of owned strings.
pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn labels_of(
    examples: &[LabeledExample],
    labels: &[String],
    file: &Path,
) -> anyhow::Result<Vec<usize>> {
    examples
        .iter()
        .map(|e| {
            tier_index(labels, &e.tier).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: tier `{}` is not one of {}",
                    file.display(),
                    e.tier,
                    labels.join(", ")
                )
            })
        })
        .collect()
}

fn sha256_files(paths: &[&Path]) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    for p in paths {
        h.update(std::fs::read(p).with_context(|| p.display().to_string())?);
    }
    Ok(hex::encode(h.finalize()))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn run_train(g: &super::Global, a: TrainArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    let train = read_examples(&a.train)?;
    let val = read_examples(&a.validation)?;
    let ty = labels_of(&train, &a.labels, &a.train)?;
    let vy = labels_of(&val, &a.labels, &a.validation)?;
    eprintln!(
        "training on {} examples, validating on {} ({})",
        train.len(),
        val.len(),
        a.labels.join("/")
    );
    let embedder = Embedder::load(&embed_options(&cfg)?)?;
    let cache_dir = a
        .cache_dir
        .clone()
        .unwrap_or_else(|| super::data_dir(g, &cfg).join("embed-cache"));
    let mut cache = EmbeddingCache::open(
        &cache_dir,
        embedder.weights_sha256(),
        embedder.max_tokens(),
        embedder.features_dim(),
    );
    let cached_before = cache.len();
    let train_texts: Vec<String> = train.iter().map(LabeledExample::routed).collect();
    let val_texts: Vec<String> = val.iter().map(LabeledExample::routed).collect();
    let (train_texts, val_texts) = (refs(&train_texts), refs(&val_texts));
    let t0 = std::time::Instant::now();
    let tx = embed_all(&embedder, &mut cache, &train_texts)?;
    let vx = embed_all(&embedder, &mut cache, &val_texts)?;
    eprintln!(
        "embeddings ready in {:.1}s ({} were cached)",
        t0.elapsed().as_secs_f64(),
        cached_before
    );
    let meta = HeadMeta {
        labels: a.labels.clone(),
        embedding_model: embedder.model_id().to_string(),
        embedding_sha256: embedder.weights_sha256().to_string(),
        features: triage::embed::FEATURE_SPEC.to_string(),
        dim: embedder.features_dim(),
        max_tokens: embedder.max_tokens(),
        training_data_sha256: sha256_files(&[&a.train, &a.validation])?,
        train_examples: train.len(),
        validation_examples: val.len(),
        metrics: serde_json::Value::Null,
        created: now_rfc3339(),
        temperature: None,
        outcome: None,
    };
    let opts = TrainOptions {
        max_epochs: a.max_epochs,
        learning_rate: a.learning_rate,
        l2: a.l2,
        patience: a.patience,
    };
    let pb = bar(opts.max_epochs, "training");
    let (head, report) = train_head(&tx, &ty, &vx, &vy, meta, &opts, |epoch, tl, vl| {
        pb.set_position(epoch as u64);
        pb.set_message(format!("loss {tl:.3}/{vl:.3}"));
    })?;
    pb.finish_and_clear();
    let outcomes = if a.no_outcomes {
        None
    } else {
        Some(load_outcomes(
            &a.outcomes,
            &a.outcome_models,
            &a.outcome_prices,
            &embedder,
            &mut cache,
        )?)
    };
    let outcome_opts = triage::classify::outcome_head::OutcomeOptions {
        blend: a.blend,
        l2: a.outcome_l2,
        ..Default::default()
    };
    let data = outcomes.as_ref().map(|o| o.data(&[], 1.0));
    let (head, fin) = triage::classify::finish::finish_head(
        head,
        &vx,
        &vy,
        &tx,
        data.as_ref().map(|d| (d, &outcome_opts)),
        &cfg.router,
    )?;
    let out = a.out.clone().unwrap_or_else(|| head_path(&cfg));
    head.save(&out)?;
    println!(
        "stopped after {} epochs (best {}), train loss {:.4}, validation loss {:.4}",
        report.epochs_run, report.best_epoch, report.train_loss, report.val_loss
    );
    println!("\nvalidation, head argmax:\n{}", fin.argmax.render());
    println!(
        "validation, routed (min_confidence {}, top_tier_guard {}):\n{}",
        cfg.router.min_confidence,
        cfg.router.top_tier_guard,
        fin.routed.render()
    );
    println!(
        "temperature {:.2}; before it, {}after it,  {}routed decisions, {}",
        fin.temperature,
        fin.calibration_before.render(),
        fin.calibration.render(),
        fin.routed_calibration.render()
    );
    if let Some(r) = &fin.outcome {
        println!("{}", render_outcome_report(r));
    }
    println!(
        "wrote {} and {}",
        out.display(),
        triage::classify::meta_path(&out).display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_eval(g: &super::Global, a: EvalArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &a.outcomes {
        return super::outcomes::run(g, &a, path);
    }
    let Some(file) = a.file.clone() else {
        anyhow::bail!("give a labeled JSONL file, or --outcomes FILE --models CHEAP,STRONG");
    };
    let cfg = super::load_config(g)?;
    let examples = read_examples(&file)?;
    let embedder = Embedder::load(&embed_options(&cfg)?)?;
    let (head, _) = load_head(&cfg, &embedder)?;
    let labels = head.labels().to_vec();
    let truth = labels_of(&examples, &labels, &file)?;
    let mut cache = EmbeddingCache::open(
        &super::data_dir(g, &cfg).join("embed-cache"),
        embedder.weights_sha256(),
        embedder.max_tokens(),
        embedder.features_dim(),
    );
    let texts: Vec<String> = examples.iter().map(LabeledExample::routed).collect();
    let texts = refs(&texts);
    let xs = embed_all(&embedder, &mut cache, &texts)?;
    let preds: Vec<_> = xs.iter().map(|x| head.predict(x)).collect();
    let argmax: Vec<usize> = preds.iter().map(|p| p.tier).collect();
    let routed: Vec<usize> = preds
        .iter()
        .map(|p| apply_policy(p, cfg.router.min_confidence, cfg.router.top_tier_guard).0)
        .collect();
    let head_report = evaluate(&labels, &truth, &argmax);
    let routed_report = evaluate(&labels, &truth, &routed);
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "file": file,
                "head": head_report,
                "routed": routed_report,
                "min_confidence": cfg.router.min_confidence,
                "top_tier_guard": cfg.router.top_tier_guard,
            })
        );
    } else {
        println!("{}: head argmax\n{}", file.display(), head_report.render());
        println!(
            "routed (min_confidence {}, top_tier_guard {})\n{}",
            cfg.router.min_confidence,
            cfg.router.top_tier_guard,
            routed_report.render()
        );
    }
    Ok(ExitCode::SUCCESS)
}
