//! classify: a decoded sign-in → its [`Verdict`] (SIGNIN-SEMANTICS §2–§4).
//!
//! A pure function of the record and the configured [`Rules`]: no I/O, no
//! clock, no state. Every sink consumes the same verdict. The verdict borrows
//! its strings from the record, so classifying allocates nothing.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::decode::fields::starts_with_ignore_case;
use crate::decode::{AuthStep, Category, Mechanisms, ReportOnlyResult, SignIn};

pub mod mechanism;
pub mod strength;
pub use strength::Strength;

/// The default legacy-authentication client list (SIGNIN-SEMANTICS §4;
/// block-legacy-authentication.md, Sentinel LegacyAuthAttempt.yaml).
pub const DEFAULT_LEGACY_CLIENTS: [&str; 14] = [
    "Authenticated SMTP",
    "AutoDiscover",
    "Exchange ActiveSync",
    "Exchange Online PowerShell",
    "Exchange Web Services",
    "IMAP4",
    "MAPI Over HTTP",
    "Offline Address Book",
    "Outlook Anywhere (RPC over HTTP)",
    "Outlook Service",
    "Universal Outlook",
    "POP3",
    "Reporting Web Services",
    "Other clients",
];

/// What classification can be configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// `clientAppUsed` values that are legacy authentication, as written in config.
    pub legacy_clients: Vec<String>,
    /// Risk at or above this level makes a sign-in risky.
    pub risk_threshold: RiskLevel,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            legacy_clients: DEFAULT_LEGACY_CLIENTS.iter().map(|s| s.to_string()).collect(),
            risk_threshold: RiskLevel::Medium,
        }
    }
}

impl Rules {
    /// Index into `legacy_clients` of a `clientAppUsed` value, compared
    /// case-insensitively after trimming.
    pub fn legacy_client(&self, client_app: &str) -> Option<usize> {
        let client_app = client_app.trim();
        self.legacy_clients.iter().position(|l| l.trim().eq_ignore_ascii_case(client_app))
    }
}

/// Who signed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    User,
    ServicePrincipal,
    ManagedIdentity,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::User => "user",
            Subject::ServicePrincipal => "service_principal",
            Subject::ManagedIdentity => "managed_identity",
        }
    }
}

/// The set of labels of one sign-in (§4): a sign-in gets several.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Labels(u8);

impl Labels {
    pub const MFA_SATISFIED: Labels = Labels(1);
    pub const SINGLE_FACTOR: Labels = Labels(2);
    pub const NOT_APPLICABLE: Labels = Labels(4);
    pub const LEGACY_AUTH: Labels = Labels(8);
    pub const RISKY: Labels = Labels(16);
    pub const FAILED: Labels = Labels(32);

    pub const ALL: [(Labels, &'static str); 6] = [
        (Labels::MFA_SATISFIED, "mfa_satisfied"),
        (Labels::SINGLE_FACTOR, "single_factor"),
        (Labels::NOT_APPLICABLE, "not_applicable"),
        (Labels::LEGACY_AUTH, "legacy_auth"),
        (Labels::RISKY, "risky"),
        (Labels::FAILED, "failed"),
    ];

    pub fn contains(self, other: Labels) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn insert(&mut self, other: Labels) {
        self.0 |= other.0;
    }

    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Labels::ALL.into_iter().filter(move |(l, _)| self.contains(*l)).map(|(_, n)| n)
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

/// `clientAppUsed`, in four classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientClass {
    Browser,
    MobileDesktop,
    Legacy,
    Unknown,
}

impl ClientClass {
    pub const ALL: [ClientClass; 4] =
        [ClientClass::Browser, ClientClass::MobileDesktop, ClientClass::Legacy, ClientClass::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientClass::Browser => "browser",
            ClientClass::MobileDesktop => "mobile_desktop",
            ClientClass::Legacy => "legacy",
            ClientClass::Unknown => "unknown",
        }
    }
}

/// Identity Protection risk level. `Hidden`: the tenant lacks the licence that shows risk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    None,
    Low,
    Medium,
    High,
    Hidden,
}

