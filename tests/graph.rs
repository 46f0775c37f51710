//! `[directory.graph]`: the daemon (the real binary, against tansu) reads the
//! role assignments, PIM eligibilities and registration details from a
//! Microsoft Graph played by the test — a small HTTP/1.1 server on 127.0.0.1
//! that is also the tenant's token endpoint — serving Microsoft's documented
//! response examples (tests/fixtures/directory/graph, FIXTURES.md), split in
//! pages joined by `@odata.nextLink`, with a 429 on the way. It ends with the
//! directory state a replay of the same pages gives; a refresh that no longer
//! lists an assignment ends it; a refused listing is said and not fatal.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{Daemon, Tansu, free_port, wait_for, write_config};

const TOPIC: &str = "insights-logs-signinlogs";
const TENANT: &str = "8f1c3a52-5d2b-4c1e-9a7f-2e6b0d4c9a11";
const CLIENT: &str = "3c1d9e0a-7b2f-4e5d-8a6c-1f0e9d8c7b6a";
const SECRET: &str = "Qx8~Zr3.Tn5Kw_Lp9vYb2-Hs7Jd4Mf6Gc1Ae0Uo";
const ACCESS_TOKEN: &str =
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoLm1pY3Jvc29mdC5jb20ifQ.c2ln";
const SECRET_ENV: &str = "MFAWATCH_TEST_GRAPH_SECRET";

/// Joey Cruz: Global Administrator on the first page of role assignments.
const JOEY: &str = "ace08ec9-aa11-4ada-9145-addf0398233e";
/// Every user the fixtures name.
const USERS: [&str; 8] = [
    JOEY,
    "6f87972e-2e7e-4b49-9980-eb3888bdcfe1",
    "10fc1cc8-ac36-4186-b99b-0cf814aa2dd5",
    "f1847572-48aa-47aa-96a3-2ec61904f41f",
    "071cc716-8147-4397-a5ba-b2105951cc0b",
    "86462606-fde0-4fc4-9e0c-a20eb73e54c6",
    "c6ad1942-4afa-47f8-8d48-afb5d8d69d2f",
    "c8096958-797c-44fa-8fde-a6fb62567cf0",
];

/// The pages as Graph serves them, in listing order.
const PAGES: [&str; 5] = [
    "role-assignments-1.json",
    "role-assignments-2.json",
    "role-eligibilities.json",
    "registration-details-1.json",
    "registration-details-2.json",
];

fn fixture(name: &str) -> PathBuf {
    common::root().join("tests/fixtures/directory/graph").join(name)
}

/// What the test's Graph does, changed as the test goes.
#[derive(Default)]
struct Tenant {
    /// The second refresh: Joey's assignment is gone.
    joey_removed: bool,
    /// The eligibility listing is refused (403).
    deny_eligibilities: bool,
    /// The second registration page has been throttled once.
    throttled: bool,
    /// Requests as `METHOD path?query`.
    requests: Vec<String>,
    /// The scopes tokens were asked for.
    scopes: Vec<String>,
}

