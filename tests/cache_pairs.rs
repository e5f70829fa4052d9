//! The cache's hit decision on the labeled pair sets in tests/fixtures/cache_pairs/:
//! `dev.jsonl` (used while writing the guards), `test.jsonl` (another writer's, for
//! confirming), `holdout.jsonl` (a third writer's), and `blind1.jsonl` to
//! `blind4.jsonl` (written by four more sessions that never saw the guards; each was
//! scored once before anything in it was looked at, see docs/benchmarks.md), and
//! `blind5.jsonl` and `blind6.jsonl` (a fifth and a sixth, with yes/no questions of
//! opposite polarity and states of one process among their hard negatives). Prints
//! the per-kind
//! table; asserts the false-hit ceiling of 1% of hard negatives, that at least half
//! of the real rewordings are served, and a floor a little under each set's current
//! rates.

use std::collections::BTreeMap;

use triage::cache::{decide_hit_with, ModelWords, WordVectors};
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

struct Rates {
    /// Share of all true pairs (rewordings and surface variants) served.
    true_pairs: f64,
    /// Share of the rewordings alone ("paraphrase") served.
    paraphrases: f64,
    /// Share of the hard negatives served.
    false_hits: f64,
}

fn score(file: &str, embedder: &Embedder, words: &dyn WordVectors, threshold: f32) -> Rates {
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
    let (mut para, mut para_hit) = (0, 0);
    for chunk in pairs.chunks(32) {
        let texts: Vec<&str> = chunk
            .iter()
            .flat_map(|p| [p.a.as_str(), p.b.as_str()])
            .collect();
        let (emb, _) = embedder.embed(&texts).unwrap();
        for (i, p) in chunk.iter().enumerate() {
            let sim = cosine(&emb[2 * i].vector, &emb[2 * i + 1].vector);
            let d = decide_hit_with(&p.a, &p.b, sim, threshold, Some(words));
            let e = by_kind.entry(p.kind.as_str()).or_default();
            e.0 += 1;
            e.1 += usize::from(d.hit);
            if p.kind == "paraphrase" {
                para += 1;
                para_hit += usize::from(d.hit);
            }
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
    let r = Rates {
        true_pairs: pos_hit as f64 / pos as f64,
        paraphrases: para_hit as f64 / para as f64,
        false_hits: neg_hit as f64 / neg as f64,
    };
    eprintln!(
        "  rewordings served {:.1}%, all true pairs {:.1}%, hard negatives served {:.2}%",
        r.paraphrases * 100.0,
        r.true_pairs * 100.0,
        r.false_hits * 100.0
    );
    r
}

#[test]
fn false_hits_stay_under_one_percent_on_every_pair_set() {
    let cfg = Config::default();
    let embedder = std::sync::Arc::new(Embedder::load(&embed_options(&cfg).unwrap()).unwrap());
    let words = ModelWords::new(embedder.clone());
    // (file, floor on rewordings, floor on all true pairs), a little under what
    // each set measures now: rewordings 67.3%, 66.5%, 90.8%, 57.8%, 55.9%, 57.3%,
    // 56.7%; all true pairs 74.6%, 73.7%, 92.6%, 67.0%, 63.8%, 63.3%, 61.7%.
    for (file, min_paraphrases, min_true_pairs) in [
        ("dev.jsonl", 0.65_f64, 0.72),
        ("test.jsonl", 0.64, 0.71),
        ("holdout.jsonl", 0.88, 0.90),
        ("blind1.jsonl", 0.55, 0.64),
        ("blind2.jsonl", 0.53, 0.61),
        ("blind3.jsonl", 0.55, 0.59),
        ("blind4.jsonl", 0.54, 0.59),
        ("blind5.jsonl", 0.60, 0.61),
        ("blind6.jsonl", 0.50, 0.54),
    ] {
        let r = score(file, &embedder, &words, cfg.cache.similarity);
        assert!(
            r.false_hits <= 0.01,
            "{file}: false-hit rate {}",
            r.false_hits
        );
        // Rewordings, not only surface variants, must be served: at least half.
        assert!(
            r.paraphrases >= min_paraphrases.max(0.5),
            "{file}: rewordings served {} under {min_paraphrases}",
            r.paraphrases
        );
        assert!(
            r.true_pairs >= min_true_pairs,
            "{file}: true pairs served {} under {min_true_pairs}",
            r.true_pairs
        );
    }
}
