//! Labeled request files: JSONL with `text`, `tier`, optional `kind` and `source`.

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
