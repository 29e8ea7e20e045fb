//! Per-host buckets of candidate routes.

use std::collections::HashMap;

use regex::{RegexSet, RegexSetBuilder};

use super::compile::{regex_literal, CompiledRoute};
use super::RouteRequest;

pub(super) type Map<V> = HashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

/// Up to this many distinct prefixes are compared one by one.
const SMALL_PREFIXES: usize = 8;
/// Up to this many regex routes are run one by one.
const SMALL_REGEXES: usize = 8;
/// Patterns per `RegexSet`: larger sets thrash the lazy DFA.
const SET_PATTERNS: usize = 512;

/// The best match so far.
#[derive(Default)]
pub(super) struct Best {
    rank: u128,
    pub found: Option<(u32, usize)>,
}

/// Tries `list` (best rank first) until a route matches or the rest cannot
/// beat `best`.
#[inline]
fn scan(list: &[u32], routes: &[CompiledRoute], req: &RouteRequest<'_>, best: &mut Best) {
    for &i in list {
        let route = &routes[i as usize];
        if route.rank <= best.rank {
            return;
        }
        if let Some(len) = route.check(req) {
            best.rank = route.rank;
            best.found = Some((i, len));
            return;
        }
    }
}

/// Buckets for one host key, by required port (`None`: any port).
#[derive(Debug)]
pub(super) struct HostBuckets(pub Vec<(Option<u16>, Bucket)>);

impl HostBuckets {
    #[inline]
    pub fn search(
        &self,
        port: Option<u16>,
        routes: &[CompiledRoute],
        req: &RouteRequest<'_>,
        best: &mut Best,
    ) {
        for (p, bucket) in &self.0 {
            if p.is_none() || *p == port {
                bucket.search(routes, req, best);
            }
        }
    }
}

/// Values keyed by a path prefix.
#[derive(Debug)]
enum Prefixes<T> {
    Small(Vec<(Box<[u8]>, T)>),
    /// Distinct key lengths with the best rank under each, best first.
    Large {
        lens: Vec<(usize, u128)>,
        map: Map<T>,
    },
}

impl<T> Prefixes<T> {
    fn new(mut map: Map<T>, top: impl Fn(&T) -> u128) -> Self {
        if map.len() <= SMALL_PREFIXES {
            return Prefixes::Small(map.into_iter().collect());
        }
        let mut lens: Vec<(usize, u128)> = Vec::new();
        for (key, value) in &map {
            let rank = top(value);
            match lens.iter_mut().find(|(len, _)| *len == key.len()) {
                Some((_, max)) => *max = (*max).max(rank),
                None => lens.push((key.len(), rank)),
            }
        }
        lens.sort_unstable_by_key(|&(_, max)| std::cmp::Reverse(max));
        map.shrink_to_fit();
        Prefixes::Large { lens, map }
    }

    #[inline]
    fn search(&self, path: &[u8], best: &mut Best, mut f: impl FnMut(&T, &mut Best)) {
        match self {
            Prefixes::Small(list) => {
                for (key, value) in list {
                    if path.starts_with(key) {
                        f(value, best);
                    }
                }
            }
            Prefixes::Large { lens, map } => {
                for &(len, max) in lens {
                    if max <= best.rank {
                        break;
                    }
                    if let Some(value) = path.get(..len).and_then(|k| map.get(k)) {
                        f(value, best);
                    }
                }
            }
        }
    }
}

/// Routes with regex paths, best first, in chunks.
#[derive(Debug)]
struct Chunk {
    /// All patterns of the chunk's routes; `None` runs the routes one by one.
    set: Option<RegexSet>,
    /// The route of each pattern, or each route when there is no set.
    owners: Vec<u32>,
}

#[derive(Debug)]
struct RegexGroup(Vec<Chunk>);

