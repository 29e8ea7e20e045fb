//! The nodes' cloud-config: cloud-init's own schema check, PyYAML for the structure,
//! shellcheck on every script, and the gateway config's keys. The tools come from
//! Debian packages (cloud-init, python3-yaml, shellcheck) that scripts/test installs;
//! without them these tests fail. Last, README.md against the stack and the gateway:
//! the health check target, the admin listener it reaches, the drain timings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use provisioner::artifacts::Artifact;
use provisioner::compute::NodeInputs;
use provisioner::database::Database;
use provisioner::network::{Network, Subnet};
use provisioner::secrets::Secrets;
use provisioner::security::SecurityGroups;
use provisioner::spec::{SecretStore, Spec, StackConfig, HEALTH_CHECK_TARGET};
use provisioner::userdata;
use serde_json::Value;

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn inputs() -> NodeInputs {
    let subnet = |id: &str, az: &str, cidr: &str| Subnet {
        id: id.into(),
        az: az.into(),
        cidr: cidr.into(),
    };
    NodeInputs {
        net: Network {
            vpc_id: "vpc-0a1b2c".into(),
            vpc_cidr: "10.20.0.0/16".into(),
            public: vec![subnet("subnet-pub-a", "eu-west-1a", "10.20.0.0/20")],
            private: vec![subnet("subnet-priv-a", "eu-west-1a", "10.20.128.0/20")],
        },
        groups: SecurityGroups {
            nodes: "sg-nodes".into(),
            db: "sg-db".into(),
            elb: "sg-elb".into(),
        },
        db: Database {
            identifier: "ud-db".into(),
            address: "ud-db.cxyz.eu-west-1.rds.amazonaws.com".into(),
            port: 5432,
            kms_key_arn: "arn:aws:kms:eu-west-1:123456789012:key/abc".into(),
        },
        artifact: Artifact {
            bucket: "ud-artifacts-123456789012-eu-west-1".into(),
            key: format!("gateway/{SHA}"),
            sha256: SHA.into(),
        },
        secrets: Secrets {
            db_password: "/ud/db/master-password".into(),
            admin_token: "/ud/gateway/admin-token".into(),
            arns: vec![],
        },
        elb_name: "ud-elb".into(),
        instance_profile_arn: "arn:aws:iam::123456789012:instance-profile/ud-node-eu-west-1".into(),
    }
}

fn spec(store: SecretStore) -> Spec {
    let config = StackConfig {
        secret_store: store,
        ..StackConfig::default()
    };
    Spec::new("ud", "eu-west-1", config).unwrap()
}

const INSTALL: &str =
    "scripts/test installs them (Debian packages: cloud-init, python3-yaml, shellcheck)";

