//! `triage eval --outcomes`: the shipped head and config judged by measured answer
//! quality (see `triage::classify::outcomes` for the definitions).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use triage::classify::outcomes::{
    costs, decisions, read_outcomes, summarize, Curve, CurveSummary, DecisionReport, OutcomeRow,
    Point,
};
use triage::classify::{decide, EmbeddingCache, TierHead};
use triage::config::Config;
use triage::embed::Embedder;

use super::train::{embed_all, EvalArgs};

/// `MODEL=IN:OUT` (USD per 1M tokens).
fn parse_price(s: &str) -> anyhow::Result<(String, (f64, f64))> {
    let bad = || anyhow::anyhow!("--price `{s}`: expected MODEL=INPUT:OUTPUT (USD per 1M tokens)");
    let (model, prices) = s.rsplit_once('=').ok_or_else(bad)?;
    let (i, o) = prices.split_once(':').ok_or_else(bad)?;
    let (i, o): (f64, f64) = (
        i.trim().parse().map_err(|_| bad())?,
        o.trim().parse().map_err(|_| bad())?,
    );
    if !(i >= 0.0 && o >= 0.0 && i.is_finite() && o.is_finite()) {
        return Err(bad());
    }
    Ok((model.trim().to_string(), (i, o)))
}

/// Each model's (input, output) price: `--price`, else the ledger's price table.
fn prices_for(
    cfg: &Config,
    models: &[String],
    given: &[String],
) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut overrides = BTreeMap::new();
    for p in given {
        let (m, v) = parse_price(p)?;
        overrides.insert(m, v);
    }
    let table = triage::ledger::Prices::new(&cfg.prices);
    models
        .iter()
        .map(|m| {
            overrides
                .get(m)
                .copied()
                .or_else(|| table.get(m, Some(cfg.upstream_model_id(m))).map(|p| (p.input, p.output)))
                .ok_or_else(|| {
                    anyhow::anyhow!("no price for `{m}`: give --price {m}=INPUT:OUTPUT (USD per 1M tokens) or [prices.\"{m}\"] in the config")
                })
        })
        .collect()
}

/// Which model each tier's requests go to: one tier per model when the counts
/// match; otherwise every tier but the top one goes to the cheapest model, and the
/// top tier to the strongest (two models: cheap for SIMPLE and MODERATE).
pub fn tier_models(tiers: usize, models: usize) -> Vec<usize> {
    if tiers == models {
        return (0..tiers).collect();
    }
    (0..tiers)
        .map(|t| if t + 1 == tiers { models - 1 } else { 0 })
        .collect()
}

struct Evaluated {
    summary: CurveSummary,
    router: Curve,
    oracle: Curve,
    decisions: DecisionReport,
}

fn evaluate_rows(
    rows: &[&OutcomeRow],
    cost: &[&Vec<f64>],
    rank: &[f64],
    chosen: &[usize],
) -> Evaluated {
    let strong = rows.first().map_or(1, |r| r.scores.len()) - 1;
    let points: Vec<Point> = rows
        .iter()
        .zip(cost)
        .zip(rank)
        .map(|((r, c), &rank)| Point {
            rank,
            q_cheap: r.scores[0],
            q_strong: r.scores[strong],
            c_cheap: c[0],
            c_strong: c[strong],
        })
        .collect();
    let (summary, router, oracle) = summarize(&points);
    let owned: Vec<OutcomeRow> = rows.iter().map(|r| (*r).clone()).collect();
    let owned_cost: Vec<Vec<f64>> = cost.iter().map(|c| (*c).clone()).collect();
    Evaluated {
        summary,
        router,
        oracle,
        decisions: decisions(&owned, &owned_cost, chosen),
    }
}

