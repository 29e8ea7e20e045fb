//! `proxy_listen` / `admin_listen` values (`config::listen::parse_listeners`).
//! What it checks: `gateway_fuzz::listen_directive` (fuzz/src/lib.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway_fuzz::listen_directive(data));
