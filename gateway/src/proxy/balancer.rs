//! Weighted round robin over a service's targets: a smooth schedule computed
//! when the snapshot is built, walked with one atomic counter per request.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use http::HeaderValue;

use super::pool::Pool;

pub struct Target {
    pub pool: Arc<Pool>,
    /// `host` or `host:port` (non-default port), the upstream Host header.
    pub host_header: HeaderValue,
}

pub struct Balancer {
    targets: Box<[Target]>,
    schedule: Box<[u32]>,
    cursor: AtomicUsize,
}

/// Longest schedule kept; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 4096;

impl Balancer {
    /// Targets with weight 0 are left out, as Kong does.
    pub fn new(weighted: Vec<(Target, u32)>) -> Self {
        let (targets, weights): (Vec<_>, Vec<_>) =
            weighted.into_iter().filter(|(_, w)| *w > 0).unzip();
        Balancer {
            schedule: smooth_schedule(&weights),
            targets: targets.into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The next target, or None when no target has weight.
    pub fn next(&self) -> Option<&Target> {
        match self.targets.len() {
            0 => None,
            1 => Some(&self.targets[0]),
            _ => {
                let n = self.cursor.fetch_add(1, Relaxed) % self.schedule.len();
                Some(&self.targets[self.schedule[n] as usize])
            }
        }
    }
}

/// nginx's smooth weighted round robin, unrolled into one full cycle.
fn smooth_schedule(weights: &[u32]) -> Box<[u32]> {
    if weights.len() < 2 {
        return Box::new([0]);
    }
    let g = weights.iter().fold(0u64, |g, &w| gcd(g, w as u64));
    let mut w: Vec<u64> = weights.iter().map(|&x| x as u64 / g).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE {
        for x in &mut w {
            *x = (*x * MAX_SCHEDULE / total).max(1);
        }
    }
    let total: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out.into_boxed_slice()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_smooth_and_proportional() {
        assert_eq!(&*smooth_schedule(&[100, 100]), &[0, 1]);
        let s = smooth_schedule(&[5, 1, 1]);
        assert_eq!(&*s, &[0, 0, 1, 0, 2, 0, 0]);
        let s = smooth_schedule(&[65_535, 1, 7]);
        assert!(s.len() as u64 <= MAX_SCHEDULE + 2);
        assert!(s.contains(&1) && s.contains(&2));
        let s = smooth_schedule(&[300, 100]);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 3);
        assert_eq!(s.len(), 4);
    }
}
