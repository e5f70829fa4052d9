//! Accuracy, per-tier precision/recall/F1, confusion matrix, and the rate of the
//! expensive mistake: the most demanding tier sent to the cheapest.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TierMetrics {
    pub tier: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalReport {
    pub examples: usize,
    pub accuracy: f64,
    pub per_tier: Vec<TierMetrics>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub labels: Vec<String>,
    /// Share of the top tier's examples predicted as the bottom tier.
    pub top_to_bottom_rate: f64,
}

/// Builds the report from true and predicted label indices.
pub fn evaluate(labels: &[String], truth: &[usize], predicted: &[usize]) -> EvalReport {
    let n = labels.len();
    let mut confusion = vec![vec![0usize; n]; n];
    for (&t, &p) in truth.iter().zip(predicted) {
        if t < n && p < n {
            confusion[t][p] += 1;
        }
    }
    let total = truth.len();
    let correct: usize = (0..n).map(|i| confusion[i][i]).sum();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_tier = (0..n)
        .map(|i| {
            let tp = confusion[i][i];
            let support: usize = confusion[i].iter().sum();
            let predicted_i: usize = (0..n).map(|t| confusion[t][i]).sum();
            let precision = ratio(tp, predicted_i);
            let recall = ratio(tp, support);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            TierMetrics {
                tier: labels[i].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let top = n.saturating_sub(1);
    let top_support: usize = confusion.get(top).map(|r| r.iter().sum()).unwrap_or(0);
    EvalReport {
        examples: total,
        accuracy: ratio(correct, total),
        per_tier,
        top_to_bottom_rate: ratio(confusion.get(top).map(|r| r[0]).unwrap_or(0), top_support),
        confusion,
        labels: labels.to_vec(),
    }
}

/// How well the confidence of decisions matches how often they are right.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Calibration {
    /// Expected calibration error over 10 equal-width confidence bins.
    pub ece: f64,
    /// Share of all decisions made with confidence above 0.9 …
    pub above_90: f64,
    /// … and share of all decisions that are wrong although made above 0.9.
    pub wrong_above_90: f64,
}

/// `confidence[i]` is the probability given to decision `i`, `correct[i]` whether
/// it was right.
pub fn calibration(confidence: &[f32], correct: &[bool]) -> Calibration {
    const BINS: usize = 10;
    let n = confidence.len().max(1) as f64;
    let mut count = [0usize; BINS];
    let mut conf = [0f64; BINS];
    let mut hits = [0usize; BINS];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let b = ((c as f64 * BINS as f64).ceil() as usize).clamp(1, BINS) - 1;
        count[b] += 1;
        conf[b] += c as f64;
        hits[b] += usize::from(ok);
    }
    let ece = (0..BINS)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            let k = count[b] as f64;
            (k / n) * (hits[b] as f64 / k - conf[b] / k).abs()
        })
        .sum();
    let above: Vec<bool> = confidence
        .iter()
        .zip(correct)
        .filter(|(c, _)| **c > 0.9)
        .map(|(_, ok)| *ok)
        .collect();
    Calibration {
        ece,
        above_90: above.len() as f64 / n,
        wrong_above_90: above.iter().filter(|ok| !**ok).count() as f64 / n,
    }
}

impl Calibration {
    pub fn render(&self) -> String {
        format!(
            "calibration: ECE {:.4}; {:.1}% of decisions above 0.9 confidence, {:.2}% of all decisions wrong there\n",
            self.ece,
            self.above_90 * 100.0,
            self.wrong_above_90 * 100.0
        )
    }
}

impl EvalReport {
    /// Human-readable table.
    pub fn render(&self) -> String {
        let mut s = format!(
            "examples {}   accuracy {:.2}%   {}->{} rate {:.2}%\n\n",
            self.examples,
            self.accuracy * 100.0,
            self.labels.last().map(String::as_str).unwrap_or("?"),
            self.labels.first().map(String::as_str).unwrap_or("?"),
            self.top_to_bottom_rate * 100.0
        );
        s.push_str(&format!(
            "{:<10} {:>9} {:>9} {:>9} {:>8}\n",
            "tier", "precision", "recall", "f1", "support"
        ));
        for m in &self.per_tier {
            s.push_str(&format!(
                "{:<10} {:>8.2}% {:>8.2}% {:>8.2}% {:>8}\n",
                m.tier,
                m.precision * 100.0,
                m.recall * 100.0,
                m.f1 * 100.0,
                m.support
            ));
        }
        s.push_str("\nconfusion (rows: true, columns: predicted)\n");
        s.push_str(&format!("{:<10}", ""));
        for l in &self.labels {
            s.push_str(&format!(" {l:>9}"));
        }
        s.push('\n');
        for (i, row) in self.confusion.iter().enumerate() {
            s.push_str(&format!("{:<10}", self.labels[i]));
            for c in row {
                s.push_str(&format!(" {c:>9}"));
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_metrics() {
        let labels: Vec<String> = ["S", "M", "C"].iter().map(|s| s.to_string()).collect();
        // truth:     S S M M C C C C
        // predicted: S M M M C C S M
        let t = [0, 0, 1, 1, 2, 2, 2, 2];
        let p = [0, 1, 1, 1, 2, 2, 0, 1];
        let r = evaluate(&labels, &t, &p);
        assert_eq!(r.examples, 8);
        assert!((r.accuracy - 5.0 / 8.0).abs() < 1e-12);
        assert_eq!(r.confusion[2], vec![1, 1, 2]);
        assert!((r.top_to_bottom_rate - 0.25).abs() < 1e-12);
        // M: tp 2, predicted M 4, support 2.
        assert!((r.per_tier[1].precision - 0.5).abs() < 1e-12);
        assert!((r.per_tier[1].recall - 1.0).abs() < 1e-12);
        assert!(r.render().contains("accuracy 62.50%"));
    }

    #[test]
    fn calibration_by_hand() {
        // Bin (0.9, 1.0]: 0.95 right, 0.95 wrong → accuracy ½, confidence 0.95.
        // Bin (0.5, 0.6]: 0.55 right twice → accuracy 1, confidence 0.55.
        let c = calibration(&[0.95, 0.95, 0.55, 0.55], &[true, false, true, true]);
        // ECE = ½·|½ − 0.95| + ½·|1 − 0.55| = 0.225 + 0.225.
        assert!((c.ece - 0.45).abs() < 1e-6, "{c:?}");
        assert_eq!(c.above_90, 0.5);
        assert_eq!(c.wrong_above_90, 0.25);
    }
}
