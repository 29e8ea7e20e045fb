//! Bytes from a client through the listener's path: PROXY header, Rewind, hyper, the Admin API or the proxy.
//! What it checks: `gateway_fuzz::http_connection` (fuzz/src/lib.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway_fuzz::http_connection(data));
