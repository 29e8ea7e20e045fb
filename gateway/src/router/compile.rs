//! Validation of one route and its compiled form.

use http::{HeaderName, Method};
use regex::{Regex, RegexBuilder};

use super::{parse_port, RouteRequest, RouterError};
use crate::model::Route;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostKind {
    Exact,
    /// `*.example.com`: the request host ends with the key `.example.com`.
    Suffix,
    /// `example.*`: the request host starts with the key `example.`.
    Prefix,
}

#[derive(Debug)]
pub(super) struct HostSpec {
    pub kind: HostKind,
    pub key: Box<[u8]>,
    pub port: Option<u16>,
}

#[derive(Debug)]
enum ValueRule {
    /// Lower-cased value.
    Equal(Box<str>),
    /// Case-insensitive, unanchored.
    Regex(regex::bytes::Regex),
}

#[derive(Debug)]
struct HeaderRule {
    name: HeaderName,
    values: Box<[ValueRule]>,
}

#[derive(Debug)]
pub(super) struct CompiledRoute {
    /// Kong priority in the high 64 bits, `!index` in the low ones: the
    /// greater rank wins, and ranks are unique.
    pub rank: u128,
    pub hosts: Box<[HostSpec]>,
    /// Anchored at the start, in declared order.
    pub regexes: Box<[Regex]>,
    pub plain: Box<[Box<str>]>,
    methods: Box<[Method]>,
    headers: Box<[HeaderRule]>,
}

impl CompiledRoute {
    pub fn has_paths(&self) -> bool {
        !self.regexes.is_empty() || !self.plain.is_empty()
    }

    /// Checks everything but the host (the caller's bucket did) and returns
    /// the matched path length.
    #[inline]
    pub fn check(&self, req: &RouteRequest<'_>) -> Option<usize> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method) {
            return None;
        }
        let len = self.match_path(req.path)?;
        for rule in self.headers.iter() {
            let mut values = req.headers.get_all(&rule.name).iter();
            if !values.any(|v| rule.values.iter().any(|r| r.matches(v.as_bytes()))) {
                return None;
            }
        }
        Some(len)
    }

    fn match_path(&self, path: &str) -> Option<usize> {
        if !self.has_paths() {
            return Some(0);
        }
        if let Some(m) = self.regexes.iter().find_map(|re| re.find(path)) {
            return Some(m.end());
        }
        let p = self
            .plain
            .iter()
            .find(|p| path.as_bytes().starts_with(p.as_bytes()))?;
        Some(p.len())
    }
}

impl ValueRule {
    fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueRule::Regex(re) => re.is_match(value),
            ValueRule::Equal(lower) if value.is_ascii() => {
                value.eq_ignore_ascii_case(lower.as_bytes())
            }
            ValueRule::Equal(lower) => std::str::from_utf8(value)
                .is_ok_and(|s| s.chars().flat_map(char::to_lowercase).eq(lower.chars())),
        }
    }
}

fn lower(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

pub(super) fn compile(index: usize, route: &Route) -> Result<CompiledRoute, RouterError> {
    let err = |field: String, message: String| RouterError {
        route: match &route.name {
            Some(name) if !name.is_empty() => name.clone(),
            _ => route.id.to_string(),
        },
        field,
        message,
    };
    if route.methods.is_empty()
        && route.hosts.is_empty()
        && route.paths.is_empty()
        && route.headers.is_empty()
    {
        return Err(err(
            "@entity".into(),
            "must set one of methods, hosts, headers, paths".into(),
        ));
    }

    let mut methods = Vec::with_capacity(route.methods.len());
    for (i, m) in route.methods.iter().enumerate() {
        let ok = !m.is_empty() && m.bytes().all(|c| is_tchar(c) && !c.is_ascii_lowercase());
        match Method::from_bytes(m.as_bytes()) {
            Ok(method) if ok => methods.push(method),
            _ => {
                return Err(err(
                    format!("methods[{i}]"),
                    format!("invalid method `{m}`: must be an upper-case token"),
                ))
            }
        }
    }

    let mut hosts = Vec::with_capacity(route.hosts.len());
    for (i, h) in route.hosts.iter().enumerate() {
        hosts.push(
            parse_host(h)
                .map_err(|m| err(format!("hosts[{i}]"), format!("invalid host `{h}`: {m}")))?,
        );
    }

    let (mut regexes, mut plain) = (Vec::new(), Vec::new());
    for (i, p) in route.paths.iter().enumerate() {
        if let Some(src) = p.strip_prefix('~') {
            regexes
                .push(path_regex(src).map_err(|m| {
                    err(format!("paths[{i}]"), format!("invalid regex `{p}`: {m}"))
                })?);
        } else if p.starts_with('/') {
            plain.push(Box::<str>::from(p.as_str()));
        } else {
            return Err(err(
                format!("paths[{i}]"),
                format!("invalid path `{p}`: must start with `/` or `~`"),
            ));
        }
    }

    let mut headers = Vec::with_capacity(route.headers.len());
    for (key, values) in &route.headers {
        let field = format!("headers.{key}");
        let name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| err(field.clone(), format!("invalid header name `{key}`")))?;
        if name == http::header::HOST {
            return Err(err(
                field,
                "cannot match on the `host` header: use `hosts`".into(),
            ));
        }
        if values.is_empty() {
            return Err(err(field, "must have at least one value".into()));
        }
        let mut rules = Vec::with_capacity(values.len());
        for (j, v) in values.iter().enumerate() {
            rules.push(match v.strip_prefix("~*") {
                Some(src) => ValueRule::Regex(
                    regex::bytes::RegexBuilder::new(src)
                        .case_insensitive(true)
                        .build()
                        .map_err(|e| {
                            err(format!("{field}[{j}]"), format!("invalid regex `{v}`: {e}"))
                        })?,
                ),
                None => ValueRule::Equal(lower(v).into()),
            });
        }
        headers.push(HeaderRule {
            name,
            values: rules.into(),
        });
    }

    let plain_host_only = !route.hosts.is_empty() && !route.hosts.iter().any(|h| h.contains('*'));
    let max_plain = plain.iter().map(|p| p.len()).max().unwrap_or(0);
    let prio = priority(route, !regexes.is_empty(), plain_host_only, max_plain);
    Ok(CompiledRoute {
        rank: (u128::from(prio) << 64) | u128::from(u64::MAX - index as u64),
        hosts: hosts.into(),
        regexes: regexes.into(),
        plain: plain.into(),
        methods: methods.into(),
        headers: headers.into(),
    })
}

