//! directory: the directory records — Entra `AuditLogs`, Identity
//! Protection's `RiskyUsers` and `UserRiskEvents`, and the two seeds
//! (`userRegistrationDetails`, role assignments) — as [`DirectoryRecord`]s
//! (the contract: docs/labels.md, "Directory records").
//!
//! Each comes in three shapes: the Event Hubs diagnostic record
//! (`properties{…}`), the Log Analytics row (`AuditLogs`, `AADRiskyUsers`,
//! `AADUserRiskEvents`; PascalCase, dynamic columns often as JSON text) and
//! the Graph object (`directoryAudit`, `riskyUser`, `riskDetection`,
//! `userRegistrationDetails`, `unifiedRoleAssignment` and the PIM schedule
//! instances). Keys are compared without letter case; `modifiedProperties`
//! values are JSON inside strings (`"\"Security Administrator\""`); the user
//! and the role are found by their `type` in `targetResources`, never by
//! their place. Directory records are few (an audit event per change, not per
//! sign-in), so they are read through `serde_json::Value`, not the fast
//! reader; a sign-in message never comes here.
//!
//! An operation this release does not read is a record too ([`Fact::Other`],
//! with its family for the metrics): counted and skipped, never an error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DecodeError, Identity, Shape, time::parse_event_time};

mod policy;
pub use policy::{CaPolicy, PerUserMfa, PolicyChange, PolicyOp, PolicyState, Protection};

/// The directory categories and seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DirCategory {
    AuditLogs,
    RiskyUsers,
    UserRiskEvents,
    /// `userRegistrationDetails` (Graph) or the admin center's "User registration details" download.
    RegistrationDetails,
    /// Role assignments (Graph) or the admin center's role-assignment download.
    RoleAssignments,
}

impl DirCategory {
    pub const ALL: [DirCategory; 5] = [
        DirCategory::AuditLogs,
        DirCategory::RiskyUsers,
        DirCategory::UserRiskEvents,
        DirCategory::RegistrationDetails,
        DirCategory::RoleAssignments,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DirCategory::AuditLogs => "AuditLogs",
            DirCategory::RiskyUsers => "RiskyUsers",
            DirCategory::UserRiskEvents => "UserRiskEvents",
            DirCategory::RegistrationDetails => "UserRegistrationDetails",
            DirCategory::RoleAssignments => "RoleAssignments",
        }
    }

    /// A diagnostic-setting category or Log Analytics table naming a directory category.
    pub fn from_name(name: &str) -> Option<DirCategory> {
        match name.trim().to_ascii_lowercase().as_str() {
            // "Audit": the legacy schema of 2018 (`targetUpdatedProperties`).
            "auditlogs" | "audit" => Some(DirCategory::AuditLogs),
            "riskyusers" | "aadriskyusers" => Some(DirCategory::RiskyUsers),
            "userriskevents" | "aaduserriskevents" => Some(DirCategory::UserRiskEvents),
            _ => None,
        }
    }
}

/// What kind of operation a record is, for the metrics (bounded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Role assignments, PIM eligibility and activation.
    Role,
    /// Authentication methods (security info) registered, deleted, changed.
    SecurityInfo,
    /// Registration details (seed).
    Registration,
    /// Conditional Access policies.
    ConditionalAccess,
    /// Other policies (`Update policy`, security defaults).
    Policy,
    /// Identity Protection: risky users and risk detections.
    Risk,
    /// Anything else in the audit log.
    Other,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Role,
        Family::SecurityInfo,
        Family::Registration,
        Family::ConditionalAccess,
        Family::Policy,
        Family::Risk,
        Family::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Role => "role",
            Family::SecurityInfo => "security_info",
            Family::Registration => "registration",
            Family::ConditionalAccess => "conditional_access",
            Family::Policy => "policy",
            Family::Risk => "risk",
            Family::Other => "other",
        }
    }
}

/// One directory record, decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryRecord {
    pub category: DirCategory,
    pub shape: Shape,
    /// When the change happened (`activityDateTime`, `riskLastUpdatedDateTime`,
    /// `detectedDateTime`, `lastUpdatedDateTime`; for a seed without one, when it was read).
    pub time: DateTime<Utc>,
    /// The record's own id, when it has one.
    pub id: Option<String>,
    /// `activityDisplayName` (audit), else what the record is.
    pub operation: String,
    pub tenant_id: Option<String>,
    /// Who made the change (audit `initiatedBy`: a UPN, else an app's name).
    pub initiated_by: Option<String>,
    pub fact: Fact,
}

