use std::collections::BTreeMap;

use http::{HeaderMap, HeaderValue, Method};
use uuid::Uuid;

use super::*;
use crate::model::{PathHandling, Protocol, Route};

fn route(name: &str) -> Route {
    Route {
        id: Uuid::from_u128(1),
        name: Some(name.into()),
        protocols: vec![Protocol::Http, Protocol::Https],
        methods: vec![],
        hosts: vec![],
        paths: vec![],
        headers: BTreeMap::new(),
        https_redirect_status_code: 426,
        regex_priority: 0,
        strip_path: true,
        path_handling: PathHandling::V0,
        preserve_host: false,
        request_buffering: true,
        response_buffering: true,
        service: None,
        tags: vec![],
        created_at: 0,
        updated_at: 0,
    }
}

fn paths(name: &str, p: &[&str]) -> Route {
    Route {
        paths: p.iter().map(|s| s.to_string()).collect(),
        ..route(name)
    }
}

fn hosts(name: &str, h: &[&str]) -> Route {
    Route {
        hosts: h.iter().map(|s| s.to_string()).collect(),
        ..route(name)
    }
}

fn header(mut r: Route, name: &str, values: &[&str]) -> Route {
    r.headers
        .insert(name.into(), values.iter().map(|s| s.to_string()).collect());
    r
}

/// Request: method, host, path, headers.
struct Req(Method, &'static str, &'static str, HeaderMap);

fn get(host: &'static str, path: &'static str) -> Req {
    Req(Method::GET, host, path, HeaderMap::new())
}

impl Req {
    fn header(mut self, name: &'static str, value: &'static str) -> Req {
        self.3
            .append(name, HeaderValue::from_bytes(value.as_bytes()).unwrap());
        self
    }
    fn method(mut self, m: Method) -> Req {
        self.0 = m;
        self
    }
}

fn find(router: &Router, r: &Req) -> Option<(usize, usize)> {
    let req = RouteRequest {
        method: &r.0,
        host: r.1,
        path: r.2,
        headers: &r.3,
    };
    router.find(&req).map(|m| (m.route, m.matched_path_len))
}

fn build(routes: Vec<Route>) -> Router {
    Router::build(&routes).unwrap()
}

fn error(r: Route) -> String {
    Router::build(&[r]).unwrap_err().to_string()
}

#[test]
fn plain_prefix_is_a_byte_prefix() {
    let r = build(vec![paths("a", &["/foo"])]);
    assert_eq!(find(&r, &get("", "/foo")), Some((0, 4)));
    assert_eq!(find(&r, &get("", "/foo/bar")), Some((0, 4)));
    assert_eq!(find(&r, &get("", "/foobar")), Some((0, 4)));
    assert_eq!(find(&r, &get("", "/fo")), None);
    assert_eq!(find(&r, &get("", "/Foo")), None);
    assert_eq!(find(&r, &get("", "/x/foo")), None);
}

#[test]
fn regex_is_anchored_at_the_start_only() {
    let r = build(vec![
        paths("a", &[r"~/users/\d+"]),
        paths("alt", &["~/x|/y"]),
    ]);
    assert_eq!(find(&r, &get("", "/users/42/posts")), Some((0, 9)));
    assert_eq!(find(&r, &get("", "/api/users/42")), None);
    // The whole alternation is anchored.
    assert_eq!(find(&r, &get("", "/y/1")), Some((1, 2)));
    assert_eq!(find(&r, &get("", "/a/y")), None);
    let named = build(vec![paths("n", &[r"~/v(?<ver>\d)/", r"~/w(?P<ver>\d)/"])]);
    assert_eq!(find(&named, &get("", "/v1/x")), Some((0, 4)));
    assert_eq!(find(&named, &get("", "/w2/x")), Some((0, 4)));
}

#[test]
fn regex_paths_are_tried_before_plain_ones() {
    let r = build(vec![paths("a", &["/api", "~/api/v[0-9]+", "/api/v1/long"])]);
    assert_eq!(find(&r, &get("", "/api/v12/x")), Some((0, 8)));
    assert_eq!(find(&r, &get("", "/api/other")), Some((0, 4)));
    // Plain paths in declared order, not longest first.
    let r = build(vec![paths("b", &["/a", "/a/b"])]);
    assert_eq!(find(&r, &get("", "/a/b/c")), Some((0, 2)));
}

