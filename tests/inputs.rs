//! The backfill inputs agree. One synthetic tenant, written as NDJSON, as
//! Event Hubs envelopes, as Event Hubs Capture files (Avro, in Capture's
//! folder layout), as the Entra admin center's "Download → CSV" and as a Log
//! Analytics "Export → CSV (all columns)", and each replayed into a fresh
//! state: `mfawatch replay` prints the coverage the NDJSON replay prints, and
//! `mfawatch classify` gives every record the verdict it gives the NDJSON
//! record, as far as the shape carries what that verdict is made of. A
//! damaged Capture file among good ones is named, skipped whole, not marked
//! as replayed, and read once it is whole again.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, DurationRound, TimeDelta, TimeZone, Utc};
use mfawatch::generate::{Format, Generator, PerHub, Tenant, TenantSpec, User};
use serde_json::Value;

/// Ten days of a 300-user tenant, ending at a fixed hour: with the 7-day
/// window, users whose counted sign-ins are all older are inactive. The
/// Capture writer stamps every event as enqueued on 2025-06-30 00:00 UTC, so
/// every sign-in must be before that (a record more than a day after its
/// message is dead-lettered as `future_time`).
fn spec(format: Format, malformed_per_10k: u32) -> TenantSpec {
    TenantSpec {
        users: 300,
        records: 6_000,
        days: 10,
        seed: 29,
        end: Utc.with_ymd_and_hms(2025, 6, 29, 20, 0, 0).unwrap(),
        format,
        records_per_message: 10,
        malformed_per_10k,
        fatigue_per_10k: 10,
        redeliveries_per_10k: 0,
    }
}

/// A replay configuration: state in `dir/state`, dead letters in
/// `dir/dead-letters.ndjson`, the tenant's admins privileged and its
/// break-glass accounts excluded (so that every state and breakdown cell has
/// users), no history.
fn config(dir: &Path, tenant: &Tenant) -> PathBuf {
    let names = |pick: fn(&User) -> bool| {
        tenant.users.iter().filter(|u| pick(u)).map(|u| format!("{:?}", u.upn)).collect::<Vec<_>>().join(", ")
    };
    let path = dir.join("mfawatch.toml");
    std::fs::write(
        &path,
        format!(
            "[checkpoint]\ndir = {:?}\n\n[dead_letter]\nfile = {:?}\n\n[history]\nenabled = false\n\n\
             [coverage]\nprivileged = [{}]\nexcluded = [{}]\n",
            dir.join("state").display().to_string(),
            dir.join("dead-letters.ndjson").display().to_string(),
            names(|u| u.admin),
            names(|u| u.break_glass),
        ),
    )
    .unwrap();
    path
}

/// What one `mfawatch replay` said.
struct Replayed {
    /// The coverage summary it printed on stdout.
    summary: Value,
    /// Inputs read, records read and records dead-lettered (its last stderr line).
    inputs: u64,
    records: u64,
    malformed: u64,
    stderr: String,
    /// The dead letters it wrote (`dir/dead-letters.ndjson`).
    dead_letters: Vec<Value>,
}

/// `mfawatch replay` of `inputs` into the state in `dir` (created if new).
fn replay(dir: &Path, tenant: &Tenant, inputs: &[&Path]) -> Replayed {
    std::fs::create_dir_all(dir).unwrap();
    let config = config(dir, tenant);
    let out = common::replay(&config, inputs, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // "replayed N input(s): R records, D of them malformed and dead-lettered; ..."
    let line = stderr
        .lines()
        .find(|l| l.starts_with("replayed ") && l.contains(" input(s): "))
        .unwrap_or_else(|| panic!("no closing line on stderr:\n{stderr}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .take(3)
        .map(|w| w.parse().unwrap())
        .collect();
    let dead_letters = std::fs::read_to_string(dir.join("dead-letters.ndjson"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Replayed {
        summary: serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout))),
        inputs: numbers[0],
        records: numbers[1],
        malformed: numbers[2],
        stderr,
        dead_letters,
    }
}

/// `mfawatch classify FILE...`: each verdict line by the record's request id.
fn verdicts(inputs: &[PathBuf]) -> BTreeMap<String, Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_mfawatch")).arg("classify").args(inputs).output().unwrap();
    assert!(out.status.success(), "classify: {}", String::from_utf8_lossy(&out.stderr));
    let mut by_id = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let verdict: Value = serde_json::from_str(line).unwrap();
        if verdict.get("directory").is_some() {
            continue; // a directory record (the generator's AuditLogs), not a sign-in's verdict
        }
        let id = verdict["id"].as_str().unwrap_or_else(|| panic!("a verdict without an id: {line}")).to_owned();
        assert!(by_id.insert(id, verdict).is_none(), "a request id twice: {line}");
    }
    by_id
}

/// Every field of the summary but `late_records`, which counts the counted
/// sign-ins that arrived after their day had left the window: that depends
/// on the order the records are read in, and the shapes order them
/// differently (Capture by hub, partition and time; the portal by kind of
/// sign-in, newest first). The state itself does not (coverage.rs), and that
/// is what is compared.
fn assert_same_coverage(expected: &Value, got: &Value, what: &str) {
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().expect("the summary is an object").remove("late_records");
        v
    };
    assert!(
        strip(expected) == strip(got),
        "{what}: the coverage differs from the NDJSON replay's\nNDJSON: {}\n{what}: {}",
        serde_json::to_string_pretty(expected).unwrap(),
        serde_json::to_string_pretty(got).unwrap()
    );
}