impl DirectoryRecord {
    /// The same identity rule as sign-ins: category + id, else what makes it itself.
    pub fn identity(&self) -> Identity {
        let user = self.fact.subject().and_then(|p| p.id.clone().or_else(|| p.upn.clone()));
        Identity::of(
            self.category.as_str(),
            self.id.as_deref(),
            Some(&self.operation),
            self.time.timestamp_millis(),
            user.as_deref(),
        )
    }

    pub fn family(&self) -> Family {
        self.fact.family()
    }
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fact {
    Role(RoleChange),
    Methods(MethodChange),
    Registration(RegistrationDetails),
    RiskyUser(RiskyUser),
    Risk(RiskDetection),
    /// A Conditional Access policy or security defaults changed.
    Policy(PolicyChange),
    /// Per-user MFA changed for a user.
    PerUserMfa(PerUserMfa),
    /// An operation this release does not read, or one that failed.
    Other {
        family: Family,
        failed: bool,
    },
}

impl Fact {
    pub fn family(&self) -> Family {
        match self {
            Fact::Role(_) => Family::Role,
            Fact::Methods(_) => Family::SecurityInfo,
            Fact::Registration(_) => Family::Registration,
            Fact::RiskyUser(_) | Fact::Risk(_) => Family::Risk,
            Fact::Policy(PolicyChange { protection: Protection::ConditionalAccess { .. }, .. }) => {
                Family::ConditionalAccess
            }
            Fact::Policy(_) | Fact::PerUserMfa(_) => Family::Policy,
            Fact::Other { family, .. } => *family,
        }
    }

    /// The user the fact is about.
    pub fn subject(&self) -> Option<&Principal> {
        match self {
            Fact::Role(r) => Some(&r.principal),
            Fact::Methods(m) => Some(&m.user),
            Fact::Registration(r) => Some(&r.user),
            Fact::RiskyUser(r) => Some(&r.user),
            Fact::Risk(r) => Some(&r.user),
            Fact::PerUserMfa(m) => Some(&m.user),
            Fact::Policy(_) | Fact::Other { .. } => None,
        }
    }

    pub fn subject_mut(&mut self) -> Option<&mut Principal> {
        match self {
            Fact::Role(r) => Some(&mut r.principal),
            Fact::Methods(m) => Some(&mut m.user),
            Fact::Registration(r) => Some(&mut r.user),
            Fact::RiskyUser(r) => Some(&mut r.user),
            Fact::Risk(r) => Some(&mut r.user),
            Fact::PerUserMfa(m) => Some(&mut m.user),
            Fact::Policy(_) | Fact::Other { .. } => None,
        }
    }
}

/// A user (or another principal) as a record names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Object id, lower case.
    pub id: Option<String>,
    /// UPN as written.
    pub upn: Option<String>,
    pub display_name: Option<String>,
    /// `User`, `ServicePrincipal`, `Group`, … as the record types it (users when not said).
    pub kind: PrincipalKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    #[default]
    User,
    ServicePrincipal,
    Group,
    Other,
}

/// A directory role, by template id (built-in roles) and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// The role template id (= role definition id of a built-in role), lower case.
    pub template_id: Option<String>,
    pub name: Option<String>,
}

/// How a role is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Holding {
    /// An active assignment (permanent or time-bound; a PIM activation too).
    Active,
    /// PIM-eligible: may be activated at any time.
    Eligible,
}

/// A role change or a seeded assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleChange {
    pub principal: Principal,
    pub role: Role,
    pub holding: Holding,
    /// Added (true) or removed (false).
    pub added: bool,
    /// A PIM activation (an active holding with an end).
    pub activation: bool,
    /// When a time-bound assignment or an activation ends.
    pub until: Option<DateTime<Utc>>,
    /// Since when it is held, when the record says (`StartTime`, `startDateTime`).
    pub since: Option<DateTime<Utc>>,
}

/// Authentication methods registered, deleted or replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodChange {
    pub user: Principal,
    pub change: MethodChangeKind,
    /// The methods named (for `Replaced`, the whole new set).
    pub methods: Vec<Method>,
    /// By an administrator for the user.
    pub by_admin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodChangeKind {
    Registered,
    Deleted,
    /// "User registered all required security info": registered for MFA.
    AllRequired,
    DefaultChanged,
    /// A method's details changed (a phone number): still registered.
    Updated,
    /// Per-user MFA's `StrongAuthenticationMethod` set, replaced whole.
    Replaced,
}

/// An authentication method, in Graph's `methodsRegistered` vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Method(pub String);