fn tool(cmd: &mut Command, what: &str) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}); {INSTALL}"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("userdata-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The document parsed by PyYAML (cloud-init's own parser), as JSON.
fn parse_yaml(path: &Path) -> Value {
    let out = tool(
        Command::new("python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            ])
            .arg(path),
        "python3 with PyYAML",
    );
    assert!(
        out.status.success(),
        "PyYAML failed ({INSTALL}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn files(doc: &Value) -> Vec<(String, String, String)> {
    doc["write_files"]
        .as_array()
        .expect("write_files is a list")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["permissions"].as_str().unwrap().to_string(),
                f["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn file<'a>(files: &'a [(String, String, String)], path: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.0 == path)
        .unwrap_or_else(|| panic!("{path} is not written"))
        .2
}

fn check_document(store: SecretStore) {
    let spec = spec(store);
    let inputs = inputs();
    let text = userdata::render(&spec, &inputs);
    assert!(text.starts_with("#cloud-config\n"), "{text}");
    assert!(text.len() < userdata::MAX_USER_DATA, "{} bytes", text.len());
    let dir = temp_dir(&format!("{store:?}"));
    let path = dir.join("user-data.yaml");
    std::fs::write(&path, &text).unwrap();

    // cloud-init's schema check (offline).
    let out = tool(
        Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(&path),
        "cloud-init",
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("Valid cloud-config"),
        "cloud-init schema: {said}\n{text}"
    );

    let doc = parse_yaml(&path);
    let files = files(&doc);
    let conf: toml::Table =
        toml::from_str(file(&files, userdata::CONFIG_PATH)).expect("gateway.conf is TOML");
    check_conf(&conf, &inputs);

    let unit = file(&files, "/etc/systemd/system/gateway.service");
    for line in [
        "ExecStart=/usr/local/bin/gateway start -c /etc/gateway/gateway.conf -p /var/lib/gateway",
        "Restart=always",
        "LimitNOFILE=65535",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "unit lacks {line}:\n{unit}"
        );
    }
    // The token is in a file the gateway watches, not in the environment.
    assert!(!unit.contains("EnvironmentFile"), "{unit}");
    let secrets_unit = file(&files, "/etc/systemd/system/gateway-secrets.service");
    for line in [
        "ExecStart=/usr/local/sbin/gateway-secrets",
        "Restart=always",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            secrets_unit.lines().any(|l| l == line),
            "gateway-secrets.service lacks {line}:\n{secrets_unit}"
        );
    }
    let limits = file(&files, "/etc/security/limits.d/90-gateway-nofile.conf");
    assert!(
        limits.contains("soft  nofile  65535") && limits.contains("hard  nofile  65535"),
        "{limits}"
    );

    let boot = file(&files, userdata::BOOTSTRAP_PATH);
    let read = match store {
        SecretStore::Ssm => {
            "aws ssm get-parameter --region \"$REGION\" --name \"$1\" --with-decryption"
        }
        SecretStore::SecretsManager => {
            "aws secretsmanager get-secret-value --region \"$REGION\" --secret-id \"$1\""
        }
    };
    let order = [
        "set -euo pipefail",
        &format!("BUCKET='{}'", inputs.artifact.bucket),
        &format!("SHA256='{SHA}'"),
        "useradd --system",
        "aws s3 cp --only-show-errors --region \"$REGION\" \"s3://$BUCKET/$KEY\"",
        "sha256sum -c",
        "install -m 0755 -o root -g root \"$work/gateway\" /usr/local/bin/gateway",
        "/usr/local/sbin/gateway-secrets --once || die",
        "migrate bootstrap",
        "migrate up",
        "systemctl enable --now gateway.service",
        "systemctl enable --now gateway-secrets.service",
    ];
    in_order(boot, &order, "bootstrap");
    assert!(!boot.contains("GATEWAY_ADMIN_TOKEN"), "{boot}");

    let refresh = file(&files, userdata::SECRETS_PATH);
    in_order(
        refresh,
        &[
            "set -euo pipefail",
            "umask 077",
            "DB_PASSWORD_SECRET='/ud/db/master-password'",
            "ADMIN_TOKEN_SECRET='/ud/gateway/admin-token'",
            &format!("EVERY='{}'", spec.config.secret_refresh_seconds),
            read,
            "chown gateway:gateway \"$tmp\"",
            "chmod 0600 \"$tmp\"",
            "mv -f -- \"$tmp\" \"$2\"",
            "refresh \"$DB_PASSWORD_SECRET\" /etc/gateway/pg_password",
            "refresh \"$ADMIN_TOKEN_SECRET\" /etc/gateway/admin_token",
            "sleep \"$EVERY\"",
        ],
        "gateway-secrets",
    );
    check_refresh_script(refresh, &dir);
    let drain = file(&files, userdata::DRAIN_PATH);
    assert!(
        drain.contains("autoscaling/target-lifecycle-state")
            && drain.contains("complete-lifecycle-action")
    );
    assert!(
        drain.contains("HOOK='ud-drain'") && drain.contains("GROUP='ud-nodes'"),
        "{drain}"
    );

    // Every script passes shellcheck (and bash -n); runcmd too.
    let mut scripts: Vec<(String, String)> = files
        .iter()
        .filter(|f| f.2.starts_with("#!"))
        .map(|f| (f.0.clone(), f.2.clone()))
        .collect();
    assert_eq!(scripts.len(), 3, "bootstrap, drain and secrets scripts");
    for f in &files {
        assert_eq!(
            f.1,
            if f.2.starts_with("#!") {
                "0755"
            } else {
                "0644"
            },
            "{}",
            f.0
        );
    }
    let runcmd: Vec<String> = doc["runcmd"]
        .as_array()
        .expect("runcmd is a list")
        .iter()
        .map(|c| match c {
            Value::Array(argv) => argv
                .iter()
                .map(|a| format!("'{}'", a.as_str().unwrap()))
                .collect::<Vec<_>>()
                .join(" "),
            Value::String(s) => s.clone(),
            other => panic!("runcmd entry {other}"),
        })
        .collect();
    assert_eq!(runcmd, [format!("'{}'", userdata::BOOTSTRAP_PATH)]);
    scripts.push((
        "runcmd".into(),
        format!("#!/bin/sh\nset -eu\n{}\n", runcmd.join("\n")),
    ));
    for (name, script) in &scripts {
        let file = dir.join(name.replace('/', "_"));
        std::fs::write(&file, script).unwrap();
        let out = tool(
            Command::new("shellcheck")
                .args(["--severity=style"])
                .arg(&file),
            "shellcheck",
        );
        assert!(
            out.status.success(),
            "shellcheck {name}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let out = tool(Command::new("bash").arg("-n").arg(&file), "bash");
        assert!(
            out.status.success(),
            "bash -n {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    check_no_secrets(&text, &conf);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every step in `steps` occurs in `text`, in this order.
fn in_order(text: &str, steps: &[&str], what: &str) {
    let mut at = 0;
    for step in steps {
        let found = text[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{what} lacks (or misorders) {step}:\n{text}"));
        at += found + step.len();
    }
}

/// Runs gateway-secrets --once with a stand-in `aws` (values from files) and the
/// secret files in `dir`: it writes both files 0600, rewrites one by rename only when
/// its value changed, keeps a file whose secret cannot be read (and then fails), and
/// never prints a value.
fn check_refresh_script(script: &str, dir: &Path) {
    let root = dir.join("refresh");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let store = root.join("store");
    std::fs::create_dir_all(&store).unwrap();
    // The stand-in prints the value of the secret named after --name/--secret-id.
    let aws = format!(
        "#!/bin/bash\nwhile [ $# -gt 0 ]; do\n  case \"$1\" in --name|--secret-id) n=\"$2\" ;; esac\n  shift\ndone\n\
         f={}/\"$(basename \"$n\")\"\n[ -f \"$f\" ] || {{ echo 'An error occurred (ParameterNotFound)' >&2; exit 254; }}\ncat \"$f\"\n",
        store.display()
    );
    std::fs::write(bin.join("aws"), aws).unwrap();
    // chown to the gateway user needs that user; the owner is the unit test's own.
    std::fs::write(bin.join("chown"), "#!/bin/sh\nexit 0\n").unwrap();
    for f in ["aws", "chown"] {
        Command::new("chmod")
            .arg("0755")
            .arg(bin.join(f))
            .status()
            .unwrap();
    }
    let script = script.replace("/etc/gateway/", &format!("{}/", etc.display()));
    let path = root.join("gateway-secrets");
    std::fs::write(&path, script).unwrap();
    let run = || {
        let out = Command::new("bash")
            .arg(&path)
            .arg("--once")
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::write(store.join("master-password"), "pw-one-4711").unwrap();
    std::fs::write(store.join("admin-token"), "tok-one-4711").unwrap();
    let (ok, said) = run();
    assert!(ok, "{said}");
    let (pw, tok) = (etc.join("pg_password"), etc.join("admin_token"));
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "pw-one-4711\n");
    assert_eq!(std::fs::read_to_string(&tok).unwrap(), "tok-one-4711\n");
    for f in [&pw, &tok] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    let (pw_inode, tok_inode) = (
        std::fs::metadata(&pw).unwrap().ino(),
        std::fs::metadata(&tok).unwrap().ino(),
    );
    // Rotation of the password only: that file is replaced, the other stays.
    std::fs::write(store.join("master-password"), "pw-two-4711").unwrap();
    let (ok, said) = run();
    assert!(ok, "{said}");
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "pw-two-4711\n");
    assert_ne!(std::fs::metadata(&pw).unwrap().ino(), pw_inode);
    assert_eq!(std::fs::metadata(&tok).unwrap().ino(), tok_inode);
    assert!(said.contains("pg_password updated"), "{said}");
    // A secret that cannot be read leaves its file alone.
    std::fs::remove_file(store.join("admin-token")).unwrap();
    let (ok, said) = run();
    assert!(!ok, "{said}");
    assert_eq!(std::fs::read_to_string(&tok).unwrap(), "tok-one-4711\n");
    assert!(
        said.contains("cannot read /ud/gateway/admin-token"),
        "{said}"
    );
    for v in ["pw-one", "pw-two", "tok-one"] {
        assert!(!said.contains(v), "a secret value in the output: {said}");
    }
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(&etc).unwrap().collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

fn check_conf(conf: &toml::Table, inputs: &NodeInputs) {
    // The keys the gateway knows, less the inline secrets: those go in files.
    let known = gateway::config::KEYS
        .iter()
        .chain(gateway::config::database::KEYS)
        .filter(|k| !matches!(**k, "pg_password" | "admin_token"))
        .copied()
        .collect::<Vec<_>>();
    for key in conf.keys() {
        assert!(known.contains(&key.as_str()), "unknown key {key}");
    }
    let s = |k: &str| {
        conf.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{k} is not a string"))
    };
    assert_eq!(s("database"), "postgres");
    assert_eq!(s("pg_host"), inputs.db.address);
    assert_eq!(conf["pg_port"].as_integer(), Some(5432));
    assert_eq!(s("pg_user"), "kong");
    assert_eq!(s("pg_database"), "kong");
    assert_eq!(conf["pg_ssl"].as_bool(), Some(true));
    assert_eq!(s("pg_password_file"), "/etc/gateway/pg_password");
    assert_eq!(s("admin_token_file"), "/etc/gateway/admin_token");
    let proxy: Vec<&str> = s("proxy_listen").split(", ").collect();
    assert!(
        proxy[0].starts_with("0.0.0.0:8000 ") && proxy[0].contains(" proxy_protocol"),
        "{proxy:?}"
    );
    assert!(!proxy[0].contains("ssl"), "{proxy:?}");
    assert!(
        proxy[1].starts_with("0.0.0.0:8443 http2 ssl proxy_protocol"),
        "{proxy:?}"
    );
    let admin: Vec<&str> = s("admin_listen").split(", ").collect();
    assert!(
        admin[0].starts_with("0.0.0.0:8001") && !admin[0].contains("ssl"),
        "{admin:?}"
    );
    assert!(admin[1].starts_with("0.0.0.0:8444 http2 ssl"), "{admin:?}");
    assert!(!s("admin_listen").contains("proxy_protocol"));
    let trusted: Vec<&str> = conf["trusted_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(trusted, [inputs.net.vpc_cidr.as_str()]);
    assert_eq!(s("real_ip_header"), "proxy_protocol");
}

/// No secret keys with values, and no long random-looking word (a sha256 is hex).
fn check_no_secrets(text: &str, conf: &toml::Table) {
    assert!(!conf.contains_key("pg_password") && !conf.contains_key("admin_token"));
    for line in text.lines() {
        let l = line.trim();
        assert!(
            !l.starts_with("GATEWAY_ADMIN_TOKEN=") && !l.starts_with("PGPASSWORD"),
            "{line}"
        );
    }
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let hex = word.chars().all(|c| c.is_ascii_hexdigit());
        assert!(word.len() < 24 || hex, "secret-looking word {word}");
    }
}

#[test]
fn cloud_config_with_ssm_secrets() {
    check_document(SecretStore::Ssm);
}

#[test]
fn cloud_config_with_secrets_manager() {
    check_document(SecretStore::SecretsManager);
}

#[test]
fn missing_tools_fail_with_a_hint() {
    let out = Command::new("this-tool-does-not-exist-4b1d").output();
    assert!(out.is_err());
    let msg =
        std::panic::catch_unwind(|| tool(&mut Command::new("this-tool-does-not-exist-4b1d"), "x"))
            .unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(msg.contains("scripts/test installs them"), "{msg}");
}

// ---------- README.md, the stack and the gateway agree ----------
// These need none of the tools above.

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    // Prose only: code blocks would throw the pairing of backticks off.
    let mut prose = String::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    prose
}

/// Every `code` span of the README with the prose before it, lines joined.
fn code_spans(readme: &str) -> Vec<(String, String)> {
    let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let pieces: Vec<&str> = flat.split('`').collect();
    pieces
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}

/// The default a README table gives `key`, from a row such as
/// ``| `pg_host`, `pg_port` | `127.0.0.1`, `5432` | ...``.
fn readme_default(readme: &str, key: &str) -> String {
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            let (keys, values) = (ticked(cells.first()?), ticked(cells.get(1)?));
            let at = keys.iter().position(|k| k == key)?;
            (keys.len() == values.len()).then(|| values[at].clone())
        })
        .next()
        .unwrap_or_else(|| panic!("README.md has no table row with the default of `{key}`"))
}

fn seconds(text: &str) -> Duration {
    Duration::from_secs_f64(
        text.parse()
            .unwrap_or_else(|_| panic!("{text:?} is not seconds")),
    )
}

/// The node's `TimeoutStopSec`, as the user data writes it.
fn stop_timeout(user_data: &str) -> Duration {
    let found: Vec<&str> = user_data
        .lines()
        .filter_map(|l| l.trim().strip_prefix("TimeoutStopSec="))
        .collect();
    assert_eq!(found.len(), 1, "one TimeoutStopSec in the user data");
    seconds(found[0])
}

#[test]
fn readme_names_the_stacks_health_check() {
    let mut targets = Vec::new();
    for (before, span) in code_spans(&readme()) {
        // "health check `X`", "health-checks `X`": X is a target.
        let before = before.to_ascii_lowercase();
        let before = before.trim_end().trim_end_matches('s');
        let named_as_target = before.ends_with("health check") || before.ends_with("health-check");
        // `HTTP:8001/status`, `TCP:8000`: the classic ELB's target syntax.
        let elb_target = ["HTTP:", "HTTPS:", "TCP:", "SSL:"].iter().any(|p| {
            span.strip_prefix(p)
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        });
        if named_as_target || elb_target {
            targets.push(span);
        }
    }
    assert!(
        !targets.is_empty(),
        "README.md names no health check target"
    );
    for t in &targets {
        assert_eq!(
            t, HEALTH_CHECK_TARGET,
            "README.md names health check target `{t}`"
        );
    }
}

#[test]
fn the_health_check_reaches_the_nodes_plain_admin_listener() {
    let conf: toml::Table =
        toml::from_str(&userdata::gateway_conf(&spec(SecretStore::Ssm), &inputs()))
            .expect("gateway.conf is TOML");
    let admin = conf["admin_listen"].as_str().expect("admin_listen is set");
    // Parsed as the node parses it.
    let listeners = gateway::config::listen::parse_listeners(admin).unwrap();
    let port = userdata::health_check_port().expect("the target has a port");
    let l = listeners
        .iter()
        .find(|l| l.addr.port() == port)
        .unwrap_or_else(|| panic!("no admin listener on {port}, the health check's port: {admin}"));
    assert!(HEALTH_CHECK_TARGET.starts_with("HTTP:"));
    // The ELB checks in plain HTTP, without a PROXY header, from its own addresses.
    assert!(
        !l.ssl && !l.proxy_protocol && l.addr.ip().is_unspecified(),
        "{l}"
    );
}

#[test]
fn drain_timings_agree_with_the_gateway_and_the_readme() {
    let readme = readme();
    let spec = spec(SecretStore::Ssm);
    let user_data = userdata::render(&spec, &inputs());
    let stop = stop_timeout(&user_data);

    // The nodes drain with the gateway's defaults, which the README documents.
    let conf: toml::Table =
        toml::from_str(&userdata::gateway_conf(&spec, &inputs())).expect("gateway.conf is TOML");
    assert!(
        !conf.contains_key("drain_delay") && !conf.contains_key("drain_timeout"),
        "the user data sets the drain itself; compare TimeoutStopSec with its values"
    );
    let gateway = gateway::config::Config::default();
    assert_eq!(
        seconds(&readme_default(&readme, "drain_delay")),
        gateway.drain_delay
    );
    assert_eq!(
        seconds(&readme_default(&readme, "drain_timeout")),
        gateway.drain_timeout
    );

    // systemd lets the drain finish, and the lifecycle hook waits for systemd.
    assert!(
        stop > gateway.drain_delay + gateway.drain_timeout,
        "TimeoutStopSec {stop:?} cuts the drain short"
    );
    let heartbeat = StackConfig::default().termination_drain_seconds;
    assert_eq!(
        readme_default(&readme, "termination_drain_seconds"),
        heartbeat.to_string()
    );
    assert!(
        Duration::from_secs(heartbeat as u64) > stop,
        "the lifecycle hook gives up before systemd stops the node"
    );

    // What the README says of the unit is what it is.
    let documented: Vec<String> = code_spans(&readme)
        .into_iter()
        .filter_map(|(_, span)| span.strip_prefix("TimeoutStopSec=").map(str::to_string))
        .collect();
    assert!(
        !documented.is_empty(),
        "README.md does not give TimeoutStopSec"
    );
    for d in documented {
        assert_eq!(seconds(&d), stop, "README.md says TimeoutStopSec={d}");
    }
}

/// The template's `Fn::Sub` body with `vars` put in, as CloudFormation does: `${Name}`
/// is replaced, `${!Literal}` stays `${Literal}`. A name the test does not know fails,
/// so a new template variable needs a value here (and a thought about the provisioner).
fn fn_sub(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        if let Some(literal) = after.strip_prefix('!') {
            out.push_str("${");
            rest = literal;
            continue;
        }
        let end = after
            .find('}')
            .expect("an unclosed ${ in the template's user data");
        let name = &after[..end];
        let value = vars.iter().find(|(n, _)| *n == name).unwrap_or_else(|| {
            panic!("the template's user data uses ${{{name}}}: give it a value here")
        });
        out.push_str(&value.1);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The launch template's UserData in cloudformation/gateway.yaml, put together for the
/// same stack and inputs as the provisioner's, is the provisioner's cloud-config byte
/// for byte: the template is not trusted to stay a faithful copy.
#[test]
fn the_cloudformation_user_data_is_the_provisioners() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cloudformation/gateway.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("gateway.yaml is YAML");
    let user_data = &doc["Resources"]["NodeLaunchTemplate"]["Properties"]["LaunchTemplateData"]
        ["UserData"]["Fn::Base64"];
    let serde_yaml_ng::Value::Tagged(sub) = user_data else {
        panic!("NodeLaunchTemplate's UserData is not Fn::Base64: !Sub: {user_data:?}");
    };
    assert_eq!(sub.tag, "!Sub", "UserData is not a !Sub");
    let body = sub
        .value
        .as_str()
        .expect("the !Sub of the user data is one string");

    // The template has one secret store, Secrets Manager; the provisioner writes the
    // same document for it.
    let spec = spec(SecretStore::SecretsManager);
    let inputs = inputs();
    let want = userdata::render(&spec, &inputs);
    let have = fn_sub(
        body,
        &[
            ("GatewayStackName", spec.stack.clone()),
            ("AWS::Region", spec.region.clone()),
            ("VpcCidr", inputs.net.vpc_cidr.clone()),
            ("DbInstance.Endpoint.Address", inputs.db.address.clone()),
            ("DbInstance.Endpoint.Port", inputs.db.port.to_string()),
            ("ArtifactBucket", inputs.artifact.bucket.clone()),
            ("ArtifactKey", inputs.artifact.key.clone()),
            ("ArtifactSha256", inputs.artifact.sha256.clone()),
            (
                "SecretRefreshSeconds",
                spec.config.secret_refresh_seconds.to_string(),
            ),
        ],
    );
    // LocalStack's engine (the kit's) does not resolve the `${!Literal}` escape: the
    // user data holds no `${` of its own.
    assert!(
        !body.contains("${!"),
        "the template's user data escapes a `${{`"
    );
    // The template names the secrets as the provisioner's spec does.
    assert_eq!(inputs.secrets.db_password, spec.db_password_secret());
    assert_eq!(inputs.secrets.admin_token, spec.admin_token_secret());
    if have != want {
        let (w, h): (Vec<_>, Vec<_>) = (want.lines().collect(), have.lines().collect());
        let at = w
            .iter()
            .zip(&h)
            .position(|(a, b)| a != b)
            .unwrap_or(w.len().min(h.len()));
        panic!(
            "cloudformation/gateway.yaml's user data differs from userdata::render at line {}:\n  \
             provisioner: {:?}\n  template:    {:?}\n({} lines vs {})",
            at + 1,
            w.get(at),
            h.get(at),
            w.len(),
            h.len()
        );
    }
}
