//! triage: an LLM gateway sidecar that routes each request to the cheapest model
//! that can handle it, using an on-device sentence embedding and a trained tier head.

pub mod cache;
pub mod canonical;
pub mod classify;
pub mod compress;
pub mod config;
pub mod embed;
pub mod engine;
pub mod inbound;
pub mod learn;
pub mod ledger;
pub mod pipeline;
pub mod server;
pub mod upstream;
pub mod wire;
