//! enforcement: the report's "How MFA is enforced" — which mechanism asked
//! each user's sign-in for MFA over the range (the history's `mechanism`
//! column, `classify::mechanism`): the share of MFA sign-ins each mechanism
//! asked, the users still on per-user MFA (Microsoft recommends moving them
//! to Conditional Access or security defaults), the users whose MFA came
//! only from a risk policy, and the tenants whose sign-ins show security
//! defaults and Conditional Access both (Entra allows one at a time).
//!
//! A sign-in MFA was asked of is an mfa_satisfied one, one with an
//! `mfa_failure`, or a security-defaults block (530035). A history file from
//! before the `mechanism` column has it null: those sign-ins are `unknown`,
//! never guessed. Reads the week's rows only; writes nothing.

use super::*;
use crate::decode::Mechanisms;

/// One mechanism over the range.
#[derive(Debug, Clone, Serialize)]
pub struct MechanismShare {
    pub mechanism: &'static str,
    /// MFA-satisfied user sign-ins it asked for.
    pub satisfied: u64,
    /// `satisfied` of all MFA-satisfied user sign-ins (the shares add up to
    /// more than 1 when sign-ins name two mechanisms); null without any.
    pub share: Option<f64>,
    /// Sign-ins it asked that did not complete MFA (denied, unanswered, a
    /// registration required, a security-defaults block).
    pub not_completed: u64,
    /// Users with a sign-in it asked.
    pub users: u64,
}

/// A user a section names (this one's, and `strength`'s).
#[derive(Debug, Clone, Serialize)]
pub struct EnforcedUser {
    pub user_key: String,
    pub upn: String,
    /// `per_user_mfa` (still on per-user MFA) or `risk_policy_only` (MFA
    /// asked only by a risk policy, never by a policy for everyone); in
    /// "How strong the MFA is", `telephony` or `phishing_resistant`.
    pub finding: &'static str,
    /// Their sign-ins the finding rests on.
    pub sign_ins: u64,
    pub last_sign_in: String,
}

/// A tenant whose sign-ins show both security defaults and Conditional Access.
#[derive(Debug, Clone, Serialize)]
pub struct MixedTenant {
    pub tenant_id: String,
    pub security_defaults_sign_ins: u64,
    pub conditional_access_sign_ins: u64,
}

/// The section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Enforcement {
    /// MFA-satisfied user sign-ins, and those MFA was asked of without completing it.
    pub mfa_sign_ins: u64,
    pub not_completed: u64,
    /// Of all those, the ones whose record names no mechanism.
    pub unknown: u64,
    /// One per mechanism, in the order of `Mechanisms::ALL`.
    pub mechanisms: Vec<MechanismShare>,
    pub per_user_mfa_users: Vec<EnforcedUser>,
    pub risk_only_users: Vec<EnforcedUser>,
    pub mixed_tenants: Vec<MixedTenant>,
}

/// A user sign-in MFA was asked of (see the module's doc).
fn asked() -> Expr {
    col(c::MFA_SATISFIED).or(col(c::MFA_FAILURE).is_not_null()).or(col(c::BLOCKED_BY).eq(lit("security_defaults")))
}

/// What one user's asked sign-ins came to.
#[derive(Default)]
struct Seen {
    upn: String,
    /// Every mechanism their sign-ins named (`unknown` left out).
    named: Mechanisms,
    per_user: u64,
    last_per_user: i64,
    risk: u64,
    last_risk: i64,
}