impl RegexGroup {
    fn new(list: Vec<u32>, routes: &[CompiledRoute]) -> Self {
        if list.is_empty() {
            return RegexGroup(Vec::new());
        }
        if list.len() <= SMALL_REGEXES {
            return RegexGroup(vec![Chunk {
                set: None,
                owners: list,
            }]);
        }
        let mut chunks = Vec::new();
        let (mut patterns, mut owners) = (Vec::new(), Vec::new());
        for (n, &i) in list.iter().enumerate() {
            for re in routes[i as usize].regexes.iter() {
                patterns.push(re.as_str());
                owners.push(i);
            }
            if patterns.len() >= SET_PATTERNS || n + 1 == list.len() {
                let set = RegexSetBuilder::new(patterns.drain(..))
                    .size_limit(64 << 20)
                    .dfa_size_limit(16 << 20)
                    .build();
                chunks.push(match set {
                    Ok(set) => Chunk {
                        set: Some(set),
                        owners: std::mem::take(&mut owners),
                    },
                    // Too big only costs speed.
                    Err(_) => {
                        owners.dedup();
                        Chunk {
                            set: None,
                            owners: std::mem::take(&mut owners),
                        }
                    }
                });
            }
        }
        RegexGroup(chunks)
    }

    #[inline]
    fn search(&self, routes: &[CompiledRoute], req: &RouteRequest<'_>, best: &mut Best) {
        for chunk in &self.0 {
            match chunk.owners.first() {
                Some(&top) if routes[top as usize].rank > best.rank => {}
                _ => return,
            }
            let Some(set) = &chunk.set else {
                scan(&chunk.owners, routes, req, best);
                continue;
            };
            if !set.is_match(req.path) {
                continue;
            }
            let mut last = u32::MAX;
            for pattern in set.matches(req.path).iter() {
                let i = chunk.owners[pattern];
                if i != last {
                    last = i;
                    let found = best.found;
                    scan(&[i], routes, req, best);
                    if best.found != found || routes[i as usize].rank <= best.rank {
                        break;
                    }
                }
            }
        }
    }
}

#[derive(Debug)]
pub(super) struct Bucket {
    no_path: Vec<u32>,
    plain: Prefixes<Vec<u32>>,
    /// Regex routes keyed by the literal text their regex starts with.
    regex: Prefixes<RegexGroup>,
    /// Regex routes with a regex that has no such literal.
    regex_any: RegexGroup,
}

impl Bucket {
    #[cfg(test)]
    pub fn has_regex_set(&self) -> bool {
        self.regex_any.0.iter().any(|c| c.set.is_some())
    }

    pub fn search(&self, routes: &[CompiledRoute], req: &RouteRequest<'_>, best: &mut Best) {
        let path = req.path.as_bytes();
        scan(&self.no_path, routes, req, best);
        self.plain
            .search(path, best, |list, best| scan(list, routes, req, best));
        self.regex
            .search(path, best, |group, best| group.search(routes, req, best));
        self.regex_any.search(routes, req, best);
    }
}

/// A bucket under construction.
#[derive(Default)]
pub(super) struct BucketBuilder {
    no_path: Vec<u32>,
    plain: Map<Vec<u32>>,
    regex: Map<Vec<u32>>,
    regex_any: Vec<u32>,
}

impl BucketBuilder {
    pub fn add(&mut self, idx: u32, route: &CompiledRoute) {
        if !route.has_paths() {
            self.no_path.push(idx);
        }
        for re in route.regexes.iter() {
            match regex_literal(re) {
                "" => self.regex_any.push(idx),
                lit => self
                    .regex
                    .entry(lit.as_bytes().into())
                    .or_default()
                    .push(idx),
            }
        }
        for p in route.plain.iter() {
            self.plain.entry(p.as_bytes().into()).or_default().push(idx);
        }
    }

    pub fn finish(self, routes: &[CompiledRoute]) -> Bucket {
        let rank = |i: &u32| routes[*i as usize].rank;
        let by_rank = |mut list: Vec<u32>| {
            list.sort_unstable_by_key(|i| std::cmp::Reverse(rank(i)));
            list.dedup();
            list.shrink_to_fit();
            list
        };
        let plain = self
            .plain
            .into_iter()
            .map(|(k, v)| (k, by_rank(v)))
            .collect();
        let regex = self
            .regex
            .into_iter()
            .map(|(k, v)| (k, RegexGroup::new(by_rank(v), routes)))
            .collect();
        Bucket {
            no_path: by_rank(self.no_path),
            plain: Prefixes::new(plain, |list| rank(&list[0])),
            regex: Prefixes::new(regex, |group: &RegexGroup| rank(&group.0[0].owners[0])),
            regex_any: RegexGroup::new(by_rank(self.regex_any), routes),
        }
    }
}