/// How strong a method is as a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Not an MFA method (email, security questions: self-service password reset only).
    NotMfa,
    /// A second factor (phone, authenticator, OATH token, TAP).
    Mfa,
    /// Phishing-resistant (FIDO2 security key, passkey, Windows Hello for Business, certificate).
    PhishingResistant,
}

impl Method {
    pub fn new(name: &str) -> Method {
        Method(name.trim().to_owned())
    }

    /// A method as a list names it: Graph's name (`microsoftAuthenticatorPush`)
    /// as is, the admin center's words ("Microsoft Authenticator app",
    /// "FIDO2 security key") as Graph's.
    pub fn of_name(name: &str) -> Method {
        let name = name.trim();
        // Graph's names are lowerCamelCase; the admin center writes words ("Email", "Mobile phone").
        let words = name.contains(' ') || name.starts_with(|c: char| c.is_ascii_uppercase());
        if words { method_from_phrase(name).unwrap_or_else(|| Method::new(name)) } else { Method::new(name) }
    }

    pub fn strength(&self) -> Strength {
        let m = self.0.to_ascii_lowercase();
        let m = m.as_str();
        if m.starts_with("fido2")
            || m.starts_with("passkey")
            || m.starts_with("windowshello")
            || m.starts_with("x509certificate")
            || m.starts_with("macossecureenclave")
            || m == "platformcredential"
        {
            Strength::PhishingResistant
        } else if matches!(m, "email" | "securityquestion" | "password" | "none" | "") {
            Strength::NotMfa
        } else {
            Strength::Mfa
        }
    }
}

/// A user's registration as reported (seed: Graph or the admin center's download).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationDetails {
    pub user: Principal,
    pub mfa_registered: Option<bool>,
    pub mfa_capable: Option<bool>,
    pub methods: Vec<Method>,
    pub default_method: Option<String>,
    /// Entra's own "is admin" flag.
    pub is_admin: Option<bool>,
}

/// Identity Protection's view of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskyUser {
    pub user: Principal,
    pub level: Option<String>,
    pub state: Option<String>,
    pub detail: Option<String>,
    pub deleted: bool,
}

/// One risk detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskDetection {
    pub user: Principal,
    pub event_type: Option<String>,
    pub level: Option<String>,
    pub state: Option<String>,
    pub detail: Option<String>,
    pub ip: Option<String>,
    /// `realtime` or `offline`.
    pub timing: Option<String>,
}

/// Facts about the message a record came in, for records that need them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The Graph page's `@odata.context` (which entity set the records are).
    pub odata_context: Option<&'a str>,
    /// When the message was read (a seed without a time of its own is as of then).
    pub received: Option<DateTime<Utc>>,
}

/// Decodes one raw record, if it is a directory record: `None` for any other
/// record (a sign-in, a category mfawatch does not read).
pub fn decode_directory(raw: &[u8], context: Context<'_>) -> Option<Result<DirectoryRecord, DecodeError>> {
    let value: Value = serde_json::from_slice(raw).ok()?;
    decode_value(&value, context)
}

/// [`decode_directory`] of a parsed record.
pub fn decode_value(record: &Value, context: Context<'_>) -> Option<Result<DirectoryRecord, DecodeError>> {
    let (category, shape, body) = recognise(record, context)?;
    Some(decode_as(category, shape, record, body, context))
}

/// Which directory category and shape a record is, and where its fields are.
fn recognise<'v>(record: &'v Value, context: Context<'_>) -> Option<(DirCategory, Shape, &'v Value)> {
    if !record.is_object() {
        return None;
    }
    if let Some(properties) = get(record, "properties").filter(|p| p.is_object()) {
        let category = text(get(record, "category")?)?;
        return Some((DirCategory::from_name(&category)?, Shape::Diagnostic, properties));
    }
    if let Some(table) = get(record, "Type").and_then(text) {
        if let Some(category) = DirCategory::from_name(&table) {
            return Some((category, Shape::LogAnalytics, record));
        }
        // A Graph object's `@odata.type` is another key; any other table is not ours.
        return None;
    }
    let has = |key: &str| get(record, key).is_some();
    let set = context.odata_context.unwrap_or("").to_ascii_lowercase();
    let odata_type = get(record, "@odata.type").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
    let category = if has("activityDisplayName") && has("activityDateTime") {
        DirCategory::AuditLogs
    } else if has("riskLastUpdatedDateTime") || set.contains("riskyusers") || odata_type.ends_with("riskyuser") {
        DirCategory::RiskyUsers
    } else if has("riskEventType") && (has("detectedDateTime") || has("activityDateTime")) {
        DirCategory::UserRiskEvents
    } else if has("isMfaRegistered") || has("methodsRegistered") || set.contains("userregistrationdetails") {
        DirCategory::RegistrationDetails
    } else if has("roleDefinitionId") && has("principalId") {
        DirCategory::RoleAssignments
    } else {
        return None;
    };
    Some((category, Shape::Graph, record))
}

