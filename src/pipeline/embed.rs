//! Step: the routing text through the embedding pool. A follow-up is classified
//! with the turn before it and cached by its own text: both embeddings go to the
//! pool together and share a batch.

use std::time::Instant;

use super::{Live, Pipeline, PipelineError, RouteTimings, Turn};
use crate::embed::{Embedded, PoolError};

async fn embed(p: &Pipeline, text: String) -> Result<Embedded, PipelineError> {
    p.pool.embed(text).await.map_err(|e| match e {
        PoolError::Busy(_) => PipelineError::Busy(e.to_string()),
        other => PipelineError::Internal(other.to_string()),
    })
}

pub(super) async fn step(p: &Pipeline, live: &Live, t: &mut Turn) -> Result<(), PipelineError> {
    if !super::resolve::routed(live, t) {
        return Ok(());
    }
    let t0 = Instant::now();
    let (routing, own) = if t.texts.routing == t.texts.routed {
        (embed(p, t.texts.routing.clone()).await?, None)
    } else {
        let (routing, own) = tokio::join!(
            embed(p, t.texts.routing.clone()),
            embed(p, t.texts.routed.clone())
        );
        (routing?, Some(own?))
    };
    let tm = routing.timings;
    t.routing.timings = RouteTimings {
        queue_us: routing.queue_us,
        tokenize_us: tm.tokenize_us,
        embed_us: tm.forward_us,
        pool_us: tm.pool_us,
        head_us: 0,
        total_us: t0.elapsed().as_micros() as u64,
        batch_size: routing.batch_size,
    };
    t.routing.features = Some(routing.embedding.features.clone());
    t.routing.vector = Some(own.unwrap_or(routing).embedding.vector);
    Ok(())
}