#[test]
fn regex_priority_orders_regex_routes() {
    let mut low = paths("low", &["~/a"]);
    low.regex_priority = -5;
    let zero = paths("zero", &["~/a/b"]);
    let mut high = paths("high", &["~/a/b/c"]);
    high.regex_priority = 10;
    let r = build(vec![low.clone(), zero.clone(), high.clone()]);
    assert_eq!(find(&r, &get("", "/a/b/c")), Some((2, 6)));
    assert_eq!(find(&r, &get("", "/a/b")), Some((1, 4)));
    assert_eq!(find(&r, &get("", "/a")), Some((0, 2)));
    // A regex route beats a longer plain prefix of the same weight.
    let r = build(vec![paths("plain", &["/a/b/c/d"]), low]);
    assert_eq!(find(&r, &get("", "/a/b/c/d")), Some((1, 2)));
}

#[test]
fn many_regex_routes_use_a_set() {
    // No literal prefix: all in one group with a `RegexSet`.
    let mut routes: Vec<Route> = (0..50)
        .map(|i| paths("r", &[&format!("~(?:/r{i})/[a-z]+$")]))
        .collect();
    routes[7].regex_priority = 3;
    routes.push(paths("catch", &["~/r7/"]));
    let r = build(routes);
    assert!(r.any_host.has_regex_set());
    assert_eq!(find(&r, &get("", "/r30/abc")), Some((30, 8)));
    assert_eq!(find(&r, &get("", "/r7/abc")), Some((7, 7)));
    assert_eq!(find(&r, &get("", "/r7/ABC")), Some((50, 4)));
    assert_eq!(find(&r, &get("", "/r30/1")), None);
    // More patterns than one set holds.
    let mut routes: Vec<Route> = (0..600)
        .map(|i| paths("c", &[&format!(r"~(?:/c{i})/\d+$")]))
        .collect();
    routes[599].regex_priority = 1;
    routes[599].paths.push(r"~(?:/c)5\d\d/".into());
    let r = build(routes);
    assert_eq!(find(&r, &get("", "/c550/1")), Some((599, 6)));
    assert_eq!(find(&r, &get("", "/c450/1")), Some((450, 7)));
    assert_eq!(find(&r, &get("", "/c50/1")), Some((50, 6)));
    // Many routes under one literal.
    let routes: Vec<Route> = (0..20)
        .map(|i| paths("l", &[&format!(r"~/api/(?:v{i})/\d+")]))
        .collect();
    let r = build(routes);
    assert_eq!(find(&r, &get("", "/api/v13/7")), Some((13, 10)));
    assert_eq!(find(&r, &get("", "/api/v13/x")), None);
}

#[test]
fn regex_literal_prefixes() {
    let lit = |p: &str| compile::regex_literal(&compile::path_regex(p).unwrap()).to_string();
    assert_eq!(lit(r"/users/\d+"), "/users/");
    assert_eq!(lit("/ab?c"), "/a");
    assert_eq!(lit("/ab{2}"), "/a");
    assert_eq!(lit("/a|/b"), "");
    assert_eq!(lit("/a(b|c)"), "/a");
    assert_eq!(lit("/a[|]"), "");
    assert_eq!(lit(r"/a\(|b"), "");
    assert_eq!(lit("(?i)/a"), "");
    assert_eq!(lit("/é+x"), "/");
    assert_eq!(lit("/plain"), "/plain");
    let r = build(vec![
        paths("alt", &["~/a/x|/b"]),
        paths("lit", &["~/a/(x|y)"]),
    ]);
    assert_eq!(find(&r, &get("", "/b")), Some((0, 2)));
    assert_eq!(find(&r, &get("", "/a/y")), Some((1, 4)));
}

#[test]
fn longer_prefix_wins_regardless_of_order() {
    let r = build(vec![
        paths("short", &["/"]),
        paths("long", &["/api/v1"]),
        paths("mid", &["/api"]),
    ]);
    assert_eq!(find(&r, &get("", "/api/v1/x")), Some((1, 7)));
    assert_eq!(find(&r, &get("", "/api/v2")), Some((2, 4)));
    assert_eq!(find(&r, &get("", "/other")), Some((0, 1)));
}

