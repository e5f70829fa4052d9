//! Routing latency: embedding (short, long, batch of 32), head, whole decision.
//! `cargo bench --bench routing`; set TRIAGE_THREADS/RAYON_NUM_THREADS to pin threads.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use triage::config::Config;
use triage::engine::Engine;

const SHORT: &str = "What are your business hours?";

fn long_text() -> String {
    // ~200 word pieces.
    "Our team is migrating a monolithic Django application to a set of services. \
     We need to keep the user sessions valid during the move, avoid double writes to the \
     billing tables, and make sure the background jobs that send invoices are not run twice. "
        .repeat(4)
}

fn bench(c: &mut Criterion) {
    let cfg = Config::default();
    let engine = Engine::load(&cfg).expect("engine");
    let long = long_text();
    eprintln!(
        "short: {} tokens, long: {} tokens",
        engine.embedder.count_tokens(SHORT).unwrap(),
        engine.embedder.count_tokens(&long).unwrap()
    );
    let batch: Vec<String> = (0..32).map(|i| format!("{SHORT} (question {i})")).collect();
    let (emb, _) = engine.embedder.embed_one(SHORT).unwrap();

    let mut g = c.benchmark_group("embed");
    g.bench_function("short", |b| {
        b.iter(|| engine.embedder.embed_one(black_box(SHORT)).unwrap())
    });
    g.bench_function("long_200_tokens", |b| {
        b.iter(|| engine.embedder.embed_one(black_box(&long)).unwrap())
    });
    g.sample_size(20);
    g.bench_function("batch_32_short", |b| {
        b.iter(|| engine.embedder.embed(black_box(&batch)).unwrap())
    });
    g.finish();

    c.bench_function("head", |b| {
        b.iter(|| engine.head.predict(black_box(&emb.features)))
    });
    c.bench_function("route_short", |b| {
        b.iter(|| engine.route(black_box(SHORT), &cfg.router).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
