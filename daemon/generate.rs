//! generate: a deterministic synthetic Entra tenant and its sign-in stream.
//!
//! Feeds tests, benchmarks and the demo. The same [`TenantSpec`] always gives
//! the same bytes. Records have the shape and size of real diagnostic-setting
//! records (the full property set, 0–40 applied Conditional Access policies on
//! interactive sign-ins, so up to ~16 KB), the mix of a real tenant (mostly
//! non-interactive user sign-ins, service principals, managed identities,
//! legacy protocols, MFA denials, registration, risk) and the quirks of
//! SIGNIN-SEMANTICS §1. Users have stable profiles, so coverage has an answer.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

/// How messages are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Event Hubs messages: `{"records":[...]}` with many records each.
    Envelope,
    /// One record per message (NDJSON).
    Ndjson,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct TenantSpec {
    pub users: u32,
    pub records: u64,
    pub days: u32,
    pub seed: u64,
    /// Sign-ins are spread over `days` ending here.
    pub end: DateTime<Utc>,
    pub format: Format,
    /// Records per envelope message (the last may hold fewer).
    pub records_per_message: u32,
    /// Malformed records per 10,000 (missing time, non-numeric outcome, broken JSON).
    pub malformed_per_10k: u32,
    /// MFA fatigue sequences planted per 10,000 records: a user denies or
    /// ignores 3–5 MFA prompts within minutes, then signs in.
    pub fatigue_per_10k: u32,
    /// Re-deliveries per 10,000 records: a successful interactive sign-in
    /// published again a few hundred records later with a risk an offline
    /// detection found (docs/labels.md §5), the same record id and time.
    pub redeliveries_per_10k: u32,
}

impl TenantSpec {
    /// Refuses a tenant the generator cannot make, naming the option.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.users >= 1, "--users must be at least 1");
        anyhow::ensure!(self.days >= 1, "--days must be at least 1");
        anyhow::ensure!(self.records_per_message >= 1, "--records-per-message must be at least 1");
        anyhow::ensure!(self.malformed_per_10k <= 10_000, "--malformed-per-10k is per 10,000: at most 10000");
        anyhow::ensure!(self.fatigue_per_10k <= 1_000, "--fatigue-per-10k is per 10,000: at most 1000");
        anyhow::ensure!(self.redeliveries_per_10k <= 1_000, "--redeliveries-per-10k is per 10,000: at most 1000");
        Ok(())
    }
}

impl Default for TenantSpec {
    fn default() -> Self {
        TenantSpec {
            users: 1_000,
            records: 10_000,
            days: 7,
            seed: 1,
            end: Utc.with_ymd_and_hms(2025, 6, 30, 0, 0, 0).unwrap(),
            format: Format::Envelope,
            records_per_message: 40,
            malformed_per_10k: 0,
            fatigue_per_10k: 0,
            redeliveries_per_10k: 0,
        }
    }
}

/// How a synthetic user signs in; decides their coverage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Every interactive sign-in does MFA.
    AlwaysMfa,
    /// MFA, with an occasional single-factor sign-in.
    MostlyMfa,
    /// Never does MFA.
    SingleFactor,
    /// MFA in the browser, but a mail client on IMAP/SMTP/ActiveSync too.
    LegacyClient,
    /// Hits "registration required" until they register, then MFA.
    Registering,
}

/// A user of the synthetic tenant.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub upn: String,
    pub display_name: String,
    pub guest: bool,
    pub admin: bool,
    pub break_glass: bool,
    pub profile: Profile,
    /// `userPrincipalName` logged as a GUID (unresolved identity), with no `userId`.
    pub unresolved: bool,
}

struct App {
    id: &'static str,
    name: &'static str,
    resource: &'static str,
    resource_id: &'static str,
}

const APPS: [App; 8] = [
    App {
        id: "4765445b-32c6-49b0-83e6-1d93765276ca",
        name: "OfficeHome",
        resource: "Microsoft Graph",
        resource_id: "00000003-0000-0000-c000-000000000000",
    },
    App {
        id: "d3590ed6-52b3-4102-aeff-aad2292ab01c",
        name: "Microsoft Office",
        resource: "Office 365 Exchange Online",
        resource_id: "00000002-0000-0ff1-ce00-000000000000",
    },
    App {
        id: "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
        name: "Microsoft Teams",
        resource: "Microsoft Teams Services",
        resource_id: "cc15fd57-2c6c-4117-a88c-83b1d56b4bbe",
    },
    App {
        id: "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        name: "Azure Portal",
        resource: "Windows Azure Service Management API",
        resource_id: "797f4846-ba00-4fd7-ba43-dac1f8f63013",
    },
    App {
        id: "00000003-0000-0ff1-ce00-000000000000",
        name: "Office 365 SharePoint Online",
        resource: "Office 365 SharePoint Online",
        resource_id: "00000003-0000-0ff1-ce00-000000000000",
    },
    App {
        id: "27922004-5251-4030-b22d-91ecd9a37ea4",
        name: "Outlook Mobile",
        resource: "Office 365 Exchange Online",
        resource_id: "00000002-0000-0ff1-ce00-000000000000",
    },
    App {
        id: "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
        name: "Microsoft Azure CLI",
        resource: "Windows Azure Service Management API",
        resource_id: "797f4846-ba00-4fd7-ba43-dac1f8f63013",
    },
    App {
        id: "ab9b8c07-8f02-4f72-87fa-80105867a763",
        name: "OneDrive SyncEngine",
        resource: "Office 365 SharePoint Online",
        resource_id: "00000003-0000-0ff1-ce00-000000000000",
    },
];

const LEGACY_CLIENTS: [&str; 6] =
    ["IMAP4", "Authenticated SMTP", "Exchange ActiveSync", "POP3", "Other clients", "Exchange Web Services"];
/// A user's MFA method: each has a preferred one (admins a FIDO2 key,
/// Windows Hello for Business or, one in three, SMS; the others mostly the
/// Authenticator push, some a code, a call or SMS, a fifth phishing-resistant),
/// and those not on a phishing-resistant one fall back to SMS now and then
/// (`drawn` == 0, one time in five).
fn method_of(user: &User, ui: usize, drawn: usize) -> &'static str {
    const ADMINS: [&str; 3] = ["FIDO2 security key", "Windows Hello for Business", "Text message"];
    const USERS: [&str; 10] = [
        "Windows Hello for Business",
        "FIDO2 security key",
        "Mobile app notification",
        "Mobile app notification",
        "Mobile app notification",
        "Mobile app notification",
        "OATH verification code",
        "Text message",
        "Phone call approval (Authentication phone)",
        "Mobile app notification",
    ];
    let preferred = if user.admin { ADMINS[ui % ADMINS.len()] } else { USERS[ui % USERS.len()] };
    let phishing_resistant = matches!(preferred, "FIDO2 security key" | "Windows Hello for Business");
    if !phishing_resistant && drawn == 0 { "Text message" } else { preferred }
}

const MFA_METHODS: [&str; 5] = [
    "Mobile app notification",
    "Text message",
    "OATH verification code",
    "FIDO2 security key",
    "Windows Hello for Business",
];
const CITIES: [(&str, &str, &str, f64, f64); 6] = [
    ("Seattle", "Washington", "US", 47.6062, -122.3321),
    ("Dublin", "Dublin", "IE", 53.3498, -6.2603),
    ("Berlin", "Berlin", "DE", 52.52, 13.405),
    ("Bengaluru", "Karnataka", "IN", 12.9716, 77.5946),
    ("Sao Paulo", "Sao Paulo", "BR", -23.5505, -46.6333),
    ("Sydney", "New South Wales", "AU", -33.8688, 151.2093),
];
const FIRST: [&str; 16] = [
    "ann", "bob", "chen", "dana", "eli", "fatima", "gus", "hana", "ivan", "jo", "kofi", "lena", "mia", "noor", "omar",
    "pia",
];
const LAST: [&str; 16] = [
    "adams", "baker", "costa", "diaz", "evans", "fischer", "garcia", "huang", "ito", "jensen", "khan", "lopez",
    "muller", "nguyen", "okafor", "patel",
];
const TENANT_ID: &str = "8f1c3a52-5d2b-4c1e-9a7f-2e6b0d4c9a11";
const DOMAIN: &str = "contoso.example";

/// A Conditional Access policy of the synthetic tenant.
struct Policy {
    id: String,
    name: String,
    report_only: bool,
    grant: &'static str,
}

/// The tenant: users, workloads and policies, all derived from the seed.
pub struct Tenant {
    pub users: Vec<User>,
    service_principals: Vec<(String, String)>,
    managed_identities: Vec<(String, String)>,
    policies: Vec<Policy>,
}

impl Tenant {
    pub fn new(spec: &TenantSpec) -> Tenant {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x07e4_a4e7);
        let count = spec.users.max(1);
        let admins = (count / 200).max(3).min(count);
        let users = (0..count)
            .map(|i| {
                let first = FIRST[rng.random_range(0..FIRST.len())];
                let last = LAST[rng.random_range(0..LAST.len())];
                let guest = i >= admins && rng.random_bool(0.08);
                let break_glass = i >= admins && i < admins + 2 && count > admins + 10;
                let admin = i < admins;
                let upn = if break_glass {
                    format!("breakglass{}@{DOMAIN}", i - admins + 1)
                } else if guest {
                    format!("{first}.{last}{i}_fabrikam.example#EXT#@{DOMAIN}")
                } else if admin {
                    format!("adm-{first}.{last}{i}@{DOMAIN}")
                } else {
                    format!("{first}.{last}{i}@{DOMAIN}")
                };
                let roll: f64 = rng.random();
                let profile = match roll {
                    r if r < 0.62 => Profile::AlwaysMfa,
                    r if r < 0.80 => Profile::MostlyMfa,
                    r if r < 0.89 => Profile::SingleFactor,
                    r if r < 0.96 => Profile::LegacyClient,
                    _ => Profile::Registering,
                };
                User {
                    id: guid(&mut rng),
                    display_name: format!("{} {}", capitalise(first), capitalise(last)),
                    upn,
                    guest,
                    admin,
                    break_glass,
                    profile: if break_glass { Profile::SingleFactor } else { profile },
                    unresolved: !admin && !break_glass && rng.random_bool(0.003),
                }
            })
            .collect();
        let service_principals = (0..(count / 50).max(4))
            .map(|i| {
                (guid(&mut rng), format!("svc-{}-{i}", ["backup", "sync", "etl", "monitor", "deploy"][i as usize % 5]))
            })
            .collect();
        let managed_identities =
            (0..(count / 100).max(2)).map(|i| (guid(&mut rng), format!("mi-func-app-{i}"))).collect();
        let mut policies = Vec::new();
        for i in 0..40 {
            let (name, report_only, grant) = match i {
                0 => ("Require MFA for all users".to_string(), false, "Mfa"),
                1 => ("Block legacy authentication".to_string(), false, "Block"),
                2 => ("Block legacy authentication (report-only)".to_string(), true, "Block"),
                3 => ("Require compliant device (report-only)".to_string(), true, "RequireCompliantDevice"),
                4 => ("Require MFA for guests (report-only)".to_string(), true, "Mfa"),
                5 => ("Require MFA for admins".to_string(), false, "Mfa"),
                n => (
                    format!("Baseline policy {n:02}"),
                    n % 9 == 0,
                    ["Mfa", "RequireCompliantDevice", "DomainJoinedDevice", "Block"][n % 4],
                ),
            };
            policies.push(Policy { id: guid(&mut rng), name: format!("CA{i:03}: {name}"), report_only, grant });
        }
        Tenant { users, service_principals, managed_identities, policies }
    }
}

