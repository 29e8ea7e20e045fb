use super::*;
use crate::model::{ForeignKey, Protocol};

const KONG_STYLE: &str = r#"
_format_version: "3.0"
services:
- name: example
  url: http://127.0.0.1:9000/base
  retries: 2
  routes:
  - name: r1
    paths: ["/api"]
    strip_path: false
- name: balanced
  host: backend
  port: 80
routes:
- name: top
  service: balanced
  hosts: ["*.example.com"]
  headers:
    x-version: v1
upstreams:
- name: backend
  healthchecks: {active: {type: http}}
  targets:
  - target: 127.0.0.1:9001
    weight: 50
  - target: "[::1]"
targets:
- target: localhost:9003
  upstream: backend
"#;

#[test]
fn kong_style_file_loads() {
    let doc = parse(KONG_STYLE).unwrap();
    assert_eq!(
        doc.route_location("r1"),
        Some("services[0] (name=example).routes[0] (name=r1)")
    );
    let e = doc.entities;
    assert_eq!(e.services.len(), 2);
    let s = &e.services[0];
    assert_eq!(
        (s.host.as_str(), s.port, s.path.as_deref()),
        ("127.0.0.1", 9000, Some("/base"))
    );
    assert_eq!((s.retries, s.read_timeout), (2, 60_000));
    assert_eq!(e.routes.len(), 2);
    assert_eq!(e.routes[0].service, Some(ForeignKey { id: s.id }));
    assert!(!e.routes[0].strip_path && e.routes[1].strip_path);
    assert_eq!(e.routes[1].service.unwrap().id, e.services[1].id);
    assert_eq!(e.routes[1].headers["x-version"], vec!["v1".to_string()]);
    assert_eq!(e.routes[1].protocols, vec![Protocol::Http, Protocol::Https]);
    let targets: Vec<_> = e
        .targets
        .iter()
        .map(|t| (t.target.as_str(), t.weight))
        .collect();
    assert_eq!(
        targets,
        [
            ("127.0.0.1:9001", 50),
            ("[::1]:8000", 100),
            ("localhost:9003", 100)
        ]
    );
    // Ids derived from names are stable, so every node agrees on them.
    assert_eq!(parse(KONG_STYLE).unwrap().entities, e);
}

fn error_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn errors_point_to_entity_and_field() {
    let e = error_of("_format_version: \"3.0\"\nservices:\n- name: a\n  host: x\n  prot: http\n");
    assert!(
        e.contains("services[0]") && e.contains("unknown field `prot`"),
        "{e}"
    );

    let e = error_of("_format_version: \"3.0\"\nservices:\n- name: a\n  url: ftp://x\n");
    assert!(
        e.starts_with("services[0] (name=a).url: `ftp` is not supported"),
        "{e}"
    );

    let e = error_of("_format_version: \"3.0\"\nservices:\n- name: a\n  host: x\n  routes:\n  - name: r\n    paths: [/a]\n    strip_path: maybe\n");
    assert!(e.contains("services[0].routes[0].strip_path"), "{e}");

    let e =
        error_of("_format_version: \"3.0\"\nroutes:\n- name: r\n  service: nope\n  paths: [/a]\n");
    assert!(
        e.starts_with("routes[0] (name=r).service: no such service"),
        "{e}"
    );

    let e = error_of(
        "_format_version: \"3.0\"\nservices:\n- {name: a, host: x}\n- {name: a, host: y}\n",
    );
    assert!(
        e.contains("services[1] (name=a).name: another service is named `a`"),
        "{e}"
    );

    let e = error_of("_format_version: \"1.1\"\n");
    assert!(e.starts_with("_format_version"), "{e}");

    let e = error_of(
        "_format_version: \"3.0\"\nupstreams:\n- name: u\n  targets:\n  - target: \"a:b:c\"\n",
    );
    assert!(e.contains("upstreams[0] (name=u).targets[0].target"), "{e}");

    let e = error_of("_format_version: \"3.0\"\nservices: [\n");
    assert!(e.contains("line"), "{e}");
}

#[test]
fn host_port_forms() {
    assert_eq!(split_host_port("a.b:80").unwrap(), ("a.b".into(), Some(80)));
    assert_eq!(split_host_port("::1").unwrap(), ("::1".into(), None));
    assert_eq!(
        split_host_port("[::1]:81").unwrap(),
        ("::1".into(), Some(81))
    );
    assert!(split_host_port("a:0").is_err());
    assert!(split_host_port("a:x").is_err());
    assert!(split_host_port("a:b:80").is_err());
    assert_eq!(format_host_port("::1", 80), "[::1]:80");
}

#[test]
fn routes_name_their_service_by_id_or_object() {
    let id = "6f9a1b6e-2c55-4c7c-9a7a-1f0a5b8f0c11";
    let text = format!(
        "_format_version: \"3.0\"\nservices:\n- {{id: {id}, host: x}}\nroutes:\n- {{name: a, service: {id}, paths: [/a]}}\n- {{name: b, service: {{id: {id}}}, paths: [/b]}}\n- {{name: a, service: {id}, paths: [/c]}}\n"
    );
    let e = error_of(&text);
    assert!(
        e.starts_with("routes[2] (name=a).name: another route is named `a`"),
        "{e}"
    );
    let doc = parse(&text.replace(
        "name: a, service: 6f9a1b6e-2c55-4c7c-9a7a-1f0a5b8f0c11, paths: [/c]",
        "name: c, service: 6f9a1b6e-2c55-4c7c-9a7a-1f0a5b8f0c11, paths: [/c]",
    ))
    .unwrap();
    assert!(doc
        .entities
        .routes
        .iter()
        .all(|r| r.service.unwrap().id.to_string() == id));
}

