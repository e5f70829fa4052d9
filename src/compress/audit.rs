//! `triage prompt audit`: what a system prompt costs and which of its sentences
//! earn their tokens.

use serde::Serialize;

use super::count_text_tokens;
use crate::embed::{cosine, EmbedError, Embedder};

/// Statements of what models do anyway; a sentence close to one is a candidate to cut.
pub const DEFAULT_BEHAVIOUR: &[&str] = &[
    "You are a helpful assistant.",
    "Be helpful and answer the user's questions.",
    "Be polite, friendly and respectful.",
    "Be accurate and do not make things up.",
    "If you don't know the answer, say that you don't know.",
    "Use clear and concise language.",
    "Respond in the same language as the user.",
    "Do not use offensive or harmful language.",
    "Think step by step before answering.",
    "Provide detailed and informative answers.",
    "Make sure your answer is correct.",
    "Always be professional.",
];

/// Sentences of a prompt: lines, then sentence ends; bullets and numbering removed.
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches(['-', '*', '•']).trim_start();
        let line = match line.split_once(". ") {
            Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => rest,
            _ => line,
        };
        let mut cur = String::new();
        let chars: Vec<char> = line.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            cur.push(*c);
            let end =
                matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
            if end {
                let s = cur.trim().to_string();
                if !s.is_empty() {
                    out.push(s);
                }
                cur.clear();
            }
        }
        let s = cur.trim().to_string();
        if !s.is_empty() {
            out.push(s);
        }
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct SentenceInfo {
    pub index: usize,
    pub text: String,
    pub tokens: usize,
    /// The default-behaviour statement it restates, with the similarity.
    pub restates_default: Option<(String, f32)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub model: String,
    pub total_tokens: usize,
    pub sentences: Vec<SentenceInfo>,
    /// (i, j, similarity) of near-duplicate sentences.
    pub near_duplicates: Vec<(usize, usize, f32)>,
    pub requests_per_day: u64,
    /// USD per 30 days at the model's input price (None: unpriced).
    pub monthly_cost_usd: Option<f64>,
    /// The same with the prompt served from the provider's prompt cache.
    pub monthly_cost_cached_usd: Option<f64>,
}

pub fn audit(
    prompt: &str,
    model: &str,
    requests_per_day: u64,
    price: Option<&crate::ledger::Price>,
    embedder: &Embedder,
    duplicate_threshold: f32,
    default_threshold: f32,
) -> Result<Audit, EmbedError> {
    let sentences = split_sentences(prompt);
    let total_tokens = count_text_tokens(model, prompt);
    let (emb, _) = embedder.embed(&sentences)?;
    let (defaults, _) = embedder.embed(DEFAULT_BEHAVIOUR)?;
    let mut infos = Vec::new();
    for (i, s) in sentences.iter().enumerate() {
        let best = defaults
            .iter()
            .enumerate()
            .map(|(k, d)| (k, cosine(&emb[i].vector, &d.vector)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        infos.push(SentenceInfo {
            index: i,
            text: s.clone(),
            tokens: count_text_tokens(model, s),
            restates_default: best
                .filter(|(_, sim)| *sim >= default_threshold)
                .map(|(k, sim)| (DEFAULT_BEHAVIOUR[k].to_string(), sim)),
        });
    }
    let mut dups = Vec::new();
    for i in 0..sentences.len() {
        for j in i + 1..sentences.len() {
            let sim = cosine(&emb[i].vector, &emb[j].vector);
            if sim >= duplicate_threshold {
                dups.push((i, j, sim));
            }
        }
    }
    let monthly = |per_m: f64| total_tokens as f64 * requests_per_day as f64 * 30.0 * per_m / 1e6;
    Ok(Audit {
        model: model.to_string(),
        total_tokens,
        sentences: infos,
        near_duplicates: dups,
        requests_per_day,
        monthly_cost_usd: price.map(|p| monthly(p.input)),
        monthly_cost_cached_usd: price.map(|p| monthly(p.cached_input.unwrap_or(p.input))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_on_lines_and_ends() {
        let s = split_sentences(
            "You are a bot. Be nice!\n- Never share keys.\n2. Use metric units\n\nv1.2 is current.",
        );
        assert_eq!(
            s,
            vec![
                "You are a bot.",
                "Be nice!",
                "Never share keys.",
                "Use metric units",
                "v1.2 is current."
            ]
        );
    }
}
