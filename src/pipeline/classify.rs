//! Step: the head's decision on the routing text's features (the tier, its models
//! and the policy's raises; see `classify::decide`).

use std::time::Instant;

use super::{Live, Turn};

pub(super) fn step(live: &Live, t: &mut Turn) {
    let Some(features) = t.routing.features.as_ref() else {
        return;
    };
    let th = Instant::now();
    let pred = live.head.predict(features);
    let decision = crate::classify::decide(&live.head, &pred, &live.cfg.router);
    t.routing.timings.head_us = th.elapsed().as_micros() as u64;
    t.routing.timings.total_us += t.routing.timings.head_us;
    t.routing.models = decision.models.clone();
    t.routing.decision = Some(decision);
}