/// The reference coverage has something in every state, or comparing it
/// would prove little.
fn assert_rich(summary: &Value) {
    for state in ["covered", "uncovered", "inactive", "excluded"] {
        assert!(summary["states"][state].as_u64().unwrap() > 0, "no {state} user: {summary}");
    }
    for count in ["never_mfa", "registration_pending"] {
        assert!(summary[count].as_u64().unwrap() > 0, "no {count}: {summary}");
    }
    assert!(summary["users"].as_u64().unwrap() > 250, "{summary}");
    assert!(summary["breakdown"].as_array().unwrap().iter().any(|b| b["privileged"] == true), "{summary}");
}

/// Compares verdicts record by record and field by field; a difference is
/// reported as the fields that differ, how often, and one record each.
fn assert_same_verdicts(expected: &BTreeMap<String, Value>, got: &BTreeMap<String, Value>, what: &str) {
    let missing: Vec<&String> = expected.keys().filter(|id| !got.contains_key(*id)).collect();
    let extra: Vec<&String> = got.keys().filter(|id| !expected.contains_key(*id)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} records not classified (e.g. {:?}), {} records the NDJSON does not have (e.g. {:?})",
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>()
    );
    let mut differences: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (id, e) in expected {
        let (e, g) = (e.as_object().unwrap(), got[id].as_object().unwrap());
        for field in e.keys().chain(g.keys().filter(|k| !e.contains_key(*k))) {
            let (ev, gv) = (e.get(field).unwrap_or(&Value::Null), g.get(field).unwrap_or(&Value::Null));
            if ev != gv {
                let example = format!("{} {id}: NDJSON {ev}, {what} {gv}", e["category"]);
                differences.entry(field.clone()).or_insert((0, example)).0 += 1;
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{what}: verdicts differ from the NDJSON's in {} field(s):\n{}",
        differences.len(),
        differences.iter().map(|(f, (n, e))| format!("  {f}: {n} records, e.g. {e}")).collect::<Vec<_>>().join("\n")
    );
}

/// What a shape carries of a verdict line: the rest is taken out of both
/// sides before they are compared.
#[derive(Clone, Copy)]
struct Carries {
    /// The finest time it writes (a portal download has whole seconds, a Log
    /// Analytics export milliseconds; Entra writes 100 ns).
    time: TimeDelta,
    /// Risk levels and state, the Conditional Access policies (so the
    /// report-only results) and the authentication requirement policies (so
    /// the MFA mechanisms): the portal download has no column for them.
    risk_and_policies: bool,
    /// The portal downloads AD FS sign-ins with the other interactive ones:
    /// its rows say "interactive user", not `ADFSSignInLogs`.
    adfs: bool,
}

fn normalised(verdicts: &BTreeMap<String, Value>, carries: Carries) -> BTreeMap<String, Value> {
    verdicts
        .iter()
        .map(|(id, v)| {
            let mut v = v.clone();
            let o = v.as_object_mut().unwrap();
            // Which shape a record came in is what differs, by construction.
            o.remove("shape");
            let time = DateTime::parse_from_rfc3339(o["time"].as_str().unwrap()).unwrap().with_timezone(&Utc);
            let time = time.duration_trunc(carries.time).unwrap();
            o.insert("time".into(), time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true).into());
            if !carries.risk_and_policies {
                for field in ["risk_level", "risk_state", "report_only", "mfa_mechanisms"] {
                    o.remove(field);
                }
                let labels: Vec<Value> =
                    o["labels"].as_array().unwrap().iter().filter(|l| *l != "risky").cloned().collect();
                o.insert("labels".into(), labels.into());
            }
            if !carries.adfs && o["category"] == "ADFSSignInLogs" {
                o.insert("category".into(), "SignInLogs".into());
            }
            (id.clone(), v)
        })
        .collect()
}

/// The tenant's records, one JSON value each, as the generator writes them.
fn records(spec: TenantSpec) -> Vec<Value> {
    Generator::new(TenantSpec { format: Format::Ndjson, ..spec }).map(|m| serde_json::from_slice(&m).unwrap()).collect()
}

fn event_time(record: &Value) -> DateTime<Utc> {
    let text = record["properties"]["createdDateTime"].as_str().expect("a generated sign-in has createdDateTime");
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// A top-level key of a diagnostic record, whatever its case (the generator
/// lower-cases some records' keys, as some pipelines do).
fn top<'a>(record: &'a Value, key: &str) -> &'a Value {
    record.as_object().unwrap().iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map_or(&Value::Null, |(_, v)| v)
}

