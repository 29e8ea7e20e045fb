//! Node counters (nginx stub_status semantics, as Kong's `/status` reports them)
//! and readiness.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use serde_json::{json, Value};

/// One cache line per hot counter, so cores do not fight over a line.
#[derive(Default)]
#[repr(align(64))]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    fn sub(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

#[derive(Default)]
pub struct Status {
    accepted: Counter,
    handled: Counter,
    active: Counter,
    reading: Counter,
    writing: Counter,
    requests: Counter,
    pp_missing: Counter,
    pp_malformed: Counter,
    pp_timeout: Counter,
    pp_closed: Counter,
    tls_failed: Counter,
    draining: AtomicBool,
}

/// Held for the life of a connection.
pub struct ConnectionGuard<'a>(&'a Status);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.active.sub();
    }
}

/// Held while a connection reads its PROXY header or TLS handshake.
pub struct ReadingGuard<'a>(&'a Status);

impl Drop for ReadingGuard<'_> {
    fn drop(&mut self) {
        self.0.reading.sub();
    }
}

/// Held while a request is being processed and answered.
pub struct RequestGuard<'a>(&'a Status);

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.0.writing.sub();
    }
}

impl Status {
    pub fn connection(&self) -> ConnectionGuard<'_> {
        self.accepted.add();
        self.active.add();
        ConnectionGuard(self)
    }

    pub fn reading(&self) -> ReadingGuard<'_> {
        self.reading.add();
        ReadingGuard(self)
    }

    /// The connection got past its PROXY header and handshake.
    pub fn handled(&self) {
        self.handled.add();
    }

    pub fn request(&self) -> RequestGuard<'_> {
        self.requests.add();
        self.writing.add();
        RequestGuard(self)
    }

    /// A connection closed for a bad PROXY header; `kind` as ProxyError::kind.
    pub fn proxy_protocol_rejected(&self, kind: &str) {
        match kind {
            "missing" => self.pp_missing.add(),
            "malformed" => self.pp_malformed.add(),
            "timeout" => self.pp_timeout.add(),
            _ => self.pp_closed.add(),
        }
    }

    pub fn tls_failed(&self) {
        self.tls_failed.add();
    }

    pub fn active_connections(&self) -> u64 {
        self.active.get()
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Kong's `/status` shape, plus the PROXY protocol rejections.
    pub fn to_json(&self, database_reachable: bool) -> Value {
        let active = self.active.get();
        let reading = self.reading.get();
        let writing = self.writing.get();
        json!({
            "server": {
                "connections_accepted": self.accepted.get(),
                "connections_active": active,
                "connections_handled": self.handled.get(),
                "connections_reading": reading,
                "connections_writing": writing,
                "connections_waiting": active.saturating_sub(reading + writing),
                "total_requests": self.requests.get(),
            },
            "database": { "reachable": database_reachable },
            "proxy_protocol": {
                "rejected_missing": self.pp_missing.get(),
                "rejected_malformed": self.pp_malformed.get(),
                "rejected_timeout": self.pp_timeout.get(),
                "rejected_closed": self.pp_closed.get(),
            },
            "tls": { "handshake_failures": self.tls_failed.get() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_balance_and_waiting_is_derived() {
        let s = Status::default();
        let c1 = s.connection();
        let _c2 = s.connection();
        let r = s.reading();
        let q = s.request();
        s.proxy_protocol_rejected("timeout");
        let v = s.to_json(true);
        assert_eq!(v["server"]["connections_active"], 2);
        assert_eq!(v["server"]["connections_waiting"], 0);
        assert_eq!(v["proxy_protocol"]["rejected_timeout"], 1);
        drop((r, q, c1));
        let v = s.to_json(false);
        assert_eq!(v["server"]["connections_active"], 1);
        assert_eq!(v["server"]["connections_waiting"], 1);
        assert_eq!(v["server"]["connections_accepted"], 2);
        assert_eq!(v["server"]["total_requests"], 1);
        assert_eq!(v["database"]["reachable"], false);
    }
}