fn decode_as(
    category: DirCategory,
    shape: Shape,
    record: &Value,
    body: &Value,
    context: Context<'_>,
) -> Result<DirectoryRecord, DecodeError> {
    let field = |key: &str| get(body, key).and_then(text);
    // The record's own time, else when the log wrote it, else (seeds only) when it was read.
    let own_time: &[&str] = match category {
        DirCategory::AuditLogs => &["activityDateTime"],
        DirCategory::RiskyUsers => &["riskLastUpdatedDateTime"],
        DirCategory::UserRiskEvents => &["detectedDateTime", "activityDateTime"],
        DirCategory::RegistrationDetails => &["lastUpdatedDateTime"],
        // A role assignment is a state as of when it was read (its start is `since`).
        DirCategory::RoleAssignments => &[],
    };
    let candidates: Vec<String> = own_time
        .iter()
        .filter_map(|k| field(k))
        .chain(["time", "TimeGenerated"].iter().filter_map(|k| get(record, k).and_then(text)))
        .collect();
    let time = match candidates.iter().find_map(|t| parse_event_time(t)) {
        Some(t) => t,
        None => match (candidates.first(), category, context.received) {
            (Some(bad), _, _) => return Err(DecodeError::BadTime(bad.clone())),
            (None, DirCategory::RegistrationDetails | DirCategory::RoleAssignments, Some(read)) => read,
            (None, ..) => return Err(DecodeError::MissingTime),
        },
    };
    let tenant_id = field("tenantId").or_else(|| get(record, "tenantId").and_then(text)).map(|t| t.to_lowercase());
    let mut out = DirectoryRecord {
        category,
        shape,
        time,
        id: field("id"),
        operation: String::new(),
        tenant_id,
        initiated_by: None,
        fact: Fact::Other { family: Family::Other, failed: false },
    };
    match category {
        DirCategory::AuditLogs => audit(record, body, &mut out)?,
        DirCategory::RiskyUsers => {
            out.operation = "Risky user".into();
            out.fact = Fact::RiskyUser(RiskyUser {
                // A risky user's `id` is the user's object id.
                user: user_in(body, &["userId", "id"], "userDisplayName"),
                level: field("riskLevel"),
                state: field("riskState"),
                detail: field("riskDetail"),
                deleted: get(body, "isDeleted").and_then(flag).unwrap_or(false),
            });
            // Its `id` is the user's; the record's identity is the user's state at that time.
            out.id = None;
        }
        DirCategory::UserRiskEvents => {
            out.operation = "Risk detection".into();
            out.fact = Fact::Risk(RiskDetection {
                user: user_in(body, &["userId"], "userDisplayName"),
                event_type: field("riskEventType").or_else(|| field("riskType")),
                level: field("riskLevel"),
                state: field("riskState"),
                detail: field("riskDetail"),
                ip: field("ipAddress"),
                timing: field("detectionTimingType"),
            });
        }
        DirCategory::RegistrationDetails => {
            out.operation = "User registration details".into();
            let methods = get(body, "methodsRegistered").map(|m| strings(&dynamic(m))).unwrap_or_default();
            out.fact = Fact::Registration(RegistrationDetails {
                user: user_in(body, &["id"], "userDisplayName"),
                mfa_registered: get(body, "isMfaRegistered").and_then(flag),
                mfa_capable: get(body, "isMfaCapable").and_then(flag),
                methods: methods.iter().map(|m| Method::of_name(m)).collect(),
                default_method: field("defaultMfaMethod"),
                is_admin: get(body, "isAdmin").and_then(flag),
            });
            // Its `id` is the user's: each report is a state as of its time.
            out.id = None;
        }
        DirCategory::RoleAssignments => {
            let set = context.odata_context.unwrap_or("").to_ascii_lowercase();
            let odata_type = get(body, "@odata.type").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
            let eligible = set.contains("eligib")
                || odata_type.contains("eligib")
                || field("assignmentType").is_some_and(|t| t.eq_ignore_ascii_case("eligible"));
            out.operation = if eligible { "Eligible role assignment" } else { "Role assignment" }.into();
            let principal = get(body, "principal");
            let principal_kind = principal
                .and_then(|p| get(p, "@odata.type"))
                .and_then(Value::as_str)
                .map(|t| principal_kind(t.rsplit('.').next().unwrap_or(t)))
                .unwrap_or(PrincipalKind::User);
            let role_definition = get(body, "roleDefinition");
            out.fact = Fact::Role(RoleChange {
                principal: Principal {
                    id: field("principalId").map(|id| id.to_lowercase()),
                    upn: principal.and_then(|p| get(p, "userPrincipalName")).and_then(text),
                    display_name: principal.and_then(|p| get(p, "displayName")).and_then(text),
                    kind: principal_kind,
                },
                role: Role {
                    template_id: role_definition
                        .and_then(|r| get(r, "templateId"))
                        .and_then(text)
                        .or_else(|| field("roleDefinitionId"))
                        .map(|t| t.to_lowercase()),
                    name: role_definition.and_then(|r| get(r, "displayName")).and_then(text),
                },
                holding: if eligible { Holding::Eligible } else { Holding::Active },
                added: true,
                activation: field("assignmentType").is_some_and(|t| t.eq_ignore_ascii_case("activated")),
                until: field("endDateTime").as_deref().and_then(parse_event_time),
                since: field("startDateTime").as_deref().and_then(parse_event_time),
            });
        }
    }
    Ok(out)
}

