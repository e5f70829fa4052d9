//! Step: spent budgets. `downgrade` sends a routed request to the cheapest tier
//! (an explicitly named model is the client's choice: it is left alone, and the
//! reply says the budget is spent); `reject` refuses with 429 once the cache has
//! had its chance (a hit costs nothing).

use super::{Live, Pipeline, PipelineError, RequestCtx, Turn};
use crate::ledger::budget::Verdict;

pub(super) fn step(p: &Pipeline, live: &Live, ctx: &RequestCtx, t: &mut Turn) {
    let Some(ledger) = &p.ledger else { return };
    match ledger.budgets().verdict(&ctx.endpoint) {
        Verdict::Allow => {}
        Verdict::Reject {
            budget,
            retry_after_secs,
        } => {
            t.refused = Some(PipelineError::BudgetExceeded {
                budget,
                retry_after_secs,
            })
        }
        Verdict::Downgrade { budget } => {
            let routing = &mut t.routing;
            let Some(d) = routing.decision.as_mut() else {
                routing.budget_spent = true;
                return;
            };
            let Some(cheapest) = live.head.labels().first() else {
                return;
            };
            let models = live
                .cfg
                .router
                .tiers
                .get(cheapest)
                .cloned()
                .unwrap_or_default();
            if models.is_empty() {
                return;
            }
            tracing::info!(request_id = %ctx.request_id, %budget, "budget spent: downgraded to the cheapest tier");
            d.tier = cheapest.clone();
            d.tier_index = 0;
            d.models = models.clone();
            routing.models = models;
            routing.downgraded = true;
        }
    }
}