/// Kong's priority: weight(3) | plain host(1) | headers(8) | regex(1) |
/// regex_priority(32) | max plain path length(19), high bits first.
pub(super) fn priority(
    route: &Route,
    regex_url: bool,
    plain_host_only: bool,
    max_plain: usize,
) -> u64 {
    let fields = [
        !route.methods.is_empty(),
        !route.hosts.is_empty(),
        !route.paths.is_empty(),
        !route.headers.is_empty(),
    ];
    let weight = fields.iter().filter(|set| **set).count() as u64;
    let header_count = route.headers.len().min(255) as u64;
    // Offset so that negative priorities sort below zero.
    let regex_priority = if regex_url {
        (route.regex_priority.clamp(i32::MIN.into(), i32::MAX.into()) - i64::from(i32::MIN)) as u64
    } else {
        0
    };
    (weight << 61)
        | (u64::from(plain_host_only) << 60)
        | (header_count << 52)
        | (u64::from(regex_url) << 51)
        | (regex_priority << 19)
        | (max_plain.min(0x7FFFF) as u64)
}

pub(super) fn path_regex(src: &str) -> Result<Regex, String> {
    // A stray `)` could close the wrapping group: check such patterns alone.
    if groups(src).is_none() {
        Regex::new(src).map_err(|e| e.to_string())?;
    }
    match RegexBuilder::new(&format!("^(?:{src})")).build() {
        Ok(re) => Ok(re),
        Err(e) => Err(Regex::new(src).err().unwrap_or(e).to_string()),
    }
}

/// Whether `src` has a top-level `|`; `None` when parentheses do not balance
/// or a class or comment could hide one.
fn groups(src: &str) -> Option<bool> {
    if src.contains(['[', '#']) {
        return None;
    }
    let (mut depth, mut top_alternation, mut chars) = (0u32, false, src.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1)?,
            '|' => top_alternation |= depth == 0,
            _ => {}
        }
    }
    (depth == 0).then_some(top_alternation)
}

/// Literal text every match of a compiled path regex starts with, when that
/// is easy to tell; "" otherwise.
pub(super) fn regex_literal(re: &Regex) -> &str {
    let src = re.as_str();
    let src = &src[4..src.len() - 1]; // inside `^(?:` `)`
    if src.contains('|') && groups(src) != Some(false) {
        return "";
    }
    let end = src
        .find(|c: char| "\\.+*?()[]{}^$|#".contains(c))
        .unwrap_or(src.len());
    match src[end..].chars().next() {
        // A quantifier applies to the last character.
        Some('?' | '*' | '+' | '{') => {
            &src[..src[..end].char_indices().last().map_or(0, |(i, _)| i)]
        }
        _ => &src[..end],
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn parse_host(raw: &str) -> Result<HostSpec, &'static str> {
    let host = raw.to_ascii_lowercase();
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or("unclosed `[`")?;
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return Err("invalid IPv6 address");
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("junk after `]`")?),
        };
        (&host[..addr.len() + 2], port)
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host.as_str(), None),
        }
    };
    let port = match port {
        Some(p) => Some(parse_port(p.as_bytes()).ok_or("port must be a number from 0 to 65535")?),
        None => None,
    };
    if name.starts_with('[') {
        return Ok(HostSpec {
            kind: HostKind::Exact,
            key: name.as_bytes().into(),
            port,
        });
    }
    if name.is_empty() {
        return Err("empty host name");
    }
    let labels: Vec<&str> = name.split('.').collect();
    let mut kind = HostKind::Exact;
    for (i, label) in labels.iter().enumerate() {
        if *label == "*" {
            if kind != HostKind::Exact {
                return Err("only one wildcard is allowed");
            }
            if labels.len() < 2 || (i != 0 && i != labels.len() - 1) {
                return Err("a wildcard must be the whole leftmost or rightmost label");
            }
            kind = if i == 0 {
                HostKind::Suffix
            } else {
                HostKind::Prefix
            };
        } else if label.is_empty() {
            return Err("empty label");
        } else if label.contains('*') {
            return Err("a wildcard must be the whole leftmost or rightmost label");
        } else if !label
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err("invalid character");
        }
    }
    let key = match kind {
        HostKind::Exact => name,
        HostKind::Suffix => &name[1..],
        HostKind::Prefix => &name[..name.len() - 1],
    };
    Ok(HostSpec {
        kind,
        key: key.as_bytes().into(),
        port,
    })
}
