//! csv: the sign-in logs people download as CSV — the Entra admin center's
//! "Download → CSV" (interactive, non-interactive, application and managed
//! identity sign-ins) and the Log Analytics portal's "Export → CSV (all
//! columns)". Each row becomes the JSON record of the shape it is closest to
//! (a Graph `signIn` for the portal, a Log Analytics row for the export) and
//! goes through decode like any other, one message per row, at its line.
//!
//! Columns are found by name, whatever their order and however many a
//! download has (49, 55, 57 so far): trimmed, inner spaces collapsed, case
//! ignored ("Application ID ", "Autonomous system  number"); a repeated
//! name keeps its first column. Fields may hold commas, quotes and line
//! breaks (RFC 4180, the `csv` crate). What a download has no column for
//! cannot be labelled from it: see the README ("Backfill").

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Position;
use super::files::FileStats;

/// Which download a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The Entra admin center's download, of these sign-ins (Graph `signInEventTypes`).
    Portal(&'static str),
    /// Log Analytics "Export → CSV (all columns)".
    LogAnalytics,
    /// The admin center's "User registration details" download (or the same
    /// Graph `userRegistrationDetails` list written as CSV): a directory seed.
    RegistrationDetails,
    /// A role-assignment download (the admin center's "Download assignments",
    /// PowerShell's `Get-MgRoleManagementDirectoryRoleAssignment… | Export-Csv`):
    /// a directory seed.
    RoleAssignments,
}

/// A header's name with only its letters and digits, lower case:
/// "Is MFA registered", "isMfaRegistered" and "IsMfaRegistered" are one name.
fn squeezed(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase()
}

/// Column names of the directory seeds, by the Graph property they fill.
const REGISTRATION_COLUMNS: [(&str, &[&str]); 10] = [
    ("id", &["id", "objectid", "userid"]),
    ("userPrincipalName", &["userprincipalname", "upn", "username"]),
    ("userDisplayName", &["userdisplayname", "displayname", "user", "name"]),
    ("userType", &["usertype"]),
    ("isAdmin", &["isadmin", "admin"]),
    (
        "isMfaRegistered",
        &[
            "ismfaregistered",
            "mfaregistered",
            "multifactorauthenticationregistered",
            "multifactorauthenticationmfaregistered",
        ],
    ),
    (
        "isMfaCapable",
        &["ismfacapable", "mfacapable", "multifactorauthenticationcapable", "multifactorauthenticationmfacapable"],
    ),
    ("methodsRegistered", &["methodsregistered", "methods", "authenticationmethods"]),
    ("defaultMfaMethod", &["defaultmfamethod", "defaultmethod", "defaultmultifactorauthenticationmethod"]),
    ("lastUpdatedDateTime", &["lastupdateddatetime", "lastupdated", "lastupdatedtime"]),
];

const ROLE_COLUMNS: [(&str, &[&str]); 9] = [
    ("principalId", &["principalid", "objectid", "userid", "assigneeid", "memberid"]),
    (
        "userPrincipalName",
        &["userprincipalname", "principalname", "upn", "username", "signinname", "assigneeuserprincipalname"],
    ),
    ("displayName", &["displayname", "principaldisplayname", "name", "assignee", "assigneename", "member"]),
    ("principalType", &["principaltype", "type", "objecttype", "assigneetype"]),
    ("roleName", &["role", "rolename", "roledisplayname", "roledefinitionname", "roledefinition"]),
    ("roleId", &["roledefinitionid", "roletemplateid", "templateid", "roleid"]),
    ("assignmentType", &["assignmenttype", "assignmentstate", "state", "membertype"]),
    ("startDateTime", &["startdatetime", "starttime", "start", "assignmentstarttime"]),
    ("endDateTime", &["enddatetime", "endtime", "end", "expiration", "expirationtime", "assignmentendtime"]),
];

