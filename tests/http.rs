//! The API as a security reviewer tries it: tokens, TLS, limits, path
//! tricks, pseudonyms. Every server binds 127.0.0.1 on a free port.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, Tansu, free_port, wait_for, write_config};
use mfawatch::generate::{Generator, TenantSpec};

const TOPIC: &str = "insights-logs-signinlogs";
const TOKEN: &str = "4f2c9a7e1d6b8f30a5c2e9d7b1f4a6c8";

fn daemon_with(extra: &str, env: &[(&str, &str)]) -> (Tansu, Daemon, tempfile::TempDir) {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    tansu.produce(
        TOPIC,
        1,
        &Generator::new(TenantSpec { users: 50, records: 400, ..TenantSpec::default() }).collect::<Vec<_>>(),
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "http", port, extra);
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), env);
    wait_for("the daemon to listen", Duration::from_secs(30), || daemon.get("/healthz").is_some());
    (tansu, daemon, dir)
}

fn status(daemon: &Daemon, path: &str, token: Option<&str>) -> (u16, String, Option<String>) {
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let mut request = agent.get(&format!("{}{path}", daemon.http));
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let mut response = request.call().unwrap();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), response.body_mut().read_to_string().unwrap_or_default(), challenge)
}

/// One raw request; what comes back (empty when the connection is closed).
fn raw(daemon: &Daemon, request: &[u8]) -> String {
    let addr = daemon.http.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn the_api_takes_only_its_tokens_while_metrics_and_probes_stay_open() {
    let extra = "\n[http]\napi_token_env = \"API_TOKENS\"\n";
    let (_tansu, daemon, dir) = daemon_with(extra, &[("API_TOKENS", &format!("0000000000000000-old-one,{TOKEN}"))]);
    for path in ["/api/v1/coverage", "/api/v1/users", "/api/v1/users/someone", "/api/v1/alerts"] {
        let (code, body, challenge) = status(&daemon, path, None);
        assert_eq!(code, 401, "{path}: {body}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"mfawatch\""), "{path}");
        // A wrong token is told apart from a missing one (RFC 6750 invalid_token).
        let (code, wrong, challenge) = status(&daemon, path, Some("wrong-token-wrong-token"));
        assert_eq!(code, 401, "{path}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"mfawatch\", error=\"invalid_token\""), "{path}");
        assert!(wrong.contains("not one of this API's tokens") && wrong != body, "{wrong}");
    }
    assert_eq!(status(&daemon, "/api/v1/coverage", Some(TOKEN)).0, 200);
    assert_eq!(status(&daemon, "/api/v1/coverage", Some("0000000000000000-old-one")).0, 200, "several tokens at once");
    for path in ["/metrics", "/healthz", "/readyz", "/"] {
        assert_ne!(status(&daemon, path, None).0, 401, "{path} stays open");
    }
    let metrics = status(&daemon, "/metrics", None).1;
    assert!(metrics.contains("mfawatch_http_refused_total{reason=\"unauthorized\"}"), "refusals are counted");
    assert!(!metrics.contains('@'), "no UPN in the open metrics");
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(!log.contains(TOKEN) && !log.contains("wrong-token"), "tokens are never logged");
}

#[test]
fn an_api_open_to_other_hosts_without_a_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // 192.0.2.1 (TEST-NET) is no address of this host: nothing could bind it anyway.
    let config = write_config(dir.path(), "127.0.0.1:1", TOPIC, "open", 1, "");
    let text =
        std::fs::read_to_string(&config).unwrap().replace("listen = \"127.0.0.1:1\"", "listen = \"192.0.2.1:9464\"");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("can be reached from other hosts") && err.contains("api_token"), "{err}");
}

