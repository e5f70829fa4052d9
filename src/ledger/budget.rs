//! Hourly and daily USD budgets, global or per endpoint: alert thresholds (a log
//! line and a webhook, once per window per threshold) and an enforcement policy
//! once a budget is spent: `alert` only, `downgrade` to the cheapest tier, or
//! `reject` with 429. Windows are UTC hours and days; the clock is injectable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::mpsc;

pub use crate::config::{AlertConfig, BudgetConfig, Enforcement, Window};

impl Window {
    fn secs(self) -> i64 {
        match self {
            Window::Hour => 3600,
            Window::Day => 86_400,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }
}

/// What an over-budget request must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow,
    Downgrade {
        budget: String,
    },
    Reject {
        budget: String,
        retry_after_secs: i64,
    },
}

#[derive(Default)]
struct State {
    window_start: i64,
    spend: f64,
    fired: Vec<bool>,
    by_model: HashMap<String, f64>,
}

pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub struct Budgets {
    budgets: Vec<BudgetConfig>,
    states: Mutex<Vec<State>>,
    clock: Clock,
    alerts: Option<mpsc::Sender<serde_json::Value>>,
}

fn describe(b: &BudgetConfig) -> String {
    format!(
        "{} ${:.2} {} budget",
        b.endpoint.as_deref().unwrap_or("global"),
        b.usd,
        b.window.name()
    )
}