impl RiskLevel {
    pub const ALL: [RiskLevel; 5] =
        [RiskLevel::None, RiskLevel::Low, RiskLevel::Medium, RiskLevel::High, RiskLevel::Hidden];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::None => "none",
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Hidden => "hidden",
        }
    }

    pub fn parse(text: Option<&str>) -> Option<RiskLevel> {
        let text = text?.trim();
        RiskLevel::ALL.into_iter().find(|l| l.as_str().eq_ignore_ascii_case(text))
    }

    /// The higher of two reported levels; `hidden` only when neither shows a level.
    fn combine(a: Option<RiskLevel>, b: Option<RiskLevel>) -> RiskLevel {
        let shown = |l: Option<RiskLevel>| l.filter(|l| *l != RiskLevel::Hidden);
        match shown(a).max(shown(b)) {
            Some(level) => level,
            None if a == Some(RiskLevel::Hidden) || b == Some(RiskLevel::Hidden) => RiskLevel::Hidden,
            None => RiskLevel::None,
        }
    }
}

/// Why a sign-in failed at the MFA step (§3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MfaFailure {
    Denied,
    Required,
    RegistrationRequired,
    ExternalChallengeFailed,
    Expired,
}

impl MfaFailure {
    pub const ALL: [MfaFailure; 5] = [
        MfaFailure::Denied,
        MfaFailure::Required,
        MfaFailure::RegistrationRequired,
        MfaFailure::ExternalChallengeFailed,
        MfaFailure::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MfaFailure::Denied => "denied",
            MfaFailure::Required => "required",
            MfaFailure::RegistrationRequired => "registration_required",
            MfaFailure::ExternalChallengeFailed => "external_challenge_failed",
            MfaFailure::Expired => "expired",
        }
    }
}

/// A failure that proves a block works (§3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockedBy {
    ConditionalAccess,
    SecurityDefaults,
}

impl BlockedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockedBy::ConditionalAccess => "conditional_access",
            BlockedBy::SecurityDefaults => "security_defaults",
        }
    }
}

/// `conditionalAccessStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CaStatus {
    Success,
    Failure,
    NotApplied,
    Unknown,
}

impl CaStatus {
    pub const ALL: [CaStatus; 4] = [CaStatus::Success, CaStatus::Failure, CaStatus::NotApplied, CaStatus::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            CaStatus::Success => "success",
            CaStatus::Failure => "failure",
            CaStatus::NotApplied => "notApplied",
            CaStatus::Unknown => "unknown",
        }
    }

    fn parse(text: Option<&str>) -> CaStatus {
        let text = text.unwrap_or("").trim();
        [CaStatus::Success, CaStatus::Failure, CaStatus::NotApplied]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
            .unwrap_or(CaStatus::Unknown)
    }
}

/// How MFA was satisfied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MfaMethod<'a> {
    /// By a claim in the token: MFA done earlier in the session.
    PreviouslySatisfied,
    /// The `authenticationMethod` of the succeeded MFA step ("Mobile app notification").
    Method(&'a str),
    /// The record says MFA was met but names no method.
    Unknown,
}

impl MfaMethod<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            MfaMethod::PreviouslySatisfied => "previously_satisfied",
            MfaMethod::Method(m) => m,
            MfaMethod::Unknown => "unknown",
        }
    }
}

impl Serialize for MfaMethod<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Everything mfawatch concludes about one sign-in. Plain data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub subject: Subject,
    /// Who signed in (§2): `userId`, else the lower-cased UPN; for workloads
    /// their `servicePrincipalId`, else `appId`. `None` when the record names no one.
    pub subject_key: Option<Cow<'a, str>>,
    pub interactive: bool,
    pub success: bool,
    pub labels: Labels,
    pub client_class: ClientClass,
    /// `clientAppUsed` as written in the record.
    pub client_app: &'a str,
    /// Index into [`Rules::legacy_clients`] when legacy_auth.
    pub legacy_client: Option<usize>,
    pub ropc: bool,
    pub risk_level: RiskLevel,
    pub mfa_method: Option<MfaMethod<'a>>,
    pub mfa_failure: Option<MfaFailure>,
    pub blocked_by: Option<BlockedBy>,
    pub ca_status: CaStatus,
    pub report_only: &'a [ReportOnlyResult<'a>],
    /// Which mechanisms asked for MFA (`mechanism.rs`): `None` unless MFA
    /// was asked of a user's sign-in; `UNKNOWN` when the record does not say.
    pub mechanisms: Option<Mechanisms>,
    /// How strong the MFA was (`strength.rs`): `None` unless mfa_satisfied.
    pub strength: Option<Strength>,
}

/// Phrases in `status.additionalDetails` / `authenticationStepResultDetail`
/// saying the MFA requirement was met (§4), and whether it was by a token claim.
const MFA_DONE_PHRASES: [(&str, bool); 6] = [
    ("MFA requirement satisfied by claim in the token", true),
    ("MFA requirement skipped due to remembered device", true),
    ("MFA completed in Azure AD", false),
    ("MFA successfully completed", false),
    ("MFA requirement satisfied by strong authentication", false),
    ("MFA requirement satisfied by claim provided by external provider", false),
];