#[test]
fn hosts_and_ports() {
    let r = build(vec![
        hosts("any-port", &["example.com"]),
        hosts("port", &["example.com:8080"]),
    ]);
    assert_eq!(find(&r, &get("example.com", "/")), Some((0, 0)));
    assert_eq!(find(&r, &get("example.com:9000", "/")), Some((0, 0)));
    // Both match on :8080; equal priority, the older route wins.
    assert_eq!(find(&r, &get("example.com:8080", "/")), Some((0, 0)));
    let r = build(vec![hosts("port", &["example.com:8080"])]);
    assert_eq!(find(&r, &get("example.com:8080", "/")), Some((0, 0)));
    assert_eq!(find(&r, &get("example.com", "/")), None);
    assert_eq!(find(&r, &get("example.com:80", "/")), None);
    assert_eq!(find(&r, &get("", "/")), None);
    let r = build(vec![hosts("v6", &["[::1]:8000", "[fe80::1]"])]);
    assert_eq!(find(&r, &get("[::1]:8000", "/")), Some((0, 0)));
    assert_eq!(find(&r, &get("[::1]", "/")), None);
    assert_eq!(find(&r, &get("[FE80::1]:443", "/")), Some((0, 0)));
}

#[test]
fn hosts_are_case_insensitive() {
    let r = build(vec![hosts("a", &["Example.COM"])]);
    assert_eq!(find(&r, &get("EXAMPLE.com", "/")), Some((0, 0)));
    assert_eq!(find(&r, &get("example.com.", "/")), Some((0, 0)));
    assert_eq!(find(&r, &get("example.co", "/")), None);
    let long: &'static str = Box::leak(format!("{}.example.com", "A".repeat(300)).into_boxed_str());
    let r = build(vec![hosts("w", &["*.example.com"])]);
    assert_eq!(find(&r, &get(long, "/")), Some((0, 0)));
}

#[test]
fn wildcard_hosts() {
    let r = build(vec![
        hosts("left", &["*.example.com"]),
        hosts("right", &["example.*"]),
    ]);
    assert_eq!(find(&r, &get("a.example.com", "/")), Some((0, 0)));
    assert_eq!(find(&r, &get("a.b.example.com:443", "/")), Some((0, 0)));
    // `*.example.com` needs a label before `.example.com`; `example.*` matches.
    assert_eq!(find(&r, &get("example.com", "/")), Some((1, 0)));
    assert_eq!(find(&r, &get("badexample.com", "/")), None);
    assert_eq!(find(&r, &get("example", "/")), None);
    assert_eq!(find(&r, &get("example.org", "/")), Some((1, 0)));
    assert_eq!(find(&r, &get("example.co.uk", "/")), Some((1, 0)));
    let r = build(vec![hosts("left", &["*.example.com"])]);
    assert_eq!(find(&r, &get("example.com", "/")), None);
    assert_eq!(find(&r, &get("xexample.com", "/")), None);
    // An exact host beats a wildcard (plain host bit), whatever the order.
    let r = build(vec![
        hosts("wild", &["*.example.com"]),
        hosts("exact", &["api.example.com"]),
    ]);
    assert_eq!(find(&r, &get("api.example.com", "/")), Some((1, 0)));
    let r = build(vec![hosts("wild-port", &["*.example.com:8443"])]);
    assert_eq!(find(&r, &get("a.example.com:8443", "/")), Some((0, 0)));
    assert_eq!(find(&r, &get("a.example.com", "/")), None);
}

#[test]
fn headers_match_case_insensitively() {
    let r = build(vec![header(route("h"), "X-Version", &["V1", "v2"])]);
    assert_eq!(
        find(&r, &get("", "/").header("x-version", "v1")),
        Some((0, 0))
    );
    assert_eq!(
        find(&r, &get("", "/").header("X-VERSION", "V2")),
        Some((0, 0))
    );
    assert_eq!(find(&r, &get("", "/").header("x-version", "v3")), None);
    assert_eq!(find(&r, &get("", "/")), None);
    // Any occurrence may match.
    assert_eq!(
        find(
            &r,
            &get("", "/")
                .header("x-version", "v9")
                .header("x-version", "v2")
        ),
        Some((0, 0))
    );
    // Every header must match.
    let both = build(vec![header(header(route("h"), "a", &["1"]), "b", &["2"])]);
    assert_eq!(find(&both, &get("", "/").header("a", "1")), None);
    assert_eq!(
        find(&both, &get("", "/").header("a", "1").header("b", "2")),
        Some((0, 0))
    );
    let r = build(vec![header(route("u"), "x-name", &["STRASSE-Ä"])]);
    assert_eq!(
        find(&r, &get("", "/").header("x-name", "strasse-\u{e4}")),
        Some((0, 0))
    );
}

