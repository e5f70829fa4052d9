//! The learning loop: corrections from the decision log's feedback, the retraining
//! gate, and versioned heads (`<dir of router.head>/heads/<time>-<hash>.*`, with
//! `CURRENT` naming the installed one).

use std::path::{Path, PathBuf};

use rusqlite::params;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::classify::{meta_path, ClassifyError, EvalReport, TierHead};
use crate::ledger::log::{open, LogError};

/// A logged request and what feedback says its tier should have been.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Correction {
    pub request_id: String,
    pub text: Option<String>,
    pub predicted: Option<String>,
    pub correct: Option<String>,
    pub confidence: Option<f64>,
    pub endpoint: String,
    pub ts_ms: i64,
    /// `misroute` (feedback names another tier), `confirmed` (feedback agrees) or
    /// `low_confidence` (no feedback, the head was unsure).
    pub flag: String,
}

/// Corrections in `[since_ms, now)`: the latest tier feedback per request, plus
/// (for review) unsure decisions without feedback.
pub fn corrections(
    db: &Path,
    since_ms: i64,
    low_confidence: f64,
) -> Result<Vec<Correction>, LogError> {
    let conn = open(db)?;
    let err = |source| LogError::Sqlite {
        path: db.to_path_buf(),
        source,
    };
    let mut stmt = conn
        .prepare(
            "SELECT d.id, d.routed_text, d.tier, f.correct_tier, d.confidence, d.endpoint, d.ts_ms
             FROM decisions d
             LEFT JOIN (SELECT request_id, correct_tier, max(ts_ms) FROM feedback
                        WHERE correct_tier IS NOT NULL GROUP BY request_id) f
               ON f.request_id = d.id
             WHERE d.ts_ms >= ?1 AND d.tier IS NOT NULL
               AND (f.correct_tier IS NOT NULL OR d.confidence < ?2)
             ORDER BY d.ts_ms",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(params![since_ms, low_confidence], |r| {
            let predicted: Option<String> = r.get(2)?;
            let correct: Option<String> = r.get(3)?;
            let flag = match (&correct, &predicted) {
                (Some(c), Some(p)) if c != p => "misroute",
                (Some(_), _) => "confirmed",
                (None, _) => "low_confidence",
            };
            Ok(Correction {
                request_id: r.get(0)?,
                text: r.get(1)?,
                predicted,
                correct,
                confidence: r.get(4)?,
                endpoint: r.get(5)?,
                ts_ms: r.get(6)?,
                flag: flag.to_string(),
            })
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok(rows)
}

/// What an app reported about a request that says whether the cheaper tiers were
/// enough: an outcome label for the head's outcome output.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutcomeLabel {
    pub request_id: String,
    pub text: Option<String>,
    /// 1: a stronger model was needed; 0: the cheaper tier it went to was enough.
    pub needs_stronger: f32,
}

/// Outcome labels in `[since_ms, now)` from feedback (`labels` are the tiers,
/// cheapest first): a `failure` below the top tier, or a `correct_tier` of the top
/// tier, says a stronger model was needed; a `success` below the top tier, or a
/// `correct_tier` below it, says the cheaper model was enough. Feedback on
/// requests the top tier answered says nothing about the cheaper ones.
pub fn outcome_labels(
    db: &Path,
    since_ms: i64,
    labels: &[String],
) -> Result<Vec<OutcomeLabel>, LogError> {
    let conn = open(db)?;
    let err = |source| LogError::Sqlite {
        path: db.to_path_buf(),
        source,
    };
    let top = labels.last().cloned().unwrap_or_default();
    let mut stmt = conn
        .prepare(
            "SELECT d.id, d.routed_text, d.tier, f.correct_tier, f.outcome
             FROM decisions d JOIN feedback f ON f.request_id = d.id
             WHERE d.ts_ms >= ?1 AND d.tier IS NOT NULL
               AND (f.correct_tier IS NOT NULL OR f.outcome IS NOT NULL)
             ORDER BY d.ts_ms",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(params![since_ms], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok(rows
        .into_iter()
        .filter_map(|(request_id, text, tier, correct, outcome)| {
            let needs_stronger = match (correct.as_deref(), outcome.as_deref()) {
                (Some(c), _) => f32::from(c == top),
                (None, _) if tier == top => return None,
                (None, Some("failure")) => 1.0,
                (None, Some("success")) => 0.0,
                _ => return None,
            };
            Some(OutcomeLabel {
                request_id,
                text,
                needs_stronger,
            })
        })
        .collect())
}

