//! The steps that turn a fitted taxonomy layer into the head `serve` loads, shared
//! by `triage train` and `triage retrain`: temperature scaling on validation, the
//! outcome output, and the routed metrics and calibration recorded in the metadata.

use serde::Serialize;

use super::outcome_head::{fit_outcome_output, OutcomeData, OutcomeOptions, OutcomeReport};
use super::{
    calibration, decide, evaluate, fit_temperature, Calibration, ClassifyError, EvalReport,
    TierHead,
};
use crate::config::RouterConfig;

/// What finishing measured.
#[derive(Debug, Clone, Serialize)]
pub struct FinishReport {
    pub temperature: f32,
    /// The head's argmax on validation (temperature changes no argmax).
    pub argmax: EvalReport,
    /// The routed decisions on validation, as `serve` makes them.
    pub routed: EvalReport,
    /// Calibration of the argmax probabilities, before and after the temperature.
    pub calibration_before: Calibration,
    pub calibration: Calibration,
    /// Calibration of the routed decisions (the probability of the routed tier).
    pub routed_calibration: Calibration,
    pub outcome: Option<OutcomeReport>,
}

/// Calibration of the head's argmax and of the routed decisions on (`xs`, `ys`).
pub fn calibrations(
    head: &TierHead,
    xs: &[Vec<f32>],
    ys: &[usize],
    router: &RouterConfig,
) -> (Calibration, Calibration) {
    let preds: Vec<_> = xs.iter().map(|x| head.predict(x)).collect();
    let argmax = calibration(
        &preds.iter().map(|p| p.confidence()).collect::<Vec<_>>(),
        &preds
            .iter()
            .zip(ys)
            .map(|(p, &y)| p.tier == y)
            .collect::<Vec<_>>(),
    );
    let routed: Vec<usize> = preds
        .iter()
        .map(|p| decide(head, p, router).tier_index)
        .collect();
    let routed = calibration(
        &preds
            .iter()
            .zip(&routed)
            .map(|(p, &t)| p.probs[t])
            .collect::<Vec<_>>(),
        &routed
            .iter()
            .zip(ys)
            .map(|(t, y)| t == y)
            .collect::<Vec<_>>(),
    );
    (argmax, routed)
}

/// Temperature, outcome output (when `outcomes` is given; `taxonomy_x` are the
/// taxonomy training features the blend is standardized over), routed metrics and
/// calibration, all recorded in the head's metadata.
pub fn finish_head(
    head: TierHead,
    val_x: &[Vec<f32>],
    val_y: &[usize],
    taxonomy_x: &[Vec<f32>],
    outcomes: Option<(&OutcomeData, &OutcomeOptions)>,
    router: &RouterConfig,
) -> Result<(TierHead, FinishReport), ClassifyError> {
    let (calibration_before, _) = calibrations(&head, val_x, val_y, router);
    let temperature = fit_temperature(&head, val_x, val_y);
    let head = head.with_temperature(temperature)?;
    let (head, outcome) = match outcomes {
        Some((data, opts)) => {
            let (h, r) = fit_outcome_output(head, data, taxonomy_x, router, opts)?;
            (h, Some(r))
        }
        None => (head, None),
    };
    let labels = head.labels().to_vec();
    let preds: Vec<_> = val_x.iter().map(|x| head.predict(x)).collect();
    let argmax = evaluate(
        &labels,
        val_y,
        &preds.iter().map(|p| p.tier).collect::<Vec<_>>(),
    );
    let routed = evaluate(
        &labels,
        val_y,
        &preds
            .iter()
            .map(|p| decide(&head, p, router).tier_index)
            .collect::<Vec<_>>(),
    );
    let (calibration, routed_calibration) = calibrations(&head, val_x, val_y, router);
    let mut meta = head.meta().clone();
    if !meta.metrics.is_object() {
        meta.metrics = serde_json::json!({});
    }
    if let serde_json::Value::Object(m) = &mut meta.metrics {
        m.insert("validation".into(), json(&argmax));
        m.insert("routed_validation".into(), json(&routed));
        m.insert("calibration".into(), json(&calibration));
        m.insert(
            "calibration_before_temperature".into(),
            json(&calibration_before),
        );
        m.insert("routed_calibration".into(), json(&routed_calibration));
        m.insert(
            "min_confidence".into(),
            serde_json::json!(router.min_confidence),
        );
        m.insert(
            "top_tier_guard".into(),
            serde_json::json!(router.top_tier_guard),
        );
        if let Some(o) = &outcome {
            m.insert("outcomes_cross_fitted".into(), json(o));
        }
    }
    let head = head.with_meta(meta).map_err(ClassifyError::Data)?;
    Ok((
        head,
        FinishReport {
            temperature,
            argmax,
            routed,
            calibration_before,
            calibration,
            routed_calibration,
            outcome,
        },
    ))
}

/// A report part as metadata JSON.
fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
