//! Request ids: 32 hex digits, unique per node without a shared counter.

use std::cell::Cell;

use http::{HeaderName, HeaderValue};

/// Kong's request id header, sent upstream and back to the client.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-kong-request-id");

thread_local! {
    /// A random per-thread prefix and a counter.
    static STATE: Cell<(u64, u64)> = Cell::new((uuid::Uuid::new_v4().as_u64_pair().0, 0));
}

pub fn next() -> HeaderValue {
    let (prefix, n) = STATE.with(|s| {
        let (p, n) = s.get();
        s.set((p, n.wrapping_add(1)));
        (p, n)
    });
    let mut buf = [0u8; 32];
    hex(&mut buf[..16], prefix);
    hex(&mut buf[16..], n);
    HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value")
}

fn hex(out: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_and_distinct() {
        let a = super::next();
        let b = super::next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
