use std::time::{Duration, Instant};

use super::*;

fn nested_json(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

fn laughs(levels: usize) -> String {
    let mut s = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..levels {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        s += &format!("l{i}: &l{i} [{refs}]\n");
    }
    s
}

fn keys(n: usize) -> String {
    let body: Vec<String> = (0..n).map(|i| format!("\"{i:x}\":0")).collect();
    format!("{{{}}}", body.join(","))
}

fn quick<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    out
}

#[test]
fn json_depth_is_bounded() {
    assert!(parse_json(nested_json(MAX_DEPTH).as_bytes(), 1000).is_ok());
    match parse_json(nested_json(MAX_DEPTH + 1).as_bytes(), 1000) {
        // serde_json's column is one past the bracket it stopped at.
        Err(JsonError::Limit(Exceeded::Depth, 1, col)) => assert_eq!(col, MAX_DEPTH + 2),
        other => panic!("{other:?}"),
    }
    // Unclosed: refused at the limit, not at the end of the text.
    let e = quick(|| parse_json("[".repeat(5_000_000).as_bytes(), 1000)).unwrap_err();
    assert!(
        e.to_string().starts_with("nesting depth limit exceeded"),
        "{e}"
    );
    let deep_object = "{\"a\":".repeat(100) + "1" + &"}".repeat(100);
    assert!(matches!(
        parse_json(deep_object.as_bytes(), 1000),
        Err(JsonError::Limit(Exceeded::Depth, ..))
    ));
}

