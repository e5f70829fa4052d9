//! Semantic cache: answers a request with a stored answer when an earlier request in
//! the same scope meant the same thing. Similarity finds candidates; `verify` decides.

pub mod verify;

use serde::Serialize;

pub use verify::{verify, Mismatch, MISMATCH_KINDS};

/// Whether a stored request's answer may serve a new request, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HitDecision {
    pub hit: bool,
    pub similarity: f32,
    pub reason: String,
    /// The guard that refused it, if one did (`similarity` when below threshold).
    pub rejected_by: Option<&'static str>,
}

/// The one decision rule the live cache and `triage cache explain` share.
pub fn decide_hit(stored: &str, new: &str, similarity: f32, threshold: f32) -> HitDecision {
    if similarity < threshold {
        return HitDecision {
            hit: false,
            similarity,
            reason: format!("similarity {similarity:.4} below threshold {threshold:.2}"),
            rejected_by: Some("similarity"),
        };
    }
    match verify(stored, new, similarity) {
        Ok(()) => HitDecision {
            hit: true,
            similarity,
            reason: format!("similarity {similarity:.4} ≥ {threshold:.2} and no guard objects"),
            rejected_by: None,
        },
        Err(m) => HitDecision {
            hit: false,
            similarity,
            reason: m.to_string(),
            rejected_by: Some(m.kind),
        },
    }
}