/// The section from the range's rows (`week`, a record read twice counted once).
pub fn enforcement(week: &LazyFrame) -> anyhow::Result<Enforcement> {
    let rows = week
        .clone()
        .filter(of_a_user().and(asked()))
        .with_column(col(c::MECHANISM).fill_null(lit(Mechanisms::UNKNOWN.joined())).alias(c::MECHANISM));
    // A few rows per user: (user, the set, satisfied or not).
    let per_user = rows
        .clone()
        .group_by([col(c::USER_KEY), col(c::MECHANISM), col(c::MFA_SATISFIED)])
        .agg([len().cast(DataType::UInt64).alias("n"), col("ms").max().alias("last"), col(c::UPN).max().alias(c::UPN)])
        .collect()?;
    let per_tenant = rows
        .group_by([col(c::TENANT_ID), col(c::MECHANISM)])
        .agg([len().cast(DataType::UInt64).alias("n")])
        .collect()?;

    let mut out = Enforcement::default();
    let mut satisfied = [0u64; Mechanisms::ALL.len()];
    let mut not_completed = [0u64; Mechanisms::ALL.len()];
    let mut users: BTreeMap<String, (Seen, Mechanisms)> = BTreeMap::new();
    for r in 0..per_user.height() {
        let set = mechanisms_of(&str_of(&per_user, c::MECHANISM, r));
        let (n, ok) = (u64_of(&per_user, "n", r), bool_of(&per_user, c::MFA_SATISFIED, r));
        let last = i64_of(&per_user, "last", r);
        for i in set.indices() {
            if ok { satisfied[i] += n } else { not_completed[i] += n }
        }
        if ok {
            out.mfa_sign_ins += n
        } else {
            out.not_completed += n
        }
        if set == Mechanisms::UNKNOWN {
            out.unknown += n;
        }
        let (seen, all) = users.entry(str_of(&per_user, c::USER_KEY, r)).or_default();
        all.insert(set);
        let upn = str_of(&per_user, c::UPN, r);
        if seen.upn < upn {
            seen.upn = upn;
        }
        if !set.contains(Mechanisms::UNKNOWN) {
            seen.named.insert(set);
        }
        if set.contains(Mechanisms::PER_USER_MFA) {
            seen.per_user += n;
            seen.last_per_user = seen.last_per_user.max(last);
        }
        if set.contains(Mechanisms::RISK_POLICY) {
            seen.risk += n;
            seen.last_risk = seen.last_risk.max(last);
        }
    }
    let whole = out.mfa_sign_ins;
    out.mechanisms = Mechanisms::ALL
        .iter()
        .enumerate()
        .map(|(i, (m, name))| MechanismShare {
            mechanism: name,
            satisfied: satisfied[i],
            share: (whole > 0).then(|| satisfied[i] as f64 / whole as f64),
            not_completed: not_completed[i],
            users: users.values().filter(|(_, all)| all.contains(*m)).count() as u64,
        })
        .collect();
    for (key, (seen, _)) in &users {
        let user = |finding, sign_ins, last| EnforcedUser {
            user_key: key.clone(),
            upn: seen.upn.clone(),
            finding,
            sign_ins,
            last_sign_in: ms_text(last),
        };
        if seen.per_user > 0 {
            out.per_user_mfa_users.push(user("per_user_mfa", seen.per_user, seen.last_per_user));
        }
        if seen.named == Mechanisms::RISK_POLICY {
            out.risk_only_users.push(user("risk_policy_only", seen.risk, seen.last_risk));
        }
    }
    // Most sign-ins first: the users to move first.
    for list in [&mut out.per_user_mfa_users, &mut out.risk_only_users] {
        list.sort_by(|a, b| b.sign_ins.cmp(&a.sign_ins).then_with(|| a.user_key.cmp(&b.user_key)));
    }

    let mut tenants: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in 0..per_tenant.height() {
        let set = mechanisms_of(&str_of(&per_tenant, c::MECHANISM, r));
        let n = u64_of(&per_tenant, "n", r);
        let counts = tenants.entry(str_of(&per_tenant, c::TENANT_ID, r)).or_default();
        if set.contains(Mechanisms::SECURITY_DEFAULTS) {
            counts.0 += n;
        }
        if set.contains(Mechanisms::CONDITIONAL_ACCESS) {
            counts.1 += n;
        }
    }
    out.mixed_tenants = tenants
        .into_iter()
        .filter(|(_, (defaults, ca))| *defaults > 0 && *ca > 0)
        .map(|(tenant_id, (defaults, ca))| MixedTenant {
            tenant_id,
            security_defaults_sign_ins: defaults,
            conditional_access_sign_ins: ca,
        })
        .collect();
    Ok(out)
}

