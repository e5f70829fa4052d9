//! Step: the request to the tier's models, in order, with retries and fallbacks
//! (`crate::upstream`), within `server.request_deadline_secs`.

use std::time::{Duration, Instant};

use super::{Live, Turn};
use crate::upstream::{ForwardError, Forwarded};

/// The forwarded call, and how long the upstream took (to the whole body, or a
/// stream's first event).
pub(super) struct Call {
    pub result: Result<Forwarded, ForwardError>,
    pub upstream_us: u64,
    pub started: Instant,
}

pub(super) async fn step(live: &Live, t: &Turn) -> Call {
    let deadline = Instant::now() + Duration::from_secs_f64(live.cfg.server.request_deadline_secs);
    let started = Instant::now();
    let result = live
        .upstreams
        .forward(&t.routing.models, &t.req, deadline)
        .await;
    Call {
        result,
        upstream_us: started.elapsed().as_micros() as u64,
        started,
    }
}