/// Mean log-loss of `p` (the probability that a stronger model is needed) against
/// labels `y`: how well the outcome output knows them.
pub fn log_loss(p: &[f32], y: &[f32]) -> f64 {
    let n = p.len().max(1) as f64;
    p.iter()
        .zip(y)
        .map(|(&p, &y)| {
            let p = (p as f64).clamp(1e-6, 1.0 - 1e-6);
            -(y as f64 * p.ln() + (1.0 - y as f64) * (1.0 - p).ln())
        })
        .sum::<f64>()
        / n
}

/// Deterministic share of corrections kept out of training to judge the new head.
pub fn held_out(text: &str, percent: u8) -> bool {
    let h = Sha256::digest(text.trim().to_lowercase().as_bytes());
    (u16::from_le_bytes([h[0], h[1]]) % 100) < percent as u16
}

/// Before/after numbers the gate looks at.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub validation_before: EvalReport,
    pub validation_after: EvalReport,
    pub corrections_before: EvalReport,
    pub corrections_after: EvalReport,
    /// Held-out outcome labels, and the outcome output's log-loss on them before
    /// and after (a head without that output counts as knowing nothing: ln 2).
    pub outcomes_held_out: usize,
    pub outcome_loss_before: f64,
    pub outcome_loss_after: f64,
}

/// The gate: validation accuracy may drop by at most `margin_points`; accuracy on
/// the held-out corrections must improve when there are any, and the log-loss on
/// the held-out outcome labels must improve when there are any. Returns the reason
/// to refuse.
pub fn gate(c: &Comparison, margin_points: f64) -> Result<(), String> {
    if c.corrections_before.examples == 0 && c.outcomes_held_out == 0 {
        return Err(
            "no held-out corrections or outcomes to judge the new head on; collect more feedback"
                .into(),
        );
    }
    if c.outcomes_held_out > 0 && c.outcome_loss_after >= c.outcome_loss_before {
        return Err(format!(
            "the held-out outcomes are not predicted better (log-loss {:.4} → {:.4}): the outcomes do not generalize",
            c.outcome_loss_before, c.outcome_loss_after
        ));
    }
    if c.corrections_before.examples == 0 {
        let drop = (c.validation_before.accuracy - c.validation_after.accuracy) * 100.0;
        if drop > margin_points {
            return Err(format!(
                "validation accuracy would drop {drop:.2} points, more than the allowed {margin_points:.2}"
            ));
        }
        return Ok(());
    }
    let drop = (c.validation_before.accuracy - c.validation_after.accuracy) * 100.0;
    if drop > margin_points {
        return Err(format!(
            "validation accuracy would drop {drop:.2} points ({:.2}% → {:.2}%), more than the allowed {margin_points:.2}",
            c.validation_before.accuracy * 100.0,
            c.validation_after.accuracy * 100.0
        ));
    }
    if c.corrections_after.accuracy <= c.corrections_before.accuracy {
        return Err(format!(
            "accuracy on the held-out corrections does not improve ({:.1}% → {:.1}%): the corrections do not generalize",
            c.corrections_before.accuracy * 100.0,
            c.corrections_after.accuracy * 100.0
        ));
    }
    Ok(())
}

/// Versions live beside the installed head.
pub fn heads_dir(head_path: &Path) -> PathBuf {
    head_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("heads")
}

#[derive(Debug, Clone, Serialize)]
pub struct HeadVersion {
    pub version: String,
    pub created: String,
    pub validation_accuracy: Option<f64>,
    pub current: bool,
}

/// Stores `head` as a new version and installs it at `head_path`.
pub fn save_version(head: &TierHead, head_path: &Path) -> Result<String, ClassifyError> {
    let dir = heads_dir(head_path);
    std::fs::create_dir_all(&dir)?;
    let (w, b) = head.weights();
    let mut h = Sha256::new();
    for x in w.iter().chain(b) {
        h.update(x.to_le_bytes());
    }
    let hash = hex::encode(h.finalize());
    let version = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &hash[..8]
    );
    head.save(&dir.join(format!("{version}.safetensors")))?;
    install(&version, head_path)?;
    Ok(version)
}

/// Makes `version` the head at `head_path` (copy + rename, then `CURRENT`).
pub fn install(version: &str, head_path: &Path) -> Result<(), ClassifyError> {
    let dir = heads_dir(head_path);
    let src = dir.join(format!("{version}.safetensors"));
    let head = TierHead::load(&src)?;
    head.save(head_path)?;
    std::fs::write(dir.join("CURRENT"), version)?;
    Ok(())
}