/// Graph and the token endpoint on 127.0.0.1; stopped (and joined) on drop.
struct FakeGraph {
    url: String,
    tenant: Arc<Mutex<Tenant>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl FakeGraph {
    fn start() -> FakeGraph {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let tenant = Arc::new(Mutex::new(Tenant::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (tenant, stop, url) = (tenant.clone(), stop.clone(), url.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &url, &tenant);
                    }
                }
            })
        };
        FakeGraph { url, tenant, stop, addr, thread: Some(thread) }
    }

    fn tenant(&self) -> std::sync::MutexGuard<'_, Tenant> {
        self.tenant.lock().unwrap()
    }
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request and answers it as the tenant stands.
fn serve(stream: TcpStream, base: &str, tenant: &Mutex<Tenant>) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.replace("%24", "$"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut body = vec![0; header("content-length").map_or(0, |l| l.parse().unwrap())];
    reader.read_exact(&mut body).ok()?;
    let body = String::from_utf8(body).unwrap();

    let mut tenant = tenant.lock().unwrap();
    tenant.requests.push(format!("{method} {target}"));
    let page =
        |name: &str| std::fs::read_to_string(fixture(name)).unwrap().replace("https://graph.microsoft.com", base);
    let denied = r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation.","innerError":{"date":"2026-11-20T00:00:00","request-id":"0b9c5a5e-0000-4000-8000-000000000001"}}}"#;
    let (status, extra, answer) = if method == "POST" && target == format!("/{TENANT}/oauth2/v2.0/token") {
        let form: Vec<(String, String)> = body
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.replace('+', " ").replace("%3A", ":").replace("%2F", "/")))
            .collect();
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        tenant.scopes.push(field("scope"));
        let secret_ok = body.contains("client_secret=Qx8~Zr3.Tn5Kw_Lp9vYb2-Hs7Jd4Mf6Gc1Ae0Uo")
            || body.contains("client_secret=Qx8%7EZr3.Tn5Kw_Lp9vYb2-Hs7Jd4Mf6Gc1Ae0Uo");
        if field("grant_type") == "client_credentials" && field("client_id") == CLIENT && secret_ok {
            (200, "", format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"{ACCESS_TOKEN}"}}"#))
        } else {
            (
                401,
                "",
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#
                    .into(),
            )
        }
    } else if header("authorization").as_deref() != Some(&format!("Bearer {ACCESS_TOKEN}")) {
        (401, "", r#"{"error":{"code":"InvalidAuthenticationToken","message":"Access token is empty."}}"#.into())
    } else {
        match target.as_str() {
            "/v1.0/roleManagement/directory/roleAssignments?$expand=principal" => {
                let mut first: serde_json::Value = serde_json::from_str(&page("role-assignments-1.json")).unwrap();
                if tenant.joey_removed {
                    first["value"].as_array_mut().unwrap().retain(|a| a["principalId"] != JOEY);
                }
                (200, "", first.to_string())
            }
            "/v1.0/roleManagement/directory/roleAssignments?$expand=principal&$skiptoken=page2" => {
                (200, "", page("role-assignments-2.json"))
            }
            "/v1.0/roleManagement/directory/roleEligibilityScheduleInstances?$expand=principal" => {
                if tenant.deny_eligibilities {
                    (403, "", denied.into())
                } else {
                    (200, "", page("role-eligibilities.json"))
                }
            }
            "/v1.0/reports/authenticationMethods/userRegistrationDetails" => {
                (200, "", page("registration-details-1.json"))
            }
            "/v1.0/reports/authenticationMethods/userRegistrationDetails?$skiptoken=page2" if !tenant.throttled => {
                tenant.throttled = true;
                let throttled = r#"{"error":{"code":"TooManyRequests","message":"Too many requests."}}"#;
                (429, "Retry-After: 1\r\n", throttled.into())
            }
            "/v1.0/reports/authenticationMethods/userRegistrationDetails?$skiptoken=page2" => {
                (200, "", page("registration-details-2.json"))
            }
            _ => (404, "", r#"{"error":{"code":"Request_ResourceNotFound","message":"Resource not found."}}"#.into()),
        }
    };
    drop(tenant);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} Status\r\nContent-Type: application/json; charset=utf-8\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = stream.flush();
    Some(())
}

/// A daemon reading Graph at `graph` every `refresh`.
fn graph_config(dir: &Path, tansu: &Tansu, group: &str, port: u16, graph: &FakeGraph, refresh: &str) -> PathBuf {
    let extra = format!(
        "[kafka]\nentra_tenant_id = \"{TENANT}\"\nentra_client_id = \"{CLIENT}\"\nentra_client_secret_env = \"{SECRET_ENV}\"\n\
         entra_token_url = \"{url}/{TENANT}/oauth2/v2.0/token\"\nentra_token_plain_http_loopback = true\n\
         [directory.graph]\nenabled = true\nrefresh = \"{refresh}\"\nurl = \"{url}\"\n",
        url = graph.url
    );
    write_config(dir, &tansu.bootstrap(), TOPIC, group, port, &extra)
}