/// The column of each property a seed has, by the squeezed names above.
fn seed_columns(header_row: &::csv::StringRecord, columns: &[(&'static str, &[&str])]) -> Vec<(&'static str, usize)> {
    let names: Vec<String> = header_row.iter().map(squeezed).collect();
    columns
        .iter()
        .filter_map(|(property, aliases)| {
            aliases.iter().find_map(|a| names.iter().position(|n| n == a)).map(|i| (*property, i))
        })
        .collect()
}

/// A header's name as compared: trimmed, spaces collapsed, lower case, a
/// Log Analytics time zone suffix (` [UTC]`) removed.
fn normal(name: &str) -> String {
    let name = name.trim().trim_start_matches('\u{feff}');
    let name = match name.rfind(" [") {
        Some(i) if name.ends_with(']') => &name[..i],
        _ => name,
    };
    name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Whether `head` (the start of a file named `path`) is one of the CSV downloads.
pub fn is_csv(path: &str, head: &[u8]) -> bool {
    let first = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let first = String::from_utf8_lossy(first).to_lowercase();
    path.to_lowercase().ends_with(".csv")
        || first.contains("date (utc)") && first.contains("request id")
        || first.contains("timegenerated [utc]")
}

/// The kind of download, from the file's name and its header.
fn kind(path: &str, headers: &HashMap<String, usize>) -> io::Result<Kind> {
    let file = path.rsplit('/').next().unwrap_or(path).to_lowercase();
    let has = |name: &str| headers.contains_key(name);
    // A seed has a column of what only it holds, by the names its reader takes.
    let squeezed: Vec<String> = headers.keys().map(|h| squeezed(h)).collect();
    let has_any = |columns: &[(&str, &[&str])], properties: &[&str]| {
        columns
            .iter()
            .filter(|(property, _)| properties.contains(property))
            .any(|(_, aliases)| squeezed.iter().any(|h| aliases.contains(&h.as_str())))
    };
    if has_any(&REGISTRATION_COLUMNS, &["isMfaRegistered", "isMfaCapable", "methodsRegistered"]) {
        return Ok(Kind::RegistrationDetails);
    }
    if has_any(&ROLE_COLUMNS, &["roleName", "roleId"]) && has_any(&ROLE_COLUMNS, &["principalId", "userPrincipalName"])
    {
        return Ok(Kind::RoleAssignments);
    }
    if has("timegenerated") || (has("type") && has("resultType".to_lowercase().as_str())) {
        return Ok(Kind::LogAnalytics);
    }
    if !has("date (utc)") {
        let what = if has("requirement") && has("succeeded") {
            "the \"authentication details only\" download: give the sign-ins file itself (its MFA columns are what mfawatch reads)"
        } else {
            "no \"Date (UTC)\" or \"TimeGenerated [UTC]\" column"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: not a sign-in log CSV mfawatch reads: {what}"),
        ));
    }
    let kind = if file.contains("noninteractive") {
        "nonInteractiveUser"
    } else if file.contains("msisignins") || file.contains("managedidentit") {
        "managedIdentity"
    } else if file.contains("applicationsignins")
        || file.contains("serviceprincipal")
        || !has("user id") && has("service principal id")
    {
        "servicePrincipal"
    } else {
        "interactiveUser"
    };
    Ok(Kind::Portal(kind))
}

/// Reads every row of one CSV download as a message.
pub fn read_messages(
    path: &str,
    input: impl Read,
    mut each: impl FnMut(&[u8], &Position) -> io::Result<()>,
) -> io::Result<FileStats> {
    let name: Arc<str> = Arc::from(path);
    let mut reader = ::csv::ReaderBuilder::new().flexible(true).has_headers(true).from_reader(input);
    let header_row = reader.headers().map_err(|e| invalid(path, e))?.clone();
    let mut headers: HashMap<String, usize> = HashMap::new();
    for (i, h) in header_row.iter().enumerate() {
        headers.entry(normal(h)).or_insert(i);
    }
    let kind = kind(path, &headers)?;
    let la_names: Vec<(String, bool)> = header_row
        .iter()
        .map(|h| {
            let h = h.trim().trim_start_matches('\u{feff}');
            match h.rfind(" [") {
                Some(i) if h.ends_with(']') => (h[..i].to_owned(), true),
                _ => (h.to_owned(), false),
            }
        })
        .collect();
    let seed = match kind {
        Kind::RegistrationDetails => seed_columns(&header_row, &REGISTRATION_COLUMNS),
        Kind::RoleAssignments => seed_columns(&header_row, &ROLE_COLUMNS),
        _ => Vec::new(),
    };
    let mut stats = FileStats::default();
    let mut row = ::csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(invalid(path, e)),
        }
        stats.messages += 1;
        let record = match kind {
            Kind::Portal(event_type) => portal_record(&headers, &row, event_type),
            Kind::LogAnalytics => la_record(&la_names, &row),
            Kind::RegistrationDetails => registration_record(&seed, &row),
            Kind::RoleAssignments => role_record(&seed, &row),
        };
        let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        stats.bytes += row.as_slice().len() as u64;
        each(&bytes, &Position::File { path: name.clone(), line })?;
    }
    Ok(stats)
}

