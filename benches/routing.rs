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
/// so the graph path is what is measured.
///
/// The entries imitate sentence embeddings: 384-d unit vectors in a two-level topic
/// hierarchy (64 domains; topics of about 20 entries, each topic centre at cosine
/// ≈ 0.71 to its domain; an entry at ≈ 0.74 to its topic centre, so two entries of
/// one topic are at ≈ 0.55 and of sibling topics at ≈ 0.25). Queries are what a
/// cache sees:
/// - `hit`: a near-duplicate of a stored entry, at a cosine drawn uniformly from
///   0.75–0.98 to it, with the entry's text (so the verifier passes). recall@1 is
///   the index's best match against an exact f32 scan of all stored vectors;
/// - `miss`: an entry-like vector of a topic not stored (nothing above the 0.7
///   threshold).
///
/// `random_worst` keeps the old workload, labelled as the worst case: random unit
/// vectors (no structure at all, hard for any graph index) queried with stored ones.
/// Besides criterion's medians, each query kind is timed 10,000 times one by one
/// and p50/p99 printed.
fn bench_cache(c: &mut Criterion) {
    use triage::cache::{CachedAnswer, Lookup, SemanticCache};
    use triage::config::CacheConfig;
    const THRESHOLD: f32 = 0.7;
    let mut sizes = vec![10_000usize];
    if std::env::var("TRIAGE_BENCH_100K").is_ok() {
        sizes.push(100_000);
    }
    let answer = |i: usize| CachedAnswer {
        content: format!("answer {i}"),
        model: "m".into(),
        response_model: "m".into(),
        finish_reason: "stop".into(),
        prompt_tokens: 1,
        completion_tokens: 1,
        cached_tokens: 0,
    };
    let mut seed = 1u64 << 40;
    let mut rand_unit = || {
        seed += 1;
        unit_vector(seed)
    };
    for n in sizes {
        let cfg = CacheConfig {
            max_entries: n,
            max_bytes: usize::MAX,
            ..CacheConfig::default()
        };
        let ef = cfg.ef_search;
        let scope = [7u8; 16];

        // Clustered entries.
        let domains: Vec<Vec<f32>> = (0..64).map(|_| rand_unit()).collect();
        let topics = n / 20;
        let centres: Vec<Vec<f32>> = (0..topics)
            .map(|t| mix(&domains[t % 64], &rand_unit(), 1.0))
            .collect();
        let entries: Vec<Vec<f32>> = (0..n)
            .map(|i| mix(&centres[(i * 7919) % topics], &rand_unit(), 0.9))
            .collect();
        let cache = SemanticCache::in_memory(cfg.clone());
        let t = std::time::Instant::now();
        for (i, v) in entries.iter().enumerate() {
            cache.insert(
                scope,
                "bench",
                &format!("question {i}"),
                v.clone(),
                answer(i),
            );
        }
        eprintln!(
            "cache {n}: inserted in {:.1} s ({:.0} µs each)",
            t.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
        // Would-be hits and misses, with the exact best match (f32 scan).
        let hits: Vec<(String, Vec<f32>, u64)> = (0..1000)
            .map(|k| {
                let j = (k * 104_729) % n;
                let cos = 0.75 + 0.23 * (k as f32 / 1000.0);
                let q = mix(&entries[j], &rand_unit(), (1.0 / (cos * cos) - 1.0).sqrt());
                let best = exact_best(&entries, &q).0 as u64 + 1;
                (format!("question {j}"), q, best)
            })
            .collect();
        let misses: Vec<(String, Vec<f32>)> = (0..1000)
            .map(|k| {
                let centre = mix(&domains[k % 64], &rand_unit(), 1.0);
                (format!("unrelated {k}"), mix(&centre, &rand_unit(), 0.9))
            })
            .collect();
        let above = misses
            .iter()
            .filter(|(_, q)| exact_best(&entries, q).1 >= THRESHOLD)
            .count();
        let recall = |ef: Option<usize>| {
            hits.iter()
                .filter(|(_, q, best)| cache.nearest(&scope, q, ef).map(|b| b.0) == Some(*best))
                .count() as f64
                / hits.len() as f64
        };
        let served = hits
            .iter()
            .filter(|(t, q, best)| {
                matches!(cache.lookup(&scope, t, q, THRESHOLD), Lookup::Hit { id, .. } if id == *best)
            })
            .count();
        let false_hits = misses
            .iter()
            .filter(|(t, q)| matches!(cache.lookup(&scope, t, q, THRESHOLD), Lookup::Hit { .. }))
            .count();
        for e in [16, 32, 64, 96, 128, 192, 256] {
            eprintln!("cache {n}: ef_search {e}: recall@1 {:.3}", recall(Some(e)));
            percentiles(
                &format!("cache_{}k/search_hit ef={e}", n / 1000),
                &hits
                    .iter()
                    .map(|(t, q, _)| (t.as_str(), q.as_slice()))
                    .collect::<Vec<_>>(),
                |_, q| {
                    black_box(cache.nearest(&scope, q, Some(e)));
                },
            );
        }
        eprintln!(
            "cache {n}: recall@1 on would-be hits: graph ef={ef} {:.3}, ef=16 {:.3}, int8 exact scan {:.3}; \
             lookups served the exact best {served}/1000; misses with a stored entry ≥ {THRESHOLD}: {above}, hits on misses: {false_hits}",
            recall(Some(ef)),
            recall(Some(16)),
            recall(None),
        );
        let hq: Vec<(&str, &[f32])> = hits
            .iter()
            .map(|(t, q, _)| (t.as_str(), q.as_slice()))
            .collect();
        let mq: Vec<(&str, &[f32])> = misses
            .iter()
            .map(|(t, q)| (t.as_str(), q.as_slice()))
            .collect();
        percentiles(&format!("cache_{}k/lookup_hit", n / 1000), &hq, |t, q| {
            black_box(cache.lookup(&scope, t, q, THRESHOLD));
        });
        percentiles(&format!("cache_{}k/lookup_miss", n / 1000), &mq, |t, q| {
            black_box(cache.lookup(&scope, t, q, THRESHOLD));
        });
        percentiles(&format!("cache_{}k/search_hit", n / 1000), &hq, |_, q| {
            black_box(cache.nearest(&scope, q, Some(ef)));
        });
        percentiles(&format!("cache_{}k/search_miss", n / 1000), &mq, |_, q| {
            black_box(cache.nearest(&scope, q, Some(ef)));
        });
        let mut g = c.benchmark_group(format!("cache_{}k", n / 1000));
        for (name, qs) in [("lookup_hit", &hq), ("lookup_miss", &mq)] {
            let mut i = 0;
            g.bench_function(name, |b| {
                b.iter(|| {
                    let (t, v) = qs[i % qs.len()];
                    i += 1;
                    black_box(cache.lookup(&scope, t, v, THRESHOLD))
                })
            });
        }
        for (name, qs) in [("search_hit", &hq), ("search_miss", &mq)] {
            let mut i = 0;
            g.bench_function(name, |b| {
                b.iter(|| {
                    let (_, v) = qs[i % qs.len()];
                    i += 1;
                    black_box(cache.nearest(&scope, v, Some(ef)))
                })
            });
        }
        g.finish();
        drop(cache);

        // Worst case: random vectors, queried with stored ones.
        let cache = SemanticCache::in_memory(cfg);
        for i in 0..n {
            cache.insert(
                scope,
                "bench",
                &format!("question {i}"),
                unit_vector(i as u64),
                answer(i),
            );
        }
        let queries: Vec<(String, Vec<f32>)> = (0..1000)
            .map(|i| {
                let id = (i * 7919) % n;
                (format!("question {id}"), unit_vector(id as u64))
            })
            .collect();
        let found = queries
            .iter()
            .filter(|(t, v)| {
                matches!(cache.lookup(&scope, t, v, THRESHOLD), Lookup::Hit { ref answer, .. }
                    if answer.content == t.replace("question", "answer"))
            })
            .count();
        eprintln!(
            "cache {n} random_worst: recall@1 {:.3}",
            found as f64 / queries.len() as f64
        );
        let rq: Vec<(&str, &[f32])> = queries
            .iter()
            .map(|(t, q)| (t.as_str(), q.as_slice()))
            .collect();
        percentiles(
            &format!("cache_{}k/lookup_random_worst", n / 1000),
            &rq,
            |t, q| {
                black_box(cache.lookup(&scope, t, q, THRESHOLD));
            },
        );
        let mut i = 0;
        c.bench_function(&format!("cache_{}k/lookup_random_worst", n / 1000), |b| {
            b.iter(|| {
                let (t, v) = rq[i % rq.len()];
                i += 1;
                black_box(cache.lookup(&scope, t, v, THRESHOLD))
            })
        });
    }
}

/// Times 10,000 calls one by one and prints p50 and p99.
fn percentiles(name: &str, queries: &[(&str, &[f32])], mut f: impl FnMut(&str, &[f32])) {
    let mut times: Vec<u64> = (0..10_000)
        .map(|i| {
            let (t, q) = queries[i % queries.len()];
            let start = std::time::Instant::now();
            f(t, q);
            start.elapsed().as_nanos() as u64
        })
        .collect();
    times.sort_unstable();
    eprintln!(
        "{name}: p50 {:.1} µs, p99 {:.1} µs",
        times[times.len() / 2] as f64 / 1e3,
        times[times.len() * 99 / 100] as f64 / 1e3
    );
}

/// unit(a + w·b)
fn mix(a: &[f32], b: &[f32], w: f32) -> Vec<f32> {
    let v: Vec<f32> = a.iter().zip(b).map(|(x, y)| x + w * y).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// The index and cosine of the stored vector nearest `q` (exact, f32).
fn exact_best(entries: &[Vec<f32>], q: &[f32]) -> (usize, f32) {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| (i, triage::cache::dot(e, q)))
        .fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a })
}