/// One user's sign-ins MFA was asked of over the last days, by mechanism
/// (the API's user detail, `mfa_enforcement`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UserEnforcement {
    pub days: u32,
    pub sign_ins: u64,
    /// Mechanisms that asked any, in the order of `Mechanisms::ALL`.
    pub mechanisms: Vec<UserMechanism>,
    /// Some sign-in was asked by their per-user MFA setting.
    pub per_user_mfa: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserMechanism {
    pub mechanism: &'static str,
    pub satisfied: u64,
    pub not_completed: u64,
}

/// [`UserEnforcement`] from the history's files of the last `days` days
/// (what the last checkpoint made durable), a record held twice counted once.
pub fn user_enforcement(dir: &Path, user_key: &str, days: u32) -> anyhow::Result<UserEnforcement> {
    let _reading = crate::history::files::read_lock(dir)?;
    let paths = recent_files(dir, days)?;
    let mut out = UserEnforcement { days, ..UserEnforcement::default() };
    if paths.is_empty() {
        return Ok(out);
    }
    let df = LazyFrame::scan_parquet_files(paths.into(), crate::history::files::scan_args(None))?
        .filter(col(c::USER_KEY).eq(lit(user_key.to_owned())).and(of_a_user()).and(asked()))
        .with_column(col(c::TIME).cast(DataType::Int64).alias("ms"))
        .select([
            col("ms"),
            col(c::IDENTITY),
            col(c::CATEGORY),
            col(c::RECORD_ID),
            col(c::CORRELATION_ID),
            col(c::MFA_SATISFIED),
            col(c::RISKY),
            col(c::RISK_LEVEL),
            col(c::MFA_METHOD),
            col(c::MECHANISM).fill_null(lit(Mechanisms::UNKNOWN.joined())),
        ])
        .collect()?;
    let df = df.filter(&best_of_each_record(&df, user_key)?)?;
    let mut counts = [(0u64, 0u64); Mechanisms::ALL.len()];
    for r in 0..df.height() {
        out.sign_ins += 1;
        let ok = bool_of(&df, c::MFA_SATISFIED, r);
        for i in mechanisms_of(&str_of(&df, c::MECHANISM, r)).indices() {
            if ok { counts[i].0 += 1 } else { counts[i].1 += 1 }
        }
    }
    out.per_user_mfa = Mechanisms::PER_USER_MFA.indices().any(|i| counts[i].0 + counts[i].1 > 0);
    out.mechanisms = Mechanisms::ALL
        .iter()
        .zip(counts)
        .filter(|(_, (s, n))| s + n > 0)
        .map(|((_, name), (satisfied, not_completed))| UserMechanism { mechanism: name, satisfied, not_completed })
        .collect();
    Ok(out)
}

/// The set the history's words name; words it does not know (a file a
/// newer release wrote) are `other`, never dropped.
fn mechanisms_of(text: &str) -> Mechanisms {
    Mechanisms::parse_joined(text).filter(|m| !m.is_empty()).unwrap_or(Mechanisms::OTHER)
}