#[test]
fn hostile_requests_get_a_4xx_and_never_a_panic() {
    let (_tansu, daemon, dir) = daemon_with("", &[]);
    // Path tricks: encoded dots and slashes are a user name that does not exist.
    for path in [
        "/api/v1/users/..%2f..%2fetc%2fpasswd",
        "/api/v1/users/%00",
        "/api/v1/..%2f..%2f",
        "/api/v1/users?limit=99999999999999999999",
    ] {
        let (code, body, _) = status(&daemon, path, None);
        assert!((400..500).contains(&code), "{path}: {code} {body}");
    }
    // A request head past 16 KiB: a huge query, a huge header.
    let huge_query = format!("GET /api/v1/users?state={} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(64 * 1024));
    let answer = raw(&daemon, huge_query.as_bytes());
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{}", &answer[..answer.len().min(200)]);
    let huge_header = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(64 * 1024));
    let answer = raw(&daemon, huge_header.as_bytes());
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{}", &answer[..answer.len().min(200)]);
    let answer = raw(&daemon, b"BREW /coffee HTCPCP/1.0\r\n\r\n");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
    // Still answering, nothing panicked.
    assert_eq!(status(&daemon, "/healthz", None).0, 200);
    assert!(!std::fs::read_to_string(dir.path().join("daemon.log")).unwrap().contains("panicked"));
    common::record_reliability(
        "hostile HTTP requests",
        "path tricks, 64 KiB query and header, bad method: 4xx or closed, no panic",
    );
}

#[test]
fn idle_connections_past_the_limit_make_room_and_the_api_keeps_answering() {
    let (_tansu, daemon, _dir) = daemon_with("\n[http]\nmax_connections = 4\n", &[]);
    let addr = daemon.http.trim_start_matches("http://").to_string();
    // Slow clients that never finish a request hold every slot...
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    // ...and a real request takes the place of the one idle longest.
    assert_eq!(status(&daemon, "/healthz", None).0, 200);
    let mut extra = TcpStream::connect(&addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut buf = Vec::new();
    let _ = extra.read_to_end(&mut buf);
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf));
    drop(idle);
    let metrics = daemon.get("/metrics").unwrap().1;
    assert!(
        metrics.contains("mfawatch_http_refused_total{reason=\"evicted_idle\"}"),
        "the idle ones closed are counted"
    );
}

/// A self-signed certificate and key for 127.0.0.1, as files in `dir`.
fn certificate(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (tests/run installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

fn https_get(url: &str, root: &std::path::Path) -> Result<u16, String> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let pem = std::fs::read(root).unwrap();
    let cert = Certificate::from_pem(&pem).unwrap().to_owned();
    let tls = TlsConfig::builder().root_certs(RootCerts::Specific(std::sync::Arc::new(vec![cert]))).build();
    let agent = ureq::Agent::config_builder().tls_config(tls).http_status_as_error(false).build().new_agent();
    agent.get(url).call().map(|r| r.status().as_u16()).map_err(|e| e.to_string())
}

#[test]
fn tls_serves_the_certificate_and_a_renewed_one_after_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "first");
    let extra =
        format!("\n[http]\ntls_cert = {:?}\ntls_key = {:?}\n", cert.display().to_string(), key.display().to_string());
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    let port = free_port();
    let config = write_config(dir.path(), &tansu.bootstrap(), TOPIC, "tls", port, &extra);
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[]);
    let url = format!("https://127.0.0.1:{port}/healthz");
    wait_for("HTTPS", Duration::from_secs(30), || https_get(&url, &cert).is_ok());
    assert_eq!(https_get(&url, &cert), Ok(200));
    // Plain HTTP is not served.
    assert!(daemon.get("/healthz").is_none_or(|(s, _)| s >= 400));
    // A renewed certificate in the same files, SIGHUP: served without a restart.
    let (new_cert, new_key) = certificate(dir.path(), "second");
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    Command::new("kill").args(["-HUP", &daemon.pid().to_string()]).status().unwrap();
    wait_for("the renewed certificate", Duration::from_secs(15), || https_get(&url, &new_cert) == Ok(200));
    assert!(https_get(&url, &dir.path().join("first.crt")).is_ok(), "the file now holds the new one");
}

