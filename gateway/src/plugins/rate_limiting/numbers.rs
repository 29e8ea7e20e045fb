//! Numbers as header values, for the limit, remaining and reset headers of
//! every counted request: made without an allocation of their own.
//!
//! `HeaderValue::from(u64)` allocates a buffer per value, and a second
//! allocation the first time the value is cloned. Here numbers below 1,024
//! are values made once, and larger ones are written into a per-thread
//! buffer of [`ARENA`] bytes that many values share (one allocation per few
//! hundred values; the buffer is freed when its last value is dropped).

use std::cell::RefCell;

use bytes::BytesMut;
use http::HeaderValue;

/// Bytes per shared buffer: about 300 values of 10 to 13 digits.
const ARENA: usize = 4096;

static SMALL: std::sync::LazyLock<Box<[HeaderValue]>> = std::sync::LazyLock::new(|| {
    (0..1024u32)
        .map(|n| HeaderValue::from_static(Box::leak(n.to_string().into_boxed_str())))
        .collect()
});

thread_local! {
    static DIGITS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// `n` as a header value.
pub fn num(n: u64) -> HeaderValue {
    if let Some(v) = SMALL.get(n as usize) {
        return v.clone();
    }
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n).as_bytes();
    let bytes = DIGITS.with_borrow_mut(|arena| {
        if arena.capacity() - arena.len() < digits.len() {
            *arena = BytesMut::with_capacity(ARENA);
        }
        arena.extend_from_slice(digits);
        arena.split().freeze()
    });
    // Digits are always a valid value; the fallback only keeps this total.
    HeaderValue::from_maybe_shared(bytes).unwrap_or_else(|_| HeaderValue::from(n))
}

/// `n` as a header value kept as long as a config: a buffer of its own (not
/// one that would keep a shared buffer alive), shared by its clones.
pub fn lasting(n: u64) -> HeaderValue {
    if let Some(v) = SMALL.get(n as usize) {
        return v.clone();
    }
    let v = HeaderValue::from(n);
    // The first clone allocates the sharing: done here, once.
    drop(v.clone());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_back_as_written_across_buffers() {
        let ns: Vec<u64> = (0..2000u64)
            .map(|i| i * 7_919 + i % 3)
            .chain([0, 1023, 1024, u64::MAX])
            .collect();
        // Enough values to fill several shared buffers; all kept alive.
        let values: Vec<HeaderValue> = ns.iter().map(|&n| num(n)).collect();
        for (n, v) in ns.iter().zip(&values) {
            assert_eq!(v.to_str().unwrap(), n.to_string());
        }
        let cloned = values[1500].clone();
        drop(values);
        assert_eq!(cloned.to_str().unwrap(), ns[1500].to_string());
        assert_eq!(lasting(5).to_str().unwrap(), "5");
        assert_eq!(lasting(1_000_000_000).to_str().unwrap(), "1000000000");
    }
}
