//! `file-log` (Kong 3.x): appends each request's log entry (Kong's log
//! serializer, one JSON object per line) to a file. A writer thread does the
//! writing from a bounded queue, so a slow disk never holds a request; when
//! the queue is full the entry is dropped and counted in the node's log.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use super::log::Pending;
use crate::schema::fields::Fields;

pub const PRIORITY: u32 = 9;

/// Entries waiting for the writer thread.
const QUEUE: usize = 10_000;

/// The most the writer gathers from the queue into one write.
const BATCH_BYTES: usize = 64 << 10;

#[derive(Debug)]
pub struct Config {
    path: Box<str>,
    reopen: bool,
    /// Started on the first entry, so validating a config starts nothing.
    queue: OnceLock<Option<SyncSender<Vec<u8>>>>,
}

pub(super) fn parse(f: &mut Fields) -> (Config, Map<String, Value>) {
    let path = f.required_string("path").unwrap_or_default();
    // Kong's pattern for the path: no spaces or odd characters.
    if !path.is_empty()
        && !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-~".contains(c))
    {
        f.error(
            "path",
            "not a valid filename: use letters, digits and / . _ - ~",
        );
    }
    let reopen = f.boolean("reopen", false);
    super::log::no_custom_fields(f);
    let mut out = Map::new();
    out.insert("path".into(), path.clone().into());
    out.insert("reopen".into(), reopen.into());
    out.insert("custom_fields_by_lua".into(), Value::Null);
    let config = Config {
        path: path.into(),
        reopen,
        queue: OnceLock::new(),
    };
    (config, out)
}

pub(super) fn schema() -> Value {
    json!([
        {"path": {"type": "string", "required": true}},
        {"reopen": {"type": "boolean", "required": true, "default": false}},
        {"custom_fields_by_lua": {"type": "map", "keys": {"type": "string"}, "values": {"type": "string"}}},
    ])
}

fn open(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// The writer thread of one plugin instance; it ends when the instance's
/// snapshot is replaced and the queue's sender goes with it.
fn start(path: &str, reopen: bool) -> Option<SyncSender<Vec<u8>>> {
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    let path = path.to_string();
    let spawned = std::thread::Builder::new()
        .name("file-log".into())
        .spawn(move || {
            let mut file = None;
            while let Ok(mut line) = rx.recv() {
                // Entries queued meanwhile go out in the same write: one
                // system call for a burst rather than one per request.
                while line.len() < BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(more) => line.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                if reopen || file.is_none() {
                    file = match open(&path) {
                        Ok(f) => Some(f),
                        Err(e) => {
                            tracing::error!("file-log: cannot open {path}: {e}");
                            None
                        }
                    };
                }
                if let Some(f) = file.as_mut() {
                    if let Err(e) = f.write_all(&line) {
                        tracing::error!("file-log: cannot write to {path}: {e}");
                        file = None;
                    }
                }
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::error!("file-log: cannot start its writer: {e}");
            None
        }
    }
}

pub(super) fn log(c: &Config, p: &Pending) {
    let Some(tx) = c.queue.get_or_init(|| start(&c.path, c.reopen)) else {
        return;
    };
    let mut line = p.serialize_line();
    if line.is_empty() {
        return;
    }
    line.push(b'\n');
    match tx.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            tracing::warn!(
                "file-log: {} is behind by {QUEUE} entries; one dropped",
                c.path
            )
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}
