//! Routing judged by measured outcomes: prompts with each model's answer score (the
//! format of `shared/outcomes/README.md`), the router's decisions and its "needs a
//! stronger model" ranking, against all-cheap, all-strong, random routing with the
//! same tier mix, and the oracle.
//!
//! Definitions follow RouteLLM ("RouteLLM: Learning to Route LLMs with Preference
//! Data"): rank the requests by the router's score, send the top share to the strong
//! model and the rest to the cheap one; PGR(share) is the part of the quality gap
//! between all-cheap and all-strong that this recovers, APGR the area under PGR over
//! the share of strong calls (random = 0.5), and CPT(x) the smallest share of strong
//! calls whose PGR reaches x. Requests the router scores the same are taken in an
//! unknown order, so the curve runs straight across each tie (its expected value).

use serde::Serialize;

/// One prompt with each selected model's measured score and token counts.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRow {
    pub id: String,
    pub benchmark: String,
    pub prompt: String,
    pub prompt_tokens: f64,
    /// Per model, in the order the models were asked for: score in [0, 1].
    pub scores: Vec<f64>,
    /// Per model: output tokens, when the file knows them.
    pub output_tokens: Vec<Option<f64>>,
}

/// Reads an outcome file, keeping `models` (names as they appear in it). Every
/// error names the line.
pub fn read_outcomes(text: &str, models: &[String]) -> Result<Vec<OutcomeRow>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {n}: {e}"))?;
        let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
        let prompt = field("prompt")
            .ok_or_else(|| format!("line {n}: `prompt` is missing"))?
            .to_string();
        let mut scores = Vec::with_capacity(models.len());
        let mut output_tokens = Vec::with_capacity(models.len());
        for m in models {
            let entry = v.pointer(&format!(
                "/models/{}",
                m.replace('~', "~0").replace('/', "~1")
            ));
            let Some(entry) = entry else {
                let known: Vec<&str> = v
                    .get("models")
                    .and_then(serde_json::Value::as_object)
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                return Err(format!(
                    "line {n}: no model `{m}` (the file has: {})",
                    known.join(", ")
                ));
            };
            let score = entry
                .get("score")
                .and_then(serde_json::Value::as_f64)
                .filter(|s| s.is_finite())
                .ok_or_else(|| format!("line {n}: `{m}` has no numeric `score`"))?;
            scores.push(score);
            output_tokens.push(
                entry
                    .get("output_tokens")
                    .or_else(|| entry.get("output_tokens_approx"))
                    .and_then(serde_json::Value::as_f64),
            );
        }
        out.push(OutcomeRow {
            id: field("id").map_or_else(|| format!("line-{n}"), str::to_string),
            benchmark: field("benchmark").unwrap_or("").to_string(),
            prompt_tokens: v
                .get("prompt_tokens")
                .or_else(|| v.get("prompt_tokens_approx"))
                .and_then(serde_json::Value::as_f64)
                .unwrap_or_else(|| prompt.chars().count() as f64 / 4.0),
            prompt,
            scores,
            output_tokens,
        });
    }
    Ok(out)
}

/// What one request costs on each model, in USD: prompt and output tokens at the
/// model's price (`(input, output)` per 1M tokens). A missing output count is the
/// model's mean output over the rows that have one (0 when none has).
pub fn costs(rows: &[OutcomeRow], prices: &[(f64, f64)]) -> Vec<Vec<f64>> {
    let means: Vec<f64> = (0..prices.len())
        .map(|m| {
            let known: Vec<f64> = rows.iter().filter_map(|r| r.output_tokens[m]).collect();
            if known.is_empty() {
                0.0
            } else {
                known.iter().sum::<f64>() / known.len() as f64
            }
        })
        .collect();
    rows.iter()
        .map(|r| {
            prices
                .iter()
                .enumerate()
                .map(|(m, (inp, outp))| {
                    let out = r.output_tokens[m].unwrap_or(means[m]);
                    (r.prompt_tokens * inp + out * outp) / 1e6
                })
                .collect()
        })
        .collect()
}

