//! The PROXY protocol parser, v1 and v2 (`proxy_protocol::parse`).
//! What it checks: `gateway_fuzz::proxy_protocol` (fuzz/src/lib.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway_fuzz::proxy_protocol(data));
