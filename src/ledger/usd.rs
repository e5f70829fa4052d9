//! Prometheus counters of US dollars. The `metrics` crate's counters count whole
//! numbers, so fractional monotonic sums are kept here and rendered as `counter`s
//! after the exporter's own text.

use std::collections::BTreeMap;
use std::fmt::Write;

use parking_lot::Mutex;

type Key = (&'static str, Vec<(&'static str, String)>);

fn totals() -> &'static Mutex<BTreeMap<Key, f64>> {
    static TOTALS: std::sync::OnceLock<Mutex<BTreeMap<Key, f64>>> = std::sync::OnceLock::new();
    TOTALS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Adds `usd` (ignored unless positive and finite) to the counter `name{labels}`.
pub fn add(name: &'static str, labels: Vec<(&'static str, String)>, usd: f64) {
    if usd > 0.0 && usd.is_finite() {
        *totals().lock().entry((name, labels)).or_insert(0.0) += usd;
    }
}

/// What each counter is, for `# HELP`.
fn help(name: &str) -> &'static str {
    match name {
        "triage_cost_usd_total" => "Spend on upstream models, in US dollars.",
        "triage_cache_saved_usd_total" => "What cache hits saved, in US dollars.",
        _ => "US dollars.",
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The counters in Prometheus text format.
pub fn render() -> String {
    let totals = totals().lock();
    let mut out = String::new();
    let mut last: Option<&str> = None;
    for ((name, labels), v) in totals.iter() {
        if last != Some(name) {
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} counter", help(name));
            last = Some(name);
        }
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(out, "{name}{{{}}} {v}", labels.join(","));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_sums_render_as_counters() {
        add(
            "triage_test_usd_total",
            vec![("model", "m\"1".into())],
            0.25,
        );
        add("triage_test_usd_total", vec![("model", "m\"1".into())], 0.5);
        add(
            "triage_test_usd_total",
            vec![("model", "m\"1".into())],
            -1.0,
        );
        let text = render();
        assert!(
            text.contains("# TYPE triage_test_usd_total counter"),
            "{text}"
        );
        assert!(
            text.contains("triage_test_usd_total{model=\"m\\\"1\"} 0.75"),
            "{text}"
        );
    }
}
