//! The cache a soak left behind holds only whole answers. `scripts/soak.sh` runs
//! this after it stopped the server, with `SOAK_CACHE_DIR` (the server's cache
//! directory) and `SOAK_ANSWER` (the fake upstream's one whole answer):
//!
//! ```sh
//! SOAK_CACHE_DIR=... SOAK_ANSWER=... cargo test --release --test soak_cache -- --ignored --nocapture
//! ```
//!
//! It reads a copy of the directory through the cache's own loader, so the soaked
//! files stay as the server left them.

use triage::cache::SemanticCache;
use triage::config::CacheConfig;

#[test]
#[ignore = "run by scripts/soak.sh on the cache it soaked"]
fn soaked_cache_holds_only_whole_answers() {
    let Ok(dir) = std::env::var("SOAK_CACHE_DIR") else {
        eprintln!("soak-cache: SOAK_CACHE_DIR is not set; nothing to check");
        return;
    };
    let answer = std::env::var("SOAK_ANSWER").expect("SOAK_ANSWER: the whole answer");
    let copy = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(&dir).expect("SOAK_CACHE_DIR is a directory") {
        let f = f.unwrap();
        std::fs::copy(f.path(), copy.path().join(f.file_name())).unwrap();
    }
    let cfg = CacheConfig {
        max_entries: usize::MAX,
        max_bytes: usize::MAX,
        ..CacheConfig::default()
    };
    let cache = SemanticCache::open(cfg, copy.path()).expect("the soaked cache loads");
    let entries = cache.entries_snapshot();
    let torn: Vec<_> = entries
        .iter()
        .filter(|e| e.answer.content != answer || e.answer.finish_reason != "stop")
        .collect();
    println!(
        "soak-cache: {} entries, {} not whole",
        entries.len(),
        torn.len()
    );
    for e in torn.iter().take(5) {
        println!(
            "soak-cache: {:?} -> {:?} ({}, finish {})",
            e.text, e.answer.content, e.answer.model, e.answer.finish_reason
        );
    }
    assert!(torn.is_empty(), "cached answers that are not whole");
}
