//! `triage misroutes export`, `triage retrain`, `triage head list|use`.

use super::train::refs;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use triage::classify::{
    apply_policy, evaluate, read_examples, tier_index, train_head, EmbeddingCache, EvalReport,
    TierHead, TrainOptions,
};
use triage::embed::Embedder;
use triage::engine::{embed_options, head_path, load_head};
use triage::learn::{corrections, gate, held_out, Comparison};
use triage::ledger::report::parse_duration;

#[derive(Subcommand, Debug)]
pub enum MisroutesCommand {
    /// Requests whose feedback names another tier (and unsure decisions, flagged),
    /// as JSONL for review.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also list decisions without feedback whose confidence was below this.
    #[arg(long, default_value_t = 0.5)]
    pub low_confidence: f64,
}

#[derive(Args, Debug)]
pub struct RetrainArgs {
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// More corrections (JSONL with `text` and `tier`).
    #[arg(long)]
    pub extra: Option<PathBuf>,
    /// Evaluate and report, but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, default_value = "training/train.jsonl")]
    pub train: PathBuf,
    #[arg(long, default_value = "training/validation.jsonl")]
    pub validation: PathBuf,
    /// Largest validation accuracy drop (points) the new head may have.
    #[arg(long, default_value_t = 1.0)]
    pub margin: f64,
    /// How many times a correction counts against a base example.
    #[arg(long, default_value_t = 5)]
    pub weight: usize,
    /// Share of corrections (percent) held out to judge the new head.
    #[arg(long, default_value_t = 30)]
    pub held_out: u8,
    /// Embedding cache directory (default: DATA_DIR/embed-cache).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Outcome data for the "needs a stronger model" output (default: the file the
    /// installed head's output was trained on, else training/outcomes/routellm.jsonl).
    #[arg(long)]
    pub outcomes: Option<PathBuf>,
    /// The (cheaper, stronger) models of the outcome data (default: the installed
    /// head's, else those of training/outcomes/routellm.jsonl).
    #[arg(long, value_delimiter = ',')]
    pub outcome_models: Vec<String>,
    #[arg(long, default_value = "training/outcomes/prices.json")]
    pub outcome_prices: PathBuf,
    /// Retrain the tiers only: the new head has no outcome output.
    #[arg(long)]
    pub no_outcomes: bool,
}

#[derive(Subcommand, Debug)]
pub enum HeadCommand {
    /// Head versions, newest last; `*` marks the installed one.
    List,
    /// Install a version (then reload: POST /admin/reload or SIGHUP).
    Use { version: String },
}

