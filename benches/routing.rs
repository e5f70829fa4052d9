//! Routing latency: embedding (short, long, batch of 32), head, whole decision.
//! `cargo bench --bench routing`; set TRIAGE_THREADS/RAYON_NUM_THREADS to pin threads.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use triage::config::Config;
use triage::embed::{DeviceSpec, EmbedOptions, Embedder, EngineChoice};
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

    c.bench_function("tokenize_short", |b| {
        b.iter(|| engine.embedder.count_tokens(black_box(SHORT)).unwrap())
    });
    c.bench_function("tokenize_long", |b| {
        b.iter(|| engine.embedder.count_tokens(black_box(&long)).unwrap())
    });
    // Every engine this CPU runs; the configured default (auto) is the first.
    let mut engines = vec![EngineChoice::Auto.resolve(DeviceSpec::Cpu)];
    for e in [
        EngineChoice::Candle,
        EngineChoice::FastF32,
        EngineChoice::FastBf16,
    ] {
        if !engines.contains(&e) {
            engines.push(e);
        }
    }
    for choice in engines {
        let Ok(embedder) = Embedder::load(&EmbedOptions {
            engine: choice,
            ..EmbedOptions::default()
        }) else {
            continue;
        };
        let mut g = c.benchmark_group(format!("embed_{}", choice.name()));
        g.bench_function("short", |b| {
            b.iter(|| embedder.embed_one(black_box(SHORT)).unwrap())
        });
        g.bench_function("long_200_tokens", |b| {
            b.iter(|| embedder.embed_one(black_box(&long)).unwrap())
        });
        g.sample_size(20);
        g.bench_function("batch_32_short", |b| {
            b.iter(|| embedder.embed(black_box(&batch)).unwrap())
        });
        g.finish();
    }

    c.bench_function("head", |b| {
        b.iter(|| engine.head.predict(black_box(&emb.features)))
    });
    c.bench_function("route_short", |b| {
        b.iter(|| engine.route(black_box(SHORT), &cfg.router).unwrap())
    });
}

/// Cache lookup at 10k entries (and 100k with TRIAGE_BENCH_100K=1), all in one scope
/// so the HNSW path is what is measured.
fn bench_cache(c: &mut Criterion) {
    use triage::cache::{CachedAnswer, Lookup, SemanticCache};
    use triage::config::CacheConfig;
    let mut sizes = vec![10_000usize];
    if std::env::var("TRIAGE_BENCH_100K").is_ok() {
        sizes.push(100_000);
    }
    for n in sizes {
        let cache = SemanticCache::in_memory(CacheConfig {
            max_entries: n,
            ..CacheConfig::default()
        });
        let scope = [7u8; 16];
        for i in 0..n {
            cache.insert(
                scope,
                "bench",
                &format!("question {i}"),
                unit_vector(i as u64),
                CachedAnswer {
                    content: format!("answer {i}"),
                    model: "m".into(),
                    finish_reason: "stop".into(),
                    prompt_tokens: 1,
                    completion_tokens: 1,
                    cached_tokens: 0,
                },
            );
        }
        cache.rebuild_index();
        // Queries: stored vectors, so the right answer is known (recall@1).
        let queries: Vec<(String, Vec<f32>)> = (0..200)
            .map(|i| {
                let id = (i * 7919) % n;
                (format!("question {id}"), unit_vector(id as u64))
            })
            .collect();
        let found = queries
            .iter()
            .filter(|(t, v)| {
                matches!(cache.lookup(&scope, t, v, 0.7), Lookup::Hit { ref answer, .. }
                    if answer.content == t.replace("question", "answer"))
            })
            .count();
        eprintln!(
            "cache {n}: recall@1 {:.3}",
            found as f64 / queries.len() as f64
        );
        let mut i = 0;
        c.bench_function(&format!("cache_lookup_{}k", n / 1000), |b| {
            b.iter(|| {
                let (t, v) = &queries[i % queries.len()];
                i += 1;
                black_box(cache.lookup(&scope, t, v, 0.7))
            })
        });
    }
}

fn unit_vector(seed: u64) -> Vec<f32> {
    triage::cache::synthetic_vector(seed, 384)
}

criterion_group!(benches, bench, bench_cache);
criterion_main!(benches);
