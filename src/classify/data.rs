//! Labeled request files: JSONL with `text`, `tier`, optional `kind`, `source` and
//! `context` (the previous user turn of a follow-up).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ClassifyError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabeledExample {
    pub text: String,
    pub tier: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    /// For a follow-up: the previous user turn it only makes sense with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

impl LabeledExample {
    /// What the router sees for this request (see [`routed_text`]).
    pub fn routed(&self) -> String {
        routed_text(&self.text, self.context.as_deref())
    }
}

/// Characters of the previous user turn a follow-up is routed with.
pub const CONTEXT_MAX_CHARS: usize = 1000;

/// The text the router classifies: the request, then, for a follow-up, the previous
/// user turn it only makes sense with ("now make it async" after a request for
/// code). The request comes first so that the embedding's token window always
/// holds it; the context is cut to [`CONTEXT_MAX_CHARS`]. Training and serving
/// both build the routed text here.
pub fn routed_text(text: &str, context: Option<&str>) -> String {
    match context.map(str::trim).filter(|c| !c.is_empty()) {
        None => text.to_string(),
        Some(c) => format!(
            "{text}\n\n{}",
            crate::embed::prefix_chars(c, CONTEXT_MAX_CHARS)
        ),
    }
}

/// Reads a JSONL file; errors name the file and line.
pub fn read_examples(path: &Path) -> Result<Vec<LabeledExample>, ClassifyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClassifyError::Data(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ex: LabeledExample = serde_json::from_str(line)
            .map_err(|e| ClassifyError::Data(format!("{}:{}: {e}", path.display(), i + 1)))?;
        if ex.text.trim().is_empty() {
            return Err(ClassifyError::Data(format!(
                "{}:{}: empty text",
                path.display(),
                i + 1
            )));
        }
        out.push(ex);
    }
    Ok(out)
}

/// Index of a tier name among the head's labels (case-insensitive).
pub fn tier_index(labels: &[String], tier: &str) -> Option<usize> {
    labels.iter().position(|l| l.eq_ignore_ascii_case(tier))
}