impl Enforcement {
    /// The users the section names, for `mfa-enforcement.csv`.
    pub fn users(&self) -> Vec<&EnforcedUser> {
        self.per_user_mfa_users.iter().chain(&self.risk_only_users).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (tenant, user, mfa_satisfied, mfa_failure, mechanism)
    type Row<'a> = (&'a str, &'a str, bool, Option<&'a str>, Option<&'a str>);

    /// A week's rows as the history has them; `mechanism` left out to be a file from before it.
    fn week(rows: &[Row<'_>], with_mechanism: bool) -> LazyFrame {
        let n = rows.len();
        let mut columns = vec![
            Column::new("ms".into(), (0..n as i64).map(|i| 1_750_000_000_000 + i).collect::<Vec<_>>()),
            Column::new(c::SUBJECT.into(), vec!["user"; n]),
            Column::new(c::UNKNOWN_ACCOUNT.into(), vec![false; n]),
            Column::new(c::TENANT_ID.into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()),
            Column::new(c::USER_KEY.into(), rows.iter().map(|r| r.1).collect::<Vec<_>>()),
            Column::new(c::UPN.into(), rows.iter().map(|r| format!("{}@contoso.example", r.1)).collect::<Vec<_>>()),
            Column::new(c::MFA_SATISFIED.into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
            Column::new(c::MFA_FAILURE.into(), rows.iter().map(|r| r.3).collect::<Vec<_>>()),
            Column::new(c::BLOCKED_BY.into(), vec![None::<&str>; n]),
        ];
        if with_mechanism {
            columns.push(Column::new(c::MECHANISM.into(), rows.iter().map(|r| r.4).collect::<Vec<_>>()));
        } else {
            columns.push(Column::full_null(c::MECHANISM.into(), n, &DataType::String));
        }
        DataFrame::new(n, columns).unwrap().lazy()
    }

    #[test]
    fn shares_per_user_mfa_risk_only_users_and_mixed_tenants_come_from_the_mechanisms() {
        let rows = [
            ("t1", "ann", true, None, Some("conditional_access")),
            ("t1", "ann", true, None, Some("conditional_access,per_user_mfa")),
            ("t1", "bob", true, None, Some("risk_policy")),
            ("t1", "bob", false, Some("denied"), Some("risk_policy")),
            ("t1", "cat", true, None, Some("risk_policy")),
            ("t1", "cat", true, None, Some("conditional_access")),
            ("t2", "dan", true, None, Some("security_defaults")),
            ("t2", "eve", false, Some("required"), Some("conditional_access")),
            ("t2", "fay", true, None, Some("unknown")),
            ("t2", "gus", false, None, None), // single factor: MFA was not asked
        ];
        let e = enforcement(&week(&rows, true)).unwrap();
        assert_eq!((e.mfa_sign_ins, e.not_completed, e.unknown), (7, 2, 1));
        let of = |name: &str| e.mechanisms.iter().find(|m| m.mechanism == name).unwrap().clone();
        let ca = of("conditional_access");
        assert_eq!((ca.satisfied, ca.not_completed, ca.users), (3, 1, 3));
        assert!((ca.share.unwrap() - 3.0 / 7.0).abs() < 1e-9);
        assert_eq!((of("risk_policy").satisfied, of("risk_policy").not_completed), (2, 1));
        let keys = |l: &[EnforcedUser]| l.iter().map(|u| u.user_key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&e.per_user_mfa_users), ["ann"]);
        assert_eq!(e.per_user_mfa_users[0].sign_ins, 1);
        // cat also had Conditional Access: not risk-only.
        assert_eq!(keys(&e.risk_only_users), ["bob"]);
        assert_eq!(e.risk_only_users[0].sign_ins, 2);
        assert_eq!(e.mixed_tenants.len(), 1);
        let t2 = &e.mixed_tenants[0];
        assert_eq!(
            (t2.tenant_id.as_str(), t2.security_defaults_sign_ins, t2.conditional_access_sign_ins),
            ("t2", 1, 1)
        );
    }

    #[test]
    fn a_history_from_before_the_mechanism_column_is_unknown_never_guessed() {
        let rows = [("t1", "ann", true, None, None), ("t1", "bob", false, Some("denied"), None)];
        let e = enforcement(&week(&rows, false)).unwrap();
        assert_eq!((e.mfa_sign_ins, e.not_completed, e.unknown), (1, 1, 2));
        let unknown = e.mechanisms.iter().find(|m| m.mechanism == "unknown").unwrap();
        assert_eq!((unknown.satisfied, unknown.not_completed, unknown.users), (1, 1, 2));
        assert!(e.per_user_mfa_users.is_empty() && e.risk_only_users.is_empty() && e.mixed_tenants.is_empty());
    }
}