#[test]
fn json_keys_and_values_are_bounded() {
    let v = parse_json(keys(MAX_OBJECT_KEYS).as_bytes(), usize::MAX).unwrap();
    assert_eq!(v.as_object().unwrap().len(), MAX_OBJECT_KEYS);
    let e = quick(|| parse_json(keys(1_000_000).as_bytes(), usize::MAX)).unwrap_err();
    assert!(
        matches!(e, JsonError::Limit(Exceeded::ObjectKeys, ..)),
        "{e}"
    );
    let zeros = format!("[{}]", vec!["0"; 1000].join(","));
    assert!(parse_json(zeros.as_bytes(), 1001).is_ok());
    assert!(matches!(
        parse_json(zeros.as_bytes(), 1000),
        Err(JsonError::Limit(Exceeded::Nodes(1000), ..))
    ));
    // Keys count too.
    assert!(parse_json(br#"{"a":1}"#, 3).is_ok());
    assert!(parse_json(br#"{"a":1}"#, 2).is_err());
}

#[test]
fn json_values_are_as_serde_json_reads_them() {
    let text = br#"{"a":[1,-2,3.5,true,null,"x\u00e9"],"b":{"c":{}},"a2":18446744073709551615}"#;
    let ours = parse_json(text, 100).unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(text).unwrap();
    assert_eq!(ours, theirs);
    // Last duplicate wins, as in serde_json.
    assert_eq!(parse_json(br#"{"a":1,"a":2}"#, 100).unwrap()["a"], 2);
    for bad in [&b"{"[..], b"[1,]", b"1 2", b"\"\xff\"", b"1e400", b""] {
        assert!(
            matches!(parse_json(bad, 100), Err(JsonError::Syntax(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn form_keys_are_bounded() {
    assert!(check_form(b"name=x&config.a.b=1&config[c][d][]=2").is_ok());
    let deep = format!("config{}=1", "[a]".repeat(MAX_DEPTH));
    assert_eq!(check_form(deep.as_bytes()), Err(Exceeded::Depth));
    let dotted = format!("config{}=1", ".a".repeat(MAX_DEPTH));
    assert_eq!(check_form(dotted.as_bytes()), Err(Exceeded::Depth));
    let many = "a=1&".repeat(MAX_ENTITY_NODES + 1);
    assert!(matches!(
        check_form(many.as_bytes()),
        Err(Exceeded::Nodes(_))
    ));
}

#[test]
fn yaml_depth_is_bounded_before_the_text_is_read() {
    let ok = "a:\n  - x\n";
    assert_eq!(check_yaml(ok), Ok(()));
    assert_eq!(check_yaml(&nested_json(MAX_DEPTH)), Ok(()));
    let (e, line, column) = check_yaml(&nested_json(MAX_DEPTH + 1)).unwrap_err();
    assert_eq!((e, line, column), (Exceeded::Depth, 1, MAX_DEPTH + 1));
    // 10 MB of `[` would take serde_yaml_ng minutes and 1.6 GB.
    let flow = "[".repeat(10 << 20);
    assert_eq!(quick(|| check_yaml(&flow)).unwrap_err().0, Exceeded::Depth);
    let block = "- ".repeat(5 << 20) + "x\n";
    assert_eq!(quick(|| check_yaml(&block)).unwrap_err().0, Exceeded::Depth);
    let mut indented = String::new();
    for i in 0..100 {
        indented += &format!("{}k{i}:\n", " ".repeat(i));
    }
    assert_eq!(check_yaml(&indented).unwrap_err().0, Exceeded::Depth);
}

#[test]
fn yaml_billion_laughs_is_refused_at_once() {
    let (e, line, _) = quick(|| check_yaml(&laughs(10))).unwrap_err();
    assert_eq!(e, Exceeded::AliasNodes);
    assert!(line <= 10, "{line}");
    assert!(e.to_string().contains("billion laughs"));
    // A few levels are fine: 10^4 nodes.
    assert_eq!(check_yaml(&laughs(4)), Ok(()));
    // Padding the file does not buy more expansion, unlike serde_yaml_ng's guard.
    let padded = format!("pad: [{}]\n{}", vec!["0"; 500_000].join(","), laughs(7));
    assert_eq!(check_yaml(&padded).unwrap_err().0, Exceeded::AliasNodes);
}

#[test]
fn yaml_aliases_count_their_depth_and_recursion() {
    let deep = format!(
        "a: &a {}\nb: {}*a{}\n",
        nested_json(40),
        "[".repeat(30),
        "]".repeat(30)
    );
    assert_eq!(check_yaml(&deep).unwrap_err().0, Exceeded::Depth);
    let shallow = format!(
        "a: &a {}\nb: {}*a{}\n",
        nested_json(10),
        "[".repeat(30),
        "]".repeat(30)
    );
    assert_eq!(check_yaml(&shallow), Ok(()));
    let (e, ..) = check_yaml("a: &x [1, *x]\n").unwrap_err();
    assert_eq!(e, Exceeded::RecursiveAlias("x".into()));
    // Redefined anchors name the newest node, as in serde_yaml_ng.
    assert_eq!(check_yaml("a: &x 1\nb: &x [2]\nc: *x\n"), Ok(()));
    // Unknown anchors and syntax errors are serde_yaml_ng's to report.
    assert_eq!(check_yaml("a: *nope\n"), Ok(()));
    assert_eq!(check_yaml("a: [1, 2\nb: {"), Ok(()));
}

#[test]
fn yaml_mapping_keys_nodes_and_anchors_are_bounded() {
    let (e, ..) = quick(|| check_yaml(&keys(1_000_000))).unwrap_err();
    assert_eq!(e, Exceeded::ObjectKeys);
    let many = format!(
        "s: [{}]\n",
        vec!["0"; MAX_DECLARATIVE_NODES as usize].join(",")
    );
    assert_eq!(
        check_yaml(&many).unwrap_err().0,
        Exceeded::Nodes(MAX_DECLARATIVE_NODES)
    );
    let anchors: Vec<String> = (0..=MAX_ANCHORS).map(|i| format!("&a{i} 0")).collect();
    let text = format!("s: [{}]\n", anchors.join(","));
    assert_eq!(check_yaml(&text).unwrap_err().0, Exceeded::Anchors);
}

#[test]
fn yaml_every_document_of_a_stream_is_checked() {
    let text = format!("a: 1\n---\n{}\n", "[".repeat(1000));
    assert_eq!(check_yaml(&text).unwrap_err().0, Exceeded::Depth);
}

#[test]
fn real_configurations_pass() {
    let example = include_str!("../../../examples/kong.yml");
    assert_eq!(check_yaml(example), Ok(()));
    // Anchors shared across many services are fine.
    let mut text = String::from(
        "_format_version: \"3.0\"\nx-rl: &rl\n  name: rate-limiting\n  config: {minute: 5, policy: local}\nservices:\n",
    );
    for i in 0..2000 {
        text += &format!("- name: s{i}\n  url: http://h{i}:80\n  plugins: [*rl]\n  routes: [{{name: r{i}, paths: [/p{i}]}}]\n");
    }
    assert_eq!(check_yaml(&text), Ok(()));
}

#[test]
fn sizes() {
    assert_eq!(check_size(MAX_BODY_BYTES), Ok(()));
    assert_eq!(
        check_size(MAX_BODY_BYTES + 1),
        Err(Exceeded::Bytes(MAX_BODY_BYTES + 1))
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yml");
    std::fs::write(&path, vec![b' '; MAX_BODY_BYTES + 10]).unwrap();
    let e = read_file(&path).unwrap_err();
    assert!(
        e.to_string().contains(&(MAX_BODY_BYTES + 10).to_string()),
        "{e}"
    );
    std::fs::write(&path, "a: 1\n").unwrap();
    assert_eq!(read_file(&path).unwrap(), "a: 1\n");
}
