//! strength: the report's "How strong the MFA is" — the method mix of the
//! users' counted MFA sign-ins per period of the trend (the history's
//! `mfa_strength` column, `classify::Strength`), and the privileged
//! accounts by their MFA methods over the range: those still on telephony
//! (SMS, voice), whom Microsoft's guidance moves first, and those whose
//! sign-ins with a known method were all phishing-resistant.
//!
//! A history file from before the `mfa_strength` column has it null: the
//! strength of those rows is their `mfa_method`'s class (a primary
//! phishing-resistant credential behind a claim in the token is not seen
//! there). Reads the rows it is given; writes nothing.

use super::enforcement::EnforcedUser;
use super::*;
use crate::classify::Strength;

/// The counted MFA sign-ins of one period, by strength.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodMix {
    pub period: String,
    pub mfa_sign_ins: u64,
    /// One per [`Strength::ALL`], in its order: (strength, sign-ins).
    pub strengths: Vec<(&'static str, u64)>,
}

/// The section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MethodStrength {
    /// The trend's periods, oldest first; the report's is the last.
    pub periods: Vec<PeriodMix>,
    /// `finding` `telephony`: an SMS or voice MFA sign-in in the range; the
    /// sign-ins and the last are those by telephony.
    pub privileged_on_telephony: Vec<EnforcedUser>,
    /// `finding` `phishing_resistant`: every counted sign-in with a known
    /// method was; the sign-ins and the last are the phishing-resistant ones.
    pub privileged_phishing_resistant: Vec<EnforcedUser>,
    /// Privileged users with a counted MFA sign-in in the range.
    pub privileged_with_mfa: u64,
}

impl MethodStrength {
    /// Every user the section names, for `mfa-strength.csv`.
    pub fn users(&self) -> Vec<&EnforcedUser> {
        self.privileged_on_telephony.iter().chain(&self.privileged_phishing_resistant).collect()
    }
}

/// A counted MFA sign-in of a user.
fn counted_mfa() -> Expr {
    of_a_user().and(col(c::COUNTED)).and(col(c::MFA_SATISFIED))
}

/// The strength of a row: its `mfa_strength`, else its method's class.
fn strength_of(strength: &str, method: &str) -> Strength {
    Strength::parse(strength).unwrap_or_else(|| Strength::of_method(method))
}

/// Counted MFA sign-ins by strength, in the order of [`Strength::ALL`].
pub type Mix = [u64; Strength::ALL.len()];

/// The mixes added up.
pub fn sum<'a>(mixes: impl IntoIterator<Item = &'a Mix>) -> Mix {
    let mut out = Mix::default();
    for mix in mixes {
        for (o, n) in out.iter_mut().zip(mix) {
            *o += n;
        }
    }
    out
}

/// The mix of `rows` (users' rows, a record read twice counted once): what
/// a day or a week of the rollup keeps.
pub fn mix_of(rows: &LazyFrame) -> PolarsResult<Mix> {
    let df = rows
        .clone()
        .filter(counted_mfa())
        .group_by([col(c::MFA_STRENGTH).fill_null(lit("")), col(c::MFA_METHOD).fill_null(lit(""))])
        .agg([len().cast(DataType::UInt64).alias("n")])
        .collect()?;
    let mut counts = Mix::default();
    for r in 0..df.height() {
        let s = strength_of(&str_of(&df, c::MFA_STRENGTH, r), &str_of(&df, c::MFA_METHOD, r));
        counts[s as usize] += u64_of(&df, "n", r);
    }
    Ok(counts)
}

/// The section: the mix of each period (`mixes`, from the days and the
/// rollup's weeks, in the order of `periods`) and the privileged accounts
/// from the range's rows (`week`, a record read twice counted once).
pub fn method_strength(
    week: &LazyFrame,
    periods: &[Window],
    mixes: &[Mix],
    w: Window,
) -> anyhow::Result<MethodStrength> {
    let mut out = MethodStrength::default();
    for (period, counts) in periods.iter().zip(mixes) {
        out.periods.push(PeriodMix {
            period: period.short_label(),
            mfa_sign_ins: counts.iter().sum(),
            strengths: Strength::ALL.iter().map(|s| s.as_str()).zip(*counts).collect(),
        });
    }
    // Periods before the history's first MFA sign-in are no points of the trend.
    let first = out.periods.iter().position(|p| p.mfa_sign_ins > 0).unwrap_or(out.periods.len().saturating_sub(1));
    out.periods.drain(..first);
    let per_user = between(week.clone(), w)
        .filter(counted_mfa().and(col(c::PRIVILEGED)))
        .group_by([col(c::USER_KEY), col(c::MFA_STRENGTH).fill_null(lit("")), col(c::MFA_METHOD).fill_null(lit(""))])
        .agg([len().cast(DataType::UInt64).alias("n"), col("ms").max().alias("last"), col(c::UPN).max().alias(c::UPN)])
        .collect()?;
    // user → (upn, [(sign-ins, last) per strength])
    let mut users: BTreeMap<String, (String, [(u64, i64); Strength::ALL.len()])> = BTreeMap::new();
    for r in 0..per_user.height() {
        let s = strength_of(&str_of(&per_user, c::MFA_STRENGTH, r), &str_of(&per_user, c::MFA_METHOD, r));
        let entry = users.entry(str_of(&per_user, c::USER_KEY, r)).or_default();
        let upn = str_of(&per_user, c::UPN, r);
        if entry.0.is_empty() {
            entry.0 = upn;
        }
        let slot = &mut entry.1[s as usize];
        slot.0 += u64_of(&per_user, "n", r);
        slot.1 = slot.1.max(i64_of(&per_user, "last", r));
    }
    out.privileged_with_mfa = users.len() as u64;
    for (user_key, (upn, by)) in users {
        let named = |finding: &'static str, s: Strength| EnforcedUser {
            user_key: user_key.clone(),
            upn: upn.clone(),
            finding,
            sign_ins: by[s as usize].0,
            last_sign_in: ms_text(by[s as usize].1),
        };
        let known = Strength::ALL.iter().filter(|s| s.is_known() && by[**s as usize].0 > 0).count();
        if by[Strength::Telephony as usize].0 > 0 {
            out.privileged_on_telephony.push(named("telephony", Strength::Telephony));
        } else if known == 1 && by[Strength::PhishingResistant as usize].0 > 0 {
            out.privileged_phishing_resistant.push(named("phishing_resistant", Strength::PhishingResistant));
        }
    }
    out.privileged_on_telephony.sort_by(|a, b| b.sign_ins.cmp(&a.sign_ins).then_with(|| a.upn.cmp(&b.upn)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_without_a_strength_is_classed_by_its_method() {
        assert_eq!(strength_of("phishing_resistant", "Text message"), Strength::PhishingResistant);
        assert_eq!(strength_of("", "Text message"), Strength::Telephony);
        assert_eq!(strength_of("", ""), Strength::Unknown);
    }
}
