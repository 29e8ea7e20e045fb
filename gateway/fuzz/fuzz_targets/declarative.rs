//! Declarative config text (YAML or JSON): parse, export round trip, snapshot build.
//! What it checks: `gateway_fuzz::declarative` (fuzz/src/lib.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway_fuzz::declarative(data));
