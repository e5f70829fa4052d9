//! `triage report`: what was spent, what routing and caching saved, per model,
//! endpoint, tier or hour, from the decision log.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::params;
use serde::Serialize;

use super::log::{open, LogError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Model,
    Endpoint,
    Tier,
    Hour,
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "model" => Ok(Self::Model),
            "endpoint" => Ok(Self::Endpoint),
            "tier" => Ok(Self::Tier),
            "hour" => Ok(Self::Hour),
            _ => Err(format!("`{s}`: expected model, endpoint, tier or hour")),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// Requests to models without a price (their cost is unknown, not zero).
    pub unpriced_requests: u64,
    pub cache_hits: u64,
    pub cache_hit_rate: f64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EndpointTokens {
    pub endpoint: String,
    pub requests: u64,
    pub p50_tokens: u64,
    pub p95_tokens: u64,
    /// Tokens spent per request reported successful (None without such feedback).
    pub tokens_per_success: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub since_ms: i64,
    pub until_ms: i64,
    pub totals: Totals,
    pub groups: Vec<Group>,
    /// Requests, cost and cache hit rate per hour (UTC), oldest first.
    pub hourly: Vec<Group>,
    pub endpoints: Vec<EndpointTokens>,
    /// Share of tier corrections that named another tier than the one routed.
    pub misroute_rate: Option<f64>,
    pub corrections: u64,
    /// Cost had every request gone to the strongest tier's model, minus the cost.
    pub saved_vs_top_tier_usd: f64,
    /// What cache hits saved (the cost of the calls they replaced).
    pub saved_by_cache_usd: f64,
    /// Cost per hour and model: (hour, model, USD).
    pub hourly_model_cost: Vec<(String, String, f64)>,
    /// Prompt tokens removed by history compression, what they would have cost,
    /// what the summaries cost, and the difference.
    pub compression_tokens_saved: u64,
    pub compression_saved_usd: f64,
    pub summary_cost_usd: f64,
    pub compression_net_usd: f64,
}

struct Row {
    ts_ms: i64,
    endpoint: String,
    tier: Option<String>,
    model: Option<String>,
    cache: String,
    input: u64,
    output: u64,
    cost: Option<f64>,
    saved: Option<f64>,
    top: Option<f64>,
    error: bool,
    tokens_saved: u64,
    compression_saved: Option<f64>,
    summary_cost: Option<f64>,
}

/// (endpoint, routed tier, correct tier, outcome) of one feedback row.
type FeedbackJoin = (String, Option<String>, Option<String>, Option<String>);

fn add(t: &mut Totals, r: &Row) {
    t.requests += 1;
    t.input_tokens += r.input;
    t.output_tokens += r.output;
    match r.cost {
        Some(c) => t.cost_usd += c,
        None if r.model.is_some() && !r.error && r.cache != "hit" => t.unpriced_requests += 1,
        None => {}
    }
    if r.cache == "hit" {
        t.cache_hits += 1;
    }
    if r.error {
        t.errors += 1;
    }
    t.cache_hit_rate = t.cache_hits as f64 / t.requests as f64;
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn hour_key(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|d| d.format("%Y-%m-%dT%H:00Z").to_string())
        .unwrap_or_default()
}

/// Builds the report over `[since_ms, until_ms)`.
pub fn build(db: &Path, since_ms: i64, until_ms: i64, by: GroupBy) -> Result<Report, LogError> {
    let conn = open(db)?;
    let err = |source| LogError::Sqlite {
        path: db.to_path_buf(),
        source,
    };
    let mut stmt = conn
        .prepare(
            "SELECT ts_ms, endpoint, tier, actual_model, cache_status, input_tokens, output_tokens,
                    cost_usd, saved_usd, top_tier_cost_usd, error, tokens_saved,
                    compression_saved_usd, summary_cost_usd
             FROM decisions WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms",
        )
        .map_err(err)?;
    let rows: Vec<Row> = stmt
        .query_map(params![since_ms, until_ms], |r| {
            Ok(Row {
                ts_ms: r.get(0)?,
                endpoint: r.get(1)?,
                tier: r.get(2)?,
                model: r.get(3)?,
                cache: r.get(4)?,
                input: r.get::<_, i64>(5)?.max(0) as u64,
                output: r.get::<_, i64>(6)?.max(0) as u64,
                cost: r.get(7)?,
                saved: r.get(8)?,
                top: r.get(9)?,
                error: r.get::<_, Option<String>>(10)?.is_some(),
                tokens_saved: r.get::<_, i64>(11)?.max(0) as u64,
                compression_saved: r.get(12)?,
                summary_cost: r.get(13)?,
            })
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;

    let mut totals = Totals::default();
    let mut groups: BTreeMap<String, Totals> = BTreeMap::new();
    let mut hourly: BTreeMap<String, Totals> = BTreeMap::new();
    let mut tokens: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let (mut saved_top, mut saved_cache) = (0.0, 0.0);
    let mut hourly_model: BTreeMap<(String, String), f64> = BTreeMap::new();
    let (mut c_tokens, mut c_saved, mut c_summary) = (0u64, 0.0, 0.0);
    for r in &rows {
        c_tokens += r.tokens_saved;
        c_saved += r.compression_saved.unwrap_or(0.0);
        c_summary += r.summary_cost.unwrap_or(0.0);
        if let (Some(c), Some(m)) = (r.cost, &r.model) {
            *hourly_model
                .entry((hour_key(r.ts_ms), m.clone()))
                .or_default() += c;
        }
        add(&mut totals, r);
        let key = match by {
            GroupBy::Model => r.model.clone().unwrap_or_else(|| "(none)".into()),
            GroupBy::Endpoint => r.endpoint.clone(),
            GroupBy::Tier => r.tier.clone().unwrap_or_else(|| "passthrough".into()),
            GroupBy::Hour => hour_key(r.ts_ms),
        };
        add(groups.entry(key).or_default(), r);
        add(hourly.entry(hour_key(r.ts_ms)).or_default(), r);
        if !r.error {
            tokens
                .entry(r.endpoint.clone())
                .or_default()
                .push(r.input + r.output);
        }
        if let (Some(top), Some(cost)) = (r.top, r.cost) {
            saved_top += top - cost;
        }
        saved_cache += r.saved.unwrap_or(0.0);
    }

    // Feedback on requests of this window.
    let mut fb = conn
        .prepare(
            "SELECT d.endpoint, d.tier, f.correct_tier, f.outcome
             FROM feedback f JOIN decisions d ON d.id = f.request_id
             WHERE d.ts_ms >= ?1 AND d.ts_ms < ?2",
        )
        .map_err(err)?;
    let feedback: Vec<FeedbackJoin> = fb
        .query_map(params![since_ms, until_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let mut corrections = 0u64;
    let mut misroutes = 0u64;
    let mut successes: BTreeMap<String, u64> = BTreeMap::new();
    for (endpoint, tier, correct, outcome) in &feedback {
        if let Some(c) = correct {
            corrections += 1;
            if tier.as_deref() != Some(c.as_str()) {
                misroutes += 1;
            }
        }
        if outcome.as_deref() == Some("success") {
            *successes.entry(endpoint.clone()).or_default() += 1;
        }
    }
    let endpoints = tokens
        .into_iter()
        .map(|(endpoint, mut t)| {
            t.sort_unstable();
            let spent: u64 = t.iter().sum();
            EndpointTokens {
                tokens_per_success: successes.get(&endpoint).map(|s| spent as f64 / *s as f64),
                requests: t.len() as u64,
                p50_tokens: percentile(&t, 0.50),
                p95_tokens: percentile(&t, 0.95),
                endpoint,
            }
        })
        .collect();
    Ok(Report {
        since_ms,
        until_ms,
        totals,
        groups: groups
            .into_iter()
            .map(|(key, totals)| Group { key, totals })
            .collect(),
        hourly: hourly
            .into_iter()
            .map(|(key, totals)| Group { key, totals })
            .collect(),
        endpoints,
        misroute_rate: (corrections > 0).then(|| misroutes as f64 / corrections as f64),
        corrections,
        saved_vs_top_tier_usd: saved_top,
        saved_by_cache_usd: saved_cache,
        hourly_model_cost: hourly_model
            .into_iter()
            .map(|((h, m), c)| (h, m, c))
            .collect(),
        compression_tokens_saved: c_tokens,
        compression_saved_usd: c_saved,
        summary_cost_usd: c_summary,
        compression_net_usd: c_saved - c_summary,
    })
}

/// A row's cost: never `0.0000` for requests whose model has no price.
/// "unpriced" when nothing in it has a price; ">=" when only some of it has one.
fn cost_cell(t: &Totals) -> String {
    match t.unpriced_requests {
        0 => format!("{:.4}", t.cost_usd),
        _ if t.cost_usd == 0.0 => "unpriced".to_string(),
        _ => format!(">={:.4}", t.cost_usd),
    }
}

impl Report {
    pub fn render(&self, by: &str) -> String {
        let t = &self.totals;
        let mut s = format!(
            "requests {}   tokens in {} / out {}   cost ${:.4}{}   cache hit rate {:.1}%   errors {}\n",
            t.requests,
            t.input_tokens,
            t.output_tokens,
            t.cost_usd,
            if t.unpriced_requests > 0 {
                format!(" (+{} unpriced requests)", t.unpriced_requests)
            } else {
                String::new()
            },
            t.cache_hit_rate * 100.0,
            t.errors
        );
        s.push_str(&format!(
            "saved vs. every request on the strongest tier: ${:.4}   saved by the cache: ${:.4}\n",
            self.saved_vs_top_tier_usd, self.saved_by_cache_usd
        ));
        if self.compression_tokens_saved > 0 || self.summary_cost_usd > 0.0 {
            s.push_str(&format!(
                "history compression: {} prompt tokens removed (${:.4}), summaries cost ${:.4}, net ${:.4}\n",
                self.compression_tokens_saved,
                self.compression_saved_usd,
                self.summary_cost_usd,
                self.compression_net_usd
            ));
        }
        match self.misroute_rate {
            Some(r) => s.push_str(&format!(
                "misroute rate {:.1}% of {} tier corrections\n",
                r * 100.0,
                self.corrections
            )),
            None => s.push_str("misroute rate: no tier corrections yet\n"),
        }
        let table = |title: &str, groups: &[Group]| {
            let mut s = format!(
                "\n{:<24} {:>9} {:>10} {:>10} {:>11} {:>9}\n",
                title, "requests", "tokens in", "tokens out", "cost USD", "hit rate"
            );
            for g in groups {
                s.push_str(&format!(
                    "{:<24} {:>9} {:>10} {:>10} {:>11} {:>8.1}%\n",
                    g.key,
                    g.totals.requests,
                    g.totals.input_tokens,
                    g.totals.output_tokens,
                    cost_cell(&g.totals),
                    g.totals.cache_hit_rate * 100.0
                ));
            }
            s
        };
        s.push_str(&table(by, &self.groups));
        if by != "hour" {
            s.push_str(&table("hour (UTC)", &self.hourly));
        }
        s.push_str(&format!(
            "\n{:<24} {:>9} {:>10} {:>10} {:>17}\n",
            "endpoint", "requests", "p50 tok", "p95 tok", "tokens/success"
        ));
        for e in &self.endpoints {
            s.push_str(&format!(
                "{:<24} {:>9} {:>10} {:>10} {:>17}\n",
                e.endpoint,
                e.requests,
                e.p50_tokens,
                e.p95_tokens,
                e.tokens_per_success
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or_else(|| "-".into())
            ));
        }
        s
    }
}

/// USD spent since `since_secs` (unix), on one endpoint or all.
pub fn spend_since(db: &Path, endpoint: Option<&str>, since_secs: i64) -> Result<f64, LogError> {
    let conn = open(db)?;
    let err = |source| LogError::Sqlite {
        path: db.to_path_buf(),
        source,
    };
    let since_ms = since_secs * 1000;
    let v: Option<f64> = match endpoint {
        Some(e) => conn.query_row(
            // The endpoint and its sub-endpoints (`e/...`), as budgets count them.
            "SELECT sum(cost_usd) FROM decisions WHERE ts_ms >= ?1
             AND (endpoint = ?2 OR substr(endpoint, 1, length(?2) + 1) = ?2 || '/')",
            params![since_ms, e],
            |r| r.get(0),
        ),
        None => conn.query_row(
            "SELECT sum(cost_usd) FROM decisions WHERE ts_ms >= ?1",
            params![since_ms],
            |r| r.get(0),
        ),
    }
    .map_err(err)?;
    Ok(v.unwrap_or(0.0))
}

/// Parses `24h`, `7d`, `90m`, `3600s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a number with s, m, h or d"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}`: unit must be s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_percentiles() {
        assert_eq!(parse_duration("24h").unwrap().as_secs(), 86_400);
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 604_800);
        assert!(parse_duration("soon").is_err());
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, 0.5), 10);
        assert_eq!(percentile(&v, 0.95), 19);
    }
}
