//! Training the head's second output on measured outcomes: where the cheaper model
//! loses quality. A logistic "the stronger model answers better" over the same
//! features as the tiers, blended with the expected tier into the head's strength
//! (the ranking score), plus the operating points `router.quality_target` picks
//! from. Every figure reported here comes from outcome logits cross-fitted over five
//! folds of the outcome prompts (each fold scored by a model that never saw it).

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::outcomes::{summarize, CurveSummary, OutcomeRow, Point};
use super::train::train_logistic;
use super::{decide, expected_tier, ClassifyError, OperatingPoint, OutcomeMeta, TierHead};
use crate::config::RouterConfig;

/// Folds the outcome prompts are split into for cross-fitting.
pub const FOLDS: u64 = 5;

/// What the outcome output is trained from.
pub struct OutcomeData<'a> {
    /// Two models per row: cheaper first.
    pub rows: &'a [OutcomeRow],
    /// The rows' features, in order.
    pub features: &'a [Vec<f32>],
    /// Each row's cost on (cheaper, stronger), USD.
    pub costs: &'a [Vec<f64>],
    /// Where the rows came from (path and sha256), and the two model names.
    pub data: String,
    pub models: Vec<String>,
    /// More labeled requests for the fit only (features, 1 = the stronger model
    /// was needed), e.g. outcomes the app reported through `/v1/feedback`, each
    /// weighted `extra_weight` times an outcome row. They join every fold's
    /// training and never the measured figures.
    pub extra: &'a [(Vec<f32>, f32)],
    pub extra_weight: f32,
}

#[derive(Debug, Clone, Copy)]
pub struct OutcomeOptions {
    /// Weight of the expected tier in the strength (the outcome logit gets the rest).
    pub blend: f32,
    /// L2 penalty of the logistic regression (over standardized features).
    pub l2: f64,
    pub max_epochs: usize,
}

impl Default for OutcomeOptions {
    /// Blend 0.5 and λ = 1.0 were chosen by leave-one-benchmark-out lift on the
    /// development outcomes (training/README.md).
    fn default() -> Self {
        Self {
            blend: 0.5,
            l2: 1.0,
            max_epochs: 1500,
        }
    }
}

/// The cross-fitted curves: the head's strength and the expected tier alone,
/// overall and per benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct OutcomeReport {
    pub overall: CurveSummary,
    pub overall_tier_only: CurveSummary,
    pub benchmarks: Vec<(String, CurveSummary, CurveSummary)>,
    /// The taxonomy decision alone (no quality target) on the outcome data.
    pub taxonomy_point: OperatingPoint,
}

fn fold_of(id: &str) -> u64 {
    let d = Sha256::digest(id.as_bytes());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % FOLDS
}

fn label(r: &OutcomeRow) -> f32 {
    f32::from(r.scores[1] > r.scores[0])
}

