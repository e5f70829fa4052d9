//! The cache's hit decision on the labeled pair sets in tests/fixtures/cache_pairs/:
//! `dev.jsonl` (used while writing the guards), `test.jsonl` (another writer's, for
//! confirming) and `holdout.jsonl` (a third writer's, written before the rewording
//! allowance and never tuned on). Prints the per-kind table; asserts the false-hit
//! ceiling and a hit-rate floor a little under each set's current rate.

use std::collections::BTreeMap;

use triage::cache::decide_hit;
use triage::config::Config;
use triage::embed::{cosine, Embedder};
use triage::engine::embed_options;

#[derive(serde::Deserialize)]
struct Pair {
    a: String,
    b: String,
    hit: bool,
    kind: String,
}

fn score(file: &str, embedder: &Embedder, threshold: f32) -> (f64, f64) {
    let path = format!(
        "{}/tests/fixtures/cache_pairs/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let pairs: Vec<Pair> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let (mut pos, mut pos_hit, mut neg, mut neg_hit) = (0, 0, 0, 0);
    for chunk in pairs.chunks(32) {
        let texts: Vec<&str> = chunk
            .iter()
            .flat_map(|p| [p.a.as_str(), p.b.as_str()])
            .collect();
        let (emb, _) = embedder.embed(&texts).unwrap();
        for (i, p) in chunk.iter().enumerate() {
            let sim = cosine(&emb[2 * i].vector, &emb[2 * i + 1].vector);
            let d = decide_hit(&p.a, &p.b, sim, threshold);
            let e = by_kind.entry(p.kind.as_str()).or_default();
            e.0 += 1;
            e.1 += usize::from(d.hit);
            if p.hit {
                pos += 1;
                pos_hit += usize::from(d.hit);
            } else {
                neg += 1;
                neg_hit += usize::from(d.hit);
            }
        }
    }
    eprintln!("{file}:");
    for (k, (n, h)) in &by_kind {
        eprintln!("  {k:<11} {h:>4}/{n:<4} served from cache");
    }
    let hit_rate = pos_hit as f64 / pos as f64;
    let false_rate = neg_hit as f64 / neg as f64;
    eprintln!(
        "  true pairs served {:.1}%, hard negatives served {:.2}%",
        hit_rate * 100.0,
        false_rate * 100.0
    );
    (hit_rate, false_rate)
}

#[test]
fn false_hits_stay_under_one_percent_on_every_pair_set() {
    let cfg = Config::default();
    let embedder = Embedder::load(&embed_options(&cfg).unwrap()).unwrap();
    // (file, hit-rate floor): measured 59.9%, 53.7% and 79.9% of true pairs served.
    for (file, min_hit_rate) in [
        ("dev.jsonl", 0.57),
        ("test.jsonl", 0.51),
        ("holdout.jsonl", 0.75),
    ] {
        let (hit_rate, false_rate) = score(file, &embedder, cfg.cache.similarity);
        assert!(false_rate <= 0.01, "{file}: false-hit rate {false_rate}");
        // Rewordings, not only surface variants, must be served.
        assert!(
            hit_rate >= min_hit_rate,
            "{file}: hit rate {hit_rate} under {min_hit_rate}"
        );
    }
}
