//! `kafka.auth = "entra"`: OAUTHBEARER tokens from a Microsoft Entra service
//! principal, against a token endpoint played by the test (a small HTTP/1.1
//! server on 127.0.0.1). What Entra documents: the client credentials grant
//! with a client secret or a certificate's signed assertion (RFC 7523), the
//! scope `https://<namespace>.servicebus.windows.net/.default`, and the
//! answer `{"token_type":"Bearer","expires_in":3599,"access_token":"..."}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use mfawatch::config::Config;
use mfawatch::kafka::entra::TokenSource;

const NAMESPACE: &str = "contoso-logs";
const SCOPE: &str = "https://contoso-logs.servicebus.windows.net/.default";
const TENANT: &str = "8f1c3a52-5d2b-4c1e-9a7f-2e6b0d4c9a11";
const CLIENT: &str = "3c1d9e0a-7b2f-4e5d-8a6c-1f0e9d8c7b6a";
/// A client secret as Entra makes them (`~` and `.` included, which a form must encode right).
const SECRET: &str = "Qx8~Zr3.Tn5Kw_Lp9vYb2-Hs7Jd4Mf6Gc1Ae0Uo";
const ACCESS_TOKEN: &str =
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2V2ZW50aHVicy5henVyZS5uZXQifQ.c2lnbmF0dXJl";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `CREDENTIALS_DIRECTORY` is one per process: tests that set it take turns
/// (nextest runs each test in its own process; `cargo test` does not).
static CREDENTIALS_DIRECTORY: Mutex<()> = Mutex::new(());

fn set_env(name: &str, value: impl AsRef<std::ffi::OsStr>) {
    // SAFETY: nextest runs each test in a process of its own, so no other
    // thread reads the environment meanwhile. (Under `cargo test` each test
    // still uses variable names of its own, or holds the lock above.)
    unsafe { std::env::set_var(name, value) }
}

fn remove_env(name: &str) {
    // SAFETY: as in `set_env`.
    unsafe { std::env::remove_var(name) }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// One request the token endpoint received.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as `application/x-www-form-urlencoded` fields, in order.
    fn form(&self) -> Vec<(String, String)> {
        self.body
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (form_decode(name), form_decode(value))
            })
            .collect()
    }

    /// The one value of form field `name` (a field sent twice is a failure).
    fn field(&self, name: &str) -> Option<String> {
        let values: Vec<String> = self.form().into_iter().filter(|(n, _)| n == name).map(|(_, v)| v).collect();
        assert!(values.len() <= 1, "form field {name} sent {} times: {}", values.len(), self.body);
        values.into_iter().next()
    }
}

fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad percent escape %{hex} in {text}")));
                i += 2;
            }
            b'%' => panic!("truncated percent escape in {text}"),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

type Responder = Box<dyn Fn(&Request) -> (u16, String) + Send>;