fn invalid(path: &str, e: ::csv::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}"))
}

/// A Log Analytics row: its columns under their names (datetime columns
/// turned into RFC 3339, JSON text left for decode, which reads it).
fn la_record(names: &[(String, bool)], row: &::csv::StringRecord) -> Value {
    let mut out = Map::new();
    for ((name, datetime), value) in names.iter().zip(row.iter()) {
        let value = value.trim();
        if value.is_empty() || out.contains_key(name) {
            continue;
        }
        let value = if *datetime { portal_time(value).unwrap_or_else(|| value.to_owned()) } else { value.to_owned() };
        out.insert(name.clone(), Value::String(value));
    }
    Value::Object(out)
}

/// A row of the registration-details download as a Graph `userRegistrationDetails`.
fn registration_record(columns: &[(&'static str, usize)], row: &::csv::StringRecord) -> Value {
    let mut out = Map::new();
    out.insert("@odata.context".into(), json!("mfawatch-csv#reports/authenticationMethods/userRegistrationDetails"));
    for (property, i) in columns {
        let Some(value) = row.get(*i).map(str::trim).filter(|v| !v.is_empty()) else { continue };
        // A list of methods stays text ("a, b", one per line, or JSON): decode reads each form.
        let value = match *property {
            "lastUpdatedDateTime" => json!(portal_time(value).unwrap_or_else(|| value.to_owned())),
            _ => json!(value),
        };
        out.insert((*property).into(), value);
    }
    Value::Object(out)
}

/// A row of a role-assignment download as a Graph role assignment (an
/// eligible one in a `roleEligibilitySchedule…` context).
fn role_record(columns: &[(&'static str, usize)], row: &::csv::StringRecord) -> Value {
    let get = |name: &str| {
        columns.iter().find(|(p, _)| *p == name).and_then(|(_, i)| row.get(*i)).map(str::trim).filter(|v| !v.is_empty())
    };
    let assignment = get("assignmentType").unwrap_or("Active");
    let eligible = assignment.to_ascii_lowercase().contains("eligible");
    let context = if eligible {
        "mfawatch-csv#roleManagement/directory/roleEligibilityScheduleInstances"
    } else {
        "mfawatch-csv#roleManagement/directory/roleAssignmentScheduleInstances"
    };
    let kind = match get("principalType").map(squeezed).as_deref() {
        None | Some("user") | Some("member") | Some("guest") => "user",
        Some("serviceprincipal") | Some("application") | Some("app") => "servicePrincipal",
        Some("group") => "group",
        Some(_) => "directoryObject",
    };
    // A built-in role named, not given by id, is its template id (the same in every tenant).
    let role_id = get("roleId").or_else(|| get("roleName").and_then(crate::directory::roles::id_of));
    // "Principal name" is a UPN for a user, a name for anything else.
    let (upn, name) = match kind {
        "user" => (get("userPrincipalName"), get("displayName")),
        _ => (None, get("displayName").or(get("userPrincipalName"))),
    };
    let mut out = Map::new();
    out.insert("@odata.context".into(), json!(context));
    out.insert("principalId".into(), json!(get("principalId").or(upn).unwrap_or("")));
    out.insert("roleDefinitionId".into(), json!(role_id.or(get("roleName")).unwrap_or("")));
    out.insert(
        "principal".into(),
        json!({ "@odata.type": format!("#microsoft.graph.{kind}"), "userPrincipalName": upn, "displayName": name }),
    );
    out.insert("roleDefinition".into(), json!({ "displayName": get("roleName"), "templateId": role_id }));
    out.insert(
        "assignmentType".into(),
        json!(if eligible {
            "Eligible"
        } else if assignment.eq_ignore_ascii_case("activated") {
            "Activated"
        } else {
            "Assigned"
        }),
    );
    for (property, name) in [("startDateTime", "startDateTime"), ("endDateTime", "endDateTime")] {
        if let Some(t) = get(name).filter(|t| !t.eq_ignore_ascii_case("permanent")) {
            out.insert(property.into(), json!(portal_time(t).unwrap_or_else(|| t.to_owned())));
        }
    }
    Value::Object(out)
}

/// "4/28/2021, 2:08:45.221 PM" (Log Analytics' export, UTC) as RFC 3339.
fn portal_time(text: &str) -> Option<String> {
    let t = chrono::NaiveDateTime::parse_from_str(text, "%m/%d/%Y, %I:%M:%S%.f %p")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%m/%d/%Y, %I:%M:%S %p"))
        .ok()?;
    Some(t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The Entra admin center's row as a Graph `signIn`.
fn portal_record(headers: &HashMap<String, usize>, row: &::csv::StringRecord, event_type: &str) -> Value {
    let get = |name: &str| headers.get(name).and_then(|&i| row.get(i)).map(str::trim).filter(|v| !v.is_empty());
    let mut out = Map::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(v) = value {
            out.insert(key.into(), Value::String(v.to_owned()));
        }
    };
    put("createdDateTime", get("date (utc)"));
    put("id", get("request id"));
    put("correlationId", get("correlation id"));
    put("userId", get("user id"));
    put("userDisplayName", get("user"));
    put("userPrincipalName", get("username"));
    put("userType", get("user type"));
    put("userAgent", get("user agent"));
    put("appDisplayName", get("application"));
    put("appId", get("application id"));
    put("resourceDisplayName", get("resource"));
    put("resourceId", get("resource id"));
    put("tenantId", get("resource tenant id").or(get("home tenant id")));
    put("ipAddress", get("ip address"));
    put("clientAppUsed", get("client app"));
    put("authenticationProtocol", get("authentication protocol"));
    put("servicePrincipalId", get("service principal id"));
    put("servicePrincipalName", get("service principal name"));
    put("authenticationRequirement", get("authentication requirement").map(camel));
    put("conditionalAccessStatus", get("conditional access").map(camel));
    let mut status = Map::new();
    let code = get("sign-in error code").and_then(|c| c.parse::<i64>().ok());
    let code = code.or_else(|| get("status").filter(|s| s.eq_ignore_ascii_case("success")).map(|_| 0));
    if let Some(code) = code {
        status.insert("errorCode".into(), json!(code));
    }
    if let Some(reason) = get("failure reason") {
        status.insert("failureReason".into(), json!(reason));
    }
    let mfa_result = get("multifactor authentication result");
    if let Some(result) = mfa_result {
        status.insert("additionalDetails".into(), json!(result));
    }
    out.insert("status".into(), Value::Object(status));
    // The MFA method, as a step: it succeeded when the sign-in did.
    if let Some(method) = get("multifactor authentication auth method") {
        let succeeded = code == Some(0);
        out.insert(
            "authenticationDetails".into(),
            json!([{
                "authenticationMethod": method,
                "authenticationStepRequirement": "Multifactor authentication",
                "succeeded": succeeded,
                "authenticationStepResultDetail": mfa_result.unwrap_or(""),
            }]),
        );
    }
    if let Some(location) = get("location") {
        // "City, State, CC" or "City, CC": the country is the last part.
        let parts: Vec<&str> = location.split(',').map(str::trim).collect();
        let mut loc = Map::new();
        if let Some(country) = parts.last().filter(|c| c.len() == 2) {
            loc.insert("countryOrRegion".into(), json!(country));
        }
        if parts.len() > 1 {
            loc.insert("city".into(), json!(parts[0]));
        }
        out.insert("location".into(), Value::Object(loc));
    }
    out.insert("signInEventTypes".into(), json!([event_type]));
    Value::Object(out)
}

/// "Single-factor authentication" → "singleFactorAuthentication", "Not Applied" → "notApplied".
fn camel(text: &str) -> &str {
    let squeezed: String = text.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
    match squeezed.as_str() {
        "singlefactorauthentication" => "singleFactorAuthentication",
        "multifactorauthentication" => "multiFactorAuthentication",
        "success" => "success",
        "failure" => "failure",
        "notapplied" => "notApplied",
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(path: &str, text: &str) -> io::Result<Vec<(u64, Value)>> {
        let mut out = Vec::new();
        read_messages(path, text.as_bytes(), |bytes, pos| {
            let Position::File { line, .. } = pos else { unreachable!() };
            out.push((*line, serde_json::from_slice(bytes).unwrap()));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn headers_match_whatever_their_spacing_case_and_duplicates() {
        assert_eq!(normal(" Application ID "), "application id");
        assert_eq!(normal("Autonomous system  number"), "autonomous system number");
        assert_eq!(normal("TimeGenerated [UTC]"), "timegenerated");
        assert_eq!(normal("\u{feff}Date (UTC)"), "date (utc)");
    }

    #[test]
    fn a_portal_row_becomes_a_graph_sign_in() {
        let text = "\"Date (UTC)\",\"Request ID\",\"User ID\",\"Username\",\"Application ID \",\"Location\",\"Status\",\"Sign-in error code\",\"Client app\",\"Multifactor authentication result\",\"Multifactor authentication auth method\",\"Authentication requirement\",\"Incoming token type\",\"Incoming token type\"\n\
            2025-12-04T08:19:41Z,r1,u1,ann@contoso.com,a1,\"Melbourne, Victoria, AU\",Success,0,Browser,MFA successfully completed,Mobile app notification,Multifactor authentication,none,none\n";
        let got = rows("InteractiveSignIns_2025-12-01_2025-12-04.csv", text).unwrap();
        let (line, r) = &got[0];
        assert_eq!(*line, 2);
        assert_eq!(r["createdDateTime"], "2025-12-04T08:19:41Z");
        assert_eq!(r["appId"], "a1");
        assert_eq!(r["location"]["countryOrRegion"], "AU");
        assert_eq!(r["status"]["errorCode"], 0);
        assert_eq!(r["authenticationRequirement"], "multiFactorAuthentication");
        assert_eq!(r["signInEventTypes"][0], "interactiveUser");
        assert_eq!(r["authenticationDetails"][0]["authenticationMethod"], "Mobile app notification");
    }

    #[test]
    fn the_file_name_says_which_sign_ins_and_the_auth_details_file_is_refused() {
        let text = "Date (UTC),Request ID,User ID,Status\n2025-12-04T08:19:41Z,r,u,Success\n";
        assert_eq!(
            rows("NonInteractiveSignIns_x.csv", text).unwrap()[0].1["signInEventTypes"][0],
            "nonInteractiveUser"
        );
        assert_eq!(rows("MSISignIns_x.csv", text).unwrap()[0].1["signInEventTypes"][0], "managedIdentity");
        let details =
            "Request ID,Authentication method,Requirement,Succeeded\nr,Password,Primary authentication,true\n";
        let err = rows("InteractiveSignIns_AuthDetails_x.csv", details).unwrap_err().to_string();
        assert!(err.contains("authentication details only"), "{err}");
    }

    #[test]
    fn a_log_analytics_export_keeps_its_columns_and_reads_its_times() {
        let text = "TenantId,TimeGenerated [UTC],Category,ResultType,Status,AuthenticationDetails,IsInteractive,Type\n\
            t,\"4/28/2021, 2:08:45.221 PM\",SignInLogs,0,\"{\"\"errorCode\"\":0}\",\"[{\n  \"\"succeeded\"\": true\n}]\",TRUE,SigninLogs\n";
        let got = rows("query_data.csv", text).unwrap();
        let r = &got[0].1;
        assert_eq!(r["TimeGenerated"], "2021-04-28T14:08:45.221Z");
        assert_eq!(r["Status"], "{\"errorCode\":0}");
        assert!(r["AuthenticationDetails"].as_str().unwrap().contains('\n'), "a field over several lines");
        assert_eq!(r["Type"], "SigninLogs");
    }
}