/// The audit operations read, by `activityDisplayName` (lower case).
fn audit(record: &Value, body: &Value, out: &mut DirectoryRecord) -> Result<(), DecodeError> {
    let field = |key: &str| get(body, key).and_then(text);
    let operation = field("activityDisplayName")
        .or_else(|| field("operationName"))
        .or_else(|| get(record, "operationName").and_then(text))
        .unwrap_or_default();
    out.operation = operation.clone();
    out.initiated_by = initiator(body);
    let category = field("category").unwrap_or_default().to_ascii_lowercase();
    let service = field("loggedByService").unwrap_or_default().to_ascii_lowercase();
    // `result` is "success"/"failure", or 0 in older records.
    let failed = get(body, "result").is_some_and(|r| match r {
        Value::Number(n) => n.as_i64() != Some(0),
        other => text(other).is_some_and(|r| !r.eq_ignore_ascii_case("success") && r != "0"),
    });
    let op = operation.to_ascii_lowercase();
    let targets = get(body, "targetResources").map(dynamic).unwrap_or(Value::Null);
    let targets: Vec<&Value> = targets.as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let details = key_values(get(body, "additionalDetails"));

    // PIM for Groups and for Azure resources use the same names under other categories.
    let role_category = category.is_empty() || category == "rolemanagement";
    if let Some((holding, added, activation)) = role_operation(&op).filter(|_| role_category) {
        if failed {
            out.fact = Fact::Other { family: Family::Role, failed: true };
            return Ok(());
        }
        let principal = principal_of(&targets);
        let role = role_of(&targets, &details);
        let detail_time = |keys: &[&str]| {
            keys.iter().find_map(|k| details.get(&k.to_ascii_lowercase())).and_then(|t| parse_event_time(t))
        };
        let until = detail_time(&["ExpirationTime", "EndTime", "EndDateTime"]);
        let since = detail_time(&["StartTime", "StartDateTime"]);
        out.fact = Fact::Role(RoleChange { principal, role, holding, added, activation, until, since });
        return Ok(());
    }
    if let Some(change) = method_operation(&op) {
        if failed {
            out.fact = Fact::Other { family: Family::SecurityInfo, failed: true };
            return Ok(());
        }
        let user = user_target(&targets).unwrap_or_else(|| initiator_principal(body));
        let reason = field("resultReason").unwrap_or_default();
        // A device credential's event names its method; security info's reason does.
        let named = if device_credential(&op) { op.as_str() } else { reason.as_str() };
        let methods = methods_named(named, &details);
        out.fact = Fact::Methods(MethodChange { user, change, methods, by_admin: op.starts_with("admin") });
        return Ok(());
    }
    if !failed && let Some(change) = policy::policy_change(&op, &targets) {
        out.fact = Fact::Policy(change);
        return Ok(());
    }
    if !failed && let Some(change) = policy::per_user_mfa(&op, &targets) {
        out.fact = Fact::PerUserMfa(change);
        return Ok(());
    }
    // Per-user MFA's method set: "Update user" whose modified properties include
    // StrongAuthenticationMethod (its StrongAuthenticationRequirement, the
    // per-user MFA state, was read just above and comes first).
    if op == "update user" && !failed {
        for target in &targets {
            let Some(new) = modified(target, "StrongAuthenticationMethod").map(|(_, new)| new) else { continue };
            let Some(user) = principal_from(target) else { continue };
            let methods = strong_authentication_methods(&new);
            out.fact =
                Fact::Methods(MethodChange { user, change: MethodChangeKind::Replaced, methods, by_admin: true });
            return Ok(());
        }
    }
    let family = if op.contains("security defaults") {
        Family::Policy
    } else if op.contains("conditional access") || service == "conditional access" {
        Family::ConditionalAccess
    } else if category == "policy" || op.contains("policy") {
        Family::Policy
    } else if category == "rolemanagement" {
        Family::Role
    } else if service == "authentication methods" || op.contains("security info") {
        Family::SecurityInfo
    } else {
        Family::Other
    };
    out.fact = Fact::Other { family, failed };
    Ok(())
}