/// Streams the messages of a tenant. Each item is one message (one line).
pub struct Generator {
    spec: TenantSpec,
    tenant: Tenant,
    rng: ChaCha8Rng,
    emitted: u64,
    start: DateTime<Utc>,
    step_micros: f64,
    /// Users who registered MFA already (they stop failing with 50079).
    registered: Vec<bool>,
    /// Sign-ins planned ahead (an MFA fatigue sequence), with their times.
    planned: std::collections::VecDeque<(DateTime<Utc>, Forced)>,
    /// The sign-in being written is a planned one.
    forced: Option<Forced>,
    /// Copies to publish again, enriched: (the record index they are due
    /// at, the copy, the alert it should raise).
    redeliveries: std::collections::VecDeque<Redelivery>,
    truth: Truth,
    /// The Event Hubs hub of the record written last (`insights-logs-<category>`).
    last_hub: String,
}

/// A copy to publish again: the record index it is due at, the copy, and
/// the (rule, user key) it should raise.
type Redelivery = (u64, Value, Option<(&'static str, String)>);

/// A planned sign-in: who, and how it ends.
#[derive(Clone, Copy, Debug)]
struct Forced {
    user: usize,
    code: i64,
}

/// What the daemon's alert rules should say about the stream, known as it
/// is generated: the generator's own account, so tests compare the daemon
/// with it rather than with itself.
#[derive(Default)]
struct Truth {
    /// (rule, user key) pairs of the records written.
    expected: std::collections::BTreeSet<(&'static str, String)>,
    /// Interactive MFA failures and successes per user key: (time, success).
    prompts: std::collections::HashMap<String, Vec<(i64, bool)>>,
    /// What the record being written adds, kept only if it is written whole.
    record: Vec<(&'static str, String)>,
    record_prompt: Option<(String, i64, bool)>,
}

impl Generator {
    pub fn new(spec: TenantSpec) -> Generator {
        let tenant = Tenant::new(&spec);
        let span = Duration::days(spec.days.max(1) as i64);
        let start = spec.end - span;
        let step_micros = span.num_microseconds().unwrap_or(i64::MAX) as f64 / spec.records.max(1) as f64;
        let registered = vec![false; tenant.users.len()];
        Generator {
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            spec,
            tenant,
            emitted: 0,
            start,
            step_micros,
            registered,
            planned: Default::default(),
            forced: None,
            redeliveries: Default::default(),
            truth: Truth::default(),
            last_hub: String::new(),
        }
    }

    /// Writes the next record alone into `out` (cleared first) and says which
    /// hub Entra's diagnostic setting would send it to; `None` when done.
    pub fn next_record(&mut self, out: &mut Vec<u8>) -> Option<String> {
        out.clear();
        if self.emitted >= self.spec.records {
            return None;
        }
        self.write_record(out);
        Some(self.last_hub.clone())
    }

    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The (rule, user key) pairs the daemon's alert rules should raise for
    /// what was generated so far, with the default rules (legacy_auth_success,
    /// privileged_single_factor with the `adm-` users privileged,
    /// risky_without_mfa, break_glass_signin with the break-glass users
    /// excluded, mfa_fatigue with 3 prompts in 10 minutes, mfa_denial_storm
    /// with 10, ropc_signin). The user key is
    /// the object id (the UPN, lower-cased, for unresolved users).
    pub fn expected_alerts(&self) -> std::collections::BTreeSet<(String, String)> {
        let mut out: std::collections::BTreeSet<(String, String)> =
            self.truth.expected.iter().map(|(r, u)| (r.to_string(), u.clone())).collect();
        // mfa_fatigue by its definition, brute force over each user's prompts:
        // a success with ≥ 3 failures within 10 minutes, the last of them at
        // most 10 minutes before it.
        const N: usize = 3;
        const M: i64 = 600;
        for (user, prompts) in &self.truth.prompts {
            let failures: Vec<i64> = prompts.iter().filter(|(_, ok)| !ok).map(|(t, _)| *t).collect();
            let fatigued = prompts.iter().filter(|(_, ok)| *ok).any(|&(s, _)| {
                failures.iter().any(|&last| {
                    last <= s && s - last <= M && failures.iter().filter(|&&f| f <= last && last - f <= M).count() >= N
                })
            });
            if fatigued {
                out.insert(("mfa_fatigue".into(), user.clone()));
            }
            // mfa_denial_storm: ≥ 10 failures within 10 minutes (both ends
            // included) with no success from the first of them to the last.
            const STORM: usize = 10;
            let storm = failures.iter().any(|&last| {
                let after_success = prompts.iter().filter(|&&(t, ok)| ok && t <= last).map(|(t, _)| t + 1).max();
                let since = after_success.unwrap_or(i64::MIN).max(last - M);
                failures.iter().filter(|&&f| f >= since && f <= last).count() >= STORM
            });
            if storm {
                out.insert(("mfa_denial_storm".into(), user.clone()));
            }
        }
        out
    }

    /// Writes the next message into `out` (cleared first). False when done.
    pub fn next_message(&mut self, out: &mut Vec<u8>) -> bool {
        out.clear();
        let left = self.spec.records - self.emitted;
        if left == 0 {
            return false;
        }
        match self.spec.format {
            Format::Ndjson => self.write_record(out),
            Format::Envelope => {
                let n = left.min(self.spec.records_per_message.max(1) as u64);
                out.extend_from_slice(b"{\"records\":[");
                for i in 0..n {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write_record(out);
                }
                out.extend_from_slice(b"]}");
            }
        }
        true
    }

    fn write_record(&mut self, out: &mut Vec<u8>) {
        let index = self.emitted;
        self.emitted += 1;
        self.truth.record.clear();
        self.truth.record_prompt = None;
        if self.write_redelivery(index, out) {
            return;
        }
        if let Some((time, forced)) = self.planned.pop_front() {
            self.forced = Some(forced);
            let record = self.user_sign_in(time, true);
            self.forced = None;
            self.last_hub = hub_of(&record);
            serde_json::to_writer(&mut *out, &record).expect("writing JSON to memory cannot fail");
            self.commit_truth();
            return;
        }
        let jitter = self.rng.random_range(-90_000_000i64..90_000_000);
        let mut time = self.start + Duration::microseconds((index as f64 * self.step_micros) as i64 + jitter);
        if self.rng.random_bool(0.005) {
            // Late arrival: Azure Monitor delivered this one hours behind.
            time -= Duration::minutes(self.rng.random_range(30..360));
        }
        if self.spec.malformed_per_10k > 0 && self.rng.random_range(0..10_000) < self.spec.malformed_per_10k {
            self.write_malformed(out, time);
            self.truth.record.clear();
            self.truth.record_prompt = None;
            return;
        }
        if self.spec.fatigue_per_10k > 0 && self.rng.random_range(0..10_000) < self.spec.fatigue_per_10k {
            self.plan_fatigue(time);
        }
        let record = self.record(time);
        self.last_hub = hub_of(&record);
        serde_json::to_writer(&mut *out, &record).expect("writing JSON to memory cannot fail");
        self.commit_truth();
        if self.spec.redeliveries_per_10k > 0 && self.rng.random_range(0..10_000) < self.spec.redeliveries_per_10k {
            self.plan_redelivery(index, &record);
        }
    }

    /// Writes the re-delivery due now, if one is.
    fn write_redelivery(&mut self, index: u64, out: &mut Vec<u8>) -> bool {
        if self.redeliveries.front().is_none_or(|(due, ..)| *due > index) {
            return false;
        }
        let (_, copy, alert) = self.redeliveries.pop_front().expect("just looked");
        self.last_hub = hub_of(&copy);
        serde_json::to_writer(&mut *out, &copy).expect("writing JSON to memory cannot fail");
        self.truth.expected.extend(alert);
        true
    }

    /// Entra publishing a successful interactive sign-in again with the risk
    /// an offline detection found: the same record (id, time, user, outcome),
    /// now `atRisk` at `high`, 200–2,000 records later. Without MFA it should
    /// raise `risky_without_mfa` when the copy arrives.
    fn plan_redelivery(&mut self, index: u64, record: &Value) {
        let p = &record["properties"];
        let plain = record["category"] == "SignInLogs"
            && p["status"]["errorCode"] == 0
            && p["riskState"] == "none"
            && p["userId"].is_string();
        if !plain {
            return;
        }
        let mut copy = record.clone();
        let props = &mut copy["properties"];
        props["riskState"] = json!("atRisk");
        props["riskLevelDuringSignIn"] = json!("high");
        props["riskLevelAggregated"] = json!("high");
        props["riskDetail"] = json!("none");
        props["riskEventTypes"] = json!(["unlikelyTravel"]);
        props["riskEventTypes_v2"] = json!(["unlikelyTravel"]);
        let mfa = p["authenticationRequirement"] == "multiFactorAuthentication";
        let user = p["userId"].as_str().unwrap_or_default().to_owned();
        let alert = (!mfa).then_some(("risky_without_mfa", user));
        let due = index + self.rng.random_range(200..2_000);
        let at = self.redeliveries.partition_point(|(d, ..)| *d <= due);
        self.redeliveries.insert(at, (due, copy, alert));
    }

    /// Keeps what the record just written adds to the truth.
    fn commit_truth(&mut self) {
        let t = &mut self.truth;
        t.expected.extend(t.record.drain(..));
        if let Some((user, time, success)) = t.record_prompt.take() {
            t.prompts.entry(user).or_default().push((time, success));
        }
    }

    /// An MFA fatigue attack on one user: 3–5 prompts denied or left
    /// unanswered a minute apart, then the user gives in and signs in.
    fn plan_fatigue(&mut self, time: DateTime<Utc>) {
        let n = self.tenant.users.len();
        let user = self.rng.random_range(0..n);
        if self.tenant.users[user].break_glass || self.tenant.users[user].unresolved {
            return;
        }
        let prompts = self.rng.random_range(3..=5);
        for i in 0..prompts {
            let code = if self.rng.random_bool(0.7) { 500121 } else { 50074 };
            self.planned.push_back((time + Duration::seconds(60 * i + 5), Forced { user, code }));
        }
        let success = time + Duration::seconds(60 * prompts + self.rng.random_range(10..240));
        self.planned.push_back((success, Forced { user, code: 0 }));
    }

    fn write_malformed(&mut self, out: &mut Vec<u8>, time: DateTime<Utc>) {
        let record = self.record(time);
        self.last_hub = hub_of(&record);
        match self.rng.random_range(0..3) {
            0 => {
                // No time and no createdDateTime.
                let mut record = record;
                if let Value::Object(top) = &mut record {
                    top.remove("time");
                    top.remove("TIME");
                    top.remove("Time");
                    if let Some(Value::Object(p)) = top.get_mut("properties") {
                        p.remove("createdDateTime");
                    }
                }
                serde_json::to_writer(&mut *out, &record).expect("in memory");
            }
            1 => {
                // A pipeline replaced the outcome with a word.
                let mut record = record;
                if let Value::Object(top) = &mut record {
                    top.insert("resultType".into(), json!("Success"));
                    if let Some(Value::Object(p)) = top.get_mut("properties") {
                        p.remove("status");
                    }
                }
                serde_json::to_writer(&mut *out, &record).expect("in memory");
            }
            _ => {
                // A field of the wrong type inside an otherwise fine record.
                let mut record = record;
                if let Some(Value::Object(p)) = record.get_mut("properties") {
                    p.insert("authenticationDetails".into(), json!(42));
                }
                serde_json::to_writer(&mut *out, &record).expect("in memory");
            }
        }
    }

    fn record(&mut self, time: DateTime<Utc>) -> Value {
        let roll: f64 = self.rng.random();
        match roll {
            r if r < 0.22 => self.user_sign_in(time, true),
            r if r < 0.76 => self.user_sign_in(time, false),
            r if r < 0.89 => self.workload_sign_in(time, false),
            r if r < 0.96 => self.workload_sign_in(time, true),
            r if r < 0.995 => self.adfs_or_user(time),
            _ => self.audit_log(time),
        }
    }

    fn adfs_or_user(&mut self, time: DateTime<Utc>) -> Value {
        let mut v = self.user_sign_in(time, true);
        if self.rng.random_bool(0.3) {
            v["category"] = json!("ADFSSignInLogs");
            v["properties"]["tokenIssuerType"] = json!("ADFederationServices");
            v["properties"]["tokenIssuerName"] = json!("adfs.contoso.example");
        }
        v
    }

    fn pick_user(&mut self) -> usize {
        // A skewed choice: some users sign in far more than others.
        let n = self.tenant.users.len();
        let a = self.rng.random_range(0..n);
        let b = self.rng.random_range(0..n);
        let user = a.min(b);
        // Break-glass accounts sign in rarely.
        if self.tenant.users[user].break_glass && !self.rng.random_bool(0.05) {
            return (user + 2) % n;
        }
        user
    }

    fn user_sign_in(&mut self, time: DateTime<Utc>, interactive: bool) -> Value {
        let forced = self.forced;
        let ui = match forced {
            Some(f) => f.user,
            None => self.pick_user(),
        };
        let user = self.tenant.users[ui].clone();
        let app = &APPS[self.rng.random_range(0..APPS.len())];
        let id = guid(&mut self.rng);
        let correlation = guid(&mut self.rng);
        let city = CITIES[self.rng.random_range(0..CITIES.len())];
        let ip = format!(
            "{}.{}.{}.{}",
            [20, 40, 52, 81, 145][ui % 5],
            (ui / 7) % 250 + 1,
            self.rng.random_range(0..250),
            self.rng.random_range(1..250)
        );

        // The client: legacy users sometimes use their old mail client.
        let legacy = match user.profile {
            _ if forced.is_some() => false,
            Profile::LegacyClient => self.rng.random_bool(0.35),
            _ => self.rng.random_bool(0.004),
        };
        let client = if legacy {
            LEGACY_CLIENTS[self.rng.random_range(0..LEGACY_CLIENTS.len())]
        } else if self.rng.random_bool(0.55) {
            "Mobile Apps and Desktop clients"
        } else {
            "Browser"
        };

        // Outcome and authentication.
        let r: f64 = self.rng.random();
        let needs_registration = user.profile == Profile::Registering && !self.registered[ui];
        let (code, details): (i64, &str) = if let Some(f) = forced {
            (f.code, if f.code == 500121 { "MFA denied; user declined the authentication" } else { "" })
        } else if needs_registration && interactive && r < 0.6 {
            if r < 0.05 {
                self.registered[ui] = true;
            }
            (if r < 0.3 { 50079 } else { 50072 }, "")
        } else if r < 0.04 {
            (50126, "")
        } else if interactive && r < 0.055 {
            (500121, "MFA denied; user declined the authentication")
        } else if r < 0.075 {
            (if interactive { 50074 } else { 50076 }, "")
        } else if r < 0.085 {
            (53003, "")
        } else if r < 0.088 {
            (50158, "")
        } else if r < 0.090 {
            (50078, "")
        } else if r < 0.091 {
            (530035, "")
        } else {
            (0, "")
        };
        let success = code == 0;
        let mfa = success
            && !legacy
            && (forced.is_some()
                || match user.profile {
                    Profile::AlwaysMfa => true,
                    Profile::MostlyMfa => self.rng.random_bool(0.93),
                    Profile::SingleFactor => false,
                    Profile::LegacyClient => self.rng.random_bool(0.9),
                    Profile::Registering => !needs_registration,
                });
        let method = method_of(&user, ui, self.rng.random_range(0..MFA_METHODS.len()));
        let mfa_spelling =
            if self.rng.random_bool(0.5) { "Multifactor authentication" } else { "Multi-factor authentication" };
        let mut steps = vec![json!({
            "authenticationStepDateTime": iso(time - Duration::seconds(20)),
            "authenticationMethod": if interactive { "Password" } else { "Previously satisfied" },
            "authenticationMethodDetail": if interactive { "Password Hash Sync" } else { "" },
            "succeeded": code != 50126,
            "authenticationStepResultDetail": if interactive { "Correct password" } else { "First factor requirement satisfied by claim in the token" },
            "authenticationStepRequirement": "Primary authentication",
            "StatusSequence": 0,
            "RequestSequence": 0
        })];
        let mut additional = details.to_string();
        if mfa {
            if interactive {
                steps.push(json!({
                    "authenticationStepDateTime": iso(time - Duration::seconds(5)),
                    "authenticationMethod": method,
                    "authenticationMethodDetail": "",
                    "succeeded": true,
                    "authenticationStepResultDetail": "MFA successfully completed",
                    "authenticationStepRequirement": mfa_spelling,
                    "StatusSequence": 0,
                    "RequestSequence": 1
                }));
            } else {
                additional = "MFA requirement satisfied by claim in the token".into();
                steps.push(json!({
                    "authenticationStepDateTime": iso(time),
                    "authenticationMethod": "Previously satisfied",
                    "succeeded": true,
                    "authenticationStepResultDetail": "MFA requirement satisfied by claim in the token",
                    "authenticationStepRequirement": mfa_spelling,
                    "StatusSequence": 0,
                    "RequestSequence": 1
                }));
            }
        } else if code == 500121 {
            steps.push(json!({
                "authenticationStepDateTime": iso(time),
                "authenticationMethod": method,
                "succeeded": false,
                "authenticationStepResultDetail": "MFA denied; user declined the authentication",
                "authenticationStepRequirement": mfa_spelling,
                "StatusSequence": 0,
                "RequestSequence": 1
            }));
        }

        // Risk: a few risky sign-ins, some tenants' records show it hidden.
        let rr: f64 = self.rng.random();
        let (during, aggregated, state) = match rr {
            r if r < 0.004 => ("high", "high", "atRisk"),
            r if r < 0.012 => ("medium", "low", "atRisk"),
            r if r < 0.03 => ("low", "low", "none"),
            r if r < 0.032 => ("high", "high", "dismissed"),
            r if r < 0.06 => ("hidden", "hidden", "none"),
            _ => ("none", "none", "none"),
        };

        let policy_count = if interactive { self.rng.random_range(0..=40) } else { self.rng.random_range(0..=8) };
        let policies = self.policies(policy_count, success, mfa, legacy, code);
        let ca_status = if code == 53003 {
            "failure"
        } else if policies.iter().any(|p| p["result"] == "success") {
            "success"
        } else {
            "notApplied"
        };
        let audiences = if self.rng.random_bool(0.5) {
            json!([app.resource_id])
        } else {
            json!([{ "applicationId": app.resource_id }])
        };

        let requirement = if mfa { "multiFactorAuthentication" } else { "singleFactorAuthentication" };
        let mut status = Map::new();
        status.insert("errorCode".into(), json!(code));
        if code != 0 {
            status.insert("failureReason".into(), json!(failure_reason(code)));
        }
        if !additional.is_empty() {
            status.insert("additionalDetails".into(), json!(additional));
        }
        let (upn, user_id) =
            if user.unresolved { (user.id.clone(), Value::Null) } else { (user.upn.clone(), json!(user.id)) };
        // What the alert rules should make of it (the user key is the object
        // id, or the UPN, which is the id, for an unresolved user).
        let key = &user.id;
        let truth = &mut self.truth.record;
        if success && legacy {
            truth.push(("legacy_auth_success", key.clone()));
        }
        if user.admin && success && !mfa && (interactive || legacy) {
            truth.push(("privileged_single_factor", key.clone()));
        }
        if success && state == "atRisk" && !mfa {
            truth.push(("risky_without_mfa", key.clone()));
        }
        if user.break_glass {
            truth.push(("break_glass_signin", key.clone()));
        }
        if interactive && (success || matches!(code, 500121 | 50074 | 50076)) {
            self.truth.record_prompt = Some((key.clone(), time.timestamp(), success));
        }

        let os = ["Windows 10", "MacOs", "Ios", "Android"][ui % 4];
        let asked = mfa || matches!(code, 500121 | 50074 | 50076 | 50072 | 50079);
        // A claim in the token often names nothing (the requirement was the
        // earlier sign-in's): the report's `unknown`.
        let by_claim = mfa && !interactive && ui % 3 == 0;
        let requirement_policies =
            if asked && !by_claim { requirement_policies(ui, matches!(code, 50072 | 50079)) } else { json!([]) };
        let properties = json!({
            "id": id,
            "createdDateTime": iso_offset(time),
            "userDisplayName": user.display_name,
            "userPrincipalName": upn,
            "userId": user_id,
            "appId": app.id,
            "appDisplayName": app.name,
            "ipAddress": ip,
            "status": Value::Object(status),
            "clientAppUsed": client,
            "userAgent": if legacy { "BAV2ROPC" } else { "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0" },
            "deviceDetail": {"deviceId": "", "displayName": "", "operatingSystem": os, "browser": "Edge 131.0.0", "isCompliant": ui.is_multiple_of(3), "isManaged": ui.is_multiple_of(3), "trustType": ""},
            "location": {"city": city.0, "state": city.1, "countryOrRegion": city.2, "geoCoordinates": {"latitude": city.3, "longitude": city.4}},
            "mfaDetail": {},
            "correlationId": correlation,
            "conditionalAccessStatus": ca_status,
            "appliedConditionalAccessPolicies": policies,
            "authenticationContextClassReferences": [],
            "originalRequestId": id,
            "isInteractive": interactive,
            "tokenIssuerName": "",
            "tokenIssuerType": "AzureAD",
            "authenticationProcessingDetails": [{"key": "Legacy TLS (TLS 1.0, 1.1, 3DES)", "value": "False"}, {"key": "Is CAE Token", "value": "False"}],
            "networkLocationDetails": [],
            "clientCredentialType": "none",
            "processingTimeInMilliseconds": self.rng.random_range(20..900),
            "riskDetail": if state == "dismissed" { "adminDismissedAllRiskForUser" } else { "none" },
            "riskLevelAggregated": aggregated,
            "riskLevelDuringSignIn": during,
            "riskState": state,
            "riskEventTypes": if state == "atRisk" { json!(["unfamiliarFeatures"]) } else { json!([]) },
            "riskEventTypes_v2": if state == "atRisk" { json!(["unfamiliarFeatures", "anonymizedIPAddress"]) } else { json!([]) },
            "resourceDisplayName": app.resource,
            "resourceId": app.resource_id,
            "resourceTenantId": TENANT_ID,
            "homeTenantId": if user.guest { "3e1f0c2d-7b6a-4e5f-9d8c-1a2b3c4d5e6f" } else { TENANT_ID },
            "homeTenantName": "",
            "authenticationDetails": steps,
            "authenticationRequirementPolicies": requirement_policies,
            "authenticationRequirement": requirement,
            "alternateSignInName": user.upn,
            "signInIdentifier": user.upn,
            "servicePrincipalId": "",
            "userType": if user.guest { "Guest" } else { "Member" },
            "flaggedForReview": false,
            "isTenantRestricted": false,
            "autonomousSystemNumber": 8075,
            "crossTenantAccessType": if user.guest { "b2bCollaboration" } else { "none" },
            "privateLinkDetails": {},
            "ssoExtensionVersion": "",
            "uniqueTokenIdentifier": short_token(&mut self.rng),
            "authenticationStrengths": [],
            "incomingTokenType": if interactive { "none" } else { "refreshToken" },
            "authenticationProtocol": if legacy && self.rng.random_bool(0.5) { "ropc" } else { "none" },
            "resourceServicePrincipalId": guid(&mut self.rng),
            "rngcStatus": 0,
            "signInTokenProtectionStatus": "none",
            "tokenProtectionStatusDetails": {"signInSessionStatus": "unbound", "signInSessionStatusCode": 1002},
            "originalTransferMethod": "none",
            "isThroughGlobalSecureAccess": false,
            "conditionalAccessAudiences": audiences,
            "sessionLifetimePolicies": [],
            "appOwnerTenantId": "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
            "resourceOwnerTenantId": "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
        });
        // ropc_signin: the password flow succeeding without MFA (the protocol was drawn above).
        if success && !mfa && properties["authenticationProtocol"] == "ropc" {
            self.truth.record.push(("ropc_signin", user.id.clone()));
        }
        let category = if interactive { "SignInLogs" } else { "NonInteractiveUserSignInLogs" };
        self.envelope(time, category, code, &correlation, &ip, &user.display_name, properties)
    }

    fn workload_sign_in(&mut self, time: DateTime<Utc>, managed_identity: bool) -> Value {
        let list = if managed_identity { &self.tenant.managed_identities } else { &self.tenant.service_principals };
        let (sp_id, sp_name) = list[self.rng.random_range(0..list.len())].clone();
        let app = &APPS[self.rng.random_range(0..APPS.len())];
        let id = guid(&mut self.rng);
        let correlation = guid(&mut self.rng);
        let code = if self.rng.random_bool(0.03) { 7000215 } else { 0 };
        let ip = format!(
            "10.{}.{}.{}",
            self.rng.random_range(0..250),
            self.rng.random_range(0..250),
            self.rng.random_range(1..250)
        );
        let mut status = Map::new();
        status.insert("errorCode".into(), json!(code));
        if code != 0 {
            status.insert("failureReason".into(), json!(failure_reason(code)));
        }
        let properties = json!({
            "id": id,
            "createdDateTime": iso_offset(time),
            "appId": guid(&mut self.rng),
            "appDisplayName": sp_name,
            "ipAddress": ip,
            "status": Value::Object(status),
            "correlationId": correlation,
            "conditionalAccessStatus": "notApplied",
            "appliedConditionalAccessPolicies": [],
            "isInteractive": false,
            "tokenIssuerType": "AzureAD",
            "authenticationProcessingDetails": [{"key": "Azure AD App Authentication Library", "value": "Family: MSAL Library: MSAL.NET 4.61.3 Platform: .NET"}],
            "clientCredentialType": if managed_identity { "managedIdentity" } else { "clientSecret" },
            "processingTimeInMilliseconds": self.rng.random_range(5..120),
            "riskDetail": "none",
            "riskLevelAggregated": "none",
            "riskLevelDuringSignIn": if self.rng.random_bool(0.01) { "medium" } else { "none" },
            "riskState": "none",
            "resourceDisplayName": app.resource,
            "resourceId": app.resource_id,
            "servicePrincipalId": sp_id,
            "servicePrincipalName": sp_name,
            "managedIdentityType": if managed_identity { "systemAssigned" } else { "none" },
            "authenticationProtocol": "none",
            "incomingTokenType": "none",
            "uniqueTokenIdentifier": short_token(&mut self.rng),
            "location": {"city": "Amsterdam", "state": "Noord-Holland", "countryOrRegion": "NL"}
        });
        let category = if managed_identity { "ManagedIdentitySignInLogs" } else { "ServicePrincipalSignInLogs" };
        self.envelope(time, category, code, &correlation, &ip, &sp_name, properties)
    }

    fn audit_log(&mut self, time: DateTime<Utc>) -> Value {
        json!({
            "time": iso(time),
            "resourceId": format!("/tenants/{TENANT_ID}/providers/Microsoft.aadiam"),
            "operationName": "Update user",
            "category": "AuditLogs",
            "tenantId": TENANT_ID,
            "resultSignature": "None",
            "correlationId": guid(&mut self.rng),
            "Level": "Informational",
            "properties": {"id": guid(&mut self.rng), "category": "UserManagement", "result": "success", "activityDisplayName": "Update user"}
        })
    }

    /// The diagnostic-setting top level around `properties`, with §1's quirks.
    #[allow(clippy::too_many_arguments)]
    fn envelope(
        &mut self,
        time: DateTime<Utc>,
        category: &str,
        code: i64,
        correlation: &str,
        ip: &str,
        identity: &str,
        properties: Value,
    ) -> Value {
        let q: f64 = self.rng.random();
        let time_text = match q {
            q if q < 0.90 => iso(time),
            q if q < 0.94 => time.to_rfc3339_opts(SecondsFormat::Micros, false),
            q if q < 0.97 => time.format("%m/%d/%Y %-I:%M:%S %p").to_string(),
            _ => time.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        };
        let level = match self.rng.random_range(0..3) {
            0 => json!(4),
            1 => json!("4"),
            _ => json!("Informational"),
        };
        let result_type = if self.rng.random_bool(0.5) { json!(code.to_string()) } else { json!(code) };
        let duration = if self.rng.random_bool(0.5) { json!(0) } else { json!("0") };
        let lower = self.rng.random_bool(0.02);
        let key =
            |camel: &'static str| -> String { if lower { camel.to_ascii_lowercase() } else { camel.to_string() } };
        let mut top = Map::new();
        if !self.rng.random_bool(0.01) {
            top.insert(key("time"), json!(time_text));
        }
        top.insert(key("resourceId"), json!(format!("/tenants/{TENANT_ID}/providers/Microsoft.aadiam")));
        top.insert(key("operationName"), json!("Sign-in activity"));
        top.insert(key("operationVersion"), if lower { json!(1) } else { json!("1.0") });
        top.insert("category".into(), json!(category));
        top.insert(key("tenantId"), json!(TENANT_ID));
        top.insert(key("resultType"), result_type);
        top.insert(key("resultSignature"), json!(if code == 0 { "SUCCESS" } else { "None" }));
        if code != 0 {
            top.insert(key("resultDescription"), json!(failure_reason(code)));
        }
        top.insert(key("durationMs"), duration);
        top.insert(key("callerIpAddress"), json!(ip));
        top.insert(key("correlationId"), json!(correlation));
        top.insert(key("identity"), json!(identity));
        top.insert("Level".into(), level);
        top.insert(key("location"), properties["location"]["countryOrRegion"].clone());
        top.insert("properties".into(), properties);
        Value::Object(top)
    }

    fn policies(&mut self, count: usize, success: bool, mfa: bool, legacy: bool, code: i64) -> Vec<Value> {
        let mut out = Vec::with_capacity(count);
        for policy in self.tenant.policies.iter().take(count) {
            let result = if policy.report_only {
                match (policy.grant, legacy, mfa) {
                    ("Block", true, _) => "reportOnlyFailure",
                    ("Block", false, _) => "reportOnlyNotApplied",
                    ("Mfa", _, true) => "reportOnlySuccess",
                    ("Mfa", _, false) => "reportOnlyFailure",
                    _ if success => "reportOnlySuccess",
                    _ => "reportOnlyNotApplied",
                }
            } else if code == 53003 && policy.grant == "Block" {
                "failure"
            } else if policy.grant == "Mfa" && mfa {
                "success"
            } else if self.rng.random_bool(0.15) {
                "notEnabled"
            } else {
                "notApplied"
            };
            out.push(json!({
                "id": policy.id,
                "displayName": policy.name,
                "enforcedGrantControls": [policy.grant],
                "enforcedSessionControls": [],
                "result": result,
                "conditionsSatisfied": if result == "notApplied" { 1 } else { 3 },
                "conditionsNotSatisfied": if result == "notApplied" { 2 } else { 0 }
            }));
        }
        out
    }
}

impl Iterator for Generator {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.next_message(&mut out).then_some(out)
    }
}

/// The hub Entra's diagnostic setting sends a record's category to.
fn hub_of(record: &Value) -> String {
    format!("insights-logs-{}", record["category"].as_str().unwrap_or("unknown").to_ascii_lowercase())
}

/// A tenant's stream as Entra's diagnostic setting sends it: each category
/// to its own hub, messages of one category each (`{"records":[...]}` of up
/// to `records_per_message`).
pub struct PerHub {
    generator: Generator,
    pending: std::collections::BTreeMap<String, (Vec<u8>, u32)>,
    per_message: u32,
    record: Vec<u8>,
}

impl PerHub {
    pub fn new(spec: TenantSpec) -> PerHub {
        let per_message = spec.records_per_message.max(1);
        PerHub { generator: Generator::new(spec), pending: Default::default(), per_message, record: Vec::new() }
    }

    pub fn generator(&self) -> &Generator {
        &self.generator
    }

    /// The next full message and its hub; what is left is sent at the end.
    pub fn next_message(&mut self) -> Option<(String, Vec<u8>)> {
        loop {
            match self.generator.next_record(&mut self.record) {
                Some(hub) => {
                    let (buf, n) = self.pending.entry(hub.clone()).or_insert_with(|| (b"{\"records\":[".to_vec(), 0));
                    if *n > 0 {
                        buf.push(b',');
                    }
                    buf.extend_from_slice(&self.record);
                    *n += 1;
                    if *n == self.per_message {
                        let (mut message, _) = self.pending.remove(&hub).expect("just filled");
                        message.extend_from_slice(b"]}");
                        return Some((hub, message));
                    }
                }
                None => {
                    let hub = self.pending.keys().next()?.clone();
                    let (mut message, _) = self.pending.remove(&hub).expect("listed");
                    message.extend_from_slice(b"]}");
                    return Some((hub, message));
                }
            }
        }
    }
}

/// A password spray as it reaches Entra: failed sign-ins (50034, "the user
/// account does not exist") over Authenticated SMTP, each for another
/// made-up UPN, from a few source IPs, in Event Hubs envelopes. Deterministic
/// for a seed and an end time; spread over the hour before `end`.
pub struct Spray {
    rng: ChaCha8Rng,
    count: u64,
    emitted: u64,
    end: DateTime<Utc>,
    per_message: u32,
}

impl Spray {
    pub fn new(count: u64, end: DateTime<Utc>, seed: u64, per_message: u32) -> Spray {
        Spray {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5b7a_9e11),
            count,
            emitted: 0,
            end,
            per_message: per_message.max(1),
        }
    }

    /// Writes the next message into `out` (cleared first). False when done.
    pub fn next_message(&mut self, out: &mut Vec<u8>) -> bool {
        out.clear();
        let n = (self.count - self.emitted).min(self.per_message as u64);
        if n == 0 {
            return false;
        }
        out.extend_from_slice(b"{\"records\":[");
        for i in 0..n {
            if i > 0 {
                out.push(b',');
            }
            let record = self.record();
            serde_json::to_writer(&mut *out, &record).expect("in memory");
        }
        out.extend_from_slice(b"]}");
        true
    }

    fn record(&mut self) -> Value {
        let index = self.emitted;
        self.emitted += 1;
        let time = self.end - Duration::milliseconds((3_600_000 * (self.count - index) / self.count.max(1)) as i64);
        let first = FIRST[self.rng.random_range(0..FIRST.len())];
        let last = LAST[self.rng.random_range(0..LAST.len())];
        let upn = format!("{first}.{last}.{index}{}@{DOMAIN}", self.rng.random_range(100..999));
        let ip = format!("198.51.100.{}", self.rng.random_range(1..8));
        let id = guid(&mut self.rng);
        json!({
            "time": iso(time),
            "resourceId": format!("/tenants/{TENANT_ID}/providers/Microsoft.aadiam"),
            "operationName": "Sign-in activity",
            "operationVersion": "1.0",
            "category": "SignInLogs",
            "tenantId": TENANT_ID,
            "resultType": "50034",
            "resultSignature": "None",
            "resultDescription": failure_reason(50034),
            "callerIpAddress": ip,
            "correlationId": guid(&mut self.rng),
            "identity": "",
            "Level": 4,
            "location": "NL",
            "properties": {
                "id": id,
                "createdDateTime": iso_offset(time),
                "userDisplayName": "",
                "userPrincipalName": upn,
                "userId": "",
                "appId": "00000002-0000-0ff1-ce00-000000000000",
                "appDisplayName": "Office 365 Exchange Online",
                "ipAddress": ip,
                "status": {"errorCode": 50034, "failureReason": failure_reason(50034)},
                "clientAppUsed": "Authenticated SMTP",
                "userAgent": "BAV2ROPC",
                "location": {"city": "Amsterdam", "state": "Noord-Holland", "countryOrRegion": "NL"},
                "conditionalAccessStatus": "notApplied",
                "appliedConditionalAccessPolicies": [],
                "isInteractive": true,
                "authenticationRequirement": "singleFactorAuthentication",
                "authenticationProtocol": "ropc",
                "riskLevelAggregated": "none",
                "riskLevelDuringSignIn": "none",
                "riskState": "none",
                "userType": "Member",
                "authenticationDetails": [],
                "resourceDisplayName": "Office 365 Exchange Online"
            }
        })
    }
}

impl Iterator for Spray {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.next_message(&mut out).then_some(out)
    }
}

/// The directory changes of a synthetic tenant, as Entra's diagnostic
/// setting sends them to `insights-logs-auditlogs` (role, method and
/// protection changes) and Identity Protection's to
/// `insights-logs-riskyusers` and `insights-logs-userriskevents` (the Event
/// Hubs shapes of `tests/fixtures/directory/`, from Microsoft's
/// audit-activity reference and the Identity Protection schemas): the demo
/// plays them during its run so that the directory views, the protections'
/// posture and the directory alerts show. Each function gives one record
/// (`records[]` of an envelope); ids are made from the inputs (user, policy,
/// time), so a story played again is the same records.
pub mod story {
    use super::{TENANT_ID, User, guid_of, iso, iso_offset};
    use crate::decode::directory::PolicyState;
    use chrono::{DateTime, Utc};
    use serde_json::{Value, json};

    /// The Global Administrator role's template id (the same in every tenant).
    pub const GLOBAL_ADMINISTRATOR: (&str, &str) = ("62e90394-69f5-4237-9190-012177145e10", "Global Administrator");

    fn audit(
        operation: &str,
        category: &str,
        service: &str,
        at: DateTime<Utc>,
        by: &User,
        reason: &str,
        targets: Value,
    ) -> Value {
        let correlation = guid_of(&format!("{operation}\u{0}{}\u{0}{}", by.id, at.timestamp_millis()));
        // Each service writes ids of its own: Conditional Access its Graph
        // call's (`IPCGraph_` and the correlation id), Core Directory and
        // Authentication Methods theirs.
        let (id, details) = if service == "Conditional Access" {
            (format!("IPCGraph_{correlation}"), json!([{"key": "Category", "value": "Conditional Access"}]))
        } else {
            (format!("Directory_{}_{}_{}", operation.replace(' ', ""), by.id, at.timestamp_millis()), json!([]))
        };
        json!({
            "time": iso(at),
            "resourceId": format!("/tenants/{TENANT_ID}/providers/Microsoft.aadiam"),
            "operationName": operation,
            "operationVersion": "1.0",
            "category": "AuditLogs",
            "tenantId": TENANT_ID,
            "resultSignature": "None",
            "callerIpAddress": "198.51.100.7",
            "correlationId": correlation,
            "Level": 4,
            "properties": {
                "id": id,
                "category": category,
                "correlationId": correlation,
                "result": "success",
                "resultReason": reason,
                "activityDisplayName": operation,
                "activityDateTime": iso(at),
                "loggedByService": service,
                "initiatedBy": {"user": {"id": by.id, "userPrincipalName": by.upn, "ipAddress": "198.51.100.7", "roles": []}},
                "targetResources": targets,
                "additionalDetails": details
            }
        })
    }

    fn role_change(operation: &str, user: &User, role: (&str, &str), at: DateTime<Utc>, by: &User) -> Value {
        let (template, name) = role;
        let removed = operation.starts_with("Remove");
        // Values are JSON inside strings, with their quotes, as Entra writes them.
        let property = |display: &str, v: &str| {
            let quoted = json!(format!("\"{v}\""));
            if removed {
                json!({"displayName": display, "oldValue": quoted, "newValue": null})
            } else {
                json!({"displayName": display, "oldValue": null, "newValue": quoted})
            }
        };
        let targets = json!([
            {"id": user.id, "displayName": user.display_name, "type": "User", "userPrincipalName": user.upn,
             "modifiedProperties": [property("Role.DisplayName", name), property("Role.TemplateId", template)]},
            {"id": template, "displayName": name, "type": "Role", "modifiedProperties": []}
        ]);
        audit(operation, "RoleManagement", "Core Directory", at, by, "", targets)
    }

    /// `Add member to role` (Core Directory): `user` given `role` (template id, name) by `by`.
    pub fn role_added(user: &User, role: (&str, &str), at: DateTime<Utc>, by: &User) -> Value {
        role_change("Add member to role", user, role, at, by)
    }

    /// `Remove member from role`.
    pub fn role_removed(user: &User, role: (&str, &str), at: DateTime<Utc>, by: &User) -> Value {
        role_change("Remove member from role", user, role, at, by)
    }

    /// `User registered security info` (Authentication Methods), the method
    /// in the reason as Entra writes it ("User registered Authenticator App
    /// with Notification and Code").
    pub fn security_info_registered(user: &User, method: &str, at: DateTime<Utc>) -> Value {
        let targets = json!([{"id": user.id, "displayName": user.display_name, "type": "User", "userPrincipalName": user.upn, "modifiedProperties": []}]);
        let reason = format!("User registered {method}");
        audit("User registered security info", "UserManagement", "Authentication Methods", at, user, &reason, targets)
    }

    /// A successful interactive sign-in with MFA from `ip` (a `SignInLogs` record).
    pub fn sign_in_from(user: &User, ip: &str, at: DateTime<Utc>) -> Value {
        json!({
            "time": iso(at),
            "resourceId": format!("/tenants/{TENANT_ID}/providers/Microsoft.aadiam"),
            "operationName": "Sign-in activity",
            "category": "SignInLogs",
            "tenantId": TENANT_ID,
            "properties": {
                "id": format!("story-{}-{}", user.id, at.timestamp_millis()),
                "createdDateTime": iso(at),
                "userId": user.id,
                "userPrincipalName": user.upn,
                "userDisplayName": user.display_name,
                "userType": "Member",
                "tenantId": TENANT_ID,
                "appDisplayName": "Azure Portal",
                "clientAppUsed": "Browser",
                "ipAddress": ip,
                "status": {"errorCode": 0},
                "authenticationRequirement": "multiFactorAuthentication",
                "authenticationDetails": [
                    {"authenticationStepDateTime": iso(at), "authenticationMethod": "Password", "succeeded": true},
                    {"authenticationStepDateTime": iso(at), "authenticationMethod": "Mobile app notification", "succeeded": true}
                ],
                "isInteractive": true
            }
        })
    }

    /// A Conditional Access policy as Graph's `conditionalAccessPolicy`
    /// writes it, for the records that add or change one (one side each).
    #[derive(Clone, Debug)]
    pub struct ConditionalAccessPolicy {
        pub id: String,
        pub name: String,
        pub state: PolicyState,
        /// `grantControls.builtInControls` (`mfa`, `block`).
        pub grant: Vec<&'static str>,
        /// `conditions.users.includeUsers`: object ids, or `All`.
        pub include_users: Vec<String>,
        pub exclude_users: Vec<String>,
        pub created: DateTime<Utc>,
        pub modified: Option<DateTime<Utc>>,
    }

    impl ConditionalAccessPolicy {
        /// "Require MFA for all users": everyone and every app, the `mfa`
        /// grant, enabled; `excluded` (the break-glass accounts, as
        /// Microsoft advises) left out by object id. Its id is made from
        /// its name.
        pub fn require_mfa_for_all_users(excluded: &[&User], created: DateTime<Utc>) -> ConditionalAccessPolicy {
            let name = "Require MFA for all users";
            ConditionalAccessPolicy {
                id: guid_of(&format!("policy\u{0}{name}")),
                name: name.to_owned(),
                state: PolicyState::Enabled,
                grant: vec!["mfa"],
                include_users: vec!["All".to_owned()],
                exclude_users: excluded.iter().map(|u| u.id.clone()).collect(),
                created,
                modified: None,
            }
        }

        /// The policy as a change at `at` leaves it: in `state`, modified a
        /// second before the record (as Entra stamps it).
        pub fn switched(&self, state: PolicyState, at: DateTime<Utc>) -> ConditionalAccessPolicy {
            ConditionalAccessPolicy { state, modified: Some(at - chrono::Duration::seconds(1)), ..self.clone() }
        }

        /// The compact JSON text Entra puts in the `ConditionalAccessPolicy` property.
        fn graph(&self) -> String {
            let state = match self.state {
                PolicyState::Enabled => "enabled",
                PolicyState::ReportOnly => "enabledForReportingButNotEnforced",
                PolicyState::Disabled => "disabled",
                PolicyState::Other => "unknownFutureValue",
            };
            let mut policy = json!({
                "id": self.id,
                "displayName": self.name,
                "createdDateTime": iso_offset(self.created),
            });
            if let Some(modified) = self.modified {
                policy["modifiedDateTime"] = json!(iso_offset(modified));
            }
            policy["state"] = json!(state);
            policy["conditions"] = json!({
                "applications": {"includeApplications": ["All"], "excludeApplications": [], "includeUserActions": [],
                                 "includeAuthenticationContextClassReferences": [], "applicationFilter": null},
                "users": {"includeUsers": self.include_users, "excludeUsers": self.exclude_users, "includeGroups": [],
                          "excludeGroups": [], "includeRoles": [], "excludeRoles": []},
                "userRiskLevels": [], "signInRiskLevels": [], "clientAppTypes": ["all"], "servicePrincipalRiskLevels": []
            });
            policy["grantControls"] = json!({
                "operator": "OR", "builtInControls": self.grant, "customAuthenticationFactors": [], "termsOfUse": []
            });
            policy.to_string()
        }
    }

    /// A Conditional Access change (Conditional Access, category Policy): the
    /// whole policy before and after as JSON text in one property, `null`
    /// for the side that does not exist.
    fn policy_change(
        operation: &str,
        before: Option<&ConditionalAccessPolicy>,
        after: &ConditionalAccessPolicy,
        at: DateTime<Utc>,
        by: &User,
    ) -> Value {
        let property = json!({
            "displayName": "ConditionalAccessPolicy",
            "oldValue": before.map(ConditionalAccessPolicy::graph),
            "newValue": after.graph(),
        });
        let targets = json!([{"id": after.id, "displayName": after.name, "type": "Policy",
                              "modifiedProperties": [property], "administrativeUnits": []}]);
        audit(operation, "Policy", "Conditional Access", at, by, "", targets)
    }

    /// `Add conditional access policy`: `policy` created by `by`.
    pub fn policy_added(policy: &ConditionalAccessPolicy, at: DateTime<Utc>, by: &User) -> Value {
        policy_change("Add conditional access policy", None, policy, at, by)
    }

    /// `Update conditional access policy`, both sides.
    pub fn policy_updated(
        before: &ConditionalAccessPolicy,
        after: &ConditionalAccessPolicy,
        at: DateTime<Utc>,
        by: &User,
    ) -> Value {
        policy_change("Update conditional access policy", Some(before), after, at, by)
    }

    /// `Update security defaults`: switched on or off (`IsEnabled`, the
    /// other way before), on Graph's security-defaults policy.
    pub fn security_defaults(enabled: bool, at: DateTime<Utc>, by: &User) -> Value {
        let property =
            json!({"displayName": "IsEnabled", "oldValue": (!enabled).to_string(), "newValue": enabled.to_string()});
        let targets = json!([{"id": "00000000-0000-0000-0000-000000000005", "displayName": "Security Defaults",
                              "type": "Policy", "modifiedProperties": [property], "administrativeUnits": []}]);
        audit("Update security defaults", "Policy", "Conditional Access", at, by, "", targets)
    }

    /// `Disable Strong Authentication` (Core Directory): `user`'s per-user
    /// MFA, enabled (`State` 1) since a month before, removed by `by`.
    pub fn strong_authentication_disabled(user: &User, at: DateTime<Utc>, by: &User) -> Value {
        let since = (at - chrono::Duration::days(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let requirement = json!([{"RelyingParty": "*", "State": 1, "RememberDevicesNotIssuedBefore": since}]);
        let targets = json!([{"id": user.id, "displayName": user.display_name, "type": "User", "userPrincipalName": user.upn,
            "modifiedProperties": [
                {"displayName": "StrongAuthenticationRequirement", "oldValue": requirement.to_string(), "newValue": "[]"},
                {"displayName": "Included Updated Properties", "oldValue": null, "newValue": "\"StrongAuthenticationRequirement\""}
            ],
            "administrativeUnits": []}]);
        audit("Disable Strong Authentication", "UserManagement", "Core Directory", at, by, "", targets)
    }

    /// The top level of an Identity Protection record (`RiskyUsers`, `UserRiskEvents`).
    fn identity_protection(
        category: &str,
        operation: &str,
        id: &str,
        user: &User,
        at: DateTime<Utc>,
        properties: Value,
    ) -> Value {
        json!({
            "time": iso(at),
            "resourceId": format!("/tenants/{TENANT_ID}/providers/microsoft.aadiam"),
            "operationName": operation,
            "operationVersion": "1.0",
            "category": category,
            "tenantId": TENANT_ID,
            "resultSignature": "None",
            "durationMs": 0,
            "correlationId": id,
            "identity": user.display_name,
            "Level": 4,
            "location": "weu",
            "properties": properties
        })
    }

    /// A `RiskyUsers` record (hub `insights-logs-riskyusers`): where
    /// Identity Protection puts `user` as of `at` (`riskLastUpdatedDateTime`),
    /// in its words: level `high`/`medium`/`low`/`none`, state `atRisk`/
    /// `remediated`/`dismissed`/`confirmedCompromised`, detail `none`/
    /// `userPerformedSecuredPasswordChange`/…. Its id is the user's.
    pub fn risky_user(user: &User, level: &str, state: &str, detail: &str, at: DateTime<Utc>) -> Value {
        let properties = json!({
            "id": user.id,
            "userDisplayName": user.display_name,
            "userPrincipalName": user.upn,
            "riskLastUpdatedDateTime": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "riskState": state,
            "riskDetail": detail,
            "riskLevel": level,
            "isGuest": user.guest,
            "isDeleted": false,
            "isProcessing": false
        });
        identity_protection("RiskyUsers", "Risky user", &user.id, user, at, properties)
    }

    /// A `UserRiskEvents` record (hub `insights-logs-userriskevents`): an
    /// offline, user-level detection of `event_type` (`leakedCredentials`)
    /// at `level`, detected five minutes before `at`; its 64-hex id is made
    /// from the user, the type and the time.
    pub fn risk_detection(user: &User, event_type: &str, level: &str, at: DateTime<Utc>) -> Value {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{}\u{0}{event_type}\u{0}{}", user.id, at.timestamp_millis()));
        let id: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let ms = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let properties = json!({
            "id": id,
            "requestId": null,
            "correlationId": null,
            "riskType": event_type,
            "riskEventType": event_type,
            "riskState": "atRisk",
            "riskLevel": level,
            "riskDetail": "none",
            "source": "IdentityProtection",
            "detectionTimingType": "offline",
            "activity": "user",
            "ipAddress": null,
            "location": {"city": null, "state": null, "countryOrRegion": null, "geoCoordinates": null},
            "activityDateTime": ms(at - chrono::Duration::minutes(20)),
            "detectedDateTime": ms(at - chrono::Duration::minutes(5)),
            "lastUpdatedDateTime": ms(at),
            "userId": user.id,
            "userDisplayName": user.display_name,
            "userPrincipalName": user.upn,
            "additionalInfo": "[]",
            "tokenIssuerType": "AzureAD",
            "resourceTenantId": null,
            "homeTenantId": TENANT_ID,
            "userType": if user.guest { "guest" } else { "member" },
            "crossTenantAccessType": "none"
        });
        identity_protection("UserRiskEvents", "User Risk Detection", &id, user, at, properties)
    }

    /// Records as one Event Hubs message.
    pub fn envelope(records: &[Value]) -> Vec<u8> {
        serde_json::to_vec(&json!({ "records": records })).expect("writing JSON to memory cannot fail")
    }
}

fn failure_reason(code: i64) -> &'static str {
    match code {
        50126 => "Error validating credentials due to invalid username or password.",
        50034 => {
            "The user account does not exist in the directory. To sign into this application, the account must be added to the directory."
        }
        500121 => "Authentication failed during strong authentication request.",
        50074 | 50076 => {
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource."
        }
        50072 | 50079 => "User needs to enroll for second factor authentication.",
        53003 => "Access has been blocked by Conditional Access policies.",
        50158 => "External security challenge was not satisfied.",
        50078 => "Presented multi-factor authentication has expired due to policies configured by your administrator.",
        530035 => "Access has been blocked by security defaults.",
        7000215 => "Invalid client secret provided.",
        _ => "Other",
    }
}

fn iso(t: DateTime<Utc>) -> String {
    // Entra writes seven fractional digits.
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let _ = write!(s, ".{:07}Z", t.timestamp_subsec_nanos() / 100);
    s
}

fn iso_offset(t: DateTime<Utc>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let _ = write!(s, ".{:07}+00:00", t.timestamp_subsec_nanos() / 100);
    s
}

/// `authenticationRequirementPolicies` of a user's sign-in MFA was asked of,
/// the same for a user every time (no draw from the generator's stream), so
/// a tenant shows every mechanism: mostly Conditional Access, some users
/// still on per-user MFA (alone or beside a policy), a few asked only by a
/// risk policy, a few by security defaults (a tenant mid-switch), one by an
/// application's request. `registration`: the registration requirement of
/// the same feature (50072/50079).
fn requirement_policies(user: usize, registration: bool) -> Value {
    let entry = |provider: &str, detail: &str| json!({"requirementProvider": provider, "detail": detail});
    let ca = || {
        if registration {
            entry("mfaRegistrationRequiredByMultiConditionalAccess", "Conditional Access")
        } else {
            entry("multiConditionalAccess", "Conditional Access")
        }
    };
    match user % 20 {
        0 => json!([entry("user", "Per-user MFA")]),
        1 => json!([ca(), entry("user", "Per-user MFA")]),
        2 if registration => json!([entry("mfaRegistrationRequiredByIdentityProtectionPolicy", "Identity Protection")]),
        2 => json!([entry("riskBasedPolicy", "Risk-based policy")]),
        3 if registration => json!([entry("mfaRegistrationRequiredBySecurityDefaults", "Security defaults")]),
        3 => json!([entry("securityDefaults", "Security defaults")]),
        4 => json!([entry("request", "Requested by the application")]),
        5 => json!([entry("v1ConditionalAccess", "Conditional Access")]),
        _ => json!([ca()]),
    }
}

fn guid(rng: &mut ChaCha8Rng) -> String {
    guid_from_bits(rng.random())
}

/// A GUID made from `text`: the same text, the same GUID (the story's ids).
fn guid_of(text: &str) -> String {
    guid_from_bits(xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

fn guid_from_bits(v: u128) -> String {
    let h = format!("{v:032x}");
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn short_token(rng: &mut ChaCha8Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..22).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Labels, Rules, classify};
    use crate::decode::{Item, decode_message};

    fn spec(records: u64, format: Format) -> TenantSpec {
        TenantSpec { users: 300, records, format, ..TenantSpec::default() }
    }

    #[test]
    fn the_same_spec_gives_the_same_bytes() {
        let a: Vec<Vec<u8>> = Generator::new(spec(500, Format::Envelope)).collect();
        let b: Vec<Vec<u8>> = Generator::new(spec(500, Format::Envelope)).collect();
        assert_eq!(a, b);
        let c: Vec<Vec<u8>> = Generator::new(TenantSpec { seed: 2, ..spec(500, Format::Envelope) }).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn envelopes_hold_the_requested_number_of_records() {
        let messages: Vec<Vec<u8>> = Generator::new(spec(100, Format::Envelope)).collect();
        assert_eq!(messages.len(), 3);
        let total: usize = messages.iter().map(|m| decode_message(m).len()).sum();
        assert_eq!(total, 100);
        let ndjson: Vec<Vec<u8>> = Generator::new(spec(100, Format::Ndjson)).collect();
        assert_eq!(ndjson.len(), 100);
    }

    #[test]
    fn a_generated_tenant_has_every_kind_of_sign_in_and_all_decode() {
        let rules = Rules::default();
        let mut seen = std::collections::BTreeMap::<String, u64>::new();
        let mut biggest = 0;
        for message in Generator::new(spec(20_000, Format::Ndjson)) {
            biggest = biggest.max(message.len());
            for item in decode_message(&message) {
                match item {
                    Item::SignIn(s) => {
                        let v = classify(&s, &rules);
                        *seen.entry(s.category.to_string()).or_default() += 1;
                        for label in v.labels.names() {
                            *seen.entry(label.to_string()).or_default() += 1;
                        }
                        if let Some(f) = v.mfa_failure {
                            *seen.entry(f.as_str().to_string()).or_default() += 1;
                        }
                        if v.ropc {
                            *seen.entry("ropc".into()).or_default() += 1;
                        }
                        if !v.report_only.is_empty() {
                            *seen.entry("report_only".into()).or_default() += 1;
                        }
                    }
                    Item::Skipped { .. } => *seen.entry("skipped".into()).or_default() += 1,
                    Item::Directory(_) => *seen.entry("directory".into()).or_default() += 1,
                    Item::Malformed(m) => panic!("generator made a malformed record: {}", m.error),
                }
            }
        }
        for kind in [
            "SignInLogs",
            "NonInteractiveUserSignInLogs",
            "ServicePrincipalSignInLogs",
            "ManagedIdentitySignInLogs",
            "ADFSSignInLogs",
            "mfa_satisfied",
            "single_factor",
            "not_applicable",
            "legacy_auth",
            "risky",
            "failed",
            "denied",
            "required",
            "registration_required",
            "ropc",
            "report_only",
            "directory",
        ] {
            assert!(seen.get(kind).copied().unwrap_or(0) > 0, "no {kind} in {seen:?}");
        }
        assert!(seen["NonInteractiveUserSignInLogs"] > seen["SignInLogs"], "{seen:?}");
        assert!(biggest > 12_000 && biggest < 20_000, "largest record {biggest} bytes");
    }

    #[test]
    fn malformed_records_appear_at_the_requested_rate() {
        let spec = TenantSpec { malformed_per_10k: 100, ..spec(5_000, Format::Ndjson) };
        let malformed = Generator::new(spec)
            .flat_map(|m| {
                decode_message(&m).into_iter().filter(|i| matches!(i, Item::Malformed(_))).count().checked_sub(0)
            })
            .sum::<usize>();
        assert!((20..=90).contains(&malformed), "{malformed}");
    }

    #[test]
    fn planted_mfa_fatigue_is_in_the_truth_and_in_the_stream() {
        let spec = TenantSpec { fatigue_per_10k: 50, ..spec(4_000, Format::Ndjson) };
        let mut generator = Generator::new(spec);
        let mut denials = 0;
        for message in generator.by_ref() {
            for item in decode_message(&message) {
                if let Item::SignIn(s) = item
                    && s.outcome_code == 500121
                {
                    denials += 1;
                }
            }
        }
        let expected = generator.expected_alerts();
        let fatigued = expected.iter().filter(|(r, _)| r == "mfa_fatigue").count();
        assert!(fatigued >= 5, "{fatigued} fatigued users of {expected:?}");
        assert!(denials >= 15, "{denials}");
        assert!(expected.iter().any(|(r, _)| r == "legacy_auth_success"));
        assert!(expected.iter().any(|(r, _)| r == "break_glass_signin"));
    }

    #[test]
    fn re_deliveries_are_the_same_record_later_with_a_risk_and_in_the_truth() {
        let spec = TenantSpec { redeliveries_per_10k: 200, ..spec(6_000, Format::Ndjson) };
        let mut generator = Generator::new(spec);
        let mut first: std::collections::HashMap<String, (i64, bool, bool)> = Default::default();
        let (mut again, mut risk_added, mut without_mfa) = (0, 0, std::collections::BTreeSet::new());
        for message in generator.by_ref() {
            for item in decode_message(&message) {
                let Item::SignIn(s) = item else { continue };
                let v = classify(&s, &Rules::default());
                let id = s.fields.id.as_deref().unwrap_or_default().to_owned();
                let (risky, mfa) = (v.labels.contains(Labels::RISKY), v.labels.contains(Labels::MFA_SATISFIED));
                match first.get(&id) {
                    None => {
                        first.insert(id, (s.time.timestamp_micros(), risky, mfa));
                    }
                    Some(&(time, was_risky, was_mfa)) => {
                        again += 1;
                        assert_eq!(time, s.time.timestamp_micros(), "a copy has its record's time");
                        assert!(!was_risky && risky && was_mfa == mfa, "the copy adds the risk, nothing else");
                        risk_added += 1;
                        if !mfa {
                            without_mfa.insert(v.subject_key.as_deref().unwrap_or_default().to_owned());
                        }
                    }
                }
            }
        }
        assert!(again >= 10 && risk_added == again, "{again} re-deliveries");
        let expected: std::collections::BTreeSet<String> =
            generator.expected_alerts().into_iter().filter(|(r, _)| r == "risky_without_mfa").map(|(_, u)| u).collect();
        assert!(!without_mfa.is_empty() && without_mfa.is_subset(&expected), "{without_mfa:?} in {expected:?}");
    }

    #[test]
    fn a_spray_is_failed_sign_ins_of_accounts_that_do_not_exist() {
        let messages: Vec<Vec<u8>> = Spray::new(100, Utc::now(), 1, 40).collect();
        assert_eq!(messages.len(), 3);
        let mut upns = std::collections::HashSet::new();
        for m in &messages {
            for item in decode_message(m) {
                let Item::SignIn(s) = item else { panic!("{item:?}") };
                let v = classify(&s, &Rules::default());
                assert!(!v.success && v.labels.contains(crate::classify::Labels::LEGACY_AUTH));
                assert_eq!(s.outcome_code, 50034);
                upns.insert(s.fields.user_principal_name.unwrap().into_owned());
            }
        }
        assert_eq!(upns.len(), 100);
    }

    #[test]
    fn per_hub_messages_never_mix_categories() {
        let mut hubs = std::collections::BTreeMap::<String, usize>::new();
        let mut per_hub = PerHub::new(spec(3_000, Format::Envelope));
        let mut records = 0;
        while let Some((hub, message)) = per_hub.next_message() {
            let items = decode_message(&message);
            records += items.len();
            for item in items {
                let category = match item {
                    Item::SignIn(s) => s.category.as_str().to_ascii_lowercase(),
                    Item::Skipped { category } => category.to_ascii_lowercase(),
                    Item::Directory(d) => d.category.as_str().to_ascii_lowercase(),
                    Item::Malformed(m) => panic!("{}", m.error),
                };
                assert_eq!(hub, format!("insights-logs-{category}"));
            }
            *hubs.entry(hub).or_default() += 1;
        }
        assert_eq!(records, 3_000);
        for hub in [
            "insights-logs-signinlogs",
            "insights-logs-noninteractiveusersigninlogs",
            "insights-logs-serviceprincipalsigninlogs",
            "insights-logs-managedidentitysigninlogs",
        ] {
            assert!(hubs.contains_key(hub), "{hubs:?}");
        }
    }

    #[test]
    fn the_directory_story_decodes_to_the_facts_it_tells() {
        use crate::decode::directory::{Fact, Holding, MethodChangeKind};
        use crate::decode::{Item, decode_message};
        let tenant = Tenant::new(&spec(100, Format::Envelope));
        let (ann, bob) = (&tenant.users[0], &tenant.users[1]);
        let at = chrono::Utc::now();
        let message = story::envelope(&[
            story::role_added(ann, story::GLOBAL_ADMINISTRATOR, at, bob),
            story::role_removed(ann, story::GLOBAL_ADMINISTRATOR, at, bob),
            story::security_info_registered(ann, "Authenticator App with Notification and Code", at),
            story::sign_in_from(ann, "192.0.2.250", at),
        ]);
        let items = decode_message(&message);
        assert_eq!(items.len(), 4, "{items:?}");
        for (item, added) in items[..2].iter().zip([true, false]) {
            let Item::Directory(r) = item else { panic!("{item:?}") };
            let Fact::Role(c) = &r.fact else { panic!("{r:?}") };
            assert_eq!(
                (c.added, c.holding, c.principal.id.as_deref()),
                (added, Holding::Active, Some(ann.id.as_str()))
            );
            assert_eq!(c.role.template_id.as_deref(), Some(story::GLOBAL_ADMINISTRATOR.0));
            assert_eq!(r.initiated_by.as_deref(), Some(bob.upn.as_str()));
        }
        let Item::Directory(r) = &items[2] else { panic!("{:?}", items[2]) };
        let Fact::Methods(m) = &r.fact else { panic!("{r:?}") };
        assert_eq!(m.change, MethodChangeKind::Registered);
        assert_eq!(m.methods.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["microsoftAuthenticatorPush"]);
        let Item::SignIn(s) = &items[3] else { panic!("{:?}", items[3]) };
        let verdict = crate::classify::classify(s, &crate::classify::Rules::default());
        assert!(verdict.success && verdict.labels.contains(crate::classify::Labels::MFA_SATISFIED), "{verdict:?}");
    }

    #[test]
    fn the_protections_story_decodes_to_the_facts_it_tells_and_leaves_the_posture_it_means() {
        use crate::decode::directory::{Fact, PolicyOp, PolicyState, Protection};
        use crate::decode::{Item, decode_message};
        let tenant = Tenant::new(&spec(100, Format::Envelope));
        let (ann, eve, dan, cat) = (&tenant.users[0], &tenant.users[1], &tenant.users[50], &tenant.users[51]);
        let break_glass: Vec<&User> = tenant.users.iter().filter(|u| u.break_glass).collect();
        assert!(!break_glass.is_empty());
        let now = chrono::Utc::now();
        let minutes = |m: i64| now - chrono::Duration::minutes(m);
        let policy = story::ConditionalAccessPolicy::require_mfa_for_all_users(&break_glass, minutes(12));
        let report_only = policy.switched(PolicyState::ReportOnly, minutes(10));
        let enabled = report_only.switched(PolicyState::Enabled, minutes(9));
        let day_ago = now - chrono::Duration::hours(30);
        let records = [
            story::policy_added(&policy, minutes(12), ann),
            story::security_defaults(false, minutes(11), ann),
            story::policy_updated(&policy, &report_only, minutes(10), eve),
            story::policy_updated(&report_only, &enabled, minutes(9), eve),
            story::strong_authentication_disabled(dan, minutes(8), eve),
            story::risk_detection(cat, "leakedCredentials", "high", day_ago),
            story::risky_user(cat, "high", "atRisk", "none", day_ago),
            story::risky_user(dan, "high", "atRisk", "none", day_ago),
            story::risky_user(dan, "none", "remediated", "userPerformedSecuredPasswordChange", minutes(7)),
        ];
        let message = story::envelope(&records);
        let items = decode_message(&message);
        let decoded: Vec<&crate::decode::directory::DirectoryRecord> = items
            .iter()
            .map(|i| match i {
                Item::Directory(r) => r.as_ref(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(decoded.len(), records.len(), "{items:?}");
        // The policy: added enabled, report-only and back, by id, both sides read.
        let states: Vec<(PolicyOp, Option<PolicyState>, Option<PolicyState>)> = decoded[..4]
            .iter()
            .filter_map(|r| match &r.fact {
                Fact::Policy(p) => match &p.protection {
                    Protection::ConditionalAccess { op, before, after } => {
                        assert_eq!(p.policy_id.as_deref(), Some(policy.id.as_str()));
                        let after = after.as_deref().unwrap();
                        assert!(after.requires_mfa() && after.include_users == ["all"]);
                        let mut excluded: Vec<String> = break_glass.iter().map(|u| u.id.clone()).collect();
                        excluded.sort();
                        assert_eq!(after.exclude_users, excluded);
                        Some((*op, before.as_ref().and_then(|b| b.state), after.state))
                    }
                    Protection::SecurityDefaults { before, enabled } => {
                        assert_eq!((*before, *enabled), (Some(true), false));
                        None
                    }
                },
                other => panic!("{other:?}"),
            })
            .collect();
        use PolicyState::{Enabled, ReportOnly};
        assert_eq!(
            states,
            [
                (PolicyOp::Added, None, Some(Enabled)),
                (PolicyOp::Updated, Some(Enabled), Some(ReportOnly)),
                (PolicyOp::Updated, Some(ReportOnly), Some(Enabled)),
            ]
        );
        assert!(decoded[..4].iter().all(|r| r.initiated_by.is_some()));
        let Fact::PerUserMfa(m) = &decoded[4].fact else { panic!("{:?}", decoded[4]) };
        assert_eq!(
            (m.user.id.as_deref(), m.before.as_deref(), m.after.as_str()),
            (Some(dan.id.as_str()), None, "disabled")
        );
        let Fact::Risk(d) = &decoded[5].fact else { panic!("{:?}", decoded[5]) };
        assert_eq!((d.user.id.as_deref(), d.event_type.as_deref()), (Some(cat.id.as_str()), Some("leakedCredentials")));
        let risky: Vec<_> = decoded[6..]
            .iter()
            .map(|r| match &r.fact {
                Fact::RiskyUser(u) => (
                    u.user.id.as_deref(),
                    u.level.as_deref(),
                    u.state.as_deref(),
                    u.detail.as_deref(),
                    r.time.timestamp_millis(),
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        let ms = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis();
        assert_eq!(
            risky,
            [
                (Some(cat.id.as_str()), Some("high"), Some("atRisk"), Some("none"), ms(day_ago)),
                (Some(dan.id.as_str()), Some("high"), Some("atRisk"), Some("none"), ms(day_ago)),
                (
                    Some(dan.id.as_str()),
                    Some("none"),
                    Some("remediated"),
                    Some("userPerformedSecuredPasswordChange"),
                    ms(minutes(7))
                ),
            ]
        );
        // Played again, the same records (the ids are made from the inputs).
        let again = story::policy_updated(&policy, &report_only, minutes(10), eve);
        assert_eq!(again, records[2]);

        // Applied, in any order: the posture the demo means.
        let mut directory = crate::directory::Directory::default();
        for r in decoded.iter().rev() {
            directory.apply(r);
        }
        let posture = directory.posture();
        let timeline: Vec<Vec<String>> = posture.timeline().iter().map(|c| c.what()).collect();
        assert_eq!(
            timeline,
            [
                vec!["added, enabled, requires MFA".to_owned()],
                vec!["security defaults disabled".to_owned()],
                vec!["state enabled → report_only".to_owned()],
                vec!["state report_only → enabled".to_owned()],
                vec![format!("per-user MFA of {} disabled", dan.upn)],
            ]
        );
        let weakens: Vec<bool> = posture.timeline().iter().map(|c| c.weakens()).collect();
        assert_eq!(weakens, [false, true, true, false, true]);
        assert_eq!(
            posture.mfa_policies(),
            crate::directory::posture::MfaPolicies { enabled: 1, report_only: 0, disabled: 0 }
        );
        assert_eq!(posture.security_defaults().map(|d| d.enabled), Some(false));
        // MFA enforced by the policy when security defaults went, not while it was report-only.
        let name = vec![policy.name.clone()];
        assert_eq!(posture.mfa_enforced_at(ms(minutes(11))), name);
        assert!(posture.mfa_enforced_at(ms(minutes(10))).is_empty());
        assert_eq!(posture.mfa_enforced_at(ms(now)), name);
        // cat high and at risk for 30 hours; dan at risk too, then remediated.
        let cat_now = directory.risk_at(&cat.id, &cat.upn, now).unwrap();
        assert!(cat_now.high_open() && cat_now.since == Some(ms(day_ago)), "{cat_now:?}");
        let dan_now = directory.risk_at(&dan.id, &dan.upn, now).unwrap();
        assert!(!dan_now.high_open() && dan_now.state.as_deref() == Some("remediated"), "{dan_now:?}");
        assert!(directory.risk_at(&dan.id, &dan.upn, minutes(8)).unwrap().high_open());
    }
}
