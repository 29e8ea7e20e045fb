//! Form-encoded bodies.

use serde_json::{json, Value};

use super::*;

fn form(kind: Kind, body: &str) -> Value {
    Value::Object(from_form(kind, body.as_bytes()).unwrap())
}

#[test]
fn arrays_three_ways() {
    for body in [
        "hosts=a.com&hosts=b.com",
        "hosts[]=a.com&hosts[]=b.com",
        "hosts[2]=b.com&hosts[1]=a.com",
    ] {
        assert_eq!(
            form(Kind::Routes, body),
            json!({"hosts": ["a.com", "b.com"]}),
            "{body}"
        );
    }
    assert_eq!(
        form(Kind::Routes, "hosts=a.com"),
        json!({"hosts": ["a.com"]})
    );
    assert_eq!(form(Kind::Routes, "tags[]=x"), json!({"tags": ["x"]}));
}

#[test]
fn scalars_are_coerced_by_type() {
    assert_eq!(
        form(
            Kind::Services,
            "host=x&port=80&enabled=false&name=s&path=&retries=a%20b"
        ),
        json!({"host": "x", "port": 80, "enabled": false, "name": "s", "path": null, "retries": "a b"})
    );
    assert_eq!(
        form(Kind::Routes, "strip_path=false&regex_priority=-2&name=100"),
        json!({"strip_path": false, "regex_priority": -2, "name": "100"})
    );
}

#[test]
fn dotted_and_bracketed_keys_nest() {
    assert_eq!(
        form(
            Kind::Routes,
            &format!("service.id={ID}&paths=/a&headers.x-version=v1&headers.x-b[]=1")
        ),
        json!({"service": {"id": ID}, "paths": ["/a"], "headers": {"x-version": ["v1"], "x-b": ["1"]}})
    );
    assert_eq!(
        form(
            Kind::Plugins,
            "name=rate-limiting&config.minute=5&config[policy]=local&config.fault_tolerant=true\
             &config.limit_by=007&config.list[]=1&config.list[]=x&config.redis.port=6379&config.empty="
        ),
        json!({
            "name": "rate-limiting",
            "config": {"minute": 5, "policy": "local", "fault_tolerant": true, "limit_by": "007",
                       "list": [1, "x"], "redis": {"port": 6379}, "empty": null}
        })
    );
}

#[test]
fn bad_forms() {
    let e = from_form(Kind::Plugins, b"config=1&config.a=2").unwrap_err();
    assert_eq!(
        e,
        FieldErrors::field("config", "cannot be both a value and a record")
    );
    for bad in ["a[", "[x]=1", "a..b=1", "a[]x=1"] {
        assert!(from_form(Kind::Services, bad.as_bytes()).is_err(), "{bad}");
    }
    // Non-UTF-8 bytes do not panic.
    let _ = from_form(Kind::Routes, b"hosts=%FF%FE&\xff=1");
}

#[test]
fn form_then_validate() {
    let mut b = from_form(
        Kind::Routes,
        format!("paths[]=/a&methods=GET&methods=POST&service.id={OTHER}&strip_path=false")
            .as_bytes(),
    )
    .unwrap();
    b.insert("id".into(), ID.into());
    let r = validate(Kind::Routes, b, Write::Create, None, 0).unwrap();
    assert_eq!(
        (&r["methods"], &r["strip_path"], &r["service"]),
        (
            &json!(["GET", "POST"]),
            &json!(false),
            &json!({"id": OTHER})
        )
    );
    let mut b = from_form(Kind::Services, b"host=x&port=eighty").unwrap();
    b.insert("id".into(), ID.into());
    let e = validate(Kind::Services, b, Write::Create, None, 0).unwrap_err();
    assert_eq!(e, FieldErrors::field("port", "expected an integer"));
}

#[test]
fn plugin_configs_are_coerced_by_the_plugin_schema() {
    // One address is still a list; a message of digits stays a string.
    let m = from_form(
        Kind::Plugins,
        b"name=ip-restriction&config.allow=10.0.0.1&config.message=123&config.status=401",
    )
    .unwrap();
    assert_eq!(
        Value::Object(m),
        json!({"name": "ip-restriction",
               "config": {"allow": ["10.0.0.1"], "message": "123", "status": 401}})
    );
    let m = from_form(
        Kind::Plugins,
        b"name=cors&config.max_age=1.5&config.credentials=true&config.origins=*",
    )
    .unwrap();
    assert_eq!(
        m["config"],
        json!({"max_age": 1.5, "credentials": true, "origins": ["*"]})
    );
    // Plugins without a schema here: guessed as before.
    let m = from_form(Kind::Plugins, b"name=rate-limiting&config.minute=5").unwrap();
    assert_eq!(m["config"], json!({"minute": 5}));
}