pub fn run(g: &super::Global, a: &EvalArgs, path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    if !(2..=3).contains(&a.models.len()) {
        anyhow::bail!(
            "--models takes two or three names, cheapest first (as they appear in {})",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let rows =
        read_outcomes(&text, &a.models).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if rows.is_empty() {
        anyhow::bail!("{}: no prompts", path.display());
    }
    let prices = prices_for(&cfg, &a.models, &a.price)?;
    let cost = costs(&rows, &prices);
    let embedder = Embedder::load(&triage::engine::embed_options(&cfg)?)?;
    let (head, _) = triage::engine::load_head(&cfg, &embedder)?;
    let mut cache = EmbeddingCache::open(
        &super::data_dir(g, &cfg).join("embed-cache"),
        embedder.weights_sha256(),
        embedder.max_tokens(),
        embedder.features_dim(),
    );
    let texts: Vec<&str> = rows.iter().map(|r| r.prompt.as_str()).collect();
    let xs = embed_all(&embedder, &mut cache, &texts)?;
    let map = tier_models(head.labels().len(), a.models.len());
    // A head whose outcome output was fitted on this very file would rank it
    // in-sample: its outcome logits are then cross-fitted here instead.
    let file_sha = triage::embed::sha256_file(path)?;
    let in_sample = a.models.len() == 2
        && head
            .meta()
            .outcome
            .as_ref()
            .is_some_and(|o| o.data.contains(&file_sha));
    let crossed = if in_sample {
        eprintln!(
            "the head's outcome output was trained on this file: cross-fitting it over {} folds \
             (a few minutes) so that no prompt is ranked by a fit that saw it",
            triage::classify::outcome_head::FOLDS
        );
        Some(triage::classify::outcome_head::cross_fitted_logits(
            &rows,
            &xs,
            &Default::default(),
        )?)
    } else {
        None
    };
    let (rank, chosen) = route_all(&head, &cfg, &xs, &map, crossed.as_deref());

    let all = |f: &dyn Fn(&OutcomeRow) -> bool| -> Evaluated {
        let idx: Vec<usize> = (0..rows.len()).filter(|&i| f(&rows[i])).collect();
        evaluate_rows(
            &idx.iter().map(|&i| &rows[i]).collect::<Vec<_>>(),
            &idx.iter().map(|&i| &cost[i]).collect::<Vec<_>>(),
            &idx.iter().map(|&i| rank[i]).collect::<Vec<_>>(),
            &idx.iter().map(|&i| chosen[i]).collect::<Vec<_>>(),
        )
    };
    let overall = all(&|_| true);
    let mut benchmarks: Vec<String> = rows.iter().map(|r| r.benchmark.clone()).collect();
    benchmarks.sort();
    benchmarks.dedup();
    let per_benchmark: Vec<(String, Evaluated)> = if benchmarks.len() > 1 {
        benchmarks
            .iter()
            .map(|b| (b.clone(), all(&|r: &OutcomeRow| &r.benchmark == b)))
            .collect()
    } else {
        Vec::new()
    };
    if let Some(svg) = &a.plot {
        plot(svg, path, &a.models, &overall)?;
    }
    if a.json {
        let one = |e: &Evaluated| json!({"curve": e.summary, "decisions": e.decisions});
        println!(
            "{}",
            json!({
                "file": path,
                "cross_fitted": in_sample,
                "models": a.models,
                "prices_per_1m": prices,
                "tier_models": head.labels().iter().zip(&map).map(|(t, &m)| (t.clone(), a.models[m].clone())).collect::<BTreeMap<_, _>>(),
                "overall": one(&overall),
                "benchmarks": per_benchmark.iter().map(|(b, e)| (b.clone(), one(e))).collect::<BTreeMap<_, _>>(),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} prompts; cheap {}, strong {}{}",
        path.display(),
        rows.len(),
        a.models[0],
        a.models[a.models.len() - 1],
        if a.models.len() == 3 {
            format!(", mid {}", a.models[1])
        } else {
            String::new()
        }
    );
    let tiers: Vec<String> = head
        .labels()
        .iter()
        .zip(&map)
        .map(|(t, &m)| format!("{t} -> {}", a.models[m]))
        .collect();
    println!("tiers: {}\n", tiers.join(", "));
    if in_sample {
        println!("(the head's outcome output was trained on this file: its logits below are cross-fitted)\n");
    }
    print!("{}", render_decisions(&a.models, &overall.decisions));
    println!();
    print!("{}", render_curves(&overall, &per_benchmark));
    if let Some(svg) = &a.plot {
        println!("\ncurve written to {}", svg.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The head's ranking score and routed model for each feature vector.
pub fn route_all(
    head: &TierHead,
    cfg: &Config,
    xs: &[Vec<f32>],
    map: &[usize],
    crossed: Option<&[f32]>,
) -> (Vec<f64>, Vec<usize>) {
    xs.iter()
        .enumerate()
        .map(|(i, x)| {
            let mut pred = head.predict(x);
            if let Some(z) = crossed.and_then(|c| c.get(i)) {
                pred.strength = head.strength_of(&pred.probs, Some(*z));
            }
            let d = decide(head, &pred, &cfg.router);
            (pred.strength as f64, map[d.tier_index.min(map.len() - 1)])
        })
        .unzip()
}

fn render_decisions(models: &[String], d: &DecisionReport) -> String {
    let top = d.each_model.last().map_or(1.0, |m| m.cost).max(1e-12);
    let mut s = format!(
        "{:<28} {:>8} {:>12} {:>12}\n",
        "policy", "quality", "cost USD", "cost share"
    );
    let mut row = |name: &str, q: f64, c: f64| {
        s.push_str(&format!(
            "{name:<28} {q:>8.4} {c:>12.4} {:>11.1}%\n",
            100.0 * c / top
        ));
    };
    row("routed (head + config)", d.routed.quality, d.routed.cost);
    row(
        "random, same mix",
        d.random_same_mix.quality,
        d.random_same_mix.cost,
    );
    for (m, qc) in models.iter().zip(&d.each_model) {
        row(&format!("all {}", short(m)), qc.quality, qc.cost);
    }
    row("oracle", d.oracle.quality, d.oracle.cost);
    let mix: Vec<String> = models
        .iter()
        .zip(&d.mix)
        .map(|(m, s)| format!("{} {:.1}%", short(m), s * 100.0))
        .collect();
    s.push_str(&format!("routed mix: {}\n", mix.join(", ")));
    s
}

fn short(m: &str) -> &str {
    m.rsplit('/').next().unwrap_or(m)
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0))
}

fn render_curves(overall: &Evaluated, per: &[(String, Evaluated)]) -> String {
    let mut s = format!(
        "{:<14} {:>7} {:>7} {:>8} {:>7} {:>8} {:>8} {:>12}\n",
        "ranking", "prompts", "APGR", "oracle", "lift", "CPT50", "CPT80", "saved @95%"
    );
    let mut row = |name: &str, e: &Evaluated| {
        let c = &e.summary;
        s.push_str(&format!(
            "{:<14} {:>7} {:>7.3} {:>8.3} {:>7.3} {:>8} {:>8} {:>12}\n",
            name,
            c.requests,
            c.apgr,
            c.oracle_apgr,
            c.lift,
            pct(c.cpt50),
            pct(c.cpt80),
            pct(c.cost_saved_at_95)
        ));
    };
    row("all", overall);
    for (b, e) in per {
        row(b, e);
    }
    s.push_str("(random: APGR 0.500, lift 0, CPT50 50%; lift = (APGR - 0.5) / (oracle - 0.5))\n");
    s
}

/// PGR against the share of strong calls: the router, random and the oracle.
fn plot(svg: &Path, data: &Path, models: &[String], e: &Evaluated) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let err = |x: &dyn std::fmt::Display| anyhow::anyhow!("--plot {}: {x}", svg.display());
    let root = SVGBackend::new(svg, (800, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| err(&x))?;
    let ymax = e
        .oracle
        .pgr
        .iter()
        .chain(&e.router.pgr)
        .copied()
        .fold(1.0_f64, f64::max)
        * 1.05;
    let ymin = e.router.pgr.iter().copied().fold(0.0_f64, f64::min);
    let title = format!(
        "{}: {} vs {}",
        data.file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("outcomes"),
        short(&models[0]),
        short(&models[models.len() - 1])
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..1f64, ymin..ymax)
        .map_err(|x| err(&x))?;
    chart
        .configure_mesh()
        .x_desc("share of requests sent to the strong model")
        .y_desc("performance gap recovered (PGR)")
        .draw()
        .map_err(|x| err(&x))?;
    let series = |c: &Curve| -> Vec<(f64, f64)> {
        let step = (c.pgr.len() / 400).max(1);
        c.strong_share
            .iter()
            .zip(&c.pgr)
            .step_by(step)
            .chain(c.strong_share.last().zip(c.pgr.last()))
            .map(|(x, y)| (*x, *y))
            .collect()
    };
    let s = &e.summary;
    chart
        .draw_series(LineSeries::new(series(&e.router), BLUE.stroke_width(2)))
        .map_err(|x| err(&x))?
        .label(format!(
            "triage head (APGR {:.3}, lift {:.2})",
            s.apgr, s.lift
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            BLACK.mix(0.6),
        ))
        .map_err(|x| err(&x))?
        .label("random (APGR 0.500)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.6)));
    chart
        .draw_series(LineSeries::new(series(&e.oracle), RED.mix(0.8)))
        .map_err(|x| err(&x))?
        .label(format!("oracle (APGR {:.3})", s.oracle_apgr))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.mix(0.8)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|x| err(&x))?;
    root.present().map_err(|x| err(&x))?;
    Ok(())
}