fn seeded(daemon: &Daemon, listing: &str) -> f64 {
    daemon.metric(&format!("mfawatch_graph_last_seed_timestamp_seconds{{listing=\"{listing}\"}}"))
}

/// What the API says of each user the fixtures name (the parts that come from the directory).
fn views(daemon: &Daemon) -> Vec<serde_json::Value> {
    USERS
        .iter()
        .map(|id| {
            let v = daemon.json(&format!("/api/v1/users/{id}"));
            serde_json::json!({
                "id": id,
                "privileged": v["privileged"],
                "privileged_because": v["privileged_because"],
                "registration": v["registration"],
                "directory": v["directory"],
            })
        })
        .collect()
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn graph_listings_give_the_state_a_replay_of_their_pages_gives_and_a_refresh_ends_what_it_no_longer_lists() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    let graph = FakeGraph::start();

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = graph_config(dir.path(), &tansu, "graph", port, &graph, "2s");
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[(SECRET_ENV, SECRET)]);
    wait_for("every listing applied", Duration::from_secs(30), || {
        assert!(daemon.running(), "the daemon exited: {}", daemon.log_text());
        ["role_assignments", "role_eligibilities", "registration_details"].iter().all(|l| seeded(&daemon, l) > 0.0)
    });
    let from_graph = views(&daemon);

    // The same pages replayed as files into a state of their own.
    let replayed_dir = tempfile::tempdir().unwrap();
    let replayed_port = free_port();
    let replayed_config = write_config(replayed_dir.path(), &tansu.bootstrap(), TOPIC, "replayed", replayed_port, "");
    let pages: Vec<PathBuf> = PAGES.iter().map(|p| fixture(p)).collect();
    common::replay(&replayed_config, &pages.iter().map(PathBuf::as_path).collect::<Vec<_>>(), &[]);
    let replayed = Daemon::start(&replayed_config, replayed_port, &replayed_dir.path().join("daemon.log"), &[]);
    wait_for("the replayed daemon's API", Duration::from_secs(30), || replayed.get("/healthz").is_some());
    assert_eq!(from_graph, views(&replayed), "Graph and a replay of its pages give the same state");

    // What the documented examples hold: four Global Administrators (the
    // expanded principals name Joey, Kalyan and Markie), an eligibility that
    // ended in 2024, three registration reports.
    // None of them has signed in: the API says why each is privileged, if they are.
    let privileged: Vec<bool> = from_graph.iter().map(|v| v["privileged_because"] != serde_json::json!([])).collect();
    assert_eq!(privileged, [true, true, true, true, false, false, false, false], "{from_graph:#?}");
    wait_for("the gauge to count four role holders", Duration::from_secs(10), || {
        daemon.metric("mfawatch_privileged_accounts{source=\"roles\"}") == 4.0
    });
    let state = |i: usize| from_graph[i]["registration"]["state"].as_str().unwrap().to_owned();
    assert_eq!([state(5), state(6), state(7)], ["registered", "not_registered", "registered"]);
    assert!(
        from_graph[0]["privileged_because"][0].as_str().unwrap().starts_with("Global Administrator (active)"),
        "{}",
        from_graph[0]
    );

    // Paging, the 429 waited out, the token asked for Graph's scope.
    {
        let tenant = graph.tenant();
        let pages = |path: &str| tenant.requests.iter().filter(|r| r.contains(path)).count();
        assert!(pages("$skiptoken=page2") >= 3, "both second pages read, one twice: {:?}", tenant.requests);
        assert!(tenant.throttled);
        assert!(tenant.scopes.iter().all(|s| *s == format!("{}/.default", graph.url)), "{:?}", tenant.scopes);
    }
    assert!(
        daemon.metric("mfawatch_graph_fetches_total{listing=\"registration_details\",result=\"throttled\"}") >= 1.0
    );
    assert!(daemon.metric("mfawatch_graph_fetches_total{listing=\"role_assignments\",result=\"ok\"}") >= 2.0);

    // A refresh that no longer lists Joey's assignment ends it.
    graph.tenant().joey_removed = true;
    let flipped = now_seconds();
    wait_for("a refresh after Joey's assignment went", Duration::from_secs(30), || {
        seeded(&daemon, "role_assignments") >= flipped
    });
    let joey = daemon.json(&format!("/api/v1/users/{JOEY}"));
    assert_eq!(joey["privileged_because"], serde_json::json!([]), "{joey}");
    assert_eq!(joey["directory"]["roles"], serde_json::json!([]), "{joey}");
    wait_for("the gauge to count three role holders", Duration::from_secs(10), || {
        daemon.metric("mfawatch_privileged_accounts{source=\"roles\"}") == 3.0
    });
    let others: Vec<serde_json::Value> = views(&daemon).into_iter().skip(1).collect();
    assert_eq!(others, from_graph[1..], "the others are as they were");
    // The history's directory table has the removal too (what the report applies again).
    let history = dir.path().join("state/history");
    let ends_joey = |r: &mfawatch::decode::directory::DirectoryRecord| {
        matches!(&r.fact, mfawatch::decode::directory::Fact::Role(c) if !c.added && c.principal.id.as_deref() == Some(JOEY))
            && r.operation == "No longer in the Graph listing"
    };
    wait_for("the removal in the history", Duration::from_secs(30), || {
        let (records, damaged) = mfawatch::history::directory::records_until(&history, i64::MAX).unwrap();
        assert!(damaged.is_empty(), "{damaged:?}");
        records.iter().any(ends_joey)
    });
    let (records, _) = mfawatch::history::directory::records_until(&history, i64::MAX).unwrap();
    let mut rebuilt = mfawatch::directory::Directory::default();
    for record in &records {
        rebuilt.apply(record);
    }
    assert!(rebuilt.privileged_at(JOEY, "", chrono::Utc::now()).is_none(), "the table's records end Joey's role");
    assert_eq!(rebuilt.summary(chrono::Utc::now()).privileged, 3);
    let log = daemon.log_text();
    assert!(!log.contains(SECRET) && !log.contains(ACCESS_TOKEN), "neither the secret nor the token is logged");
}