const PLUGGED: &str = r#"
_format_version: "3.0"
services:
- name: s
  host: backend
  plugins:
  - name: rate-limiting
    config: {minute: 5}
  routes:
  - name: r
    paths: [/a]
    plugins:
    - name: key-auth
consumers:
- username: alice
  tags: [team-a]
  plugins:
  - name: acl
    config: {allow: [x]}
- custom_id: c-2
plugins:
- name: cors
- name: rate-limiting
  route: r
  consumer: alice
  config: {hour: 10}
upstreams:
- name: backend
  targets:
  - target: 10.0.0.1
"#;

#[test]
fn consumers_and_plugins_load() {
    let e = parse(PLUGGED).unwrap().entities;
    let (s, r) = (&e.services[0], &e.routes[0]);
    assert_eq!(e.consumers.len(), 2);
    let alice = &e.consumers[0];
    assert_eq!(alice.tags, ["team-a"]);
    let scope: Vec<_> = e
        .plugins
        .iter()
        .map(|p| {
            let id = |fk: Option<ForeignKey>| fk.map(|f| f.id);
            (p.name.as_str(), id(p.service), id(p.route), id(p.consumer))
        })
        .collect();
    assert_eq!(
        scope,
        [
            ("rate-limiting", Some(s.id), None, None),
            ("key-auth", None, Some(r.id), None),
            ("acl", None, None, Some(alice.id)),
            ("cors", None, None, None),
            ("rate-limiting", None, Some(r.id), Some(alice.id)),
        ]
    );
    // rate-limiting is implemented: its defaults are filled.
    assert_eq!(e.plugins[0].config["minute"], 5);
    assert_eq!(e.plugins[0].config["policy"], "local");
    assert_eq!(parse(PLUGGED).unwrap().entities, e);
}

#[test]
fn new_kinds_errors_point_to_entity_and_field() {
    let base = "_format_version: \"3.0\"\n";
    let e = error_of(&format!(
        "{base}plugins:\n- name: cors\n- name: datadog\n- name: jwt\n  config: 5\n"
    ));
    assert_eq!(e, "plugins[2].config: expected a record");
    // An implemented plugin's config is checked with its schema.
    let e = error_of(&format!(
        "{base}plugins:\n- name: cors\n- name: request-size-limiting\n  config:\n    size_unit: pages\n"
    ));
    assert_eq!(
        e,
        "plugins[1].config.size_unit: expected one of: megabytes, kilobytes, bytes"
    );
    let e = error_of(&format!("{base}plugins:\n- name: nope\n"));
    assert!(
        e.starts_with("plugins[0].name: plugin 'nope' not enabled"),
        "{e}"
    );
    let e = error_of(&format!("{base}plugins:\n- name: cors\n  service: s\n"));
    assert_eq!(e, "plugins[0].service: no such service in this file");
    let e = error_of(&format!("{base}plugins:\n- name: cors\n- name: cors\n"));
    assert!(
        e.starts_with("plugins[1]: plugin `cors` is already configured"),
        "{e}"
    );
    let e = error_of(&format!("{base}consumers:\n- tags: [a]\n"));
    assert_eq!(
        e,
        "consumers[0]: at least one of these fields must be non-empty: 'custom_id', 'username'"
    );
    let e = error_of(&format!("{base}consumers:\n- username: a\n- username: a\n"));
    assert_eq!(
        e,
        "consumers[1] (name=a).username: another consumer is named `a`"
    );
    let e = error_of(&format!("{base}certificates:\n- cert: x\n  key: y\n"));
    assert!(
        e.starts_with("certificates[0].cert: invalid certificate"),
        "{e}"
    );
    let e = error_of(&format!(
        "{base}services:\n- host: a\n  retries: 99999\n  port: 0\n"
    ));
    assert_eq!(
        e,
        "services[0].port: value should be between 1 and 65535 (also retries: value should be between 0 and 32767)"
    );
}

#[test]
fn export_round_trips_all_kinds() {
    let c = rcgen::generate_simple_self_signed(vec!["example.com".to_string()]).unwrap();
    let (cert, key) = (c.cert.pem(), c.signing_key.serialize_pem());
    let text = format!(
        "{PLUGGED}routes:\n- name: top\n  service: s\n  hosts: ['*.example.com']\n  methods: [GET]\n  \
         headers: {{x-a: [v1, v2]}}\n  protocols: [https]\n  https_redirect_status_code: 301\n  \
         regex_priority: 3\n  path_handling: v1\n  preserve_host: true\n  tags: [t]\n\
         targets:\n- target: \"[::1]:81\"\n  upstream: backend\n  weight: 0\n\
         certificates:\n- cert: {cert:?}\n  key: {key:?}\n  snis: [{{name: example.com}}, other.example.com]\n  tags: [c]\n"
    );
    let mut e = parse(&text).unwrap().entities;
    // Timestamps are not exported; give them values to show they are dropped.
    e.services[0].created_at = 5;
    let out = export(&e);
    assert!(out.starts_with("_format_version: '3.0'\n"), "{out}");
    e.services[0].created_at = 0;
    let back = parse(&out).unwrap().entities;
    assert_eq!(back, e);
    assert_eq!(
        (
            e.services.len(),
            e.routes.len(),
            e.upstreams.len(),
            e.targets.len()
        ),
        (1, 2, 1, 2)
    );
    assert_eq!(
        (e.consumers.len(), e.plugins.len(), e.certificates.len()),
        (2, 5, 1)
    );
    assert_eq!(e.certificates[0].snis, ["example.com", "other.example.com"]);
    assert_eq!(export(&back), out);
    assert_eq!(
        parse(&export(&Entities::default())).unwrap().entities,
        Entities::default()
    );
}
