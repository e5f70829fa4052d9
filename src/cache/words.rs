//! Single-word vectors from the embedding model, for pairing off the words a
//! rewording swapped (see [`super::verify::verify_with`]). Only a pair that the
//! lexical tables cannot explain asks for them, so the model runs rarely; each word
//! is embedded once and remembered.

use std::num::NonZeroUsize;
use std::sync::Arc;

use parking_lot::Mutex;

use super::verify::WordVectors;
use crate::embed::Embedder;

/// Words remembered (384 floats each: about 6 MB at this size).
const REMEMBERED: usize = 4096;

pub struct ModelWords {
    embedder: Arc<Embedder>,
    memo: Mutex<lru::LruCache<String, Arc<[f32]>>>,
}

impl ModelWords {
    pub fn new(embedder: Arc<Embedder>) -> Self {
        let cap = NonZeroUsize::new(REMEMBERED).unwrap_or(NonZeroUsize::MIN);
        Self {
            embedder,
            memo: Mutex::new(lru::LruCache::new(cap)),
        }
    }
}

impl WordVectors for ModelWords {
    fn vectors(&self, words: &[&str]) -> Option<Vec<Vec<f32>>> {
        let mut found: Vec<Option<Arc<[f32]>>> = {
            let mut memo = self.memo.lock();
            words.iter().map(|w| memo.get(*w).cloned()).collect()
        };
        let missing: Vec<&str> = words
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(w, _)| *w)
            .collect();
        if !missing.is_empty() {
            let (embedded, _) = match self.embedder.embed(&missing) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "word vectors unavailable");
                    return None;
                }
            };
            let mut memo = self.memo.lock();
            let mut fresh = missing.iter().zip(embedded);
            for (w, slot) in words.iter().zip(found.iter_mut()) {
                if slot.is_some() {
                    continue;
                }
                let (m, e) = fresh.next()?;
                debug_assert_eq!(m, w);
                let v: Arc<[f32]> = unit(e.vector).into();
                memo.put((*w).to_string(), v.clone());
                *slot = Some(v);
            }
        }
        found.into_iter().map(|v| v.map(|v| v.to_vec())).collect()
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::embed_options;

    #[test]
    fn synonyms_are_close_and_unrelated_words_are_not() {
        let cfg = Config::default();
        let embedder = Arc::new(Embedder::load(&embed_options(&cfg).unwrap()).unwrap());
        let words = ModelWords::new(embedder);
        let v = words
            .vectors(&["fridge", "refrigerator", "bicycle", "fridge"])
            .unwrap();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!(dot(&v[0], &v[1]) >= crate::cache::WORD_MATCH);
        assert!(dot(&v[0], &v[2]) < crate::cache::WORD_MATCH);
        // The second "fridge" came from memory, the same vector.
        assert_eq!(v[0], v[3]);
    }
}
