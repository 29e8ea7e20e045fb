//! A streaming pass over YAML (or JSON) text before serde_yaml_ng reads it.
//!
//! serde_yaml_ng first turns the whole text into a list of events (about 160
//! bytes each) and only then deserializes, with its 128-level recursion limit
//! and its alias guard. So a 1 MB line of `[` cost 17 s and 170 MB (debug
//! build) before the recursion limit fired, and 10 MB 25 s and 1.6 GB even
//! optimised. This pass reads
//! the same events from the same parser (libyaml, through unsafe-libyaml, which
//! serde_yaml_ng is built on) one at a time, keeps nothing but a stack of open
//! collections and the sizes of anchored nodes, and stops at the first limit:
//! depth, keys in one mapping, nodes in all (aliases expanded), nodes added by
//! aliases, and anchors. Syntax errors are left to serde_yaml_ng, which reports
//! them with their place as before.

use std::collections::HashMap;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

#[allow(clippy::unsafe_removed_from_name)] // serde_yaml_ng's name for it too
use unsafe_libyaml as sys;

use super::{
    Exceeded, MAX_ALIAS_NODES, MAX_ANCHORS, MAX_DECLARATIVE_NODES, MAX_DEPTH, MAX_OBJECT_KEYS,
};

/// A limit and where it was hit: 1-based line and column.
pub type Located = (Exceeded, usize, usize);