/// A JSON value as a CSV cell: text as it is, numbers and booleans as
/// written, objects and arrays as JSON text, null as nothing.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn ndjson_and_event_hubs_envelopes_give_the_same_coverage_and_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new(&spec(Format::Ndjson, 0));
    let ndjson = dir.path().join("signins.ndjson");
    let envelopes = dir.path().join("envelopes.ndjson");
    common::write_ndjson(&ndjson, &Generator::new(spec(Format::Ndjson, 20)).collect::<Vec<_>>());
    common::write_ndjson(&envelopes, &Generator::new(spec(Format::Envelope, 20)).collect::<Vec<_>>());
    assert_ne!(std::fs::read(&ndjson).unwrap(), std::fs::read(&envelopes).unwrap(), "two framings");

    let a = replay(&dir.path().join("a"), &tenant, &[&ndjson]);
    let b = replay(&dir.path().join("b"), &tenant, &[&envelopes]);
    assert_rich(&a.summary);
    assert_eq!(a.records, 6_000, "{}", a.stderr);
    assert!(a.malformed > 0, "the malformed records are part of the comparison: {}", a.stderr);
    // The same records in the same order: even `late_records` agrees.
    assert_eq!(a.summary, b.summary);
    assert_eq!((a.records, a.malformed), (b.records, b.malformed), "{}", b.stderr);
    let reasons = |r: &Replayed| {
        let mut v: Vec<(String, String)> =
            r.dead_letters.iter().map(|d| (d["reason"].to_string(), d["raw_sha256"].to_string())).collect();
        v.sort();
        v
    };
    assert_eq!(reasons(&a), reasons(&b), "the same records dead-lettered for the same reasons");
    assert_eq!(reasons(&a).len() as u64, a.malformed);

    let expected = verdicts(&[ndjson]);
    assert!(expected.len() > 5_000, "{}", expected.len());
    assert_same_verdicts(&expected, &verdicts(&[envelopes]), "envelopes");
}

// ---------------------------------------------------------------------------
// Event Hubs Capture.

/// Capture's namespace folder for the tests.
const NAMESPACE: &str = "contoso-signins";

/// Capture writes one file per hub, partition and time window.
const WINDOW_SECS: i64 = 12 * 3600;

/// The time a message's first record says (its event time, else its
/// envelope `time`); `None` for a record that says none.
fn message_time(message: &[u8]) -> Option<DateTime<Utc>> {
    let v: Value = serde_json::from_slice(message).ok()?;
    let first = v["records"].get(0)?;
    [&first["properties"]["createdDateTime"], top(first, "time")]
        .into_iter()
        .filter_map(Value::as_str)
        .find_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A Capture file: where it is and the messages (Event Hubs bodies) it holds.
struct CaptureFile {
    path: PathBuf,
    messages: Vec<Vec<u8>>,
}

/// Writes the tenant's stream as Event Hubs Capture lays it out in storage:
/// the diagnostic setting sends each category to its own hub, messages go
/// round robin over two partitions, and each partition's messages of one
/// window go to `<namespace>/<hub>/<partition>/<YYYY>/<MM>/<DD>/<HH>/<mm>/<ss>.avro`
/// (the window's start), written by `mfawatch::cli::bench::capture_file`.
fn capture_tree(root: &Path, spec: TenantSpec) -> Vec<CaptureFile> {
    let mut files: BTreeMap<(String, u32, i64), Vec<Vec<u8>>> = BTreeMap::new();
    let mut sent: BTreeMap<String, u32> = BTreeMap::new();
    let mut last_time = spec.end - TimeDelta::days(spec.days as i64);
    let mut per_hub = PerHub::new(spec);
    while let Some((hub, message)) = per_hub.next_message() {
        let n = sent.entry(hub.clone()).or_default();
        let partition = *n % 2;
        *n += 1;
        // A message whose first record has no time (a malformed one) goes
        // with the one before it.
        last_time = message_time(&message).unwrap_or(last_time);
        let window = last_time.timestamp().div_euclid(WINDOW_SECS) * WINDOW_SECS;
        files.entry((hub, partition, window)).or_default().push(message);
    }
    files
        .into_iter()
        .map(|((hub, partition, window), messages)| {
            let start = DateTime::from_timestamp(window, 0).unwrap();
            let path = root
                .join(NAMESPACE)
                .join(hub)
                .join(partition.to_string())
                .join(start.format("%Y/%m/%d/%H/%M/%S.avro").to_string());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, mfawatch::cli::bench::capture_file(&messages).unwrap()).unwrap();
            CaptureFile { path, messages }
        })
        .collect()
}

/// Records in Event Hubs messages (`{"records":[...]}`).
fn records_in(messages: &[Vec<u8>]) -> u64 {
    messages
        .iter()
        .map(|m| serde_json::from_slice::<Value>(m).unwrap()["records"].as_array().unwrap().len() as u64)
        .sum()
}

