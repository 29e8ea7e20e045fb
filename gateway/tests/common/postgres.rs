//! A throw-away PostgreSQL server: `initdb` in a temp dir, started on a free
//! loopback port with the machine's PostgreSQL binaries, removed on drop.
//! As root, the server runs as the `postgres` user, as it insists.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSWORD: &str = "pg-test-secret-4711";

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn bin_dir() -> PathBuf {
    if let Ok(p) = which("initdb") {
        // Debian links initdb into PATH; psql and pg_ctl sit beside the target.
        let p = std::fs::canonicalize(&p).unwrap_or(p);
        return p.parent().unwrap().to_path_buf();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|b| b.join("initdb").is_file())
        .expect("PostgreSQL server binaries (initdb) are not installed: run ./scripts/test, which installs postgresql-15")
}

fn which(name: &str) -> Result<PathBuf, ()> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::init(None)
    }

    /// A server that only accepts TLS over TCP, with a certificate for 127.0.0.1
    /// signed by itself; returns the certificate's PEM for `pg_ssl_root_cert`.
    pub fn start_with_tls() -> (Postgres, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        let pg = Postgres::init(Some((pem.clone(), key.serialize_pem())));
        (pg, pem)
    }

    fn init(tls: Option<(String, String)>) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("gateway-pg-")
            .tempdir()
            .unwrap();
        let pg = Postgres {
            dir,
            bin,
            port: super::free_port(),
        };
        chmod(pg.dir.path(), 0o755);
        let pwfile = pg.dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        chmod(&pwfile, 0o644);
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "cannot chown the data dir to postgres");
        }
        let out = pg.run(
            "initdb",
            &[
                "-D",
                pg.data().to_str().unwrap(),
                "-U",
                "postgres",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        if let Some((cert, key)) = tls {
            let conf = pg.data().join("postgresql.auto.conf");
            let mut auto = std::fs::read_to_string(&conf).unwrap_or_default();
            auto.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            std::fs::write(&conf, auto).unwrap();
            // Plain TCP is refused, so a client that connects used TLS.
            std::fs::write(
                pg.data().join("pg_hba.conf"),
                "local all all trust\nhostnossl all all all reject\nhostssl all all all scram-sha-256\n",
            )
            .unwrap();
            std::fs::write(pg.data().join("server.crt"), cert).unwrap();
            std::fs::write(pg.data().join("server.key"), key).unwrap();
            chmod(&pg.data().join("server.key"), 0o600);
            if is_root() {
                let ok = Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(pg.data())
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
        }
        pg.resume();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
    }

    /// Starts (again) and waits until it accepts connections.
    pub fn resume(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c max_connections=200",
            self.port
        );
        let log = self.dir.path().join("postgres.log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            text(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast: clients are disconnected).
    pub fn halt(&self) {
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        assert!(out.status.success(), "pg_ctl stop failed: {}", text(&out));
    }

    /// The gateway configuration lines that point at this server.
    pub fn conf(&self, database: &str) -> Vec<(String, String)> {
        [
            ("database", "\"postgres\"".to_string()),
            ("pg_host", "\"127.0.0.1\"".into()),
            ("pg_port", self.port.to_string()),
            ("pg_user", "\"postgres\"".into()),
            ("pg_password", format!("{PASSWORD:?}")),
            ("pg_database", format!("{database:?}")),
            ("pg_timeout", "1000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Runs SQL as the superuser through psql over TCP.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(out.status.success(), "psql failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A new database `name` with the gateway's migrations bootstrapped, and
    /// the settings of a node on it.
    pub fn bootstrapped(&self, name: &str) -> Vec<(String, String)> {
        self.create_database(name);
        let conf = self.conf(name);
        let (code, out) = super::gateway_cli(&conf, &["migrations", "bootstrap"]);
        assert_eq!(code, 0, "{out}");
        conf
    }

    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