/// One request on the cheap/strong curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Where the router ranks it: higher needs the strong model more.
    pub rank: f64,
    pub q_cheap: f64,
    pub q_strong: f64,
    pub c_cheap: f64,
    pub c_strong: f64,
}

/// Quality and cost when the top `share` of the ranking goes to the strong model,
/// at `n + 1` evenly spaced shares (0, 1/n, …, 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    pub strong_share: Vec<f64>,
    /// Mean score.
    pub quality: Vec<f64>,
    /// Total cost, USD.
    pub cost: Vec<f64>,
    /// Performance gap recovered: 0 at all-cheap, 1 at all-strong.
    pub pgr: Vec<f64>,
}

/// The curve for `points` ranked by `rank` (descending); ties run straight.
pub fn curve(points: &[Point], rank: impl Fn(&Point) -> f64) -> Curve {
    let n = points.len();
    let mut order: Vec<(f64, &Point)> = points.iter().map(|p| (rank(p), p)).collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let q0: f64 = points.iter().map(|p| p.q_cheap).sum();
    let c0: f64 = points.iter().map(|p| p.c_cheap).sum();
    let q_all_strong: f64 = points.iter().map(|p| p.q_strong).sum();
    // Cumulative gain in quality and cost after k requests, ties averaged.
    let mut dq = vec![0.0; n + 1];
    let mut dc = vec![0.0; n + 1];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && order[j].0 == order[i].0 {
            j += 1;
        }
        let g = (j - i) as f64;
        let gq: f64 = order[i..j]
            .iter()
            .map(|(_, p)| p.q_strong - p.q_cheap)
            .sum();
        let gc: f64 = order[i..j]
            .iter()
            .map(|(_, p)| p.c_strong - p.c_cheap)
            .sum();
        for k in i + 1..=j {
            let t = (k - i) as f64 / g;
            dq[k] = dq[i] + t * gq;
            dc[k] = dc[i] + t * gc;
        }
        i = j;
    }
    let gap = q_all_strong - q0;
    let nf = n.max(1) as f64;
    Curve {
        strong_share: (0..=n).map(|k| k as f64 / nf).collect(),
        quality: dq.iter().map(|d| (q0 + d) / nf).collect(),
        cost: dc.iter().map(|d| c0 + d).collect(),
        pgr: dq
            .iter()
            .map(|d| if gap.abs() < 1e-12 { 0.0 } else { d / gap })
            .collect(),
    }
}

impl Curve {
    /// Area under PGR over the share of strong calls (trapezoids).
    pub fn apgr(&self) -> f64 {
        area(&self.strong_share, &self.pgr)
    }

    /// The smallest share of strong calls whose PGR reaches `x` (linear between
    /// points); None when it never does.
    pub fn cpt(&self, x: f64) -> Option<f64> {
        first_reaching(&self.strong_share, &self.pgr, x)
    }

    /// The cheapest point whose quality reaches `target` (a mean score): its share
    /// of strong calls and its cost.
    pub fn at_quality(&self, target: f64) -> Option<(f64, f64)> {
        let share = first_reaching(&self.strong_share, &self.quality, target)?;
        Some((share, interpolate(&self.strong_share, &self.cost, share)))
    }
}

fn area(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| (xs[1] - xs[0]) * (ys[0] + ys[1]) / 2.0)
        .sum()
}

fn first_reaching(x: &[f64], y: &[f64], target: f64) -> Option<f64> {
    if y.first().is_some_and(|&v| v >= target) {
        return x.first().copied();
    }
    for k in 1..y.len() {
        if y[k] >= target {
            let (y0, y1) = (y[k - 1], y[k]);
            let t = if y1 > y0 {
                (target - y0) / (y1 - y0)
            } else {
                1.0
            };
            return Some(x[k - 1] + t * (x[k] - x[k - 1]));
        }
    }
    None
}