/// Entra writes this when a trusted IP (per-user MFA "trusted IPs") skipped
/// MFA: the requirement existed but no second factor was presented.
const MFA_SKIPPED_BY_LOCATION: [&str; 2] =
    ["MFA requirement skipped due to IP address", "MFA requirement skipped due to location"];

/// Classifies one sign-in. Pure: same record and rules, same verdict.
pub fn classify<'a>(record: &'a SignIn<'a>, rules: &Rules) -> Verdict<'a> {
    let f = &record.fields;
    let (subject, interactive) = subject_of(record.category);
    let success = record.outcome_code == 0;
    let mut labels = Labels::default();
    let mut mfa_method = None;

    if subject == Subject::User {
        if success {
            mfa_method = mfa_evidence(record);
            labels.insert(if mfa_method.is_some() { Labels::MFA_SATISFIED } else { Labels::SINGLE_FACTOR });
        }
    } else {
        labels.insert(Labels::NOT_APPLICABLE);
    }
    if !success {
        labels.insert(Labels::FAILED);
    }

    let client_app = f.client_app_used.as_deref().unwrap_or("");
    let legacy_client = rules.legacy_client(client_app);
    if legacy_client.is_some() {
        labels.insert(Labels::LEGACY_AUTH);
    }
    let client_class = match client_app.trim() {
        _ if legacy_client.is_some() => ClientClass::Legacy,
        c if c.eq_ignore_ascii_case("Browser") => ClientClass::Browser,
        c if c.eq_ignore_ascii_case("Mobile Apps and Desktop clients") => ClientClass::MobileDesktop,
        _ => ClientClass::Unknown,
    };

    let risk_level = RiskLevel::combine(
        RiskLevel::parse(f.risk_level_during_sign_in.as_deref()),
        RiskLevel::parse(f.risk_level_aggregated.as_deref()),
    );
    if is_risky(risk_level, f.risk_state.as_deref(), rules.risk_threshold) {
        labels.insert(Labels::RISKY);
    }

    let details = f.status.as_ref().and_then(|s| s.additional_details.as_deref()).unwrap_or("");
    let mfa_failure = if success { None } else { mfa_failure(record.outcome_code, details) };
    let blocked_by = match record.outcome_code {
        53003 => Some(BlockedBy::ConditionalAccess),
        530035 => Some(BlockedBy::SecurityDefaults),
        _ => None,
    };

    let mechanisms = mechanism::enforcement(record, subject, labels, mfa_failure, blocked_by);
    let steps = f.authentication_details.as_deref().unwrap_or(&[]);
    let strength = mfa_method.as_ref().map(|m| Strength::of(steps, m));
    Verdict {
        subject,
        subject_key: subject_key(record, subject),
        interactive,
        success,
        labels,
        client_class,
        client_app,
        legacy_client,
        ropc: f.authentication_protocol.as_deref().is_some_and(|p| p.trim().eq_ignore_ascii_case("ropc")),
        risk_level,
        mfa_method,
        mfa_failure,
        blocked_by,
        ca_status: CaStatus::parse(f.conditional_access_status.as_deref()),
        report_only: f.report_only.as_deref().unwrap_or(&[]),
        mechanisms,
        strength,
    }
}

/// §2: subject and interactivity by category.
pub fn subject_of(category: Category) -> (Subject, bool) {
    match category {
        Category::SignIn | Category::AdfsSignIn => (Subject::User, true),
        Category::NonInteractiveUser => (Subject::User, false),
        Category::ServicePrincipal | Category::MicrosoftServicePrincipal => (Subject::ServicePrincipal, false),
        Category::ManagedIdentity => (Subject::ManagedIdentity, false),
    }
}

/// §2: the user identity key.
fn subject_key<'a>(record: &'a SignIn<'a>, subject: Subject) -> Option<Cow<'a, str>> {
    let f = &record.fields;
    let present = |s: &'a Option<Cow<'a, str>>| s.as_deref().map(str::trim).filter(|s| !s.is_empty());
    match subject {
        Subject::User => match present(&f.user_id) {
            Some(id) => Some(Cow::Borrowed(id)),
            None => present(&f.user_principal_name).map(|upn| {
                if upn.chars().any(char::is_uppercase) { Cow::Owned(upn.to_lowercase()) } else { Cow::Borrowed(upn) }
            }),
        },
        Subject::ServicePrincipal | Subject::ManagedIdentity => present(&f.service_principal_id)
            .or_else(|| present(&f.app_id))
            .or_else(|| present(&f.user_id))
            .map(Cow::Borrowed),
    }
}

