//! carried: what a copy of a sign-in says that a later copy of the same
//! record may complete (docs/labels.md §5 "Re-deliveries"). Entra publishes
//! some sign-ins again with more in them: a risk found by an offline
//! detection, MFA details filled in. Copies merge field by field, each to its
//! most informative value, so any set of copies, read in any order, merges to
//! the same thing. Pure data, 6 bits, kept per record identity by coverage
//! and the alert rules.

use super::{Labels, MfaMethod, RiskLevel, Verdict};

/// What one copy (or the merge of several) carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// The risk level, ranked none < hidden < low < medium < high
    /// ([`Carried::rank_of`]).
    pub risk_rank: u8,
    /// Risky by §4 (level at the threshold, or an open risk state).
    pub risky: bool,
    /// mfa_satisfied: the copy carries MFA evidence for the sign-in.
    pub mfa: bool,
    /// The MFA method is named (a method, or `previously_satisfied`), not
    /// `unknown` or absent.
    pub method_named: bool,
}

/// A field a later copy can add to what was known (`mfawatch_enriched_signins_total{field}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Enriched {
    /// A higher risk level, or risky where it was not.
    Risk,
    /// MFA evidence where the copies read so far said single factor.
    Mfa,
    /// The MFA method named where it was unknown.
    MfaMethod,
}

impl Enriched {
    pub const ALL: [Enriched; 3] = [Enriched::Risk, Enriched::Mfa, Enriched::MfaMethod];

    pub fn as_str(self) -> &'static str {
        match self {
            Enriched::Risk => "risk",
            Enriched::Mfa => "mfa",
            Enriched::MfaMethod => "mfa_method",
        }
    }
}

impl Carried {
    /// What stands for a copy whose fields are not known (an identity kept by
    /// a release before re-deliveries were merged): the most of everything,
    /// so no copy adds anything to it and it stays a plain duplicate.
    pub const KNOWN_BEFORE: Carried = Carried { risk_rank: 4, risky: true, mfa: true, method_named: true };

    pub fn of(verdict: &Verdict<'_>) -> Carried {
        Carried {
            risk_rank: Carried::rank_of(verdict.risk_level),
            risky: verdict.labels.contains(Labels::RISKY),
            mfa: verdict.labels.contains(Labels::MFA_SATISFIED),
            method_named: matches!(verdict.mfa_method, Some(MfaMethod::Method(_) | MfaMethod::PreviouslySatisfied)),
        }
    }

    /// A copy as the history's row has it (`risky`, `risk_level`,
    /// `mfa_satisfied`, `mfa_method`); absent columns say nothing.
    pub fn of_row(risky: Option<bool>, risk_level: Option<&str>, mfa: Option<bool>, method: Option<&str>) -> Carried {
        let method = method.map(str::trim).unwrap_or("");
        Carried {
            risk_rank: RiskLevel::parse(risk_level).map_or(0, Carried::rank_of),
            risky: risky.unwrap_or(false),
            mfa: mfa.unwrap_or(false),
            method_named: !method.is_empty() && method != MfaMethod::Unknown.as_str(),
        }
    }

    /// none < hidden < low < medium < high: hidden says no more than that
    /// the tenant cannot see risk, any level says more.
    pub fn rank_of(level: RiskLevel) -> u8 {
        match level {
            RiskLevel::None => 0,
            RiskLevel::Hidden => 1,
            RiskLevel::Low => 2,
            RiskLevel::Medium => 3,
            RiskLevel::High => 4,
        }
    }

    /// The level of a rank.
    pub fn level(self) -> RiskLevel {
        match self.risk_rank {
            0 => RiskLevel::None,
            1 => RiskLevel::Hidden,
            2 => RiskLevel::Low,
            3 => RiskLevel::Medium,
            _ => RiskLevel::High,
        }
    }

    /// Field by field, the more informative of the two (commutative,
    /// associative, idempotent: the order of copies never matters).
    pub fn merge(self, other: Carried) -> Carried {
        Carried {
            risk_rank: self.risk_rank.max(other.risk_rank),
            risky: self.risky || other.risky,
            mfa: self.mfa || other.mfa,
            method_named: self.method_named || other.method_named,
        }
    }

    /// The fields `other` adds to `self`.
    pub fn added_by(self, other: Carried) -> impl Iterator<Item = Enriched> {
        [
            (Enriched::Risk, other.risk_rank > self.risk_rank || other.risky && !self.risky),
            (Enriched::Mfa, other.mfa && !self.mfa),
            (Enriched::MfaMethod, other.method_named && !self.method_named),
        ]
        .into_iter()
        .filter_map(|(field, added)| added.then_some(field))
    }

    /// How much a copy says, for picking one copy of several (the report's
    /// rows): risky first, then the level, MFA, the method named.
    pub fn rank(self) -> u8 {
        (self.risky as u8) << 6 | self.risk_rank << 2 | (self.mfa as u8) << 1 | self.method_named as u8
    }

    /// Six bits, as coverage and the alert rules keep it per identity.
    pub fn bits(self) -> u8 {
        self.risk_rank.min(7) | (self.risky as u8) << 3 | (self.mfa as u8) << 4 | (self.method_named as u8) << 5
    }

    pub fn from_bits(bits: u8) -> Carried {
        Carried {
            risk_rank: (bits & 7).min(4),
            risky: bits & 8 != 0,
            mfa: bits & 16 != 0,
            method_named: bits & 32 != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Carried> {
        let mut out = Vec::new();
        for bits in 0..64u8 {
            for rank in 0..5 {
                out.push(Carried { risk_rank: rank, ..Carried::from_bits(bits) });
            }
        }
        out
    }

    #[test]
    fn merging_copies_gives_the_same_result_in_any_order() {
        let all = all();
        for &a in &all {
            assert_eq!(Carried::from_bits(a.bits()), a);
            assert_eq!(a.merge(a), a);
            for &b in &all {
                assert_eq!(a.merge(b), b.merge(a));
                assert_eq!(a.merge(b).added_by(a).count(), 0, "a merge never has less than a copy");
            }
        }
    }

    #[test]
    fn a_copy_adds_a_raised_risk_mfa_evidence_and_a_named_method_and_nothing_to_what_was_known_before() {
        let first = Carried { risk_rank: Carried::rank_of(RiskLevel::Low), ..Carried::default() };
        let later =
            Carried { risk_rank: Carried::rank_of(RiskLevel::High), risky: true, mfa: true, method_named: true };
        let added: Vec<Enriched> = first.added_by(later).collect();
        assert_eq!(added, Enriched::ALL);
        assert_eq!(later.added_by(first).count(), 0);
        assert_eq!(Carried::KNOWN_BEFORE.added_by(later).count(), 0);
        assert_eq!(first.merge(later).level(), RiskLevel::High);
        assert!(Carried { risk_rank: 1, ..first }.rank() < later.rank());
    }

    #[test]
    fn a_history_row_is_read_as_its_copy_and_unknown_says_no_method() {
        let row = Carried::of_row(Some(true), Some("medium"), Some(true), Some("unknown"));
        assert_eq!(row, Carried { risk_rank: 3, risky: true, mfa: true, method_named: false });
        let named = Carried::of_row(None, Some("bogus"), None, Some("Mobile app notification"));
        assert_eq!(named, Carried { method_named: true, ..Carried::default() });
    }
}
