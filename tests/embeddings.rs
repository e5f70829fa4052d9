//! The shipped f16 model, run by triage, against sentence-transformers' reference
//! vectors from the original f32 weights (tests/fixtures/reference/).

use std::path::PathBuf;

use triage::embed::{cosine, DeviceSpec, EmbedOptions, Embedder, EngineChoice};

#[derive(serde::Deserialize)]
struct Reference {
    max_seq_length: usize,
    items: Vec<Item>,
}

#[derive(serde::Deserialize)]
struct Item {
    text: String,
    token_count: usize,
    embedding: Vec<f32>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load() -> (Embedder, Reference) {
    load_with(EngineChoice::Auto)
}

fn load_with(engine: EngineChoice) -> (Embedder, Reference) {
    let reference: Reference = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/reference/embeddings.json")).unwrap(),
    )
    .unwrap();
    let embedder = Embedder::load(&EmbedOptions {
        model: root()
            .join("models/all-MiniLM-L6-v2")
            .to_string_lossy()
            .into(),
        device: DeviceSpec::Cpu,
        max_tokens: reference.max_seq_length,
        engine,
    })
    .unwrap();
    (embedder, reference)
}

/// Engines this CPU runs, with the cosine each must keep to the f32 reference.
fn engines() -> Vec<(EngineChoice, f32)> {
    let mut out = vec![(EngineChoice::Candle, 0.9999)];
    for (engine, min) in [
        (EngineChoice::FastF32, 0.9999),
        (EngineChoice::FastBf16, 0.999),
    ] {
        if engine.available(DeviceSpec::Cpu) {
            out.push((engine, min));
        }
    }
    out
}

#[test]
fn every_engine_matches_sentence_transformers_reference() {
    let engines = engines();
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512bf16") {
        assert_eq!(engines.len(), 3, "this CPU should run all three engines");
    }
    for (engine, min) in engines {
        let (embedder, reference) = load_with(engine);
        assert_eq!(embedder.engine(), engine);
        check_reference(&embedder, &reference, min);
    }
}

/// The fast engines' routing features (all ten pooled blocks, not only the
/// sentence vector) stay close to candle's.
#[test]
fn fast_engines_features_match_candle() {
    let (candle, reference) = load_with(EngineChoice::Candle);
    let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    let (want, _) = candle.embed(&texts).unwrap();
    for (engine, min) in engines().into_iter().skip(1) {
        let (fast, _) = load_with(engine);
        let (got, _) = fast.embed(&texts).unwrap();
        let mut worst = 1.0f32;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.features.len(), w.features.len());
            for (gb, wb) in g.features.chunks(384).zip(w.features.chunks(384)) {
                worst = worst.min(cosine(gb, wb));
            }
        }
        eprintln!(
            "{}: worst feature-block cosine to candle {worst}",
            engine.name()
        );
        assert!(worst >= min, "{}: {worst}", engine.name());
    }
}

fn check_reference(embedder: &Embedder, reference: &Reference, min: f32) {
    assert!(reference.items.len() >= 20);
    assert_eq!(embedder.dim(), 384);
    // One at a time (no padding) and as one padded batch: both must match.
    let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    let (batch, _) = embedder.embed(&texts).unwrap();
    let mut worst = 1.0f32;
    for (item, batched) in reference.items.iter().zip(&batch) {
        let (single, _) = embedder.embed_one(&item.text).unwrap();
        let single = single.vector;
        let c1 = cosine(&single, &item.embedding);
        let c2 = cosine(&batched.vector, &item.embedding);
        assert!(c1 >= min, "{:?}: cosine {c1}", item.text);
        assert!(c2 >= min, "{:?} (batched): cosine {c2}", item.text);
        let norm: f32 = single.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{:?}: norm {norm}", item.text);
        assert_eq!(
            embedder.count_tokens(&item.text).unwrap(),
            item.token_count,
            "{:?}: token count differs (truncation?)",
            item.text
        );
        worst = worst.min(c1).min(c2);
    }
    eprintln!(
        "{}: worst cosine to reference {worst}",
        embedder.engine().name()
    );
}

#[test]
fn paraphrases_score_far_above_unrelated() {
    let (embedder, _) = load();
    let e = |t: &str| embedder.embed_one(t).unwrap().0.vector;
    let a = e("How do I reset my password?");
    let b = e("I forgot my password");
    let c = e("The stock market fell sharply on Tuesday");
    let para = cosine(&a, &b);
    let unrelated = cosine(&a, &c);
    assert!(para > 0.7, "paraphrase cosine {para}");
    assert!(unrelated < 0.2, "unrelated cosine {unrelated}");
    assert!(para - unrelated > 0.5);
}

#[test]
fn long_input_is_truncated_not_rejected() {
    let (embedder, _) = load();
    let long = "word ".repeat(2000);
    assert_eq!(embedder.count_tokens(&long).unwrap(), 256);
    let (v, _) = embedder.embed_one(&long).unwrap();
    assert_eq!(v.vector.len(), 384);
    assert_eq!(v.features.len(), embedder.features_dim());
    assert!(v.features.iter().all(|x| x.is_finite()));
}

#[test]
fn features_are_unit_blocks_ending_with_the_sentence_vector() {
    let (embedder, _) = load();
    assert_eq!(embedder.features_dim(), 10 * 384);
    let (e, _) = embedder.embed_one("How do I reset my password?").unwrap();
    for block in e.features.chunks(384) {
        let n: f32 = block.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "block norm {n}");
    }
    // Block 5 is the mean of the last layer: the sentence vector itself.
    assert_eq!(&e.features[4 * 384..5 * 384], &e.vector[..]);
}

#[test]
fn empty_batch_is_empty() {
    let (embedder, _) = load();
    let (v, _) = embedder.embed::<&str>(&[]).unwrap();
    assert!(v.is_empty());
}
