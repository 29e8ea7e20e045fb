//! The `local` policy's counters: process-wide, so they survive snapshot
//! rebuilds (a config change must not reset everyone's quota), in shards of
//! a `Mutex<HashMap>` held only for a few arithmetic steps and never across
//! an await. One entry per (instance, identifier, period) holds the current
//! window's start and count; a new window resets it in place, and a periodic
//! sweep of a shard drops entries whose window ended, so memory follows the
//! identifiers seen lately.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use super::window::{start_ms, Period, PERIODS};
use super::{Counts, Outcome};

const SHARDS: usize = 64;
/// How often (ms) a shard drops its expired entries, at most.
const SWEEP_EVERY_MS: i64 = 5_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: i64,
    count: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<(u64, Period), Entry, foldhash::fast::FixedState>,
    next_sweep: i64,
}

impl Shard {
    /// The entry of `key` for `p`'s current window (reset when its window
    /// has passed).
    fn entry(&mut self, key: u64, p: Period, now_ms: i64) -> &mut Entry {
        let start = start_ms(p, now_ms);
        let e = self.map.entry((key, p)).or_insert(Entry {
            window_start: start,
            count: 0,
        });
        if e.window_start != start {
            *e = Entry {
                window_start: start,
                count: 0,
            };
        }
        e
    }
}

pub struct Store {
    shards: Box<[Mutex<Shard>]>,
}

pub static STORE: LazyLock<Store> = LazyLock::new(Store::new);

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// Counts one request of `key` (a digest of instance and identifier)
    /// against every configured limit, unless one is already reached: then
    /// nothing is counted.
    pub(crate) fn hit(&self, key: u64, limits: &[(Period, u64)], now_ms: i64) -> Outcome {
        let shard = &self.shards[(key >> 58) as usize % SHARDS];
        // A poisoned shard only means a panic elsewhere mid-update of plain
        // integers: the data is still usable.
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if now_ms >= shard.next_sweep {
            shard.next_sweep = now_ms + SWEEP_EVERY_MS;
            let starts = PERIODS.map(|p| start_ms(p, now_ms));
            shard
                .map
                .retain(|(_, p), e| e.window_start >= starts[*p as usize]);
        }
        let mut counts: Counts = [0; 6];
        // One period (the usual config): one lookup that checks and counts.
        if let [(p, limit)] = *limits {
            let e = shard.entry(key, p, now_ms);
            if e.count >= limit {
                counts[0] = e.count;
                return Outcome::Refused(counts);
            }
            e.count += 1;
            counts[0] = e.count;
            return Outcome::Allowed(counts);
        }
        let mut refused = false;
        for (i, &(p, limit)) in limits.iter().enumerate() {
            let e = shard.entry(key, p, now_ms);
            counts[i] = e.count;
            if e.count >= limit {
                refused = true;
            }
        }
        if refused {
            return Outcome::Refused(counts);
        }
        for (i, &(p, _)) in limits.iter().enumerate() {
            if let Some(e) = shard.map.get_mut(&(key, p)) {
                e.count += 1;
                counts[i] = e.count;
            }
        }
        Outcome::Allowed(counts)
    }

    /// Entries held, for tests.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
