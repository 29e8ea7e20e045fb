//! proxy-cache's memory strategy: one store per node (Kong keeps it in the
//! `kong_db_cache` shared dictionary of each node), shared by every snapshot
//! so a configuration change keeps what is cached. Entries are keyed by the
//! plugin instance and the cache key; the store is split in shards with a
//! short lock each, and bounded in bytes: the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use uuid::Uuid;

/// All entries of the node, at most: Kong's `kong_db_cache` default size.
pub const CAPACITY: usize = 128 << 20;
/// The largest body kept; a larger response is sent and not stored.
pub const MAX_BODY: usize = 8 << 20;
const SHARDS: usize = 16;

/// A stored response.
#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub stored: Instant,
    /// Unix seconds, for the Admin API.
    pub timestamp: u64,
    /// How long it is served fresh.
    pub ttl: Duration,
    /// How long it is kept at all (`storage_ttl`, else `ttl`).
    pub keep: Duration,
}

impl Entry {
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        ttl: Duration,
        keep: Duration,
    ) -> Entry {
        Entry {
            status,
            headers,
            body,
            stored: Instant::now(),
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ttl,
            keep: keep.max(ttl),
        }
    }

    pub fn age(&self) -> Duration {
        self.stored.elapsed()
    }

    pub fn is_fresh(&self) -> bool {
        self.age() < self.ttl
    }

    fn size(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 32)
                .sum::<usize>()
            + 128
    }
}

type Key = (Uuid, Box<str>);

#[derive(Default)]
struct Shard {
    map: HashMap<Key, Arc<Entry>>,
    /// Insertion order, for eviction; may name entries already gone.
    order: VecDeque<Key>,
    bytes: usize,
}

pub struct Store {
    shards: Vec<Mutex<Shard>>,
}

pub static STORE: LazyLock<Store> = LazyLock::new(|| Store {
    shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
});

fn shard_of(key: &str) -> usize {
    // The key is a hex digest: its first character spreads well.
    key.bytes().next().map_or(0, |b| b as usize % SHARDS)
}

impl Store {
    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[shard_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// An entry still kept (fresh or not).
    pub fn get(&self, plugin: Uuid, key: &str) -> Option<Arc<Entry>> {
        let mut s = self.shard(key);
        let k = (plugin, Box::from(key));
        let e = s.map.get(&k)?.clone();
        if e.age() >= e.keep {
            if let Some(old) = s.map.remove(&k) {
                s.bytes -= old.size();
            }
            return None;
        }
        Some(e)
    }

    pub fn put(&self, plugin: Uuid, key: &str, entry: Entry) {
        let size = entry.size();
        if size > CAPACITY / SHARDS {
            return;
        }
        let mut s = self.shard(key);
        let k: Key = (plugin, Box::from(key));
        if let Some(old) = s.map.insert(k.clone(), Arc::new(entry)) {
            s.bytes -= old.size();
        }
        s.bytes += size;
        s.order.push_back(k);
        while s.bytes > CAPACITY / SHARDS {
            let Some(oldest) = s.order.pop_front() else {
                break;
            };
            if let Some(e) = s.map.remove(&oldest) {
                s.bytes -= e.size();
            }
        }
        // The order list may hold keys replaced since: keep it bounded too.
        if s.order.len() > 2 * s.map.len() + 64 {
            let live: Vec<Key> = s
                .order
                .iter()
                .filter(|k| s.map.contains_key(*k))
                .cloned()
                .collect();
            s.order = live.into();
        }
    }

    /// Removes one entry of one instance; whether it was there.
    pub fn remove(&self, plugin: Uuid, key: &str) -> bool {
        let mut s = self.shard(key);
        match s.map.remove(&(plugin, Box::from(key))) {
            Some(e) => {
                s.bytes -= e.size();
                true
            }
            None => false,
        }
    }

    /// Every instance's entries under `key`.
    pub fn find(&self, key: &str) -> Vec<(Uuid, Arc<Entry>)> {
        let s = self.shard(key);
        s.map
            .iter()
            .filter(|((_, k), _)| &**k == key)
            .map(|((p, _), e)| (*p, e.clone()))
            .collect()
    }

    /// Removes `key` from every instance; how many went.
    pub fn remove_everywhere(&self, key: &str) -> usize {
        let mut s = self.shard(key);
        let gone: Vec<Key> = s.map.keys().filter(|(_, k)| &**k == key).cloned().collect();
        for k in &gone {
            if let Some(e) = s.map.remove(k) {
                s.bytes -= e.size();
            }
        }
        gone.len()
    }

    pub fn purge(&self) {
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
            *s = Shard::default();
        }
    }
}