/// §4: the MFA evidence of a successful user sign-in, as the method used;
/// `None` when there is none (single factor).
fn mfa_evidence<'a>(record: &'a SignIn<'a>) -> Option<MfaMethod<'a>> {
    let f = &record.fields;
    let steps = f.authentication_details.as_deref().unwrap_or(&[]);
    let details = f.status.as_ref().and_then(|s| s.additional_details.as_deref()).unwrap_or("");

    // MFA waived because of where the sign-in came from (a trusted IP range or
    // named location), said in the status or in a step: not MFA (§4).
    let skipped_by_location = || {
        std::iter::once(details)
            .chain(steps.iter().filter_map(|s| s.result_detail.as_deref()))
            .any(|text| MFA_SKIPPED_BY_LOCATION.iter().any(|p| starts_with_ignore_case(text.trim(), p)))
    };

    // A succeeded step whose requirement names multi-factor authentication.
    let mfa_step = steps
        .iter()
        .find(|s| s.succeeded == Some(true) && s.step_requirement.as_deref().is_some_and(names_multifactor));
    if let Some(step) = mfa_step.filter(|_| !skipped_by_location()) {
        return Some(method_of_step(step.method.as_deref(), step.result_detail.as_deref()));
    }

    // A phrase saying the requirement was met: in a succeeded step's result
    // detail (a failed step proves nothing, whatever its text says), whose
    // method is then the one used; or in the status.
    let by_step = steps
        .iter()
        .find(|s| s.succeeded == Some(true) && s.result_detail.as_deref().and_then(mfa_done_phrase).is_some());
    if let Some(step) = by_step {
        return Some(method_of_step(step.method.as_deref(), step.result_detail.as_deref()));
    }
    if let Some(by_claim) = mfa_done_phrase(details) {
        return Some(if by_claim { MfaMethod::PreviouslySatisfied } else { second_factor(steps) });
    }

    // The requirement itself, unless a trusted location skipped it.
    let required = f
        .authentication_requirement
        .as_deref()
        .is_some_and(|r| r.trim().eq_ignore_ascii_case("multiFactorAuthentication"));
    if required && !skipped_by_location() {
        return Some(second_factor(steps));
    }
    None
}

fn names_multifactor(requirement: &str) -> bool {
    let r = requirement.trim();
    starts_with_ignore_case(r, "Multi-factor authentication")
        || starts_with_ignore_case(r, "Multifactor authentication")
}

/// `Some(by_claim)` when the text says the MFA requirement was met.
fn mfa_done_phrase(text: &str) -> Option<bool> {
    let text = text.trim();
    MFA_DONE_PHRASES.iter().find(|(p, _)| starts_with_ignore_case(text, p)).map(|(_, by_claim)| *by_claim)
}

fn method_of_step<'a>(method: Option<&'a str>, detail: Option<&'a str>) -> MfaMethod<'a> {
    match method.map(str::trim) {
        Some(m) if m.eq_ignore_ascii_case("Previously satisfied") => MfaMethod::PreviouslySatisfied,
        _ if detail.and_then(mfa_done_phrase) == Some(true) => MfaMethod::PreviouslySatisfied,
        Some(m) if !m.is_empty() => MfaMethod::Method(m),
        _ => MfaMethod::Unknown,
    }
}