#[test]
fn a_capture_folder_gives_what_the_ndjson_gives() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new(&spec(Format::Envelope, 20));
    let ndjson = dir.path().join("signins.ndjson");
    common::write_ndjson(&ndjson, &Generator::new(spec(Format::Envelope, 20)).collect::<Vec<_>>());
    let capture = dir.path().join("capture");
    let files = capture_tree(&capture, spec(Format::Envelope, 20));
    let hubs: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| f.path.strip_prefix(capture.join(NAMESPACE)).unwrap().components().next().unwrap())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    assert!(hubs.len() >= 5 && hubs.contains("insights-logs-auditlogs"), "{hubs:?}");
    assert!(files.len() > 50, "{} files", files.len());
    // Capture also writes a file for a window without events (unless told
    // not to): a header and no block.
    for window in ["2025/06/18/12/00/00.avro", "2025/06/30/00/00/00.avro"] {
        let path = capture.join(NAMESPACE).join("insights-logs-managedidentitysigninlogs/1").join(window);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let empty = mfawatch::cli::bench::capture_file(&[]).unwrap();
        assert!(empty.starts_with(b"Obj\x01"), "a header");
        std::fs::write(path, empty).unwrap();
    }

    let a = replay(&dir.path().join("a"), &tenant, &[&ndjson]);
    let b = replay(&dir.path().join("b"), &tenant, &[&capture]);
    assert_rich(&a.summary);
    assert_same_coverage(&a.summary, &b.summary, "Capture");
    assert_eq!(b.inputs, files.len() as u64 + 2, "every .avro file under the folder is read: {}", b.stderr);
    assert_eq!((b.records, b.malformed), (a.records, a.malformed), "{}", b.stderr);
    assert!(a.malformed > 0, "{}", a.stderr);
    // The same records dead-lettered, and named by their place in the Capture file.
    let letters = |r: &Replayed| {
        let mut v: Vec<(String, String)> =
            r.dead_letters.iter().map(|d| (d["reason"].to_string(), d["raw_sha256"].to_string())).collect();
        v.sort();
        v
    };
    assert_eq!(letters(&a), letters(&b));
    for letter in &b.dead_letters {
        let source = letter["source"].as_str().unwrap();
        assert!(source.contains(".avro block ") && source.contains(" event "), "{letter}");
    }

    let expected = verdicts(&[ndjson]);
    let got = verdicts(&files.iter().map(|f| f.path.clone()).collect::<Vec<_>>());
    assert_same_verdicts(&expected, &got, "Capture");
}

/// A Capture folder with one file to be damaged: the largest, several Avro
/// blocks long, so that a cut leaves whole blocks before it that could be
/// read by mistake.
struct Damaged {
    dir: tempfile::TempDir,
    tenant: Tenant,
    capture: PathBuf,
    files: Vec<CaptureFile>,
    victim: usize,
    whole: Vec<u8>,
    /// The victim's path under the folder, as stderr must name it.
    name: String,
}

impl Damaged {
    fn new(damage: impl Fn(&[u8]) -> Vec<u8>) -> Damaged {
        let dir = tempfile::tempdir().unwrap();
        let tenant = Tenant::new(&spec(Format::Envelope, 0));
        let capture = dir.path().join("capture");
        let files = capture_tree(&capture, spec(Format::Envelope, 0));
        let victim = (0..files.len()).max_by_key(|&i| std::fs::metadata(&files[i].path).unwrap().len()).unwrap();
        let path = &files[victim].path;
        let listed = Command::new(env!("CARGO_BIN_EXE_mfawatch"))
            .args(["classify", "--with-source"])
            .arg(path)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&listed.stdout).contains(".avro block 2 event "), "the victim has 3+ blocks");
        assert!(records_in(&files[victim].messages) >= 30);
        let whole = std::fs::read(path).unwrap();
        std::fs::write(path, damage(&whole)).unwrap();
        let name = path.strip_prefix(&capture).unwrap().display().to_string();
        Damaged { dir, tenant, capture, files, victim, whole, name }
    }

    fn victim(&self) -> &CaptureFile {
        &self.files[self.victim]
    }

    /// A replay of what the other files hold, as NDJSON, into a fresh state.
    fn others_as_ndjson(&self) -> Replayed {
        let others: Vec<Vec<u8>> = (0..self.files.len())
            .filter(|&i| i != self.victim)
            .flat_map(|i| self.files[i].messages.iter().cloned())
            .collect();
        let ndjson = self.dir.path().join("others.ndjson");
        common::write_ndjson(&ndjson, &others);
        replay(&self.dir.path().join("others"), &self.tenant, &[&ndjson])
    }

    /// The victim whole again (the blob finished uploading, or was fetched
    /// again): the next replay of the folder into `state` reads it and only
    /// it, and the state is then the whole tenant's.
    fn restored_and_replayed(&self, state: &Path) {
        std::fs::write(&self.victim().path, &self.whole).unwrap();
        let again = replay(state, &self.tenant, &[&self.capture]);
        assert_eq!(again.inputs, 1, "{}", again.stderr);
        assert_eq!(again.records, records_in(&self.victim().messages), "{}", again.stderr);
        let skipped = again.stderr.lines().filter(|l| l.contains("already replayed into this state")).count();
        assert_eq!(skipped, self.files.len() - 1, "{}", again.stderr);
        let all = self.dir.path().join("all.ndjson");
        common::write_ndjson(&all, &Generator::new(spec(Format::Envelope, 0)).collect::<Vec<_>>());
        let whole = replay(&self.dir.path().join("all"), &self.tenant, &[&all]);
        assert_rich(&whole.summary);
        assert_same_coverage(&whole.summary, &again.summary, "Capture once the damaged file is whole");
    }
}

