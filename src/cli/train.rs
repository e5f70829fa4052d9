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
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Labeled JSONL file.
    pub file: PathBuf,
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
    let train_texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
    let val_texts: Vec<&str> = val.iter().map(|e| e.text.as_str()).collect();
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
    // Routed metrics: the head plus the policy, as serve applies it.
    let (head, routed) = triage::classify::with_routed_validation(head, &vx, &vy, &cfg.router)?;
    let out = a.out.clone().unwrap_or_else(|| head_path(&cfg));
    head.save(&out)?;
    println!(
        "stopped after {} epochs (best {}), train loss {:.4}, validation loss {:.4}",
        report.epochs_run, report.best_epoch, report.train_loss, report.val_loss
    );
    println!("\nvalidation, head argmax:\n{}", report.val.render());
    println!(
        "validation, routed (min_confidence {}, top_tier_guard {}):\n{}",
        cfg.router.min_confidence,
        cfg.router.top_tier_guard,
        routed.render()
    );
    println!(
        "wrote {} and {}",
        out.display(),
        triage::classify::meta_path(&out).display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_eval(g: &super::Global, a: EvalArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    let examples = read_examples(&a.file)?;
    let embedder = Embedder::load(&embed_options(&cfg)?)?;
    let (head, _) = load_head(&cfg, &embedder)?;
    let labels = head.labels().to_vec();
    let truth = labels_of(&examples, &labels, &a.file)?;
    let mut cache = EmbeddingCache::open(
        &super::data_dir(g, &cfg).join("embed-cache"),
        embedder.weights_sha256(),
        embedder.max_tokens(),
        embedder.features_dim(),
    );
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
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
                "file": a.file,
                "head": head_report,
                "routed": routed_report,
                "min_confidence": cfg.router.min_confidence,
                "top_tier_guard": cfg.router.top_tier_guard,
            })
        );
    } else {
        println!(
            "{}: head argmax\n{}",
            a.file.display(),
            head_report.render()
        );
        println!(
            "routed (min_confidence {}, top_tier_guard {})\n{}",
            cfg.router.min_confidence,
            cfg.router.top_tier_guard,
            routed_report.render()
        );
    }
    Ok(ExitCode::SUCCESS)
}
