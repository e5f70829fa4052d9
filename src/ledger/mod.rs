//! The ledger: prices and costs, the decision log, feedback, Prometheus metrics.
//! Nothing here blocks the request path on disk.

pub mod budget;
pub mod log;
pub mod prices;
pub mod report;
pub mod usd;

use std::sync::Arc;

pub use log::{DecisionLog, DecisionRow, FeedbackRow};
pub use prices::{Price, Prices};

use crate::config::Config;

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn metrics_handle() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("tokens".into()),
                &[
                    16.0, 64.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 65536.0,
                ],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("seconds".into()),
                    &[
                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0, 30.0,
                    ],
                )
            });
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            Err(_) => metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        handle
    })
}

/// Everything the pipeline needs to account for a request.
pub struct Ledger {
    prices: arc_swap::ArcSwap<Prices>,
    pub log: Option<DecisionLog>,
    pub log_text: bool,
    budgets: arc_swap::ArcSwap<budget::Budgets>,
    clock: Option<budget::Clock>,
}

impl Ledger {
    /// The ledger; `clock` (unix seconds) replaces the real one in tests.
    pub fn new(cfg: &Config, log: Option<DecisionLog>, clock: Option<budget::Clock>) -> Arc<Self> {
        metrics_handle();
        let ledger = Arc::new(Self {
            prices: arc_swap::ArcSwap::from_pointee(Prices::new(&cfg.prices)),
            log,
            log_text: cfg.ledger.log_text,
            budgets: arc_swap::ArcSwap::new(budget::Budgets::new(
                cfg.budgets.clone(),
                &cfg.alerts,
                clock.clone(),
            )),
            clock,
        });
        ledger.seed_budgets();
        ledger
    }

    pub fn budgets(&self) -> Arc<budget::Budgets> {
        self.budgets.load_full()
    }

    /// Spend already made in the current windows counts (after a restart or reload).
    fn seed_budgets(&self) {
        let budgets = self.budgets();
        if budgets.is_empty() {
            return;
        }
        if let Some(log) = &self.log {
            let _ = log.flush(std::time::Duration::from_secs(5));
            let db = log.path().to_path_buf();
            budgets
                .seed(|endpoint, since| report::spend_since(&db, endpoint, since).unwrap_or(0.0));
        }
    }

    /// Takes new prices and budgets from a reloaded config.
    pub fn reload(&self, cfg: &Config) {
        self.prices.store(Arc::new(Prices::new(&cfg.prices)));
        self.budgets.store(budget::Budgets::new(
            cfg.budgets.clone(),
            &cfg.alerts,
            self.clock.clone(),
        ));
        self.seed_budgets();
    }

    /// Cost of `usage` on `model` (None: unpriced).
    pub fn cost(&self, cfg: &Config, model: &str, usage: &crate::canonical::Usage) -> Option<f64> {
        let upstream_model = cfg.model(model).map(|m| m.upstream_model().to_string());
        self.prices
            .load()
            .cost(model, upstream_model.as_deref(), usage)
    }

    /// Writes the row and updates the metrics.
    pub fn record(&self, row: DecisionRow) {
        let tier = row.tier.clone().unwrap_or_else(|| "passthrough".into());
        let model = row.actual_model.clone().unwrap_or_else(|| "none".into());
        let labels = [
            ("tier", tier),
            ("model", model.clone()),
            ("endpoint", row.endpoint.clone()),
            ("cache", row.cache_status.clone()),
        ];
        metrics::counter!("triage_requests_total", &labels).increment(1);
        if let Some(c) = row.cost_usd {
            self.budgets.load().add(&row.endpoint, &model, c);
            usd::add(
                "triage_cost_usd_total",
                vec![("endpoint", row.endpoint.clone()), ("model", model.clone())],
                c,
            );
        } else if row.actual_model.is_some() && row.error.is_none() && row.cache_status != "hit" {
            metrics::counter!("triage_unpriced_requests_total", "model" => model.clone())
                .increment(1);
        }
        if let Some(s) = row.saved_usd {
            usd::add(
                "triage_cache_saved_usd_total",
                vec![("endpoint", row.endpoint.clone())],
                s,
            );
        }
        metrics::histogram!("triage_request_input_tokens", "endpoint" => row.endpoint.clone())
            .record(row.input_tokens as f64);
        metrics::histogram!("triage_request_output_tokens", "endpoint" => row.endpoint.clone())
            .record(row.output_tokens as f64);
        for (stage, us) in [
            ("queue", row.queue_us),
            ("embed", row.embed_us),
            ("head", row.head_us),
            ("route", row.route_us),
        ] {
            metrics::histogram!("triage_routing_latency_seconds", "stage" => stage)
                .record(us as f64 / 1e6);
        }
        // Retries, fallbacks and failed attempts are counted by `upstream`, per attempt
        // and under the model that failed; this counts what the client saw.
        if row.error.is_some() {
            metrics::counter!("triage_request_errors_total", "endpoint" => row.endpoint.clone())
                .increment(1);
        }
        if let Some(log) = &self.log {
            log.record(row);
        }
    }
}