/// Keeps the head that was installed before versioning began as a version too, so
/// `head use` can always go back to it.
pub fn ensure_baseline(head_path: &Path) -> Result<(), ClassifyError> {
    let dir = heads_dir(head_path);
    if dir.join("CURRENT").exists() || !head_path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)?;
    let head = TierHead::load(head_path)?;
    let version = format!("baseline-{}", head.meta().created.replace([':', '-'], ""));
    head.save(&dir.join(format!("{version}.safetensors")))?;
    std::fs::write(dir.join("CURRENT"), version)?;
    Ok(())
}

/// The stored versions, oldest first (newest last), read only. Before the first
/// retrain there are none: the installed head is then listed as `installed`.
pub fn list_versions(head_path: &Path) -> Result<Vec<HeadVersion>, ClassifyError> {
    let dir = heads_dir(head_path);
    let current = std::fs::read_to_string(dir.join("CURRENT")).unwrap_or_default();
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("safetensors") {
                continue;
            }
            let Some(version) = p.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
                continue;
            };
            out.push(describe_version(
                &p,
                version.clone(),
                version == current.trim(),
            ));
        }
    }
    if out.is_empty() && head_path.exists() {
        out.push(describe_version(head_path, "installed".into(), true));
    }
    out.sort_by(|a, b| a.created.cmp(&b.created).then(a.version.cmp(&b.version)));
    Ok(out)
}

/// A head file's version entry: its creation time and routed validation accuracy.
fn describe_version(path: &Path, version: String, current: bool) -> HeadVersion {
    let meta: Option<serde_json::Value> = std::fs::read(meta_path(path))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    HeadVersion {
        current,
        created: meta
            .as_ref()
            .and_then(|m| m["created"].as_str())
            .unwrap_or("")
            .to_string(),
        validation_accuracy: meta
            .as_ref()
            .and_then(|m| m["metrics"]["routed_validation"]["accuracy"].as_f64()),
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::evaluate;

    fn rep(acc_hits: usize, n: usize) -> EvalReport {
        let labels: Vec<String> = vec!["A".into(), "B".into()];
        let truth = vec![0; n];
        let pred: Vec<usize> = (0..n).map(|i| usize::from(i >= acc_hits)).collect();
        evaluate(&labels, &truth, &pred)
    }

    #[test]
    fn gate_needs_held_out_improvement_and_bounded_validation_drop() {
        let ok = Comparison {
            validation_before: rep(90, 100),
            validation_after: rep(90, 100),
            corrections_before: rep(0, 4),
            corrections_after: rep(3, 4),
            outcomes_held_out: 0,
            outcome_loss_before: 0.0,
            outcome_loss_after: 0.0,
        };
        assert!(gate(&ok, 1.0).is_ok());
        let worse_val = Comparison {
            validation_after: rep(88, 100),
            ..ok.clone()
        };
        assert!(gate(&worse_val, 1.0).unwrap_err().contains("drop"));
        let no_gain = Comparison {
            corrections_after: rep(0, 4),
            ..ok.clone()
        };
        assert!(gate(&no_gain, 1.0).unwrap_err().contains("generalize"));
        let none = Comparison {
            corrections_before: rep(0, 0),
            ..ok.clone()
        };
        assert!(gate(&none, 1.0).is_err());
        // Outcomes alone: their held-out log-loss must fall.
        let outcomes = Comparison {
            outcomes_held_out: 10,
            outcome_loss_before: 0.69,
            outcome_loss_after: 0.60,
            ..none.clone()
        };
        assert!(gate(&outcomes, 1.0).is_ok());
        let worse = Comparison {
            outcome_loss_after: 0.70,
            ..outcomes
        };
        assert!(gate(&worse, 1.0).unwrap_err().contains("outcomes"));
    }

    #[test]
    fn log_loss_by_hand() {
        // −(ln 0.8 + ln 0.5) / 2.
        let l = log_loss(&[0.8, 0.5], &[1.0, 0.0]);
        assert!((l - (-(0.8f64.ln() + 0.5f64.ln()) / 2.0)).abs() < 1e-6);
    }

    #[test]
    fn held_out_share_is_stable() {
        let n = (0..1000)
            .filter(|i| held_out(&format!("text {i}"), 30))
            .count();
        assert!((250..350).contains(&n), "{n}");
        assert_eq!(held_out("Hello", 30), held_out("  hello ", 30));
    }
}