#[test]
fn header_regex_is_unanchored_and_case_insensitive() {
    let r = build(vec![header(route("re"), "user-agent", &[r"~*Mobile/\d+"])]);
    assert_eq!(
        find(&r, &get("", "/").header("user-agent", "Foo MOBILE/12 Bar")),
        Some((0, 0))
    );
    assert_eq!(
        find(&r, &get("", "/").header("user-agent", "desktop")),
        None
    );
    // More headers beat fewer.
    let r = build(vec![
        header(route("one"), "a", &["1"]),
        header(header(route("two"), "a", &["~*^1$"]), "b", &["~*."]),
    ]);
    assert_eq!(
        find(&r, &get("", "/").header("a", "1").header("b", "x")),
        Some((1, 0))
    );
    assert_eq!(find(&r, &get("", "/").header("a", "1")), Some((0, 0)));
}

#[test]
fn methods() {
    let r = build(vec![Route {
        methods: vec!["GET".into(), "POST".into()],
        ..paths("m", &["/"])
    }]);
    assert_eq!(find(&r, &get("", "/x")), Some((0, 1)));
    assert_eq!(find(&r, &get("", "/x").method(Method::POST)), Some((0, 1)));
    assert_eq!(find(&r, &get("", "/x").method(Method::DELETE)), None);
}

#[test]
fn match_weight_beats_path_length() {
    let host_and_path = Route {
        hosts: vec!["example.com".into()],
        ..paths("hp", &["/"])
    };
    let r = build(vec![paths("long", &["/a/very/long/path"]), host_and_path]);
    assert_eq!(
        find(&r, &get("example.com", "/a/very/long/path")),
        Some((1, 1))
    );
    assert_eq!(
        find(&r, &get("other.com", "/a/very/long/path")),
        Some((0, 17))
    );
    let method_path = Route {
        methods: vec!["GET".into()],
        ..paths("mp", &["/a"])
    };
    let r = build(vec![paths("long", &["/a/b/c"]), method_path]);
    assert_eq!(find(&r, &get("", "/a/b/c")), Some((1, 2)));
}

#[test]
fn ties_go_to_the_oldest_route() {
    let r = build(vec![
        paths("a", &["/x"]),
        paths("b", &["/x"]),
        paths("c", &["/y", "/x"]),
    ]);
    assert_eq!(find(&r, &get("", "/x")), Some((0, 2)));
    let r = build(vec![paths("c", &["/y", "/x"]), paths("a", &["/x"])]);
    assert_eq!(find(&r, &get("", "/x")), Some((0, 2)));
}

#[test]
fn priority_bits() {
    let mut r = Route {
        methods: vec!["GET".into()],
        hosts: vec!["a.com".into()],
        ..paths("p", &["/abc", "~/x"])
    };
    r = header(r, "x", &["1"]);
    r.regex_priority = -1;
    let p = compile::priority(&r, true, true, 4);
    assert_eq!(p >> 61, 4);
    assert_eq!((p >> 60) & 1, 1);
    assert_eq!((p >> 52) & 0xFF, 1);
    assert_eq!((p >> 51) & 1, 1);
    assert_eq!((p >> 19) & 0xFFFF_FFFF, 0x7FFF_FFFF);
    assert_eq!(p & 0x7FFFF, 4);
    r.regex_priority = i64::MAX;
    assert_eq!(
        (compile::priority(&r, true, true, 4) >> 19) & 0xFFFF_FFFF,
        0xFFFF_FFFF
    );
    assert_eq!(
        (compile::priority(&r, false, true, 4) >> 19) & 0xFFFF_FFFF,
        0
    );
}