fn dot(w: &[f32], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

fn mean_std(v: &[f32]) -> (f32, f32) {
    let n = v.len().max(1) as f64;
    let m = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    let var = v.iter().map(|x| (*x as f64 - m).powi(2)).sum::<f64>() / n;
    (m as f32, var.sqrt().max(1e-6) as f32)
}

/// Out-of-fold outcome logits: each of the [`FOLDS`] folds (by row id) scored by a
/// fit on the others, so no row is scored by a model that saw its label.
pub fn cross_fitted_logits(
    rows: &[OutcomeRow],
    features: &[Vec<f32>],
    opts: &OutcomeOptions,
) -> Result<Vec<f32>, ClassifyError> {
    let n = rows.len();
    if features.len() != n || rows.iter().any(|r| r.scores.len() != 2) {
        return Err(ClassifyError::Data(
            "cross-fitting takes two models per row and one feature vector per row".into(),
        ));
    }
    let y: Vec<f32> = rows.iter().map(label).collect();
    let folds: Vec<u64> = rows.iter().map(|r| fold_of(&r.id)).collect();
    let mut out = vec![0.0f32; n];
    for k in 0..FOLDS {
        let train: Vec<usize> = (0..n).filter(|&i| folds[i] != k).collect();
        let x: Vec<Vec<f32>> = train.iter().map(|&i| features[i].clone()).collect();
        let t: Vec<f32> = train.iter().map(|&i| y[i]).collect();
        let (w, b) = train_logistic(&x, &t, &vec![1.0; train.len()], opts.l2, opts.max_epochs)?;
        for i in (0..n).filter(|&i| folds[i] == k) {
            out[i] = b + dot(&w, &features[i]);
        }
    }
    Ok(out)
}

/// Adds the outcome output to `head` (whose taxonomy part is final): trains it on
/// all of `data`, standardizes the blend over `taxonomy_x` (the taxonomy training
/// features), and measures the operating points with cross-fitted logits and the
/// taxonomy decision `router` makes.
pub fn fit_outcome_output(
    head: TierHead,
    data: &OutcomeData,
    taxonomy_x: &[Vec<f32>],
    router: &RouterConfig,
    opts: &OutcomeOptions,
) -> Result<(TierHead, OutcomeReport), ClassifyError> {
    let n = data.rows.len();
    if n == 0 || data.features.len() != n || data.costs.len() != n {
        return Err(ClassifyError::Data(
            "outcome training needs rows with features and costs".into(),
        ));
    }
    if data.rows.iter().any(|r| r.scores.len() != 2) {
        return Err(ClassifyError::Data(
            "outcome training takes two models per row (cheaper, stronger)".into(),
        ));
    }
    let y: Vec<f32> = data.rows.iter().map(label).collect();
    // The fit over some outcome rows (indices) plus every extra row.
    let fit = |rows: &[usize]| {
        let mut x: Vec<Vec<f32>> = rows.iter().map(|&i| data.features[i].clone()).collect();
        let mut t: Vec<f32> = rows.iter().map(|&i| y[i]).collect();
        let mut w = vec![1.0f32; rows.len()];
        for (f, l) in data.extra {
            x.push(f.clone());
            t.push(*l);
            w.push(data.extra_weight);
        }
        train_logistic(&x, &t, &w, opts.l2, opts.max_epochs)
    };
    // Cross-fitted logits: each fold scored by a model trained on the others.
    let folds: Vec<u64> = data.rows.iter().map(|r| fold_of(&r.id)).collect();
    let mut crossed = vec![0.0f32; n];
    for k in 0..FOLDS {
        let train: Vec<usize> = (0..n).filter(|&i| folds[i] != k).collect();
        let (w, b) = fit(&train)?;
        for i in (0..n).filter(|&i| folds[i] == k) {
            crossed[i] = b + dot(&w, &data.features[i]);
        }
    }
    let (w, b) = fit(&(0..n).collect::<Vec<_>>())?;
    // The blend's scales, over the traffic the taxonomy was trained on.
    let tier_of = |x: &[f32]| expected_tier(&head.predict(x).probs);
    let (tier_mean, tier_std) =
        mean_std(&taxonomy_x.iter().map(|x| tier_of(x)).collect::<Vec<_>>());
    let (logit_mean, logit_std) = mean_std(
        &taxonomy_x
            .iter()
            .map(|x| b + dot(&w, x))
            .collect::<Vec<_>>(),
    );
    let strength = |e: f32, z: f32| {
        let v = opts.blend * (e - tier_mean) / tier_std
            + (1.0 - opts.blend) * (z - logit_mean) / logit_std;
        1.0 / (1.0 + (-v).exp())
    };
    let tiers: Vec<f32> = data.features.iter().map(|x| tier_of(x)).collect();
    let s: Vec<f32> = tiers
        .iter()
        .zip(&crossed)
        .map(|(e, z)| strength(*e, *z))
        .collect();
    // The taxonomy decision alone, as `serve` makes it without a quality target.
    let plain = RouterConfig {
        quality_target: None,
        ..router.clone()
    };
    let top = head.labels().len() - 1;
    let to_top: Vec<bool> = data
        .features
        .iter()
        .map(|x| decide(&head, &head.predict(x), &plain).tier_index == top)
        .collect();
    let operating_points = operating_points(data, &s, &to_top);
    let taxonomy_point = operating_points
        .first()
        .copied()
        .ok_or_else(|| ClassifyError::Data("no operating points".into()))?;

    let points = |rank: &[f32], keep: &dyn Fn(&OutcomeRow) -> bool| -> Vec<Point> {
        (0..n)
            .filter(|&i| keep(&data.rows[i]))
            .map(|i| Point {
                rank: rank[i] as f64,
                q_cheap: data.rows[i].scores[0],
                q_strong: data.rows[i].scores[1],
                c_cheap: data.costs[i][0],
                c_strong: data.costs[i][1],
            })
            .collect()
    };
    let mut benchmarks: Vec<String> = data.rows.iter().map(|r| r.benchmark.clone()).collect();
    benchmarks.sort();
    benchmarks.dedup();
    let report = OutcomeReport {
        overall: summarize(&points(&s, &|_| true)).0,
        overall_tier_only: summarize(&points(&tiers, &|_| true)).0,
        benchmarks: benchmarks
            .iter()
            .map(|bm| {
                let keep = |r: &OutcomeRow| &r.benchmark == bm;
                (
                    bm.clone(),
                    summarize(&points(&s, &keep)).0,
                    summarize(&points(&tiers, &keep)).0,
                )
            })
            .collect(),
        taxonomy_point,
    };
    let mut meta = head.meta().clone();
    meta.outcome = Some(OutcomeMeta {
        data: data.data.clone(),
        models: data.models.clone(),
        examples: n,
        blend: opts.blend,
        tier_mean,
        tier_std,
        logit_mean,
        logit_std,
        operating_points,
    });
    let head = head
        .with_meta(meta)
        .and_then(|h| h.with_outcome(w, b))
        .map_err(ClassifyError::Data)?;
    Ok((head, report))
}

/// The trade-off at 101 thresholds (the strength quantiles, none first): the
/// taxonomy's top-tier decisions plus every request at or above the threshold go to
/// the stronger model.
fn operating_points(data: &OutcomeData, s: &[f32], to_top: &[bool]) -> Vec<OperatingPoint> {
    let n = s.len();
    let mut sorted: Vec<f32> = s.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let q_strong: f64 = data.rows.iter().map(|r| r.scores[1]).sum();
    let c_strong: f64 = data.costs.iter().map(|c| c[1]).sum();
    let mut thresholds = vec![None];
    thresholds.extend((1..=100).map(|k| Some(sorted[(k * n).div_ceil(100).clamp(1, n) - 1])));
    let mut out: Vec<OperatingPoint> = Vec::new();
    for t in thresholds {
        let (mut q, mut c, mut strong) = (0.0, 0.0, 0usize);
        for i in 0..n {
            let m = usize::from(to_top[i] || t.is_some_and(|t| s[i] >= t));
            q += data.rows[i].scores[m];
            c += data.costs[i][m];
            strong += m;
        }
        let p = OperatingPoint {
            threshold: t,
            quality_share: if q_strong > 0.0 { q / q_strong } else { 1.0 },
            strong_share: strong as f64 / n.max(1) as f64,
            cost_share: if c_strong > 0.0 { c / c_strong } else { 1.0 },
        };
        if out.last().is_none_or(|l| l.strong_share < p.strong_share) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operating_points_add_strong_calls_in_strength_order() {
        let rows: Vec<OutcomeRow> = [(0.0, 1.0), (1.0, 1.0), (0.0, 1.0), (1.0, 1.0)]
            .iter()
            .enumerate()
            .map(|(i, &(c, s))| OutcomeRow {
                id: i.to_string(),
                benchmark: "b".into(),
                prompt: String::new(),
                prompt_tokens: 1.0,
                scores: vec![c, s],
                output_tokens: vec![None, None],
            })
            .collect();
        let costs = vec![vec![1.0, 10.0]; 4];
        let data = OutcomeData {
            rows: &rows,
            features: &[],
            costs: &costs,
            data: String::new(),
            models: Vec::new(),
            extra: &[],
            extra_weight: 1.0,
        };
        // The taxonomy sends the first row to the top tier; strength ranks the
        // third, then the second, then the fourth.
        let pts = operating_points(&data, &[0.9, 0.5, 0.8, 0.1], &[true, false, false, false]);
        assert_eq!(pts[0].threshold, None);
        assert_eq!(pts[0].strong_share, 0.25);
        assert_eq!(
            pts[0].quality_share, 0.75,
            "rows 1, 2 and 4 score 1, 1, 0, 1"
        );
        assert_eq!(pts[0].cost_share, 13.0 / 40.0);
        // The next point adds the third row (strength 0.8): all quality kept.
        assert_eq!(pts[1].strong_share, 0.5);
        assert_eq!(pts[1].quality_share, 1.0);
        assert!(pts
            .windows(2)
            .all(|w| w[0].strong_share < w[1].strong_share));
        assert_eq!(pts.last().unwrap().strong_share, 1.0);
    }
}