/// A role operation: how the role is held, added or removed, a PIM
/// activation. Only completed changes are facts: requests, approvals,
/// denials, cancellations and settings are not (the audit activity
/// reference's Core Directory and PIM names, docs/labels.md).
fn role_operation(op: &str) -> Option<(Holding, bool, bool)> {
    const NOT_A_CHANGE: [&str; 7] = ["request", "approv", "denied", "cancel", "setting", "alert", "policy"];
    if !op.contains("role") || NOT_A_CHANGE.iter().any(|w| op.contains(w)) {
        return None;
    }
    let added = if op.starts_with("add ") || op.starts_with("restore ") {
        true
    } else if op.starts_with("remove ") {
        false
    } else {
        return None;
    };
    // "… member to/from role …", and PIM's "Remove permanent direct/eligible role assignment".
    if !(op.contains("member") || op.starts_with("remove permanent") || op.starts_with("restore permanent")) {
        return None;
    }
    let activation = op.contains("pim activation") || op.contains("pim deactivate");
    let holding = if op.contains("eligible") && !activation { Holding::Eligible } else { Holding::Active };
    Some((holding, added, activation))
}

/// A security-info operation.
fn method_operation(op: &str) -> Option<MethodChangeKind> {
    match op {
        "user registered all required security info" => Some(MethodChangeKind::AllRequired),
        "user registered security info" | "admin registered security info" => Some(MethodChangeKind::Registered),
        "user deleted security info" | "admin deleted security info" => Some(MethodChangeKind::Deleted),
        "user changed default security info" | "admin changed default security info" => {
            Some(MethodChangeKind::DefaultChanged)
        }
        "user updated security info" | "admin updated security info" => Some(MethodChangeKind::Updated),
        // Device Registration Service: the credential's own events.
        _ if op.starts_with("add ") && device_credential(op) => Some(MethodChangeKind::Registered),
        _ if op.starts_with("delete ") && device_credential(op) => Some(MethodChangeKind::Deleted),
        _ => None,
    }
}

/// "Add FIDO2 security key", "Delete Windows Hello for Business credential",
/// "Add passwordless phone sign-in credential", "Add platform credential".
fn device_credential(op: &str) -> bool {
    op.contains("fido2 security key") || op.ends_with(" credential") || op.ends_with(" credential(s)")
}

/// The methods an audit record names: its `additionalDetails` (`Method`,
/// `MethodType`), else the phrases of its `resultReason` ("User registered
/// Microsoft Authenticator App with notification").
fn methods_named(reason: &str, details: &std::collections::HashMap<String, String>) -> Vec<Method> {
    let mut out = Vec::new();
    for key in ["method", "methodtype", "authenticationmethod"] {
        if let Some(m) = details.get(key) {
            out.push(method_from_phrase(m).unwrap_or_else(|| Method::new(m)));
        }
    }
    if out.is_empty()
        && let Some(m) = method_from_phrase(reason)
    {
        out.push(m);
    }
    out
}

