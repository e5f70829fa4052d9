//! Step: the model the client named. A routing alias (`auto`) means "route this";
//! a configured model passes through unrouted when `router.allow_passthrough` is
//! on; anything else is 404 with the valid names.

use super::{Live, PipelineError, Routing, Turn};

/// `[[models]]`, or in a config without upstreams, the routing table's names.
fn configured_models(live: &Live) -> Vec<String> {
    if !live.cfg.models.is_empty() {
        return live.cfg.models.iter().map(|m| m.name.clone()).collect();
    }
    let mut v: Vec<String> = Vec::new();
    for list in live.cfg.router.tiers.values() {
        for m in list {
            if !v.contains(m) {
                v.push(m.clone());
            }
        }
    }
    v
}

/// Models a client may name: aliases first, then configured models.
pub fn model_names(live: &Live) -> Vec<String> {
    let mut names = live.cfg.router.aliases.clone();
    for m in configured_models(live) {
        if !names.contains(&m) {
            names.push(m);
        }
    }
    names
}

/// An alias is routed (the later steps decide); a configured model passes through.
pub(super) fn step(live: &Live, t: &mut Turn) -> Result<(), PipelineError> {
    let model = &t.req.model;
    if live.cfg.router.aliases.contains(model) {
        return Ok(());
    }
    if !configured_models(live).contains(model) {
        return Err(PipelineError::UnknownModel {
            model: model.clone(),
            valid: model_names(live).join(", "),
        });
    }
    if !live.cfg.router.allow_passthrough {
        return Err(PipelineError::ModelNotAllowed {
            model: model.clone(),
            valid: live.cfg.router.aliases.join(", "),
        });
    }
    t.routing = Routing::passthrough(model);
    Ok(())
}

/// Whether `t` is routed (its model is an alias).
pub(super) fn routed(live: &Live, t: &Turn) -> bool {
    live.cfg.router.aliases.contains(&t.req.model)
}
