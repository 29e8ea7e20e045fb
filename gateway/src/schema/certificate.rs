//! Certificates: PEM chains and keys that must parse and belong together.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Map, Value};

use super::fields::{opt, Fields};
use super::net::is_hostname;

pub(super) fn validate(f: &mut Fields) -> Map<String, Value> {
    let mut out = Map::new();
    for k in ["cert", "key", "cert_alt", "key_alt"] {
        let v = if k.ends_with("_alt") {
            f.string(k)
        } else {
            f.required_string(k)
        };
        out.insert(k.into(), opt(v));
    }
    let snis = f.strings("snis").unwrap_or_default();
    // A set, not a scan of the ones before: a body may hold 100 000 names.
    let mut seen = std::collections::HashSet::with_capacity(snis.len());
    for s in &snis {
        let name = s.strip_prefix("*.").unwrap_or(s);
        let name = name.strip_suffix(".*").unwrap_or(name);
        if !is_hostname(name) {
            f.error("snis", format!("invalid sni '{s}'"));
        } else if !seen.insert(s.as_str()) {
            f.error("snis", format!("duplicate sni '{s}'"));
        }
    }
    out.insert("snis".into(), snis.into());
    out.insert("tags".into(), f.tags());

    let text = |k: &str| out.get(k).and_then(Value::as_str).map(str::to_owned);
    match (text("cert_alt"), text("key_alt")) {
        (Some(c), Some(k)) => check_pair(f, &c, &k, "cert_alt", "key_alt"),
        (None, None) if f.has_error("cert_alt") || f.has_error("key_alt") => {}
        (None, None) => {}
        _ => f.entity_error("all or none of these fields must be set: 'cert_alt', 'key_alt'"),
    }
    if let (Some(c), Some(k)) = (text("cert"), text("key")) {
        check_pair(f, &c, &k, "cert", "key");
    }
    out
}

/// Parses a PEM chain and key and checks the key is the first certificate's.
fn check_pair(f: &mut Fields, cert: &str, key: &str, cert_field: &str, key_field: &str) {
    let certs = match CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()
    {
        Ok(c) if c.is_empty() => {
            f.error(cert_field, "invalid certificate: no PEM certificate found");
            None
        }
        Ok(c) => Some(c),
        Err(e) => {
            f.error(cert_field, format!("invalid certificate: {e}"));
            None
        }
    };
    let key = match PrivateKeyDer::from_pem_slice(key.as_bytes()) {
        Ok(k) => Some(k),
        Err(e) => {
            f.error(key_field, format!("invalid key: {e}"));
            None
        }
    };
    let (Some(certs), Some(key)) = (certs, key) else {
        return;
    };
    let provider = rustls::crypto::ring::default_provider();
    if let Err(e) = rustls::sign::CertifiedKey::from_der(certs, key, &provider) {
        match e {
            rustls::Error::InconsistentKeys(_) => f.entity_error(match cert_field {
                "cert" => "certificate does not match key",
                _ => "alternative certificate does not match key",
            }),
            rustls::Error::InvalidCertificate(_) => {
                f.error(cert_field, format!("invalid certificate: {e}"))
            }
            e => f.error(key_field, format!("invalid key: {e}")),
        }
    }
}
