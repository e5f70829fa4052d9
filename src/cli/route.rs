//! `triage route`: the routing decision for texts from the command line or stdin.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use triage::engine::{Engine, Routed};

#[derive(Args, Debug)]
pub struct RouteArgs {
    /// Texts to route.
    pub texts: Vec<String>,
    /// Read lines from stdin (JSON objects with a `text` field, or plain text) and
    /// write one JSON object per line.
    #[arg(long)]
    pub jsonl: bool,
    /// Print JSON objects instead of a table for TEXT arguments.
    #[arg(long)]
    pub json: bool,
}

fn to_json(text: &str, r: &Routed) -> serde_json::Value {
    let t = &r.timings;
    json!({
        "text": text,
        "tier": r.decision.tier,
        "confidence": triage::classify::round4(r.decision.confidence),
        "probs": r.decision.probs_json(),
        "model": r.decision.models.first(),
        "raised": r.decision.raised,
        "strength": triage::classify::round4(r.decision.strength),
        "raised_by_quality_target": r.decision.by_quality,
        "latency_us": t.tokenize_us + t.forward_us + t.pool_us + r.head_us,
        "stages_us": {"tokenize": t.tokenize_us, "embed": t.forward_us, "pool": t.pool_us, "head": r.head_us},
    })
}

/// What a `--jsonl` input line asks to route (its text, and for a follow-up the
/// previous user turn in `context`), or why it cannot be read.
pub fn parse_line(line: &str) -> Result<Option<(String, Option<String>)>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| format!("malformed JSON: {e}"))?;
        let context = match v.get("context") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(c)) => Some(c.clone()),
            Some(_) => return Err("`context` must be a string".into()),
        };
        return match v.get("text") {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                Ok(Some((s.clone(), context)))
            }
            Some(serde_json::Value::String(_)) => Err("`text` is empty".into()),
            Some(_) => Err("`text` must be a string".into()),
            None => Err("JSON object without a `text` field".into()),
        };
    }
    Ok(Some((line.to_string(), None)))
}

pub fn run(g: &super::Global, a: RouteArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    let engine = Engine::load(&cfg)?;
    engine.warm_up();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.jsonl {
        let stdin = std::io::stdin();
        for (i, line) in stdin.lock().lines().enumerate() {
            let n = i + 1;
            let value = match line {
                Err(e) => json!({"line": n, "error": format!("unreadable line: {e}")}),
                Ok(line) => match parse_line(&line) {
                    Ok(None) => continue,
                    Err(e) => json!({"line": n, "error": e}),
                    Ok(Some((text, context))) => match engine.route(
                        &triage::classify::routed_text(&text, context.as_deref()),
                        &cfg.router,
                    ) {
                        Ok(r) => to_json(&text, &r),
                        Err(e) => json!({"line": n, "error": e.to_string()}),
                    },
                },
            };
            writeln!(out, "{value}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.texts.is_empty() {
        anyhow::bail!("give one or more TEXT arguments, or --jsonl to read stdin");
    }
    for text in &a.texts {
        let r = engine.route(text, &cfg.router)?;
        if a.json {
            writeln!(out, "{}", to_json(text, &r))?;
            continue;
        }
        let d = &r.decision;
        let t = &r.timings;
        let probs: Vec<String> = d.probs.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        writeln!(out, "{text}")?;
        writeln!(
            out,
            "  tier {}{}   confidence {:.3}   strength {:.3}   model {}",
            d.tier,
            match (d.raised, d.by_quality) {
                (true, true) => format!(" (raised from {}: quality target)", d.head_tier),
                (true, false) => format!(" (raised from {}: low confidence)", d.head_tier),
                _ => String::new(),
            },
            d.confidence,
            d.strength,
            d.models.first().map(String::as_str).unwrap_or("-"),
        )?;
        writeln!(out, "  probs  {}", probs.join("  "))?;
        writeln!(
            out,
            "  latency tokenize {} us, embed {} us, pool {} us, head {} us, total {:.2} ms",
            t.tokenize_us,
            t.forward_us,
            t.pool_us,
            r.head_us,
            (t.tokenize_us + t.forward_us + t.pool_us + r.head_us) as f64 / 1000.0
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn jsonl_lines() {
        assert_eq!(parse_line("  "), Ok(None));
        assert_eq!(
            parse_line("hello there"),
            Ok(Some(("hello there".into(), None)))
        );
        assert_eq!(
            parse_line(r#"{"text": "hi"}"#),
            Ok(Some(("hi".into(), None)))
        );
        assert_eq!(
            parse_line(r#"{"text": "shorter", "context": "write a poem"}"#),
            Ok(Some(("shorter".into(), Some("write a poem".into()))))
        );
        assert!(parse_line(r#"{"text": "a", "context": 1}"#).is_err());
        assert!(parse_line(r#"{"text": 3}"#).unwrap_err().contains("string"));
        assert!(parse_line(r#"{"txt": "a"}"#).unwrap_err().contains("text"));
        assert!(parse_line(r#"{"text": "a""#)
            .unwrap_err()
            .contains("malformed"));
    }
}