/// A method from the words audit records use for it.
fn method_from_phrase(text: &str) -> Option<Method> {
    let t = text.to_ascii_lowercase();
    const PHRASES: [(&str, &str); 18] = [
        ("passkey", "passKeyDeviceBound"),
        ("platform credential", "platformCredential"),
        ("fido", "fido2SecurityKey"),
        ("security key", "fido2SecurityKey"),
        ("windows hello", "windowsHelloForBusiness"),
        ("certificate", "x509CertificateMultiFactor"),
        ("passwordless", "microsoftAuthenticatorPasswordless"),
        ("phone sign-in", "microsoftAuthenticatorPasswordless"),
        ("authenticator", "microsoftAuthenticatorPush"),
        ("mobile app", "microsoftAuthenticatorPush"),
        ("hardware", "hardwareOneTimePasscode"),
        ("software oath", "softwareOneTimePasscode"),
        ("oath", "softwareOneTimePasscode"),
        ("temporary access pass", "temporaryAccessPass"),
        ("alternate", "alternateMobilePhone"),
        ("office phone", "officePhone"),
        ("email", "email"),
        ("security question", "securityQuestion"),
    ];
    PHRASES.iter().find(|(p, _)| t.contains(p)).map(|(_, m)| Method::new(m)).or_else(|| {
        (t.contains("phone") || t.contains("sms") || t.contains("voice")).then(|| Method::new("mobilePhone"))
    })
}