#[test]
fn a_damaged_capture_file_is_named_and_skipped_whole_and_read_once_it_is_whole() {
    // Cut two thirds of the way: its first blocks are whole.
    let d = Damaged::new(|whole| whole[..whole.len() * 2 / 3].to_vec());
    let reference = d.others_as_ndjson();
    let state = d.dir.path().join("capture-state");
    let first = replay(&state, &d.tenant, &[&d.capture]);
    assert!(
        first.stderr.lines().any(|l| l.contains(&d.name)
            && l.contains("not a readable Event Hubs Capture file")
            && l.contains("skipped")),
        "the damaged file is named and said to be skipped:\n{}",
        first.stderr
    );
    assert_eq!(first.inputs, d.files.len() as u64 - 1, "{}", first.stderr);
    // Nothing of it was read: exactly the other files' records (a record
    // read from its whole blocks would be one more), and their coverage.
    assert_eq!(first.records, reference.records, "{}", first.stderr);
    let all: Vec<Vec<u8>> = d.files.iter().flat_map(|f| f.messages.iter().cloned()).collect();
    assert_eq!(first.records + records_in(&d.victim().messages), records_in(&all));
    assert_same_coverage(&reference.summary, &first.summary, "Capture with a damaged file");
    assert!(first.dead_letters.is_empty(), "{:?}", first.dead_letters);
    // `classify` says the same of it, and prints no verdict from it.
    let classified =
        Command::new(env!("CARGO_BIN_EXE_mfawatch")).arg("classify").arg(&d.victim().path).output().unwrap();
    let stderr = String::from_utf8_lossy(&classified.stderr);
    assert!(!classified.status.success() && stderr.contains(&d.name), "{stderr}");
    assert!(classified.stdout.is_empty(), "no verdict from a damaged file");

    d.restored_and_replayed(&state);
}

/// A blob of zero bytes is a Capture file not written yet (capture.rs reads
/// it as holding nothing): once written, the next backfill must read it.
#[test]
fn a_capture_blob_not_written_yet_is_read_once_it_is() {
    let d = Damaged::new(|_| Vec::new());
    let reference = d.others_as_ndjson();
    let state = d.dir.path().join("capture-state");
    let first = replay(&state, &d.tenant, &[&d.capture]);
    assert_eq!(first.records, reference.records, "{}", first.stderr);
    assert_same_coverage(&reference.summary, &first.summary, "Capture with an empty blob");
    d.restored_and_replayed(&state);
}

// ---------------------------------------------------------------------------
// The Entra admin center's download: Sign-in logs → Download → CSV, one
// file per tab (interactive, non-interactive, service principal, managed
// identity), with the columns of a 2025 download. It has no columns for
// risk (level, state) or for the Conditional Access policies (so none for
// report-only results): those are not compared. Its dates are whole seconds.

/// The columns of the user sign-in downloads (interactive and non-interactive).
const PORTAL_USER_COLUMNS: [&str; 46] = [
    "Date (UTC)",
    "Request ID",
    "User agent",
    "Correlation ID",
    "User ID",
    "User",
    "Username",
    "User type",
    "Cross tenant access type",
    "Incoming token type",
    "Authentication Protocol",
    "Unique token identifier",
    "Original transfer method",
    "Client credential type",
    "Application",
    "Application ID ",
    "Resource",
    "Resource ID ",
    "Resource tenant ID",
    "Home tenant ID",
    "Home tenant name",
    "IP address",
    "Location",
    "Status",
    "Sign-in error code",
    "Failure reason",
    "Client app",
    "Device ID",
    "Browser",
    "Operating System",
    "Compliant",
    "Managed",
    "Join Type",
    "Multifactor authentication result",
    "Multifactor authentication auth method",
    "Multifactor authentication auth detail",
    "Authentication requirement",
    "Sign-in identifier",
    "Session ID",
    "IP address (seen by resource)",
    "Through Global Secure Access",
    "Autonomous system  number",
    "Flagged for review",
    "Token issuer type",
    "Incoming token type",
    "Conditional Access",
];

/// The columns of the service principal and managed identity downloads.
const PORTAL_WORKLOAD_COLUMNS: [&str; 17] = [
    "Date (UTC)",
    "Request ID",
    "Correlation ID",
    "Service principal ID",
    "Service principal name",
    "Managed Identity type",
    "Application",
    "Application ID",
    "Resource",
    "Resource ID",
    "IP address",
    "Location",
    "Status",
    "Sign-in error code",
    "Failure reason",
    "Conditional Access",
    "Latency",
];

/// The download (file name) a sign-in is in; `None` for what no sign-in tab shows.
fn portal_file(category: &str) -> Option<&'static str> {
    match category {
        "SignInLogs" | "ADFSSignInLogs" => Some("InteractiveSignIns_2025-06-19_2025-06-29.csv"),
        "NonInteractiveUserSignInLogs" => Some("NonInteractiveSignIns_2025-06-19_2025-06-29.csv"),
        "ServicePrincipalSignInLogs" => Some("ApplicationSignIns_2025-06-19_2025-06-29.csv"),
        "ManagedIdentitySignInLogs" => Some("MSISignIns_2025-06-19_2025-06-29.csv"),
        _ => None,
    }
}

/// The MFA step of a sign-in (`authenticationStepRequirement` names MFA).
fn mfa_step(p: &Value) -> Option<&Value> {
    p["authenticationDetails"].as_array()?.iter().find(|s| {
        s["authenticationStepRequirement"].as_str().is_some_and(|r| r.to_ascii_lowercase().starts_with("multi"))
    })
}