fn interpolate(x: &[f64], y: &[f64], at: f64) -> f64 {
    for k in 1..x.len() {
        if at <= x[k] {
            let t = if x[k] > x[k - 1] {
                (at - x[k - 1]) / (x[k] - x[k - 1])
            } else {
                1.0
            };
            return y[k - 1] + t * (y[k] - y[k - 1]);
        }
    }
    y.last().copied().unwrap_or(0.0)
}

/// The router's curve next to random and the oracle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveSummary {
    pub requests: usize,
    pub apgr: f64,
    /// Ranking by the true gain (strong score minus cheap score).
    pub oracle_apgr: f64,
    /// (APGR − 0.5) / (oracle APGR − 0.5): 0 is random, 1 the oracle.
    pub lift: f64,
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
    /// Share of the all-strong cost saved at 95% of the strong model's quality.
    pub cost_saved_at_95: Option<f64>,
    /// The share of strong calls that point needs.
    pub strong_share_at_95: Option<f64>,
}

pub fn summarize(points: &[Point]) -> (CurveSummary, Curve, Curve) {
    let router = curve(points, |p| p.rank);
    let oracle = curve(points, |p| p.q_strong - p.q_cheap);
    let apgr = router.apgr();
    let oracle_apgr = oracle.apgr();
    let lift = if (oracle_apgr - 0.5).abs() < 1e-12 {
        0.0
    } else {
        (apgr - 0.5) / (oracle_apgr - 0.5)
    };
    let n = points.len().max(1) as f64;
    let q_strong = points.iter().map(|p| p.q_strong).sum::<f64>() / n;
    let c_strong: f64 = points.iter().map(|p| p.c_strong).sum();
    let at95 = router.at_quality(0.95 * q_strong);
    let summary = CurveSummary {
        requests: points.len(),
        apgr,
        oracle_apgr,
        lift,
        cpt50: router.cpt(0.5),
        cpt80: router.cpt(0.8),
        cost_saved_at_95: at95.map(|(_, c)| {
            if c_strong > 0.0 {
                1.0 - c / c_strong
            } else {
                0.0
            }
        }),
        strong_share_at_95: at95.map(|(s, _)| s),
    };
    (summary, router, oracle)
}

/// Quality (mean score) and cost (USD) of one way of choosing models.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualityCost {
    pub quality: f64,
    pub cost: f64,
}

/// The tiered decisions against the fixed policies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionReport {
    pub routed: QualityCost,
    /// Each model alone, in the order asked for.
    pub each_model: Vec<QualityCost>,
    /// Random routing with the routed decisions' model mix (expected values).
    pub random_same_mix: QualityCost,
    /// The cheapest model that scores best on each request.
    pub oracle: QualityCost,
    /// Share of requests sent to each model.
    pub mix: Vec<f64>,
}

