//! Replays the fuzz corpus (`gateway/fuzz/corpus/<target>/`) and the crash
//! inputs kept as regression tests (`gateway/fuzz/artifacts/crashes/<target>/`)
//! through the fuzz targets' own code, so plain `cargo test` runs them without
//! cargo-fuzz or its instrumented build. `scripts/fuzz` does the fuzzing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod harness;

/// Every input of one target: the corpus, then the kept crashes.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in [
        fuzz.join("corpus").join(target),
        fuzz.join("artifacts/crashes").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // no crashes kept for this target
        };
        let mut found: Vec<PathBuf> = entries
            .map(|e| e.expect("a readable directory entry").path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// Panics anywhere, tasks the runtime catches included.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// Runs `f` on each input; fails naming every input that panicked.
fn replay(target: &str, f: fn(&[u8])) {
    // One target at a time, so a panic counts against the input that caused it.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    count_panics();
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let before = PANICS.load(Ordering::SeqCst);
        let caught = std::panic::catch_unwind(|| f(&data));
        if caught.is_err() || PANICS.load(Ordering::SeqCst) != before {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs panicked (messages above):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn proxy_protocol() {
    replay("proxy_protocol", harness::proxy_protocol);
}

#[test]
fn http_connection() {
    replay("http_connection", harness::http_connection);
}

#[test]
fn declarative() {
    replay("declarative", harness::declarative);
}

#[test]
fn listen_directive() {
    replay("listen_directive", harness::listen_directive);
}