/// One cell of a portal download for a generated record.
fn portal_cell(column: &str, record: &Value) -> String {
    let p = &record["properties"];
    let code = p["status"]["errorCode"].as_i64().expect("a generated sign-in has status.errorCode");
    let text = |key: &str| cell(&p[key]);
    match column {
        "Date (UTC)" => event_time(record).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "Request ID" => text("id"),
        "User agent" => text("userAgent"),
        "Correlation ID" => text("correlationId"),
        "User ID" => text("userId"),
        "User" => text("userDisplayName"),
        "Username" => text("userPrincipalName"),
        "User type" => text("userType"),
        "Cross tenant access type" => text("crossTenantAccessType"),
        "Incoming token type" => text("incomingTokenType"),
        "Authentication Protocol" => text("authenticationProtocol"),
        "Unique token identifier" => text("uniqueTokenIdentifier"),
        "Original transfer method" => text("originalTransferMethod"),
        "Client credential type" => text("clientCredentialType"),
        "Application" => text("appDisplayName"),
        "Application ID " | "Application ID" => text("appId"),
        "Resource" => text("resourceDisplayName"),
        "Resource ID " | "Resource ID" => text("resourceId"),
        "Resource tenant ID" => text("resourceTenantId"),
        "Home tenant ID" => text("homeTenantId"),
        "IP address" => text("ipAddress"),
        "Location" => {
            let l = &p["location"];
            ["city", "state", "countryOrRegion"].iter().filter_map(|k| l[k].as_str()).collect::<Vec<_>>().join(", ")
        }
        "Status" => match code {
            0 => "Success",
            50074 | 50076 | 50072 | 50079 | 50158 => "Interrupted",
            _ => "Failure",
        }
        .into(),
        "Sign-in error code" => code.to_string(),
        "Failure reason" => cell(&p["status"]["failureReason"]),
        "Client app" => text("clientAppUsed"),
        "Device ID" => cell(&p["deviceDetail"]["deviceId"]),
        "Browser" => cell(&p["deviceDetail"]["browser"]),
        "Operating System" => cell(&p["deviceDetail"]["operatingSystem"]),
        "Compliant" => cell(&p["deviceDetail"]["isCompliant"]),
        "Managed" => cell(&p["deviceDetail"]["isManaged"]),
        // What the sign-in's MFA came to: the status says it when it was
        // not done here (a claim in the token, a denial), else the MFA step.
        "Multifactor authentication result" => match p["status"]["additionalDetails"].as_str() {
            Some(details) if !details.is_empty() => details.to_owned(),
            _ => mfa_step(p).map(|s| cell(&s["authenticationStepResultDetail"])).unwrap_or_default(),
        },
        "Multifactor authentication auth method" => {
            mfa_step(p).map(|s| cell(&s["authenticationMethod"])).unwrap_or_default()
        }
        "Authentication requirement" => match p["authenticationRequirement"].as_str() {
            Some("multiFactorAuthentication") => "Multifactor authentication".into(),
            Some("singleFactorAuthentication") => "Single-factor authentication".into(),
            other => other.unwrap_or_default().into(),
        },
        "Sign-in identifier" => text("signInIdentifier"),
        "Through Global Secure Access" => text("isThroughGlobalSecureAccess"),
        "Autonomous system  number" => text("autonomousSystemNumber"),
        "Flagged for review" => text("flaggedForReview"),
        "Token issuer type" => text("tokenIssuerType"),
        "Conditional Access" => match p["conditionalAccessStatus"].as_str() {
            Some("success") => "Success".into(),
            Some("failure") => "Failure".into(),
            Some("notApplied") => "Not Applied".into(),
            other => other.unwrap_or_default().into(),
        },
        "Service principal ID" => text("servicePrincipalId"),
        "Service principal name" => text("servicePrincipalName"),
        "Managed Identity type" => text("managedIdentityType"),
        "Latency" => text("processingTimeInMilliseconds"),
        _ => String::new(),
    }
}

/// Writes the records as the portal's downloads into `dir`; their paths.
fn portal_downloads(dir: &Path, records: &[Value]) -> Vec<PathBuf> {
    let mut rows: BTreeMap<&'static str, Vec<&Value>> = BTreeMap::new();
    for r in records {
        if let Some(file) = portal_file(r["category"].as_str().unwrap()) {
            rows.entry(file).or_default().push(r);
        }
    }
    assert_eq!(rows.len(), 4, "every tab has sign-ins");
    rows.into_iter()
        .map(|(file, mut rows)| {
            let columns: &[&str] = if file.starts_with("Application") || file.starts_with("MSI") {
                &PORTAL_WORKLOAD_COLUMNS
            } else {
                &PORTAL_USER_COLUMNS
            };
            // Newest first, as the portal lists and downloads them.
            rows.sort_by_key(|r| std::cmp::Reverse(event_time(r)));
            let path = dir.join(file);
            let mut out = b"\xef\xbb\xbf".to_vec();
            {
                let mut w = csv::WriterBuilder::new().quote_style(csv::QuoteStyle::Always).from_writer(&mut out);
                w.write_record(columns).unwrap();
                for r in rows {
                    w.write_record(columns.iter().map(|c| portal_cell(c, r))).unwrap();
                }
                w.flush().unwrap();
            }
            std::fs::write(&path, out).unwrap();
            path
        })
        .collect()
}

