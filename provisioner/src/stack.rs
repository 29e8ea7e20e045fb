//! The stack: the concerns in dependency waves.
