//! `triage fake-upstream`: a zero-latency OpenAI-compatible provider for measuring
//! the sidecar's own overhead (`scripts/overhead.sh`). It answers every chat
//! completion at once with a fixed reply; it is a benchmark fixture, not a mock of
//! anything in triage.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use clap::Args;
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct FakeUpstreamArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18090")]
    pub listen: SocketAddr,
}

async fn completion(Json(req): Json<Value>) -> impl IntoResponse {
    let model = req.get("model").and_then(Value::as_str).unwrap_or("fake");
    let content = "This is a fixed answer from the zero-latency upstream.";
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                       "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        let body = chunk(
            json!({"role": "assistant", "content": content}),
            Value::Null,
        ) + &chunk(json!({}), json!("stop"))
            + "data: [DONE]\n\n";
        return ([("content-type", "text/event-stream")], body).into_response();
    }
    Json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 11, "total_tokens": 23}
    }))
    .into_response()
}

pub fn run(a: FakeUpstreamArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let app = Router::new().route("/v1/chat/completions", post(completion));
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", a.listen))?;
        eprintln!("fake upstream on http://{}/v1", a.listen);
        axum::serve(listener, app).await?;
        Ok(ExitCode::SUCCESS)
    })
}