/// Checks `text` against the declarative limits; `Ok` also when the text is
/// not valid YAML (serde_yaml_ng says why).
pub fn check_yaml(text: &str) -> Result<(), Located> {
    let Some(mut parser) = Parser::new(text.as_bytes()) else {
        return Ok(());
    };
    let mut scan = Scan::default();
    while let Some(event) = parser.next() {
        let at = |e| (e, event.line + 1, event.column + 1);
        match event.kind {
            Kind::End => return Ok(()),
            Kind::Other => {}
            kind => scan.event(kind, event.anchor).map_err(at)?,
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Scalar,
    Alias,
    SequenceStart,
    MappingStart,
    CollectionEnd,
    /// Stream and document starts and ends.
    Other,
    End,
}

struct Event {
    kind: Kind,
    /// The anchor defined by a node, or named by an alias.
    anchor: Option<Vec<u8>>,
    line: usize,
    column: usize,
}

/// An open sequence or mapping.
struct Frame {
    anchor: Option<Vec<u8>>,
    mapping: bool,
    /// Direct children (for a mapping, keys and values).
    children: usize,
    /// Nodes in this collection, itself included and aliases expanded.
    size: u64,
    /// Collections nested in it, itself included (an empty one is 1).
    height: usize,
}

#[derive(Default)]
struct Scan {
    open: Vec<Frame>,
    /// Anchor -> (size, height) of its node; `None` while the node is open.
    anchors: HashMap<Vec<u8>, Option<(u64, usize)>>,
    anchors_defined: usize,
    nodes: u64,
    alias_nodes: u64,
}

impl Scan {
    fn event(&mut self, kind: Kind, anchor: Option<Vec<u8>>) -> Result<(), Exceeded> {
        if kind == Kind::CollectionEnd {
            self.close();
            return Ok(());
        }
        // A new node: one more child of the collection it is in.
        if let Some(parent) = self.open.last_mut() {
            parent.children += 1;
            if parent.mapping && parent.children > 2 * MAX_OBJECT_KEYS {
                return Err(Exceeded::ObjectKeys);
            }
        }
        let level = self.open.len();
        let (size, height) = match kind {
            Kind::SequenceStart | Kind::MappingStart => {
                if level + 1 > MAX_DEPTH {
                    return Err(Exceeded::Depth);
                }
                self.count(1)?;
                if let Some(name) = &anchor {
                    // Open: an alias to it from inside would recurse.
                    self.define(name.clone(), None)?;
                }
                self.open.push(Frame {
                    anchor,
                    mapping: kind == Kind::MappingStart,
                    children: 0,
                    size: 1,
                    height: 1,
                });
                // Counted in its parent when it closes.
                return Ok(());
            }
            Kind::Alias => {
                let name = anchor.unwrap_or_default();
                match self.anchors.get(&name) {
                    Some(Some(node)) => {
                        let (size, height) = *node;
                        if level + height > MAX_DEPTH {
                            return Err(Exceeded::Depth);
                        }
                        self.alias_nodes = self.alias_nodes.saturating_add(size);
                        if self.alias_nodes > MAX_ALIAS_NODES {
                            return Err(Exceeded::AliasNodes);
                        }
                        (size, height)
                    }
                    Some(None) => {
                        let name = String::from_utf8_lossy(&name).into_owned();
                        return Err(Exceeded::RecursiveAlias(name));
                    }
                    // An unknown anchor: serde_yaml_ng reports it.
                    None => (1, 0),
                }
            }
            _ => {
                if let Some(name) = anchor {
                    self.define(name, Some((1, 0)))?;
                }
                (1, 0)
            }
        };
        self.count(size)?;
        if let Some(parent) = self.open.last_mut() {
            parent.size = parent.size.saturating_add(size);
            parent.height = parent.height.max(height + 1);
        }
        Ok(())
    }

    /// Counts `n` more nodes in the document.
    fn count(&mut self, n: u64) -> Result<(), Exceeded> {
        self.nodes = self.nodes.saturating_add(n);
        match self.nodes > MAX_DECLARATIVE_NODES {
            true => Err(Exceeded::Nodes(MAX_DECLARATIVE_NODES)),
            false => Ok(()),
        }
    }

    fn close(&mut self) {
        let Some(done) = self.open.pop() else {
            return;
        };
        if let Some(name) = done.anchor {
            self.anchors.insert(name, Some((done.size, done.height)));
        }
        if let Some(parent) = self.open.last_mut() {
            parent.size = parent.size.saturating_add(done.size);
            parent.height = parent.height.max(done.height + 1);
        }
    }

    fn define(&mut self, name: Vec<u8>, node: Option<(u64, usize)>) -> Result<(), Exceeded> {
        self.anchors_defined += 1;
        if self.anchors_defined > MAX_ANCHORS {
            return Err(Exceeded::Anchors);
        }
        self.anchors.insert(name, node);
        Ok(())
    }
}

/// libyaml's event parser over borrowed text.
struct Parser<'a> {
    /// Boxed: libyaml keeps a pointer to the parser in it (`read_handler_data`),
    /// so it must not move.
    sys: *mut sys::yaml_parser_t,
    done: bool,
    _input: PhantomData<&'a [u8]>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Option<Parser<'a>> {
        let boxed: Box<MaybeUninit<sys::yaml_parser_t>> = Box::new(MaybeUninit::uninit());
        let ptr = Box::into_raw(boxed).cast::<sys::yaml_parser_t>();
        // SAFETY: `ptr` is a live, exclusively owned allocation; libyaml zeroes
        // and initialises it. `input` outlives the parser (the lifetime 'a),
        // as `yaml_parser_set_input_string` requires.
        unsafe {
            if sys::yaml_parser_initialize(ptr).fail {
                drop(Box::from_raw(ptr.cast::<MaybeUninit<sys::yaml_parser_t>>()));
                return None;
            }
            sys::yaml_parser_set_encoding(ptr, sys::YAML_UTF8_ENCODING);
            sys::yaml_parser_set_input_string(ptr, input.as_ptr(), input.len() as u64);
        }
        Some(Parser {
            sys: ptr,
            done: false,
            _input: PhantomData,
        })
    }

    /// The next event; `None` after the stream's end or a syntax error (the
    /// parser is not called again after either).
    fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let mut raw = MaybeUninit::<sys::yaml_event_t>::uninit();
        // SAFETY: the parser is initialised; a successful `yaml_parser_parse`
        // initialises the event, which is read (copying the anchor out) and
        // then freed with `yaml_event_delete`. A failed one leaves nothing to
        // free.
        unsafe {
            if sys::yaml_parser_parse(self.sys, raw.as_mut_ptr()).fail {
                self.done = true;
                return None;
            }
            let ev = raw.as_mut_ptr();
            let (kind, anchor) = match (*ev).type_ {
                sys::YAML_SCALAR_EVENT => (Kind::Scalar, (*ev).data.scalar.anchor),
                sys::YAML_ALIAS_EVENT => (Kind::Alias, (*ev).data.alias.anchor),
                sys::YAML_SEQUENCE_START_EVENT => {
                    (Kind::SequenceStart, (*ev).data.sequence_start.anchor)
                }
                sys::YAML_MAPPING_START_EVENT => {
                    (Kind::MappingStart, (*ev).data.mapping_start.anchor)
                }
                sys::YAML_SEQUENCE_END_EVENT | sys::YAML_MAPPING_END_EVENT => {
                    (Kind::CollectionEnd, std::ptr::null_mut())
                }
                // No event: libyaml's answer once the stream has ended.
                sys::YAML_STREAM_END_EVENT | sys::YAML_NO_EVENT => {
                    (Kind::End, std::ptr::null_mut())
                }
                _ => (Kind::Other, std::ptr::null_mut()),
            };
            let anchor = (!anchor.is_null()).then(|| {
                CStr::from_ptr(anchor.cast::<std::ffi::c_char>())
                    .to_bytes()
                    .to_vec()
            });
            let mark = (*ev).start_mark;
            sys::yaml_event_delete(ev);
            if kind == Kind::End {
                self.done = true;
            }
            Some(Event {
                kind,
                anchor,
                line: mark.line as usize,
                column: mark.column as usize,
            })
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, freed once here, then its box.
        unsafe {
            sys::yaml_parser_delete(self.sys);
            drop(Box::from_raw(
                self.sys.cast::<MaybeUninit<sys::yaml_parser_t>>(),
            ));
        }
    }
}