/// Per-user MFA's `StrongAuthenticationMethod` value:
/// `[{"MethodType":6,"Default":true}, …]`. The numbers are the legacy method
/// types (0 TwoWayVoiceMobile, 1 TwoWaySms, 2 TwoWayVoiceOffice,
/// 3 TwoWayVoiceOtherMobile, 4 TwoWaySmsOtherMobile, 5 OneWaySms,
/// 6 PhoneAppNotification, 7 PhoneAppOTP: Microsoft's security blog's
/// mapping, no reference table exists), given in Graph's names; an unknown
/// number stays `legacyMethodType<N>` (a second factor all the same).
fn strong_authentication_methods(value: &Value) -> Vec<Method> {
    let Some(items) = value.as_array() else { return Vec::new() };
    let mut out: Vec<Method> = items
        .iter()
        .filter_map(|m| get(m, "MethodType"))
        .filter_map(|t| t.as_i64().or_else(|| text(t)?.parse().ok()))
        .map(|n| match n {
            0 | 1 | 5 => Method::new("mobilePhone"),
            2 => Method::new("officePhone"),
            3 | 4 => Method::new("alternateMobilePhone"),
            6 => Method::new("microsoftAuthenticatorPush"),
            7 => Method::new("softwareOneTimePasscode"),
            n => Method(format!("legacyMethodType{n}")),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The user a role record is about: the target of type `User`, else the
/// first principal-like target (a service principal, a group).
fn principal_of(targets: &[&Value]) -> Principal {
    if let Some(user) = user_target(targets) {
        return user;
    }
    targets
        .iter()
        .filter(|t| {
            let kind = get(t, "type").and_then(text).unwrap_or_default().to_ascii_lowercase();
            !matches!(kind.as_str(), "role" | "request" | "directory" | "other" | "policy")
        })
        .find_map(|t| principal_from(t))
        .unwrap_or(Principal { kind: PrincipalKind::Other, ..Principal::default() })
}

fn user_target(targets: &[&Value]) -> Option<Principal> {
    targets
        .iter()
        .filter(|t| get(t, "type").and_then(text).is_some_and(|k| k.eq_ignore_ascii_case("user")))
        .find_map(|t| principal_from(t))
}

fn principal_from(target: &Value) -> Option<Principal> {
    let field = |key: &str| get(target, key).and_then(text);
    let p = Principal {
        id: field("id").map(|id| id.to_lowercase()),
        upn: field("userPrincipalName"),
        display_name: field("displayName"),
        kind: principal_kind(&field("type").unwrap_or_else(|| "User".into())),
    };
    (p.id.is_some() || p.upn.is_some()).then_some(p)
}

fn principal_kind(kind: &str) -> PrincipalKind {
    match kind.to_ascii_lowercase().as_str() {
        "user" => PrincipalKind::User,
        "serviceprincipal" => PrincipalKind::ServicePrincipal,
        "group" => PrincipalKind::Group,
        _ => PrincipalKind::Other,
    }
}

/// The role of a role record: `Role.TemplateId`/`Role.DisplayName` on the
/// principal's modified properties (Core Directory), else the target of type
/// `Role` (PIM: its id is the role definition, `TemplateId` among its
/// properties), else `additionalDetails`.
fn role_of(targets: &[&Value], details: &std::collections::HashMap<String, String>) -> Role {
    let mut role = Role::default();
    // The new value when added, the old one when removed ("Remove member from role" has `newValue: null`).
    let value =
        |target: &Value, name: &str| modified(target, name).and_then(|(old, new)| text(&new).or_else(|| text(&old)));
    for target in targets {
        let new = |name: &str| value(target, name);
        role.template_id = role.template_id.or_else(|| new("Role.TemplateId"));
        role.name = role.name.or_else(|| new("Role.DisplayName"));
    }
    if let Some(target) =
        targets.iter().find(|t| get(t, "type").and_then(text).is_some_and(|k| k.eq_ignore_ascii_case("role")))
    {
        let new = |name: &str| value(target, name);
        role.template_id = role.template_id.or_else(|| new("TemplateId")).or_else(|| get(target, "id").and_then(text));
        role.name = role.name.or_else(|| get(target, "displayName").and_then(text));
    }
    role.template_id = role
        .template_id
        .or_else(|| details.get("templateid").cloned())
        .or_else(|| details.get("roledefinitionoriginid").cloned())
        .map(|t| t.to_lowercase());
    role.name = role.name.or_else(|| details.get("roledefinitionname").cloned());
    role
}

/// A target's modified property by name: (old, new), each decoded from the
/// JSON text it is written as.
fn modified(target: &Value, name: &str) -> Option<(Value, Value)> {
    let props = get(target, "modifiedProperties").map(dynamic)?;
    let prop = props
        .as_array()?
        .iter()
        .find(|p| get(p, "displayName").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(name)))?
        .clone();
    let side = |key: &str| get(&prop, key).map(dynamic_text).unwrap_or(Value::Null);
    Some((side("oldValue"), side("newValue")))
}

/// `additionalDetails` `[{key, value}]` as a map (keys lower case).
fn key_values(details: Option<&Value>) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let Some(details) = details.map(dynamic) else { return out };
    for item in details.as_array().into_iter().flatten() {
        if let (Some(k), Some(v)) = (get(item, "key").and_then(text), get(item, "value").and_then(text)) {
            out.entry(k.to_ascii_lowercase()).or_insert(v);
        }
    }
    out
}

/// Who made an audited change: a user's UPN, else an app's name.
fn initiator(body: &Value) -> Option<String> {
    let by = get(body, "initiatedBy").map(dynamic)?;
    let user = get(&by, "user").filter(|u| u.is_object());
    let app = get(&by, "app").filter(|a| a.is_object());
    user.and_then(|u| get(u, "userPrincipalName").and_then(text).or_else(|| get(u, "displayName").and_then(text)))
        .or_else(|| app.and_then(|a| get(a, "displayName").and_then(text)))
}

fn initiator_principal(body: &Value) -> Principal {
    let by = get(body, "initiatedBy").map(dynamic).unwrap_or(Value::Null);
    user_in(get(&by, "user").unwrap_or(&Value::Null), &["id"], "displayName")
}

/// The user an object names: the first of `id_keys` present (lower-cased),
/// its `userPrincipalName`, and its display name under `name_key`.
fn user_in(object: &Value, id_keys: &[&str], name_key: &str) -> Principal {
    let field = |key: &str| get(object, key).and_then(text);
    Principal {
        id: id_keys.iter().find_map(|k| field(k)).map(|id| id.to_lowercase()),
        upn: field("userPrincipalName"),
        display_name: field(name_key),
        kind: PrincipalKind::User,
    }
}

/// A key of an object, compared without letter case (exact match first).
pub(crate) fn get<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    let map = value.as_object()?;
    map.get(key)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
        .filter(|v| !v.is_null())
}

/// A value as text: strings trimmed (empty, "None" and "null" are none), numbers and booleans written out.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            (!s.is_empty() && s != "None" && s != "null" && s != "<null>").then(|| s.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A flag: a boolean, or its text in any case (`"False"`).
fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        // The admin center's download says "Capable" / "Not Capable", "Registered" / "Not Registered".
        other => match text(other)?.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "capable" | "registered" | "enabled" => Some(true),
            "false" | "0" | "no" | "not capable" | "not registered" | "not enabled" => Some(false),
            _ => None,
        },
    }
}

/// A Log Analytics dynamic column exported as JSON text, parsed; anything else as is.
fn dynamic(value: &Value) -> Value {
    match value {
        Value::String(s) if s.trim_start().starts_with(['[', '{']) => {
            serde_json::from_str(s).unwrap_or_else(|_| value.clone())
        }
        other => other.clone(),
    }
}

/// A modified property's value: JSON written as text (`"\"x\""`, `"[…]"`), decoded once.
fn dynamic_text(value: &Value) -> Value {
    match value {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| value.clone()),
        other => other.clone(),
    }
}

/// The strings of a JSON array (or one string; a CSV cell of names separated by commas).
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(text).collect(),
        Value::String(s) => {
            s.split([',', ';', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