/// The method of a succeeded step that is not the first factor, else unknown:
/// "MFA completed in Azure AD" or a bare requirement name no method.
fn second_factor<'a>(steps: &'a [AuthStep<'a>]) -> MfaMethod<'a> {
    steps
        .iter()
        .filter(|s| s.succeeded == Some(true))
        .filter(|s| {
            !s.step_requirement.as_deref().is_some_and(|r| starts_with_ignore_case(r.trim(), "Primary authentication"))
        })
        .filter_map(|s| s.method.as_deref().map(str::trim))
        .find(|m| !m.is_empty() && !m.eq_ignore_ascii_case("Password"))
        .map_or(MfaMethod::Unknown, |m| method_of_step(Some(m), None))
}

/// §4: risky when the level reaches the threshold or the state says at risk.
/// A risk an admin dismissed or confirmed safe was judged not real and is not
/// raised again; a remediated one was real (the user passed MFA or changed
/// the password because of it) and stays risky.
fn is_risky(level: RiskLevel, state: Option<&str>, threshold: RiskLevel) -> bool {
    let state = state.unwrap_or("").trim();
    let is = |name: &str| state.eq_ignore_ascii_case(name);
    if is("dismissed") || is("confirmedSafe") {
        return false;
    }
    (level != RiskLevel::Hidden && level >= threshold && level > RiskLevel::None)
        || is("atRisk")
        || is("confirmedCompromised")
}

/// Why a sign-in is risky, in words for a person (alerts, the report):
/// the level when it says so, else the risk state — "high risk", "risk
/// state: confirmed compromised (level low)", "risk state: at risk, level
/// hidden by licence". Never "none risk".
pub fn risk_reason(level: RiskLevel, state: Option<&str>) -> String {
    let state = state.unwrap_or("").trim();
    let is = |name: &str| state.eq_ignore_ascii_case(name);
    let graded = matches!(level, RiskLevel::Low | RiskLevel::Medium | RiskLevel::High);
    let level_words = match level {
        RiskLevel::Hidden => "level hidden by licence".to_owned(),
        RiskLevel::None => "level none".to_owned(),
        l => format!("level {}", l.as_str()),
    };
    if is("confirmedCompromised") {
        format!("risk state: confirmed compromised, {level_words}")
    } else if graded && is("remediated") {
        format!("{} risk, remediated", level.as_str())
    } else if graded {
        format!("{} risk", level.as_str())
    } else if is("atRisk") {
        format!("risk state: at risk, {level_words}")
    } else {
        level_words
    }
}

/// §3: the MFA meaning of a failure code.
fn mfa_failure(code: i64, additional_details: &str) -> Option<MfaFailure> {
    if code == 500121 || starts_with_ignore_case(additional_details.trim(), "MFA denied") {
        return Some(MfaFailure::Denied);
    }
    match code {
        50074 | 50076 => Some(MfaFailure::Required),
        50072 | 50079 => Some(MfaFailure::RegistrationRequired),
        50158 => Some(MfaFailure::ExternalChallengeFailed),
        50078 => Some(MfaFailure::Expired),
        _ => None,
    }
}

/// The JSON form of a verdict with the record fields a reader needs: one line
/// of `mfawatch classify`, and the payload alerts and history build on.
#[derive(Serialize)]
pub struct VerdictLine<'a> {
    pub id: Option<&'a str>,
    pub category: Category,
    pub time: String,
    pub user_key: Option<&'a str>,
    pub upn: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub user_type: Option<&'a str>,
    pub subject: Subject,
    pub interactive: bool,
    pub success: bool,
    pub labels: Labels,
    pub client_class: ClientClass,
    pub client_app: &'a str,
    pub ropc: bool,
    pub risk_level: RiskLevel,
    pub risk_state: Option<&'a str>,
    pub mfa_method: Option<&'a MfaMethod<'a>>,
    pub mfa_failure: Option<MfaFailure>,
    pub blocked_by: Option<BlockedBy>,
    /// Which mechanisms asked for MFA; absent when MFA was not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_mechanisms: Option<Mechanisms>,
    pub outcome_code: i64,
    pub ca_status: CaStatus,
    pub report_only: &'a [ReportOnlyResult<'a>],
    pub app: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub country: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub shape: crate::decode::Shape,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl<'a> VerdictLine<'a> {
    pub fn new(record: &'a SignIn<'a>, verdict: &'a Verdict<'a>) -> VerdictLine<'a> {
        let f = &record.fields;
        VerdictLine {
            id: f.id.as_deref(),
            category: record.category,
            time: record.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            user_key: verdict.subject_key.as_deref(),
            upn: f.user_principal_name.as_deref(),
            display_name: f.user_display_name.as_deref(),
            user_type: f.user_type.as_deref(),
            subject: verdict.subject,
            interactive: verdict.interactive,
            success: verdict.success,
            labels: verdict.labels,
            client_class: verdict.client_class,
            client_app: verdict.client_app,
            ropc: verdict.ropc,
            risk_level: verdict.risk_level,
            risk_state: f.risk_state.as_deref(),
            mfa_method: verdict.mfa_method.as_ref(),
            mfa_failure: verdict.mfa_failure,
            blocked_by: verdict.blocked_by,
            mfa_mechanisms: verdict.mechanisms,
            outcome_code: record.outcome_code,
            ca_status: verdict.ca_status,
            report_only: verdict.report_only,
            app: f.app_display_name.as_deref(),
            resource: f.resource_display_name.as_deref(),
            ip: f.ip_address.as_deref().or(f.caller_ip_address.as_deref()),
            country: f.country.as_deref(),
            correlation_id: f.correlation_id.as_deref(),
            shape: record.shape,
            source: None,
        }
    }
}

mod carried;
pub use carried::{Carried, Enriched};

#[cfg(test)]
mod tests;