#[test]
fn the_entra_portal_csv_downloads_give_what_the_ndjson_gives() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new(&spec(Format::Ndjson, 0));
    let records = records(spec(Format::Ndjson, 0));
    let ndjson = dir.path().join("signins.ndjson");
    common::write_ndjson(&ndjson, &records.iter().map(|r| serde_json::to_vec(r).unwrap()).collect::<Vec<_>>());
    let downloads = portal_downloads(dir.path(), &records);
    let sign_ins = records.iter().filter(|r| portal_file(r["category"].as_str().unwrap()).is_some()).count() as u64;

    let a = replay(&dir.path().join("a"), &tenant, &[&ndjson]);
    let inputs: Vec<&Path> = downloads.iter().map(PathBuf::as_path).collect();
    let b = replay(&dir.path().join("b"), &tenant, &inputs);
    assert_rich(&a.summary);
    assert_eq!((b.inputs, b.records, b.malformed), (4, sign_ins, 0), "every row is a sign-in: {}", b.stderr);
    // Risk does not enter the summary: the whole of it compares.
    assert_same_coverage(&a.summary, &b.summary, "portal CSV");

    let carries = Carries { time: TimeDelta::seconds(1), risk_and_policies: false, adfs: false };
    let expected = normalised(&verdicts(&[ndjson]), carries);
    let got = normalised(&verdicts(&downloads), carries);
    assert_eq!(got.len() as u64, sign_ins);
    assert_same_verdicts(&expected, &got, "portal CSV");
}

// ---------------------------------------------------------------------------
// Log Analytics: `union SigninLogs, AADNonInteractiveUserSignInLogs,
// AADServicePrincipalSignInLogs, AADManagedIdentitySignInLogs, ADFSSignInLogs`
// → Export → CSV (all columns). Every column of the union, a row's table in
// `Type`; dynamic columns (Status, AuthenticationDetails,
// ConditionalAccessPolicies, LocationDetails, ...) as JSON text; datetime
// columns headed `[UTC]` and written "6/29/2025, 7:59:12.345 PM". It carries
// everything a verdict is made of, risk and report-only results included;
// its times are milliseconds.

const LA_COLUMNS: [&str; 67] = [
    "TenantId",
    "SourceSystem",
    "TimeGenerated [UTC]",
    "ResourceId",
    "OperationName",
    "OperationVersion",
    "Category",
    "ResultType",
    "ResultSignature",
    "ResultDescription",
    "DurationMs",
    "CorrelationId",
    "Resource",
    "ResourceGroup",
    "ResourceProvider",
    "Identity",
    "Level",
    "Location",
    "AlternateSignInName",
    "AppDisplayName",
    "AppId",
    "AuthenticationContextClassReferences",
    "AuthenticationDetails",
    "AuthenticationProcessingDetails",
    "AuthenticationProtocol",
    "AuthenticationRequirement",
    "AuthenticationRequirementPolicies",
    "ClientAppUsed",
    "ConditionalAccessPolicies",
    "ConditionalAccessStatus",
    "CreatedDateTime [UTC]",
    "CrossTenantAccessType",
    "DeviceDetail",
    "HomeTenantId",
    "Id",
    "IPAddress",
    "IsInteractive",
    "IsRisky",
    "LocationDetails",
    "MfaDetail",
    "NetworkLocationDetails",
    "OriginalRequestId",
    "ProcessingTimeInMilliseconds",
    "ResourceDisplayName",
    "ResourceIdentity",
    "ResourceTenantId",
    "RiskDetail",
    "RiskEventTypes",
    "RiskEventTypes_V2",
    "RiskLevelAggregated",
    "RiskLevelDuringSignIn",
    "RiskState",
    "ServicePrincipalId",
    "ServicePrincipalName",
    "SignInIdentifier",
    "Status",
    "TokenIssuerName",
    "TokenIssuerType",
    "UniqueTokenIdentifier",
    "UserAgent",
    "UserDisplayName",
    "UserId",
    "UserPrincipalName",
    "UserType",
    "ManagedIdentityType",
    "ClientCredentialType",
    "Type",
];

/// The Log Analytics table of a diagnostic category; `None` for what the union does not query.
fn la_table(category: &str) -> Option<&'static str> {
    match category {
        "SignInLogs" => Some("SigninLogs"),
        "NonInteractiveUserSignInLogs" => Some("AADNonInteractiveUserSignInLogs"),
        "ServicePrincipalSignInLogs" => Some("AADServicePrincipalSignInLogs"),
        "ManagedIdentitySignInLogs" => Some("AADManagedIdentitySignInLogs"),
        "ADFSSignInLogs" => Some("ADFSSignInLogs"),
        _ => None,
    }
}

/// "4/28/2021, 2:08:45.221 PM": how the Log Analytics export writes a UTC time.
fn la_time(t: DateTime<Utc>) -> String {
    t.format("%-m/%-d/%Y, %-I:%M:%S%.3f %p").to_string()
}