#[test]
fn a_refused_listing_is_said_with_its_permission_and_the_daemon_goes_on_with_the_others() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 1);
    let graph = FakeGraph::start();
    graph.tenant().deny_eligibilities = true;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = graph_config(dir.path(), &tansu, "denied", port, &graph, "6h");
    let daemon = Daemon::start(&config, port, &dir.path().join("daemon.log"), &[(SECRET_ENV, SECRET)]);
    wait_for("the other listings applied", Duration::from_secs(30), || {
        assert!(daemon.running(), "the daemon exited: {}", daemon.log_text());
        seeded(&daemon, "registration_details") > 0.0
    });
    assert!(seeded(&daemon, "role_assignments") > 0.0);
    assert_eq!(seeded(&daemon, "role_eligibilities"), 0.0, "a refused listing is not a seed");
    assert_eq!(daemon.metric("mfawatch_graph_fetches_total{listing=\"role_eligibilities\",result=\"denied\"}"), 1.0);
    let log = daemon.log_text();
    let said = log
        .lines()
        .find(|l| l.contains("cannot read a Microsoft Graph listing"))
        .unwrap_or_else(|| panic!("the refusal is logged: {log}"));
    for words in ["role_eligibilities", "403", "Authorization_RequestDenied", "RoleManagement.Read.Directory"] {
        assert!(said.contains(words), "{words} in {said}");
    }
    assert!(!log.contains(SECRET) && !log.contains(ACCESS_TOKEN), "neither the secret nor the token is logged");
    assert!(daemon.running(), "a refusal is not fatal");
}