#[test]
fn pseudonymised_the_api_shows_no_upn_or_ip_and_the_same_user_keeps_one_pseudonym() {
    let extra = "\n[privacy]\npseudonymise = true\nkey_env = \"PSEUDONYM_KEY\"\n";
    let (_tansu, daemon, dir) = daemon_with(extra, &[("PSEUDONYM_KEY", "a-long-random-pseudonym-key-0123")]);
    wait_for("users", Duration::from_secs(30), || {
        daemon.get("/api/v1/coverage").is_some_and(|(_, b)| b.contains("\"users\":") && !b.contains("\"users\":0"))
    });
    // Who is in the tenant, in clear: none of it may come out.
    let records = Generator::new(TenantSpec { users: 50, records: 400, ..TenantSpec::default() }).collect::<Vec<_>>();
    let in_clear = |text: &str| -> Vec<String> {
        let mut found = Vec::new();
        for r in &records {
            let r: serde_json::Value = serde_json::from_slice(r).unwrap();
            for record in r["records"].as_array().cloned().unwrap_or_else(|| vec![r.clone()]) {
                for key in ["userPrincipalName", "userDisplayName", "callerIpAddress", "ipAddress"] {
                    let v = record[key].as_str().or(record["properties"][key].as_str()).unwrap_or("");
                    // (An object id logged as the UPN stays: it names an account, not a person.)
                    let object_id = v.len() == 36 && v.matches('-').count() == 4;
                    if v.len() > 6 && !object_id && text.contains(v) {
                        found.push(v.to_owned());
                    }
                }
            }
        }
        found
    };
    let users = daemon.json("/api/v1/users?limit=1000");
    assert!(users["users"].as_array().unwrap().len() > 10, "{users}");
    assert_eq!(in_clear(&users.to_string()), Vec::<String>::new(), "UPNs, names and IPs are pseudonyms in the API");
    for u in users["users"].as_array().unwrap() {
        let upn = u["upn"].as_str().unwrap();
        assert!(upn.starts_with("u-") && upn.ends_with("@contoso.example") || upn.len() == 36, "{upn}");
        if let Some(name) = u["display_name"].as_str() {
            assert!(name.starts_with("user "), "{name}");
        }
    }
    // Looking someone up by their pseudonym works; the same one each time.
    let someone = &users["users"][0];
    let again = daemon.json(&format!("/api/v1/users/{}", someone["upn"].as_str().unwrap()));
    assert_eq!(again["key"], someone["key"]);
    // An investigator has a real UPN: the API says why it is not found, and
    // `mfawatch pseudonym` (the daemon's key, from the same place) gives the name to ask by.
    let real = records
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(r).ok())
        .flat_map(|r| r["records"].as_array().cloned().unwrap_or_else(|| vec![r.clone()]))
        .filter_map(|r| r["properties"]["userPrincipalName"].as_str().map(str::to_owned))
        .find(|upn| upn.contains('@'))
        .expect("a user with a UPN");
    let (code, body, _) = status(&daemon, &format!("/api/v1/users/{real}"), None);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("pseudonymises") && body.contains("mfawatch pseudonym"), "{body}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["pseudonym", "--config"])
        .arg(dir.path().join("mfawatch.toml"))
        .arg(&real)
        .env("PSEUDONYM_KEY", "a-long-random-pseudonym-key-0123")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    let pseudonym = line.trim().split('\t').nth(1).expect("UPN, tab, pseudonym").to_owned();
    assert!(pseudonym.starts_with("u-"), "{line}");
    let path = format!("/api/v1/users/{pseudonym}");
    assert!(
        common::within(Duration::from_secs(15), || daemon.get(&path).is_some_and(|(code, _)| code == 200)),
        "{real} is known as {pseudonym}"
    );
    assert_eq!(daemon.json(&path)["upn"].as_str(), Some(pseudonym.as_str()));
    // The history holds pseudonyms too.
    let history = dir.path().join("state/history");
    let written = || -> usize {
        let dates = mfawatch::history::files::dates(&history).unwrap_or_default();
        dates.iter().map(|(_, folder)| mfawatch::history::files::files(folder).map_or(0, |f| f.len())).sum()
    };
    if !common::within(Duration::from_secs(15), || written() > 0) {
        panic!("no history: {}", daemon.log_text());
    }
    let mut rows = 0;
    // As the report reads it: no part is merged away while it is read.
    let _reading = mfawatch::history::files::read_lock(&history).unwrap();
    for (_, folder) in mfawatch::history::files::dates(&history).unwrap() {
        for (_, file) in mfawatch::history::files::files(&folder).unwrap() {
            let df = mfawatch::history::files::read_parquet(&file).unwrap();
            rows += df.height();
            let text: Vec<String> = ["upn", "display_name", "ip"]
                .iter()
                .flat_map(|c| {
                    df.column(c).unwrap().str().unwrap().iter().flatten().map(str::to_owned).collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(in_clear(&text.join("\n")), Vec::<String>::new(), "{}", file.display());
        }
    }
    assert!(rows > 0);
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(!log.contains("a-long-random-pseudonym-key"), "the key is never logged");
    assert_eq!(in_clear(&log), Vec::<String>::new(), "nor who signed in");
}