/// One cell of the Log Analytics export for a generated record.
fn la_cell(column: &str, record: &Value) -> String {
    let p = &record["properties"];
    let flag = |b: bool| if b { "true" } else { "false" }.to_owned();
    match column {
        "SourceSystem" => "Azure AD".into(),
        "TimeGenerated [UTC]" | "CreatedDateTime [UTC]" => la_time(event_time(record)),
        "ResourceId" | "OperationName" | "ResultSignature" | "ResultDescription" | "Identity" | "TenantId" => {
            cell(top(record, column))
        }
        "OperationVersion" => "1.0".into(),
        "Category" => cell(&record["category"]),
        "ResultType" => cell(&p["status"]["errorCode"]),
        "DurationMs" => "0".into(),
        "Resource" | "ResourceGroup" | "ResourceProvider" => "Microsoft.aadiam".into(),
        "Level" => "4".into(),
        "Location" => cell(&p["location"]["countryOrRegion"]),
        "LocationDetails" => cell(&p["location"]),
        "IPAddress" => cell(&p["ipAddress"]),
        "IsInteractive" => flag(p["isInteractive"].as_bool().unwrap_or(false)),
        "IsRisky" => flag(p["riskState"] == "atRisk"),
        "ConditionalAccessPolicies" => cell(&p["appliedConditionalAccessPolicies"]),
        "ResourceIdentity" => cell(&p["resourceId"]),
        "RiskEventTypes_V2" => cell(&p["riskEventTypes_v2"]),
        "Type" => la_table(record["category"].as_str().unwrap()).unwrap().into(),
        // The others are the record's properties under a capital letter.
        other => {
            let mut key = other.to_owned();
            key[..1].make_ascii_lowercase();
            cell(&p[key.as_str()])
        }
    }
}

#[test]
fn a_log_analytics_csv_export_gives_what_the_ndjson_gives() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new(&spec(Format::Ndjson, 0));
    let records = records(spec(Format::Ndjson, 0));
    let ndjson = dir.path().join("signins.ndjson");
    common::write_ndjson(&ndjson, &records.iter().map(|r| serde_json::to_vec(r).unwrap()).collect::<Vec<_>>());
    let export = dir.path().join("query_data.csv");
    let mut rows = 0u64;
    {
        let mut w = csv::Writer::from_path(&export).unwrap();
        w.write_record(LA_COLUMNS).unwrap();
        for r in records.iter().filter(|r| la_table(r["category"].as_str().unwrap()).is_some()) {
            w.write_record(LA_COLUMNS.iter().map(|c| la_cell(c, r))).unwrap();
            rows += 1;
        }
        w.flush().unwrap();
    }

    let a = replay(&dir.path().join("a"), &tenant, &[&ndjson]);
    let b = replay(&dir.path().join("b"), &tenant, &[&export]);
    assert_rich(&a.summary);
    assert_eq!((b.inputs, b.records, b.malformed), (1, rows, 0), "every row is a sign-in: {}", b.stderr);
    assert_same_coverage(&a.summary, &b.summary, "Log Analytics CSV");

    let carries = Carries { time: TimeDelta::milliseconds(1), risk_and_policies: true, adfs: true };
    let expected = normalised(&verdicts(&[ndjson]), carries);
    let got = normalised(&verdicts(&[export]), carries);
    assert_eq!(got.len() as u64, rows);
    // Risk and report-only results are there to compare.
    assert!(got.values().any(|v| v["labels"].as_array().unwrap().iter().any(|l| l == "risky")));
    assert!(got.values().any(|v| !v["report_only"].as_array().unwrap().is_empty()));
    assert_same_verdicts(&expected, &got, "Log Analytics CSV");
}

// ---------------------------------------------------------------------------
// A folder of exports, as `generate --per-hub` writes it (one NDJSON file per hub).

#[test]
fn a_folder_of_ndjson_files_is_replayed_whole_as_the_readme_says() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(Format::Envelope, 20);
    let tenant = Tenant::new(&s);
    let ndjson = dir.path().join("signins.ndjson");
    common::write_ndjson(&ndjson, &Generator::new(s.clone()).collect::<Vec<_>>());
    // The command the README gives, with the alerts the tenant should raise.
    let folder = dir.path().join("hubs");
    let expected = dir.path().join("expected-alerts.ndjson");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mfawatch"))
        .args(["generate", "--users", "300", "--records", "6000", "--days", "10", "--seed", "29"])
        .args(["--end", "2025-06-29T20:00:00Z", "--records-per-message", "10", "--malformed-per-10k", "20"])
        .args(["--fatigue-per-10k", "10", "--per-hub"])
        .arg(&folder)
        .arg("--expect-alerts")
        .arg(&expected)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let alerts = std::fs::read_to_string(&expected).expect("--expect-alerts is written with --per-hub too");
    assert!(alerts.lines().count() > 0 && alerts.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()));
    let files = std::fs::read_dir(&folder).unwrap().count();
    assert!(files >= 5, "one file per hub: {files}");
    // What is not an input is left alone.
    std::fs::write(folder.join("README.txt"), "exported on Monday").unwrap();
    std::fs::write(folder.join(".hidden.ndjson"), "not json").unwrap();

    let a = replay(&dir.path().join("a"), &tenant, &[&ndjson]);
    let b = replay(&dir.path().join("b"), &tenant, &[&folder]);
    assert_eq!(b.inputs, files as u64, "every hub's file, nothing else: {}", b.stderr);
    assert_eq!((b.records, b.malformed), (a.records, a.malformed), "{}", b.stderr);
    assert_same_coverage(&a.summary, &b.summary, "a folder of NDJSON");
    // One hub after the other: the second hub's first days are past the window
    // by then, and the output says what that number means.
    assert!(b.summary["late_records"].as_u64().unwrap() > 0, "{}", b.summary);
    assert!(b.stderr.contains("late_records") && b.stderr.contains("left the coverage window"), "{}", b.stderr);
}
