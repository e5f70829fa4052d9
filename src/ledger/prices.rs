//! Prices per model and the cost of a call.

use std::collections::HashMap;

use crate::canonical::Usage;

pub use crate::config::Price;

/// When the built-in prices were taken from the providers' public price pages.
/// They change: override them in `[prices]` for anything that matters.
pub const BUILTIN_PRICES_DATE: &str = "2026-11-01";

/// (model, input, cached input, output) in USD per 1M tokens.
const BUILTIN: &[(&str, f64, f64, f64)] = &[
    ("gpt-4o-mini", 0.15, 0.075, 0.60),
    ("gpt-4o", 2.50, 1.25, 10.00),
    ("gpt-4.1", 2.00, 0.50, 8.00),
    ("gpt-4.1-mini", 0.40, 0.10, 1.60),
    ("gpt-4.1-nano", 0.10, 0.025, 0.40),
    ("gpt-5", 1.25, 0.125, 10.00),
    ("gpt-5-mini", 0.25, 0.025, 2.00),
    ("gpt-5-nano", 0.05, 0.005, 0.40),
    ("o4-mini", 1.10, 0.275, 4.40),
    ("claude-haiku-4-5", 1.00, 0.10, 5.00),
    ("claude-sonnet-4-5", 3.00, 0.30, 15.00),
    ("claude-opus-4-1", 15.00, 1.50, 75.00),
    ("gemini-2.5-flash", 0.30, 0.075, 2.50),
    ("gemini-2.5-flash-lite", 0.10, 0.025, 0.40),
    ("gemini-2.5-pro", 1.25, 0.31, 10.00),
];

#[derive(Debug, Clone)]
pub struct Prices {
    table: HashMap<String, Price>,
}

impl Prices {
    /// Built-in defaults, overridden (or extended) by config.
    pub fn new(overrides: &HashMap<String, Price>) -> Self {
        let mut table: HashMap<String, Price> = BUILTIN
            .iter()
            .map(|(m, i, c, o)| {
                (
                    m.to_string(),
                    Price {
                        input: *i,
                        cached_input: Some(*c),
                        output: *o,
                    },
                )
            })
            .collect();
        for (m, p) in overrides {
            table.insert(m.clone(), *p);
        }
        Self { table }
    }

    /// The price of a model by its configured name, else by the id sent upstream.
    pub fn get(&self, model: &str, upstream_model: Option<&str>) -> Option<&Price> {
        self.table
            .get(model)
            .or_else(|| upstream_model.and_then(|u| self.table.get(u)))
    }

    /// Cost in USD, or None for an unpriced model (never silently free).
    pub fn cost(&self, model: &str, upstream_model: Option<&str>, usage: &Usage) -> Option<f64> {
        let p = self.get(model, upstream_model)?;
        Some(cost_of(p, usage))
    }
}

pub fn cost_of(p: &Price, u: &Usage) -> f64 {
    let cached = u.cached_tokens.min(u.prompt_tokens);
    let fresh = u.prompt_tokens - cached;
    (fresh as f64 * p.input
        + cached as f64 * p.cached_input.unwrap_or(p.input)
        + u.completion_tokens as f64 * p.output)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_tokens_are_cheaper_and_unpriced_is_none() {
        let prices = Prices::new(&HashMap::new());
        let u = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 1_000_000,
            cached_tokens: 500_000,
            cache_write_tokens: 0,
        };
        // gpt-4o-mini: 0.5M × 0.15 + 0.5M × 0.075 + 1M × 0.60 = 0.075 + 0.0375 + 0.60
        let c = prices.cost("gpt-4o-mini", None, &u).unwrap();
        assert!((c - 0.7125).abs() < 1e-9, "{c}");
        assert_eq!(prices.cost("my-local-llama", None, &u), None);
        // By upstream id when the configured name is an alias.
        assert!(prices.cost("cheap", Some("gpt-4o-mini"), &u).is_some());
    }

    #[test]
    fn config_overrides_builtins() {
        let mut o = HashMap::new();
        o.insert(
            "gpt-4o-mini".to_string(),
            Price {
                input: 1.0,
                cached_input: None,
                output: 2.0,
            },
        );
        let prices = Prices::new(&o);
        let u = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 0,
            cached_tokens: 1_000_000,
            cache_write_tokens: 0,
        };
        // No cached price: cached tokens cost the input price.
        assert!((prices.cost("gpt-4o-mini", None, &u).unwrap() - 1.0).abs() < 1e-9);
    }
}
