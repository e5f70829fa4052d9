//! Step: a conversation never moves down a tier. The highest tier each
//! conversation has needed is remembered (bounded LRU with TTL), under the key of
//! `texts::RoutedTexts::conversation`; a first turn's tier is remembered under the
//! key its next turn will carry once its answer is known (`record`).

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Live, Pipeline, Turn};

/// Remembers the highest tier each conversation has needed (bounded LRU with TTL).
pub struct StickyTiers {
    map: Mutex<lru::LruCache<[u8; 16], (usize, Instant)>>,
    ttl: Duration,
}

impl StickyTiers {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            map: Mutex::new(lru::LruCache::new(cap)),
            ttl,
        }
    }

    pub fn get(&self, key: &[u8; 16]) -> Option<usize> {
        let mut map = self.map.lock();
        match map.get(key) {
            Some((tier, at)) if at.elapsed() < self.ttl => Some(*tier),
            Some(_) => {
                map.pop(key);
                None
            }
            None => None,
        }
    }

    /// Records `tier` unless the conversation already needed a higher one.
    pub fn raise(&self, key: [u8; 16], tier: usize) {
        let mut map = self.map.lock();
        let prev = map
            .get(&key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(t, _)| *t)
            .unwrap_or(0);
        map.put(key, (prev.max(tier), Instant::now()));
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub(super) fn step(p: &Pipeline, live: &Live, t: &mut Turn) {
    let (Some(key), Some(d)) = (t.texts.conversation, t.routing.decision.as_mut()) else {
        return;
    };
    if let Some(prev) = p.sticky.get(&key) {
        if prev > d.tier_index {
            t.routing.sticky = true;
            d.tier_index = prev;
            d.tier = live.head.labels()[prev].clone();
            d.models = live
                .cfg
                .router
                .tiers
                .get(&d.tier)
                .cloned()
                .unwrap_or_default();
            t.routing.models = d.models.clone();
        }
    }
    p.sticky.raise(key, d.tier_index);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_tiers_only_go_up_and_expire() {
        let s = StickyTiers::new(2, Duration::from_secs(60));
        let k = [1u8; 16];
        s.raise(k, 2);
        s.raise(k, 0);
        assert_eq!(s.get(&k), Some(2));
        // Bounded: the least recently used conversation is forgotten.
        s.raise([2u8; 16], 1);
        s.raise([3u8; 16], 1);
        assert_eq!(s.len(), 2);
        let short = StickyTiers::new(2, Duration::from_millis(0));
        short.raise(k, 2);
        assert_eq!(short.get(&k), None);
    }
}
