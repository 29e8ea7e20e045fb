//! Bounds on configuration input: Admin API bodies (JSON, form-encoded, the
//! declarative YAML or JSON of `POST /config`) and the declarative file read at
//! start-up, on SIGHUP and by `config db_import`. Pathological input (deep
//! nesting, YAML "billion laughs", huge bodies, millions of keys) is refused
//! before it is turned into values, in milliseconds and without memory growth,
//! with a message naming the limit; the configuration in force is kept.
//!
//! Each limit is one constant here. They are set so that no real Kong
//! configuration comes near them: the body size is Kong's, the others only
//! stop input that no Kong configuration has.

use std::fmt;

mod json;
mod yaml;

pub use json::{parse_json, JsonError};
pub use yaml::check_yaml;

/// Largest Admin API request body, `POST /config` included, and largest
/// declarative file. Kong's `nginx_admin_client_max_body_size` (and
/// `client_body_buffer_size`) default for the Admin API is `10m`; a bigger body
/// gets 413 there too. The same cap for the file means a file that one node
/// loads can be posted to another.
pub const MAX_BODY_BYTES: usize = 10 << 20;

/// Deepest nesting of arrays and objects (YAML sequences and mappings)
/// anywhere in a body or declarative document. A Kong entity nests about 6
/// deep (upstream `healthchecks.active.healthy.http_statuses`), a declarative
/// file about 10 (a plugin's config inside a route inside a service); serde_json
/// stops at 128 and serde_yaml_ng at 128, after having read all the input. The
/// code that walks values recursively (validation, PATCH merges, storing as
/// jsonb, reading back with serde_json's 128) stays far from the stack's end.
pub const MAX_DEPTH: usize = 64;

/// Most keys in one object (YAML mapping). Kong's entities have fewer than 40
/// fields and plugin configs a few dozen; a million-key object is only a way
/// to make the parser allocate.
pub const MAX_OBJECT_KEYS: usize = 10_000;

/// Most values in one entity's body (every key, scalar, array and object
/// counts one): room for a plugin config with a list of tens of thousands of
/// entries (an ip-restriction allow list), while a 10 MiB body of `[0,0,...`
/// (5 million values, ~250 MB as serde_json values) is refused early.
pub const MAX_ENTITY_NODES: usize = 100_000;

/// Most nodes in a declarative document, aliases expanded. A realistic Kong
/// file has about 9 bytes a node, so the 10 MiB size cap binds first (about
/// 1.2 million nodes); this only stops degenerate input such as `[0,0,0,...`.
pub const MAX_DECLARATIVE_NODES: u64 = 2_000_000;

/// Most nodes that YAML aliases may add to a declarative document, in all.
/// Anchors shared by many entities (one plugin config reused by thousands of
/// services) stay well below; "billion laughs" (10 levels of 10 aliases: 10^10
/// nodes from 1 KB) is refused at the alias that crosses it. serde_yaml_ng's
/// own guard (100 alias jumps per event) is relative to the file's size, so
/// a padded file could still expand to hundreds of millions of nodes.
pub const MAX_ALIAS_NODES: u64 = 100_000;

/// Most YAML anchors (`&name`) in a declarative document: each is remembered
/// until the end of the document, and real files have a handful.
pub const MAX_ANCHORS: usize = 10_000;

/// Which limit a piece of input went over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exceeded {
    /// The input's length, and the limit.
    Bytes(usize),
    Depth,
    ObjectKeys,
    /// Values (or nodes) in all, and the limit that applied.
    Nodes(u64),
    AliasNodes,
    Anchors,
    /// A YAML alias inside the node its anchor names.
    RecursiveAlias(String),
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Bytes(n) => write!(
                f,
                "size limit exceeded: {n} bytes, more than the {MAX_BODY_BYTES}-byte (10 MiB) limit"
            ),
            Exceeded::Depth => write!(
                f,
                "nesting depth limit exceeded: arrays and objects nest more than {MAX_DEPTH} levels deep"
            ),
            Exceeded::ObjectKeys => write!(
                f,
                "object size limit exceeded: an object has more than {MAX_OBJECT_KEYS} keys"
            ),
            Exceeded::Nodes(limit) => write!(
                f,
                "size limit exceeded: more than {limit} values (keys, scalars, arrays and objects) in all"
            ),
            Exceeded::AliasNodes => write!(
                f,
                "YAML alias limit exceeded: aliases expand to more than {MAX_ALIAS_NODES} nodes (a \"billion laughs\" document?)"
            ),
            Exceeded::Anchors => write!(
                f,
                "YAML anchor limit exceeded: more than {MAX_ANCHORS} anchors"
            ),
            Exceeded::RecursiveAlias(name) => write!(
                f,
                "YAML alias `*{name}` is inside the node its anchor names: recursive aliases are not allowed"
            ),
        }
    }
}

/// Refuses declarative text longer than [`MAX_BODY_BYTES`].
pub fn check_size(len: usize) -> Result<(), Exceeded> {
    match len > MAX_BODY_BYTES {
        true => Err(Exceeded::Bytes(len)),
        false => Ok(()),
    }
}

/// Reads a declarative file, refusing one larger than [`MAX_BODY_BYTES`]
/// without reading it all (it may be `/dev/zero`).
pub fn read_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    // Sized from the file up front: growing by doubling would reserve 16 MiB.
    let len = file.metadata().map_or(0, |m| m.len()) as usize;
    let mut text = String::with_capacity(len.min(MAX_BODY_BYTES + 1));
    file.take(MAX_BODY_BYTES as u64 + 1)
        .read_to_string(&mut text)?;
    if let Err(e) = check_size(text.len()) {
        let size = std::fs::metadata(path)
            .map(|m| m.len())
            .ok()
            .filter(|n| *n > MAX_BODY_BYTES as u64);
        let message = match size {
            Some(n) => Exceeded::Bytes(n as usize).to_string(),
            None => e.to_string(),
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            message,
        ));
    }
    Ok(text)
}

/// Checks a form-encoded body before it is decoded into values: every key
/// (`config[a][b]`, `config.a.b`) nests at most [`MAX_DEPTH`] deep, and there
/// are at most [`MAX_ENTITY_NODES`] pairs.
pub fn check_form(body: &[u8]) -> Result<(), Exceeded> {
    let mut pairs = 0usize;
    for (key, _) in form_urlencoded::parse(body) {
        pairs += 1;
        if pairs > MAX_ENTITY_NODES {
            return Err(Exceeded::Nodes(MAX_ENTITY_NODES as u64));
        }
        // Each `.` or `[` may open one more level.
        let depth = 1 + key.bytes().filter(|b| matches!(b, b'.' | b'[')).count();
        if depth > MAX_DEPTH {
            return Err(Exceeded::Depth);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