fn norm(t: &str) -> String {
    t.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

pub fn run_export(g: &super::Global, cmd: MisroutesCommand) -> anyhow::Result<ExitCode> {
    let MisroutesCommand::Export(a) = cmd;
    let cfg = super::load_config(g)?;
    let db = triage::ledger::log::db_path(&super::data_dir(g, &cfg));
    let since = chrono::Utc::now().timestamp_millis()
        - parse_duration(&a.since)
            .map_err(anyhow::Error::msg)?
            .as_millis() as i64;
    let rows = corrections(&db, since, a.low_confidence)?;
    let mut out: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::fs::File::create(p)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut n = 0;
    for r in rows.iter().filter(|r| r.flag != "confirmed") {
        writeln!(out, "{}", serde_json::to_string(r)?)?;
        n += 1;
    }
    eprintln!(
        "{n} requests exported ({} with a tier correction)",
        rows.iter().filter(|r| r.flag == "misroute").count()
    );
    Ok(ExitCode::SUCCESS)
}

fn routed(head: &TierHead, x: &[f32], cfg: &triage::config::Config) -> usize {
    apply_policy(
        &head.predict(x),
        cfg.router.min_confidence,
        cfg.router.top_tier_guard,
    )
    .0
}

fn table(title: &str, before: &EvalReport, after: &EvalReport) -> String {
    let mut s = format!(
        "\n{title} ({} examples)\n{:<26} {:>9} {:>9}\n",
        before.examples, "", "before", "after"
    );
    s.push_str(&format!(
        "{:<26} {:>8.2}% {:>8.2}%\n",
        "accuracy",
        before.accuracy * 100.0,
        after.accuracy * 100.0
    ));
    for (b, a) in before.per_tier.iter().zip(&after.per_tier) {
        s.push_str(&format!(
            "{:<26} {:>8.2}% {:>8.2}%\n",
            format!("recall {}", b.tier),
            b.recall * 100.0,
            a.recall * 100.0
        ));
    }
    s.push_str(&format!(
        "{:<26} {:>8.2}% {:>8.2}%\n",
        "COMPLEX->SIMPLE",
        before.top_to_bottom_rate * 100.0,
        after.top_to_bottom_rate * 100.0
    ));
    s
}

pub fn run_retrain(g: &super::Global, a: RetrainArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    let data_dir = super::data_dir(g, &cfg);
    let db = triage::ledger::log::db_path(&data_dir);
    let since = chrono::Utc::now().timestamp_millis()
        - parse_duration(&a.since)
            .map_err(anyhow::Error::msg)?
            .as_millis() as i64;
    // Corrections: logged requests with tier feedback (latest wins), then --extra.
    let mut fixes: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut missing_text = 0;
    if db.exists() {
        for c in corrections(&db, since, 0.0)? {
            match (c.text, c.correct) {
                (Some(t), Some(tier)) => {
                    fixes.insert(norm(&t), (t, tier));
                }
                (None, Some(_)) => missing_text += 1,
                _ => {}
            }
        }
    }
    if missing_text > 0 {
        eprintln!("note: {missing_text} corrections have no logged text (set ledger.log_text = true to learn from them)");
    }
    if let Some(extra) = &a.extra {
        for e in read_examples(extra)? {
            fixes.insert(norm(&e.text), (e.text, e.tier));
        }
    }
    // Outcomes the app reported (success / failure, or a correct tier): labels for
    // the outcome output.
    let embedder = Embedder::load(&embed_options(&cfg)?)?;
    let (old, path) = load_head(&cfg, &embedder)?;
    let labels = old.labels().to_vec();
    let outcome_feedback: Vec<(String, f32)> = if db.exists() {
        triage::learn::outcome_labels(&db, since, &labels)?
            .into_iter()
            .filter_map(|o| o.text.map(|t| (t, o.needs_stronger)))
            .collect()
    } else {
        Vec::new()
    };
    if fixes.is_empty() && outcome_feedback.is_empty() {
        anyhow::bail!(
            "no corrections or outcomes with text in the last {} (feedback with correct_tier or outcome, or --extra)",
            a.since
        );
    }
    let label = |t: &str| {
        tier_index(&labels, t)
            .ok_or_else(|| anyhow::anyhow!("tier `{t}` is not one of {}", labels.join(", ")))
    };
    let mut fit: Vec<(String, usize)> = Vec::new();
    let mut judge: Vec<(String, usize)> = Vec::new();
    for (text, tier) in fixes.values() {
        let y = label(tier)?;
        if held_out(text, a.held_out) {
            judge.push((text.clone(), y));
        } else {
            fit.push((text.clone(), y));
        }
    }
    let (outcome_judge, outcome_fit): (Vec<_>, Vec<_>) = outcome_feedback
        .iter()
        .cloned()
        .partition(|(t, _)| held_out(t, a.held_out));
    let base = read_examples(&a.train)?;
    let val = read_examples(&a.validation)?;
    let mut cache = EmbeddingCache::open(
        &a.cache_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("embed-cache")),
        embedder.weights_sha256(),
        embedder.max_tokens(),
        embedder.features_dim(),
    );
    let mut tx_text: Vec<String> = Vec::new();
    let mut ty: Vec<usize> = Vec::new();
    for e in &base {
        if fixes.contains_key(&norm(&e.routed())) {
            continue; // the correction overrides the base label
        }
        tx_text.push(e.routed());
        ty.push(label(&e.tier)?);
    }
    for (t, y) in &fit {
        for _ in 0..a.weight.max(1) {
            tx_text.push(t.clone());
            ty.push(*y);
        }
    }
    let vy: Vec<usize> = val
        .iter()
        .map(|e| label(&e.tier))
        .collect::<anyhow::Result<_>>()?;
    let tx = super::train::embed_all(&embedder, &mut cache, &refs(&tx_text))?;
    let val_text: Vec<String> = val.iter().map(|e| e.routed()).collect();
    let vx = super::train::embed_all(&embedder, &mut cache, &refs(&val_text))?;
    let embed_pairs = |cache: &mut EmbeddingCache, rows: &[(String, usize)]| {
        let texts: Vec<String> = rows.iter().map(|(t, _)| t.clone()).collect();
        super::train::embed_all(&embedder, cache, &refs(&texts))
    };
    let jx = embed_pairs(&mut cache, &judge)?;
    let jy: Vec<usize> = judge.iter().map(|(_, y)| *y).collect();
    let outcome_texts =
        |rows: &[(String, f32)]| -> Vec<String> { rows.iter().map(|(t, _)| t.clone()).collect() };
    let ofx = super::train::embed_all(&embedder, &mut cache, &refs(&outcome_texts(&outcome_fit)))?;
    let ojx =
        super::train::embed_all(&embedder, &mut cache, &refs(&outcome_texts(&outcome_judge)))?;
    let extra: Vec<(Vec<f32>, f32)> = ofx
        .into_iter()
        .zip(outcome_fit.iter().map(|(_, y)| *y))
        .collect();

    let mut meta = old.meta().clone();
    meta.created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    meta.train_examples = tx.len();
    meta.validation_examples = vx.len();
    meta.training_data_sha256 = format!(
        "{} + {} corrections + {} outcomes",
        old.meta().training_data_sha256,
        fixes.len(),
        outcome_feedback.len()
    );
    meta.temperature = None;
    meta.outcome = None;
    let (new, _) = train_head(
        &tx,
        &ty,
        &vx,
        &vy,
        meta,
        &TrainOptions::default(),
        |_, _, _| {},
    )?;
    // The outcome output: trained again with the reported outcomes, on the data the
    // installed head's was trained on unless told otherwise.
    let outcomes = if a.no_outcomes {
        None
    } else {
        let from_head = old.meta().outcome.as_ref();
        let file = a
            .outcomes
            .clone()
            .or_else(|| from_head.and_then(|o| o.data.split(" (sha256").next().map(PathBuf::from)));
        let file = file.unwrap_or_else(|| PathBuf::from("training/outcomes/routellm.jsonl"));
        if !file.exists() {
            anyhow::bail!(
                "the outcome data {} is not here: give --outcomes FILE, or --no-outcomes to retrain the tiers only",
                file.display()
            );
        }
        let models = if !a.outcome_models.is_empty() {
            a.outcome_models.clone()
        } else {
            from_head.map(|o| o.models.clone()).unwrap_or_else(|| {
                vec![
                    "mistralai/Mixtral-8x7B-Instruct-v0.1".into(),
                    "gpt-4-1106-preview".into(),
                ]
            })
        };
        Some(super::train::load_outcomes(
            &file,
            &models,
            &a.outcome_prices,
            &embedder,
            &mut cache,
        )?)
    };
    let opts = triage::classify::outcome_head::OutcomeOptions {
        blend: old.meta().outcome.as_ref().map_or(0.5, |o| o.blend),
        ..Default::default()
    };
    let data = outcomes
        .as_ref()
        .map(|o| o.data(&extra, a.weight.max(1) as f32));
    let (new, _) = triage::classify::finish::finish_head(
        new,
        &vx,
        &vy,
        &tx,
        data.as_ref().map(|d| (d, &opts)),
        &cfg.router,
    )?;
    let eval = |h: &TierHead, xs: &[Vec<f32>], ys: &[usize]| {
        let p: Vec<usize> = xs.iter().map(|x| routed(h, x, &cfg)).collect();
        evaluate(&labels, ys, &p)
    };
    let outcome_loss = |h: &TierHead| {
        let p: Vec<f32> = ojx
            .iter()
            .map(|x| h.predict(x).outcome.unwrap_or(0.5))
            .collect();
        let y: Vec<f32> = outcome_judge.iter().map(|(_, y)| *y).collect();
        triage::learn::log_loss(&p, &y)
    };
    let cmp = Comparison {
        validation_before: eval(&old, &vx, &vy),
        validation_after: eval(&new, &vx, &vy),
        corrections_before: eval(&old, &jx, &jy),
        corrections_after: eval(&new, &jx, &jy),
        outcomes_held_out: outcome_judge.len(),
        outcome_loss_before: outcome_loss(&old),
        outcome_loss_after: outcome_loss(&new),
    };
    println!(
        "{} corrections ({} used for training ×{}, {} held out to judge); {} reported outcomes ({} used, {} held out)",
        fixes.len(),
        fit.len(),
        a.weight,
        judge.len(),
        outcome_feedback.len(),
        outcome_fit.len(),
        outcome_judge.len()
    );
    print!(
        "{}",
        table(
            "validation split",
            &cmp.validation_before,
            &cmp.validation_after
        )
    );
    if !judge.is_empty() {
        print!(
            "{}",
            table(
                "held-out corrections",
                &cmp.corrections_before,
                &cmp.corrections_after
            )
        );
    }
    if !outcome_judge.is_empty() {
        println!(
            "\nheld-out outcomes ({}): log-loss {:.4} before, {:.4} after",
            outcome_judge.len(),
            cmp.outcome_loss_before,
            cmp.outcome_loss_after
        );
    }
    // Cost impact: the logged traffic with text, re-routed by each head.
    if db.exists() {
        if let Ok((before, after, n)) =
            cost_impact(&db, since, &cfg, &embedder, &mut cache, &old, &new)
        {
            println!("\ncost of the {n} logged requests with text, routed by each head: ${before:.6} before, ${after:.6} after");
        }
    }
    match gate(&cmp, a.margin) {
        Err(why) => {
            println!("\nREFUSED: {why}. The current head stays.");
            Ok(ExitCode::from(2))
        }
        Ok(()) if a.dry_run => {
            println!("\nThe new head passes the gate (dry run: nothing written).");
            Ok(ExitCode::SUCCESS)
        }
        Ok(()) => {
            triage::learn::ensure_baseline(&path)?;
            let version = triage::learn::save_version(&new, &path)?;
            println!(
                "\nACCEPTED: installed head {version} at {}. Reload the server: POST /admin/reload or SIGHUP.",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cost_impact(
    db: &std::path::Path,
    since: i64,
    cfg: &triage::config::Config,
    embedder: &Embedder,
    cache: &mut EmbeddingCache,
    old: &TierHead,
    new: &TierHead,
) -> anyhow::Result<(f64, f64, usize)> {
    let conn = triage::ledger::log::open(db)?;
    let mut stmt = conn.prepare(
        "SELECT routed_text, input_tokens, cached_tokens, output_tokens FROM decisions
         WHERE ts_ms >= ?1 AND routed_text IS NOT NULL AND tier IS NOT NULL",
    )?;
    let rows: Vec<(String, u64, u64, u64)> = stmt
        .query_map([since], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? as u64,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let texts: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let xs = super::train::embed_all(embedder, cache, &texts)?;
    let prices = triage::ledger::Prices::new(&cfg.prices);
    let cost = |h: &TierHead, x: &[f32], u: &triage::upstream::Usage| {
        let tier = &h.labels()[routed(h, x, cfg)];
        cfg.router
            .tiers
            .get(tier)
            .and_then(|m| m.first())
            .and_then(|m| prices.cost(m, cfg.model(m).map(|c| c.upstream_model()), u))
            .unwrap_or(0.0)
    };
    let (mut b, mut a) = (0.0, 0.0);
    for (r, x) in rows.iter().zip(&xs) {
        let u = triage::upstream::Usage {
            prompt_tokens: r.1,
            cached_tokens: r.2,
            completion_tokens: r.3,
            cache_write_tokens: 0,
        };
        b += cost(old, x, &u);
        a += cost(new, x, &u);
    }
    Ok((b, a, rows.len()))
}

pub fn run_head(g: &super::Global, cmd: HeadCommand) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    let path = head_path(&cfg);
    match cmd {
        HeadCommand::List => {
            // Reads only: nothing is written until a retrain or `head use`.
            for v in triage::learn::list_versions(&path)? {
                println!(
                    "{} {:<36} created {:<22} routed validation accuracy {}",
                    if v.current { "*" } else { " " },
                    v.version,
                    v.created,
                    v.validation_accuracy
                        .map(|a| format!("{:.2}%", a * 100.0))
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        HeadCommand::Use { version } => {
            triage::learn::ensure_baseline(&path)?;
            triage::learn::install(&version, &path)?;
            println!(
                "installed head {version} at {}; reload the server (POST /admin/reload or SIGHUP)",
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
