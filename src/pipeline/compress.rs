//! Step: long histories become the last turns plus a cached summary
//! (`crate::compress`), unless the endpoint has compression off or the client sent
//! `x-triage-compress: off`.

use super::{Live, Pipeline, RequestCtx, Turn};

pub(super) async fn step(p: &Pipeline, live: &Live, ctx: &RequestCtx, t: &mut Turn) {
    let Some(c) = &p.compressor else { return };
    if ctx.compress_off || !c.active(&ctx.endpoint) {
        return;
    }
    let model = t.routing.models.first().cloned().unwrap_or_default();
    // Tokens are counted by the id the upstream knows the model by.
    let tokenizer = live.cfg.upstream_model_id(&model).to_string();
    let result = c
        .compress(
            &mut t.req,
            &tokenizer,
            &ctx.endpoint,
            live.upstreams.clone(),
        )
        .await;
    if result.mode != "none" {
        tracing::info!(request_id = %ctx.request_id, mode = result.mode,
            before = result.tokens_before, after = result.tokens_after, "history compressed");
        t.routing.compression = Some(result);
    }
}