fn unit_vector(seed: u64) -> Vec<f32> {
    triage::cache::synthetic_vector(seed, 384)
}

/// Hit verification: a lexical verdict, and one that pairs words by meaning (word
/// vectors remembered, and first seen: one small forward pass).
fn bench_verify(c: &mut Criterion) {
    use triage::cache::{decide_hit, decide_hit_with, ModelWords, WordVectors};
    let cfg = Config::default();
    let engine = Engine::load(&cfg).expect("engine");
    let words = ModelWords::new(engine.embedder.clone());
    let (a, b) = (
        "How can I reduce stress at work?",
        "What are some ways to lower stress at work?",
    );
    let mut g = c.benchmark_group("verify");
    g.bench_function("lexical_hit", |bn| {
        bn.iter(|| black_box(decide_hit(black_box(a), black_box(b), 0.9, 0.7)))
    });
    let (x, y) = (
        "How do I stop my cat from scratching the furniture?",
        "My cat keeps clawing the sofa. How can I get it to stop?",
    );
    // At this similarity the count refuses it, so the words are paired by meaning.
    assert!(!decide_hit(x, y, 0.72, 0.7).hit);
    g.bench_function("word_pairing_remembered", |bn| {
        bn.iter(|| black_box(decide_hit_with(x, y, 0.72, 0.7, Some(&words))))
    });
    g.bench_function("word_pairing_first_seen", |bn| {
        bn.iter_batched(
            || ModelWords::new(engine.embedder.clone()),
            |fresh| {
                let wv: &dyn WordVectors = &fresh;
                black_box(decide_hit_with(x, y, 0.72, 0.7, Some(wv)))
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench, bench_cache, bench_verify);
criterion_main!(benches);