/// A token endpoint on 127.0.0.1: one request per connection, answered by
/// `respond`; every request is kept. Stopped (and joined) on drop.
struct TokenEndpoint {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl TokenEndpoint {
    fn start(respond: impl Fn(&Request) -> (u16, String) + Send + 'static) -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let respond: Responder = Box::new(respond);
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    serve(stream, &respond, &requests);
                }
            })
        };
        TokenEndpoint {
            url: format!("http://{addr}/{TENANT}/oauth2/v2.0/token"),
            requests,
            stop,
            addr,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one HTTP/1.1 request (Content-Length or chunked body), keeps it in
/// `requests` (before answering: the client may look as soon as it has the
/// answer) and answers it.
fn serve(stream: TcpStream, respond: &Responder, requests: &Mutex<Vec<Request>>) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(length) = header("content-length") {
        body.resize(length.parse().unwrap(), 0);
        reader.read_exact(&mut body).ok()?;
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let request = Request { method, path, headers, body: String::from_utf8(body).unwrap() };
    let (status, answer) = respond(&request);
    requests.lock().unwrap().push(request);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Status",
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store, no-cache\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = stream.flush();
    Some(())
}

/// Entra's answer to a good request.
fn token_answer(expires_in: &str) -> String {
    format!(
        r#"{{"token_type":"Bearer","expires_in":{expires_in},"ext_expires_in":3599,"access_token":"{ACCESS_TOKEN}"}}"#
    )
}

/// A configuration with `auth = "entra"` and `credential` (TOML lines naming
/// the secret or certificate), tokens asked from `token_url`.
fn config(credential: &str, token_url: Option<&str>) -> Config {
    // The test endpoint is plain http on loopback, which the configuration must allow in so many words.
    let url = token_url
        .map(|u| format!("entra_token_url = {u:?}\nentra_token_plain_http_loopback = true\n"))
        .unwrap_or_default();
    let text = format!(
        "[kafka]\nauth = \"entra\"\neventhubs_namespace = {NAMESPACE:?}\nentra_tenant_id = {TENANT:?}\nentra_client_id = {CLIENT:?}\n{credential}\n{url}"
    );
    Config::parse(&text, Path::new("entra-test.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (tests/run installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A self-signed certificate and its RSA key in `dir`: `cert.pem`, `key.pem`
/// (PKCS#8), and both in one file as Entra's credential, `both.pem`.
fn certificate(dir: &Path) -> PathBuf {
    openssl(
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mfawatch-entra-test"]
            .into_iter()
            .chain(["-keyout", "raw-key.pem", "-out", "cert.pem"])
            .collect::<Vec<_>>(),
        dir,
    );
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", "raw-key.pem", "-out", "key.pem"], dir);
    openssl(&["x509", "-in", "cert.pem", "-pubkey", "-noout", "-out", "pub.pem"], dir);
    openssl(&["x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der"], dir);
    let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 expected: {}", &key[..40]);
    let both = format!("{}{key}", std::fs::read_to_string(dir.join("cert.pem")).unwrap());
    std::fs::write(dir.join("both.pem"), both).unwrap();
    dir.join("both.pem")
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The certificate's thumbprint as the JOSE header carries it: base64url of
/// the `digest` (`sha1`, `sha256`) of its DER encoding, computed by openssl.
fn thumbprint(dir: &Path, digest: &str) -> String {
    let hash = openssl(&["dgst", &format!("-{digest}"), "-binary", "cert.der"], dir);
    assert_eq!(hash.len(), if digest == "sha1" { 20 } else { 32 });
    b64url(&hash)
}

/// Whether openssl verifies `signature` (RS256: RSASSA-PKCS1-v1_5, SHA-256)
/// over `input` with the certificate's public key.
fn verifies(dir: &Path, input: &[u8], signature: &[u8]) -> bool {
    std::fs::write(dir.join("input.bin"), input).unwrap();
    std::fs::write(dir.join("sig.bin"), signature).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.bin", "input.bin"])
        .current_dir(dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.success(), said.contains("Verified OK"), "{said}");
    out.status.success()
}

/// A client assertion taken apart: header, claims, signature, and the
/// signing input (`header.claims` as sent).
struct Assertion {
    header: serde_json::Value,
    claims: serde_json::Value,
    signature: Vec<u8>,
    input: String,
}

/// The form of a request of the certificate flow, checked; its assertion.
fn assertion_of(request: &Request) -> Assertion {
    assert_eq!(request.method, "POST");
    assert_eq!(request.field("grant_type").as_deref(), Some("client_credentials"), "{}", request.body);
    assert_eq!(request.field("client_id").as_deref(), Some(CLIENT));
    assert_eq!(request.field("scope").as_deref(), Some(SCOPE));
    assert_eq!(request.field("client_assertion_type").as_deref(), Some(ASSERTION_TYPE));
    assert_eq!(request.field("client_secret"), None, "no client secret with a certificate: {}", request.body);
    let assertion = request.field("client_assertion").expect("a client_assertion");
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS in compact form: {assertion}");
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| panic!("not base64url without padding ({e}): {part}"))
    };
    Assertion {
        header: serde_json::from_slice(&decode(parts[0])).unwrap(),
        claims: serde_json::from_slice(&decode(parts[1])).unwrap(),
        signature: decode(parts[2]),
        input: format!("{}.{}", parts[0], parts[1]),
    }
}

/// Checks a request of the certificate flow: the form, then the assertion —
/// claims, its signature by the certificate's key, and last the header
/// naming the certificate.
fn check_certificate_request(request: &Request, dir: &Path, token_url: &str) {
    let Assertion { header, claims, signature, input } = assertion_of(request);

    // Claims.
    assert_eq!(claims["aud"], token_url, "{claims}");
    assert_eq!(claims["iss"], CLIENT, "{claims}");
    assert_eq!(claims["sub"], CLIENT, "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()), "{claims}");
    let now = now_ms() / 1000;
    let exp = claims["exp"].as_i64().unwrap_or_else(|| panic!("exp is a number: {claims}"));
    assert!(exp > now && exp <= now + 3600, "exp {exp} within the next hour of {now}: {claims}");
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_i64().unwrap_or_else(|| panic!("nbf is a number: {claims}"));
        assert!(nbf <= now + 1 && nbf > now - 600 && nbf < exp, "nbf {nbf}, now {now}, exp {exp}");
    }

    // The signature: the certificate's key over `header.claims`.
    assert_eq!(header["alg"], "RS256", "{header}");
    assert_eq!(signature.len(), 256, "an RSA-2048 signature");
    assert!(verifies(dir, input.as_bytes(), &signature), "the assertion's signature does not verify");
    // The control: the same signature over other claims does not.
    let forged = format!("{}.{}", input.split('.').next().unwrap(), b64url(br#"{"aud":"x","iss":"y","sub":"y"}"#));
    assert!(!verifies(dir, forged.as_bytes(), &signature), "openssl verifies anything?");

    // Header: the certificate named by its SHA-1 thumbprint (`x5t`), which is
    // how Entra finds the certificate registered on the application for RS256.
    if let Some(typ) = header.get("typ") {
        assert_eq!(typ, "JWT", "{header}");
    }
    let sha1 = thumbprint(dir, "sha1");
    let sha256 = thumbprint(dir, "sha256");
    if let Some(s256) = header.get("x5t#S256") {
        assert_eq!(s256.as_str(), Some(sha256.as_str()), "x5t#S256 is the SHA-256 thumbprint: {header}");
    }
    assert_eq!(
        header["x5t"].as_str(),
        Some(sha1.as_str()),
        "header x5t must be the base64url SHA-1 thumbprint of the certificate ({sha1}); \
         the SHA-256 one is {sha256}; header: {header}"
    );
}

#[test]
fn a_client_secret_gets_the_token_the_endpoint_gives_for_the_event_hubs_scope() {
    let endpoint = TokenEndpoint::start(|_| (200, token_answer("3599")));
    let var = "MFAWATCH_TEST_ENTRA_SECRET_GRANT";
    set_env(var, SECRET);
    let source =
        TokenSource::from_config(&config(&format!("entra_client_secret_env = {var:?}"), Some(&endpoint.url))).unwrap();
    assert!(!format!("{source:?}").contains(SECRET), "{source:?}");

    let before = now_ms();
    let token = source.token().unwrap();
    let after = now_ms();
    assert_eq!(token.token, ACCESS_TOKEN);
    // librdkafka takes the lifetime as the absolute expiry, ms since the epoch.
    assert!(
        (before + 3_599_000..=after + 3_599_000).contains(&token.lifetime_ms),
        "lifetime_ms {} is not now + 3599 s ({}..={})",
        token.lifetime_ms,
        before + 3_599_000,
        after + 3_599_000
    );
    assert!(!token.principal_name.is_empty());

    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert!(
        request.header("content-type").is_some_and(|t| t.starts_with("application/x-www-form-urlencoded")),
        "{:?}",
        request.headers
    );
    let mut names: Vec<String> = request.form().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, ["client_id", "client_secret", "grant_type", "scope"], "{}", request.body);
    assert_eq!(request.field("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(request.field("client_id").as_deref(), Some(CLIENT));
    assert_eq!(request.field("client_secret").as_deref(), Some(SECRET));
    assert_eq!(request.field("scope").as_deref(), Some(SCOPE));
    assert!(!request.path.contains(SECRET), "the secret goes in the body only");
    drop(endpoint);
    remove_env(var);
}

#[test]
fn the_lifetime_is_the_one_the_endpoint_says_each_time() {
    // The v1 endpoint (and some national clouds) send expires_in as a string.
    let answers = Arc::new(Mutex::new(vec![token_answer("\"1800\""), token_answer("600")]));
    let endpoint = {
        let answers = answers.clone();
        TokenEndpoint::start(move |_| (200, answers.lock().unwrap().remove(0)))
    };
    let var = "MFAWATCH_TEST_ENTRA_SECRET_LIFETIME";
    set_env(var, SECRET);
    let source =
        TokenSource::from_config(&config(&format!("entra_client_secret_env = {var:?}"), Some(&endpoint.url))).unwrap();
    for seconds in [1800, 600] {
        let before = now_ms();
        let token = source.token().unwrap();
        let after = now_ms();
        let expected = seconds * 1000;
        assert!(
            (before + expected..=after + expected).contains(&token.lifetime_ms),
            "lifetime_ms {} should be now + {} ms",
            token.lifetime_ms,
            expected
        );
    }
    assert_eq!(endpoint.requests().len(), 2, "one request per token");
    drop(endpoint);
    remove_env(var);
}

#[test]
fn a_certificate_from_the_environment_signs_an_rs256_assertion_the_certificate_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let pem = certificate(dir.path());
    let endpoint = TokenEndpoint::start(|_| (200, token_answer("3599")));
    let var = "MFAWATCH_TEST_ENTRA_CERTIFICATE_ENV";
    set_env(var, std::fs::read_to_string(&pem).unwrap());
    let source =
        TokenSource::from_config(&config(&format!("entra_certificate_env = {var:?}"), Some(&endpoint.url))).unwrap();
    let before = now_ms();
    let token = source.token().unwrap();
    assert_eq!(token.token, ACCESS_TOKEN);
    assert!((before + 3_599_000..=now_ms() + 3_599_000).contains(&token.lifetime_ms), "{}", token.lifetime_ms);
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    check_certificate_request(&requests[0], dir.path(), &endpoint.url);
    drop(endpoint);
    remove_env(var);
}

#[test]
fn a_certificate_from_a_systemd_credential_works_the_same() {
    let _turn = CREDENTIALS_DIRECTORY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let pem = certificate(dir.path());
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    // As the unit loads /etc/mfawatch/credentials: `mfawatch_<file>`.
    std::fs::copy(&pem, credentials.join("mfawatch_entra-certificate")).unwrap();
    set_env("CREDENTIALS_DIRECTORY", &credentials);
    let endpoint = TokenEndpoint::start(|_| (200, token_answer("3599")));
    let source =
        TokenSource::from_config(&config("entra_certificate_credential = \"entra-certificate\"", Some(&endpoint.url)))
            .unwrap();
    remove_env("CREDENTIALS_DIRECTORY");
    assert_eq!(source.token().unwrap().token, ACCESS_TOKEN);
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    check_certificate_request(&requests[0], dir.path(), &endpoint.url);
}

#[test]
fn each_assertion_has_its_own_jti() {
    // RFC 7519 §4.1.7: a jti must not be reused; Entra may refuse a replayed
    // assertion. The consumer and the dead-letter producer each ask for a
    // token at start, within the same second.
    let dir = tempfile::tempdir().unwrap();
    let pem = certificate(dir.path());
    let endpoint = TokenEndpoint::start(|_| (200, token_answer("3599")));
    let var = "MFAWATCH_TEST_ENTRA_CERTIFICATE_JTI";
    set_env(var, std::fs::read_to_string(&pem).unwrap());
    let cfg = config(&format!("entra_certificate_env = {var:?}"), Some(&endpoint.url));
    let (one, two) = (TokenSource::from_config(&cfg).unwrap(), TokenSource::from_config(&cfg).unwrap());
    for source in [&one, &two, &one] {
        source.token().unwrap();
    }
    let jtis: Vec<String> = endpoint
        .requests()
        .iter()
        .map(|r| assertion_of(r).claims["jti"].as_str().expect("a jti").to_string())
        .collect();
    assert_eq!(jtis.len(), 3);
    let mut distinct = jtis.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "jti reused across assertions: {jtis:?}");
    drop(endpoint);
    remove_env(var);
}

#[test]
fn a_refused_secret_is_a_clear_error_naming_the_endpoint_and_the_aadsts_code_without_the_secret() {
    let endpoint = TokenEndpoint::start(|_| {
        (
            401,
            format!(
                r#"{{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{CLIENT}'. Trace ID: 0f3c2b1a-0000-4000-8000-000000000000 Correlation ID: 5e6f7a8b-0000-4000-8000-000000000000 Timestamp: 2025-06-30 12:00:00Z","error_codes":[7000215],"timestamp":"2025-06-30 12:00:00Z","trace_id":"0f3c2b1a-0000-4000-8000-000000000000","correlation_id":"5e6f7a8b-0000-4000-8000-000000000000","error_uri":"https://login.microsoftonline.com/error?code=7000215"}}"#
            ),
        )
    });
    let var = "MFAWATCH_TEST_ENTRA_SECRET_REFUSED";
    set_env(var, SECRET);
    let source =
        TokenSource::from_config(&config(&format!("entra_client_secret_env = {var:?}"), Some(&endpoint.url))).unwrap();
    let error = source.token().err().expect("a 401 is no token");
    assert!(error.contains(&endpoint.url) && error.contains(TENANT), "names the endpoint and tenant: {error}");
    assert!(error.contains("AADSTS7000215"), "names the AADSTS code: {error}");
    assert!(error.contains("401"), "names the status: {error}");
    assert!(!error.contains(SECRET), "the secret leaked: {error}");
    assert_eq!(endpoint.requests().len(), 1);
    drop(endpoint);
    remove_env(var);
}

#[test]
fn an_endpoint_that_cannot_be_reached_is_an_error_without_the_secret() {
    let var = "MFAWATCH_TEST_ENTRA_SECRET_UNREACHABLE";
    set_env(var, SECRET);
    // A port nothing listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/{TENANT}/oauth2/v2.0/token");
    let source = TokenSource::from_config(&config(&format!("entra_client_secret_env = {var:?}"), Some(&url))).unwrap();
    let error = source.token().err().expect("nothing listens");
    assert!(error.contains(&url), "names the endpoint: {error}");
    assert!(!error.contains(SECRET), "the secret leaked: {error}");
    remove_env(var);
}

#[test]
fn a_missing_secret_is_an_error_naming_where_it_looked() {
    let _turn = CREDENTIALS_DIRECTORY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let var = "MFAWATCH_TEST_ENTRA_SECRET_MISSING";
    remove_env(var);
    // Only the environment variable named, and not set.
    let error = TokenSource::from_config(&config(&format!("entra_client_secret_env = {var:?}"), None))
        .expect_err("no secret")
        .to_string();
    assert!(error.contains("client secret") && error.contains(var) && error.contains("not set"), "{error}");
    // A systemd credential that is not there, and the variable.
    set_env("CREDENTIALS_DIRECTORY", dir.path());
    let error = TokenSource::from_config(&config(
        &format!("entra_client_secret_credential = \"entra-client-secret\"\nentra_client_secret_env = {var:?}"),
        None,
    ))
    .expect_err("no secret")
    .to_string();
    remove_env("CREDENTIALS_DIRECTORY");
    assert!(
        error.contains("client secret")
            && error.contains("entra-client-secret")
            && error.contains(&dir.path().display().to_string())
            && error.contains(var),
        "{error}"
    );
    // An empty credential file is no secret either.
    std::fs::write(dir.path().join("entra-client-secret"), "\n").unwrap();
    set_env("CREDENTIALS_DIRECTORY", dir.path());
    let error = TokenSource::from_config(&config("entra_client_secret_credential = \"entra-client-secret\"", None))
        .expect_err("an empty secret")
        .to_string();
    remove_env("CREDENTIALS_DIRECTORY");
    assert!(error.contains("entra-client-secret") && error.contains("empty"), "{error}");
}

#[test]
fn the_default_endpoint_is_the_tenants_on_login_microsoftonline_com() {
    let var = "MFAWATCH_TEST_ENTRA_SECRET_DEFAULT_URL";
    set_env(var, SECRET);
    let source = TokenSource::from_config(&config(&format!("entra_client_secret_env = {var:?}"), None)).unwrap();
    let shown = format!("{source:?}");
    assert!(shown.contains(&format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    remove_env(var);
}

#[test]
fn a_certificate_credential_without_its_key_is_refused_without_printing_it() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path());
    let var = "MFAWATCH_TEST_ENTRA_CERTIFICATE_NO_KEY";
    let cert = std::fs::read_to_string(dir.path().join("cert.pem")).unwrap();
    set_env(var, &cert);
    let error = TokenSource::from_config(&config(&format!("entra_certificate_env = {var:?}"), None))
        .expect_err("no key")
        .to_string();
    assert!(error.contains("PKCS#8") || error.contains("private key"), "{error}");
    // The key alone, with no certificate.
    let key = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    set_env(var, &key);
    let error = TokenSource::from_config(&config(&format!("entra_certificate_env = {var:?}"), None))
        .expect_err("no certificate")
        .to_string();
    assert!(error.contains("certificate"), "{error}");
    let body = |pem: &str| pem.lines().nth(2).unwrap().to_string();
    assert!(!error.contains(&body(&key)), "the key leaked: {error}");
    remove_env(var);
}

#[test]
fn check_config_fails_when_the_entra_secret_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let var = "MFAWATCH_TEST_ENTRA_SECRET_CHECK_CONFIG";
    let path = dir.path().join("entra.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nauth = \"entra\"\neventhubs_namespace = {NAMESPACE:?}\nentra_tenant_id = {TENANT:?}\nentra_client_id = {CLIENT:?}\nentra_client_secret_env = {var:?}\n\n[coverage]\nprivileged = [\"adm-ann@contoso.example\"]\n\n[checkpoint]\ndir = {:?}\n",
            dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let check = |secret: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mfawatch"));
        cmd.args(["check-config", path.to_str().unwrap()]).env_remove(var).env_remove("CREDENTIALS_DIRECTORY");
        if let Some(s) = secret {
            cmd.env(var, s);
        }
        let out = cmd.output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        (out.status.success(), stdout, stderr)
    };
    let (ok, _, stderr) = check(None);
    assert!(!ok, "run would refuse to start: {stderr}");
    let error = stderr.lines().find(|l| l.contains("Entra client secret")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(error.contains(var) && error.contains("not set"), "{error}");
    let (ok, stdout, stderr) = check(Some(SECRET));
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("Entra client secret"), "{stderr}");
    assert!(stdout.contains(var), "the effective configuration says where the secret is: {stdout}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the secret leaked");
}