impl Budgets {
    /// Budgets with the real clock; alerts go to the webhook from a background task.
    pub fn new(
        budgets: Vec<BudgetConfig>,
        alerts: &AlertConfig,
        clock: Option<Clock>,
    ) -> Arc<Self> {
        let clock = clock.unwrap_or_else(|| Arc::new(|| chrono::Utc::now().timestamp()));
        let tx = alerts.webhook_url.clone().and_then(|url| {
            // The webhook needs a runtime; without one (CLI tools) alerts only log.
            let handle = tokio::runtime::Handle::try_current().ok()?;
            let (tx, rx) = mpsc::channel(1024);
            handle.spawn(deliver(
                url,
                rx,
                alerts.webhook_attempts.unwrap_or(5).max(1),
            ));
            Some(tx)
        });
        let states = budgets
            .iter()
            .map(|b| State {
                fired: vec![false; b.thresholds.len()],
                ..State::default()
            })
            .collect();
        Arc::new(Self {
            budgets,
            states: Mutex::new(states),
            clock,
            alerts: tx,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty()
    }

    /// A budget for `e` covers `e` and its sub-endpoints (`e/...`).
    fn applies(b: &BudgetConfig, endpoint: &str) -> bool {
        b.endpoint
            .as_deref()
            .is_none_or(|e| crate::config::endpoint_covers(e, endpoint))
    }

    /// Rolls a budget's state into the current window.
    fn roll(b: &BudgetConfig, s: &mut State, now: i64) {
        let start = now - now.rem_euclid(b.window.secs());
        if s.window_start != start {
            *s = State {
                window_start: start,
                fired: vec![false; b.thresholds.len()],
                ..State::default()
            };
        }
    }

    /// Seeds spend already made in the current windows (from the decision log).
    pub fn seed(&self, spend: impl Fn(Option<&str>, i64) -> f64) {
        let now = (self.clock)();
        let mut states = self.states.lock();
        for (b, s) in self.budgets.iter().zip(states.iter_mut()) {
            Self::roll(b, s, now);
            s.spend = spend(b.endpoint.as_deref(), s.window_start);
            for (i, t) in b.thresholds.iter().enumerate() {
                s.fired[i] = s.spend >= t * b.usd;
            }
        }
    }

    /// Adds a request's cost; fires the thresholds it crosses.
    pub fn add(&self, endpoint: &str, model: &str, cost: f64) {
        if cost <= 0.0 {
            return;
        }
        let now = (self.clock)();
        let mut alerts = Vec::new();
        {
            let mut states = self.states.lock();
            for (b, s) in self.budgets.iter().zip(states.iter_mut()) {
                if !Self::applies(b, endpoint) {
                    continue;
                }
                Self::roll(b, s, now);
                s.spend += cost;
                *s.by_model.entry(model.to_string()).or_default() += cost;
                metrics::gauge!("triage_budget_spend_usd",
                    "window" => b.window.name(),
                    "endpoint" => b.endpoint.clone().unwrap_or_else(|| "*".into()))
                .set(s.spend);
                for (i, t) in b.thresholds.iter().enumerate() {
                    if !s.fired[i] && s.spend >= t * b.usd {
                        s.fired[i] = true;
                        let mut top: Vec<(&String, &f64)> = s.by_model.iter().collect();
                        top.sort_by(|a, b| b.1.total_cmp(a.1));
                        alerts.push(json!({
                            "alert": "budget",
                            "window": b.window.name(),
                            "window_start": chrono::DateTime::from_timestamp(s.window_start, 0)
                                .map(|d| d.to_rfc3339()),
                            "endpoint": b.endpoint.clone().unwrap_or_else(|| "*".into()),
                            "threshold": t,
                            "spend_usd": s.spend,
                            "budget_usd": b.usd,
                            "enforcement": b.enforcement,
                            "top_models": top.iter().take(5)
                                .map(|(m, c)| json!({"model": m, "spend_usd": c}))
                                .collect::<Vec<_>>(),
                        }));
                    }
                }
            }
        }
        for a in alerts {
            tracing::warn!(alert = %a, "budget threshold crossed");
            metrics::counter!("triage_budget_alerts_total").increment(1);
            if let Some(tx) = &self.alerts {
                if tx.try_send(a).is_err() {
                    tracing::warn!("budget alert queue full; alert only logged");
                }
            }
        }
    }

    /// What a request on `endpoint` must do now.
    pub fn verdict(&self, endpoint: &str) -> Verdict {
        let now = (self.clock)();
        let mut states = self.states.lock();
        let mut verdict = Verdict::Allow;
        for (b, s) in self.budgets.iter().zip(states.iter_mut()) {
            if !Self::applies(b, endpoint) {
                continue;
            }
            Self::roll(b, s, now);
            if s.spend < b.usd {
                continue;
            }
            match b.enforcement {
                Enforcement::Alert => {}
                Enforcement::Reject => {
                    return Verdict::Reject {
                        budget: describe(b),
                        retry_after_secs: s.window_start + b.window.secs() - now,
                    }
                }
                Enforcement::Downgrade => {
                    verdict = Verdict::Downgrade {
                        budget: describe(b),
                    };
                }
            }
        }
        verdict
    }

    /// Spend and budget per configured budget, for the dashboard.
    pub fn status(&self) -> Vec<serde_json::Value> {
        let now = (self.clock)();
        let mut states = self.states.lock();
        self.budgets
            .iter()
            .zip(states.iter_mut())
            .map(|(b, s)| {
                Self::roll(b, s, now);
                json!({
                    "window": b.window.name(),
                    "endpoint": b.endpoint.clone().unwrap_or_else(|| "*".into()),
                    "spend_usd": s.spend,
                    "budget_usd": b.usd,
                    "enforcement": b.enforcement,
                })
            })
            .collect()
    }
}

/// Delivers alerts to the webhook, retrying with backoff, never blocking requests.
async fn deliver(url: String, mut rx: mpsc::Receiver<serde_json::Value>, attempts: u32) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client");
            return;
        }
    };
    while let Some(alert) = rx.recv().await {
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=attempts {
            match client.post(&url).json(&alert).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => tracing::warn!(
                    status = r.status().as_u16(),
                    attempt,
                    "budget webhook refused the alert"
                ),
                Err(e) => {
                    tracing::warn!(error = %e.without_url(), attempt, "budget webhook unreachable")
                }
            }
            if attempt == attempts {
                tracing::error!(alert = %alert, "budget alert not delivered; giving up");
                metrics::counter!("triage_budget_webhook_failures_total").increment(1);
            } else {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn budgets(b: Vec<BudgetConfig>) -> (Arc<Budgets>, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(1_700_000_000 - 1_700_000_000 % 3600));
        let n = now.clone();
        (
            Budgets::new(
                b,
                &AlertConfig::default(),
                Some(Arc::new(move || n.load(Ordering::Relaxed))),
            ),
            now,
        )
    }

    #[test]
    fn thresholds_fire_once_per_window_and_reset_at_the_hour() {
        let (b, now) = budgets(vec![BudgetConfig {
            window: Window::Hour,
            usd: 1.0,
            endpoint: None,
            thresholds: vec![0.8, 1.0],
            enforcement: Enforcement::Reject,
        }]);
        b.add("e", "m", 0.5);
        assert_eq!(b.verdict("e"), Verdict::Allow);
        b.add("e", "m", 0.4); // 0.9: crosses 80%
        b.add("e", "m", 0.2); // 1.1: crosses 100%
        let fired = |b: &Budgets| b.states.lock()[0].fired.clone();
        assert_eq!(fired(&b), vec![true, true]);
        match b.verdict("e") {
            Verdict::Reject {
                retry_after_secs, ..
            } => assert_eq!(retry_after_secs, 3600),
            v => panic!("{v:?}"),
        }
        now.fetch_add(3600, Ordering::Relaxed);
        assert_eq!(b.verdict("e"), Verdict::Allow, "a new hour");
        assert_eq!(fired(&b), vec![false, false]);
    }

    #[test]
    fn endpoint_budgets_and_downgrade() {
        let (b, _) = budgets(vec![BudgetConfig {
            window: Window::Day,
            usd: 0.1,
            endpoint: Some("bot".into()),
            thresholds: vec![1.0],
            enforcement: Enforcement::Downgrade,
        }]);
        b.add("other", "m", 5.0);
        b.add("bots", "m", 5.0);
        assert_eq!(b.verdict("bot"), Verdict::Allow);
        b.add("bot/docs", "m", 0.1);
        assert!(matches!(b.verdict("bot"), Verdict::Downgrade { .. }));
        assert!(
            matches!(b.verdict("bot/other"), Verdict::Downgrade { .. }),
            "a tenant's budget covers its sub-endpoints"
        );
        assert_eq!(b.verdict("other"), Verdict::Allow);
        assert_eq!(
            b.verdict("bots"),
            Verdict::Allow,
            "a name prefix is not a sub-endpoint"
        );
    }
}