/// `chosen[i]` is the model index the router picked for row `i`; `cost[i][m]`
/// the cost of row `i` on model `m`.
pub fn decisions(rows: &[OutcomeRow], cost: &[Vec<f64>], chosen: &[usize]) -> DecisionReport {
    let n = rows.len().max(1) as f64;
    let models = rows.first().map_or(0, |r| r.scores.len());
    let each_model: Vec<QualityCost> = (0..models)
        .map(|m| QualityCost {
            quality: rows.iter().map(|r| r.scores[m]).sum::<f64>() / n,
            cost: cost.iter().map(|c| c[m]).sum(),
        })
        .collect();
    let mut mix = vec![0.0; models];
    for &m in chosen {
        if m < models {
            mix[m] += 1.0 / n;
        }
    }
    let routed = QualityCost {
        quality: rows
            .iter()
            .zip(chosen)
            .map(|(r, &m)| r.scores[m.min(models - 1)])
            .sum::<f64>()
            / n,
        cost: cost
            .iter()
            .zip(chosen)
            .map(|(c, &m)| c[m.min(models - 1)])
            .sum(),
    };
    let random_same_mix = QualityCost {
        quality: mix
            .iter()
            .zip(&each_model)
            .map(|(s, e)| s * e.quality)
            .sum(),
        cost: mix.iter().zip(&each_model).map(|(s, e)| s * e.cost).sum(),
    };
    let mut oq = 0.0;
    let mut oc = 0.0;
    for (r, c) in rows.iter().zip(cost) {
        let best = r.scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let pick = (0..models)
            .filter(|&m| r.scores[m] >= best)
            .min_by(|&a, &b| c[a].total_cmp(&c[b]))
            .unwrap_or(0);
        oq += r.scores[pick];
        oc += c[pick];
    }
    DecisionReport {
        routed,
        each_model,
        random_same_mix,
        oracle: QualityCost {
            quality: oq / n,
            cost: oc,
        },
        mix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(rank: f64, qc: f64, qs: f64) -> Point {
        Point {
            rank,
            q_cheap: qc,
            q_strong: qs,
            c_cheap: 1.0,
            c_strong: 10.0,
        }
    }

    #[test]
    fn a_perfect_ranking_and_a_reversed_one() {
        // Four requests; the strong model wins only on the first two.
        let pts = [
            p(0.9, 0.0, 1.0),
            p(0.8, 0.0, 1.0),
            p(0.2, 1.0, 1.0),
            p(0.1, 1.0, 1.0),
        ];
        let c = curve(&pts, |x| x.rank);
        // Shares 0, ¼, ½, ¾, 1 → PGR 0, ½, 1, 1, 1.
        assert_eq!(c.pgr, vec![0.0, 0.5, 1.0, 1.0, 1.0]);
        // Trapezoids: ¼·(0+½)/2 + ¼·(½+1)/2 + ¼·1 + ¼·1 = 1/16 + 3/16 + 8/16 = 0.75.
        assert!((c.apgr() - 0.75).abs() < 1e-12);
        assert_eq!(c.cpt(0.5), Some(0.25));
        assert!(
            (c.cpt(0.8).unwrap() - 0.4).abs() < 1e-12,
            "linear between ¼ and ½"
        );
        // Costs: 4 × $1, +$9 per strong call.
        assert_eq!(c.cost, vec![4.0, 13.0, 22.0, 31.0, 40.0]);
        let reversed = curve(&pts, |x| -x.rank);
        // PGR 0, 0, 0, ½, 1 → area 1/16 + 3/16 = 0.25.
        assert!((reversed.apgr() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn ties_are_taken_in_expectation_and_random_is_one_half() {
        let pts = [
            p(0.5, 0.0, 1.0),
            p(0.5, 0.0, 1.0),
            p(0.5, 1.0, 1.0),
            p(0.5, 1.0, 1.0),
        ];
        let c = curve(&pts, |x| x.rank);
        assert_eq!(c.pgr, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert!((c.apgr() - 0.5).abs() < 1e-12);
        let (s, _, oracle) = summarize(&pts);
        assert!((s.oracle_apgr - 0.75).abs() < 1e-12);
        assert!(s.lift.abs() < 1e-12, "a constant score is random");
        assert!((oracle.apgr() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn lift_cpt_and_the_cost_at_95_percent_of_strong_quality() {
        // Gains: +1, +1, 0, -1 (the strong model loses one). Ranked in the order
        // +1, 0, +1, -1: PGR 0, 1, 1, 2, 1 (the gap is 1 over 4 requests).
        let pts = [
            p(4.0, 0.0, 1.0),
            p(3.0, 1.0, 1.0),
            p(2.0, 0.0, 1.0),
            p(1.0, 1.0, 0.0),
        ];
        let (s, router, oracle) = summarize(&pts);
        assert_eq!(router.pgr, vec![0.0, 1.0, 1.0, 2.0, 1.0]);
        // Area: ¼·(½ + 1 + 1.5 + 1.5) = 1.125.
        assert!((s.apgr - 1.125).abs() < 1e-12);
        // Oracle order +1, +1, 0, -1: PGR 0, 1, 2, 2, 1 → ¼·(½ + 1.5 + 2 + 1.5) = 1.375.
        assert_eq!(oracle.pgr, vec![0.0, 1.0, 2.0, 2.0, 1.0]);
        assert!((s.oracle_apgr - 1.375).abs() < 1e-12);
        assert!((s.lift - (0.625 / 0.875)).abs() < 1e-12);
        assert_eq!(s.cpt50, Some(0.125));
        // Strong quality is ¾; 95% of it is 0.7125. Quality runs ½, ¾, … so it is
        // reached at share 0.2125/0.25·¼ = 0.2125, costing 4 + 0.2125·4·9 = 11.65
        // of the all-strong 40: 70.875% saved.
        let share = s.strong_share_at_95.unwrap();
        assert!((share - 0.2125).abs() < 1e-12, "{share}");
        assert!((s.cost_saved_at_95.unwrap() - (1.0 - 11.65 / 40.0)).abs() < 1e-12);
    }

    #[test]
    fn decisions_against_each_model_random_mix_and_oracle() {
        let rows: Vec<OutcomeRow> = [(0.0, 1.0), (1.0, 1.0), (0.0, 0.0), (1.0, 0.0)]
            .iter()
            .map(|&(c, s)| OutcomeRow {
                id: String::new(),
                benchmark: String::new(),
                prompt: String::new(),
                prompt_tokens: 1e6,
                scores: vec![c, s],
                output_tokens: vec![Some(0.0), Some(0.0)],
            })
            .collect();
        let cost = costs(&rows, &[(1.0, 0.0), (10.0, 0.0)]);
        assert_eq!(cost[0], vec![1.0, 10.0]);
        // The router sends the first and the third to the strong model: scores
        // 1, 1, 0, 1.
        let d = decisions(&rows, &cost, &[1, 0, 1, 0]);
        assert_eq!(
            d.routed,
            QualityCost {
                quality: 0.75,
                cost: 22.0
            }
        );
        assert_eq!(
            d.each_model[0],
            QualityCost {
                quality: 0.5,
                cost: 4.0
            }
        );
        assert_eq!(
            d.each_model[1],
            QualityCost {
                quality: 0.5,
                cost: 40.0
            }
        );
        assert_eq!(d.mix, vec![0.5, 0.5]);
        assert_eq!(
            d.random_same_mix,
            QualityCost {
                quality: 0.5,
                cost: 22.0
            }
        );
        // Oracle: strong, cheap, cheap (both 0), cheap.
        assert_eq!(
            d.oracle,
            QualityCost {
                quality: 0.75,
                cost: 13.0
            }
        );
    }

    #[test]
    fn outcome_files_are_read_and_errors_name_the_line() {
        let text = r#"{"id": "a", "benchmark": "b", "prompt": "hi", "prompt_tokens_approx": 3, "models": {"x/y": {"score": 0.5, "output_tokens_approx": 7}, "z": {"score": 1.0, "output_tokens_approx": null}}}"#;
        let rows = read_outcomes(text, &["z".into(), "x/y".into()]).unwrap();
        assert_eq!(rows[0].scores, vec![1.0, 0.5]);
        assert_eq!(rows[0].output_tokens, vec![None, Some(7.0)]);
        assert_eq!(rows[0].prompt_tokens, 3.0);
        let err = read_outcomes(text, &["w".into()]).unwrap_err();
        assert!(err.contains("line 1") && err.contains("x/y"), "{err}");
        assert!(read_outcomes("{broken", &["z".into()])
            .unwrap_err()
            .contains("line 1"));
    }
}