#[test]
fn validation_errors() {
    assert_eq!(
        error(route("empty")),
        "route `empty`: @entity: must set one of methods, hosts, headers, paths"
    );
    let e = error(paths("bad", &["/ok", "~/a("]));
    assert!(
        e.starts_with("route `bad`: paths[1]: invalid regex `~/a(`: "),
        "{e}"
    );
    assert!(error(paths("stray", &["~a)(b"])).contains("invalid regex"));
    assert_eq!(
        error(paths("p", &["foo"])),
        "route `p`: paths[0]: invalid path `foo`: must start with `/` or `~`"
    );
    let mut anonymous = paths("", &[""]);
    anonymous.name = None;
    assert!(error(anonymous).starts_with("route `00000000-0000-0000-0000-000000000001`: paths[0]"));
    for bad in [
        "",
        "a.*.com",
        "*",
        "*.*.com",
        "a*.com",
        "ex ample.com",
        "a..com",
        "a.com:x",
        "a.com:70000",
        "[::1",
    ] {
        let e = error(hosts("h", &["ok.com", bad]));
        assert!(
            e.starts_with(&format!("route `h`: hosts[1]: invalid host `{bad}`: ")),
            "{e}"
        );
    }
    let e = error(Route {
        methods: vec!["get".into()],
        ..route("m")
    });
    assert_eq!(
        e,
        "route `m`: methods[0]: invalid method `get`: must be an upper-case token"
    );
    assert!(error(Route {
        methods: vec!["".into()],
        ..route("m")
    })
    .contains("methods[0]"));
    assert_eq!(
        error(header(route("h"), "Host", &["a.com"])),
        "route `h`: headers.Host: cannot match on the `host` header: use `hosts`"
    );
    assert_eq!(
        error(header(route("h"), "bad name", &["1"])),
        "route `h`: headers.bad name: invalid header name `bad name`"
    );
    assert_eq!(
        error(header(route("h"), "x", &[])),
        "route `h`: headers.x: must have at least one value"
    );
    assert!(error(header(route("h"), "x", &["1", "~*("]))
        .starts_with("route `h`: headers.x[1]: invalid regex `~*(`"));
}

#[test]
fn router_is_send_sync_debug() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<Router>();
    let r = build(vec![paths("a", &["/"])]);
    assert_eq!(r.len(), 1);
    assert!(!r.is_empty());
    assert!(Router::build(&[]).unwrap().is_empty());
    assert!(format!("{r:?}").starts_with("Router { routes: 1"));
}

#[test]
fn ten_thousand_path_routes() {
    let mut routes: Vec<Route> = (0..10_000)
        .map(|i| paths("svc", &[&format!("/svc-{i}/")]))
        .collect();
    routes.push(paths("root", &["/"]));
    routes.push(Route {
        methods: vec!["POST".into()],
        ..paths("post", &["/svc-77/"])
    });
    let r = build(routes);
    assert_eq!(find(&r, &get("", "/svc-5000/x")), Some((5000, 10)));
    assert_eq!(find(&r, &get("", "/svc-1/")), Some((1, 7)));
    assert_eq!(find(&r, &get("", "/svc-10000/")), Some((10_000, 1)));
    assert_eq!(
        find(&r, &get("", "/svc-77/").method(Method::POST)),
        Some((10_001, 8))
    );
}

#[test]
fn ten_thousand_host_routes() {
    let mut routes: Vec<Route> = (0..10_000)
        .map(|i| hosts("h", &[&format!("host-{i}.example.com")]))
        .collect();
    routes.push(Route {
        hosts: vec!["host-42.example.com".into()],
        ..paths("hp", &["/api"])
    });
    routes.push(hosts("wild", &["*.example.com"]));
    let r = build(routes);
    assert_eq!(
        find(&r, &get("host-5000.example.com", "/")),
        Some((5000, 0))
    );
    assert_eq!(
        find(&r, &get("HOST-9999.example.com:8000", "/x")),
        Some((9999, 0))
    );
    assert_eq!(
        find(&r, &get("host-42.example.com", "/api/x")),
        Some((10_000, 4))
    );
    assert_eq!(find(&r, &get("nope.example.com", "/")), Some((10_001, 0)));
    assert_eq!(find(&r, &get("nope.example.org", "/")), None);
}
