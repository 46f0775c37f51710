//! `authenticationRequirementPolicies`: which Entra feature asked for MFA.
//!
//! A sign-in record lists `{requirementProvider, detail}` objects (Graph
//! `authenticationRequirementPolicy`, beta and the diagnostic setting; Log
//! Analytics `AuthenticationRequirementPolicies`, as JSON text inside a
//! string). Both readers fold the providers straight into a [`Mechanisms`]
//! bit set as they read them: nothing is allocated, and `detail` (free text)
//! is not kept. What the set means for a sign-in is `classify::mechanism`'s.
//!
//! The mapping of each documented `requirementProvider` value (Microsoft
//! Graph beta, "authenticationRequirementPolicy resource type") to the five
//! mechanisms mfawatch reports is [`PROVIDERS`]; docs/labels.md §4 repeats
//! it. A value not listed there (a new one, a typo) is `other`, never guessed.

use serde::Serialize;

/// A set of the mechanisms that asked for MFA. `UNKNOWN` is never read from
/// a record: `classify` sets it, alone, for a sign-in that asked for MFA
/// while its record names no mechanism.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Mechanisms(u8);

impl Mechanisms {
    pub const CONDITIONAL_ACCESS: Mechanisms = Mechanisms(1);
    pub const SECURITY_DEFAULTS: Mechanisms = Mechanisms(2);
    pub const PER_USER_MFA: Mechanisms = Mechanisms(4);
    pub const RISK_POLICY: Mechanisms = Mechanisms(8);
    pub const OTHER: Mechanisms = Mechanisms(16);
    pub const UNKNOWN: Mechanisms = Mechanisms(32);

    /// Every mechanism and its name (the `mechanism` label, the history's
    /// and the report's words), in this order everywhere.
    pub const ALL: [(Mechanisms, &'static str); 6] = [
        (Mechanisms::CONDITIONAL_ACCESS, "conditional_access"),
        (Mechanisms::SECURITY_DEFAULTS, "security_defaults"),
        (Mechanisms::PER_USER_MFA, "per_user_mfa"),
        (Mechanisms::RISK_POLICY, "risk_policy"),
        (Mechanisms::OTHER, "other"),
        (Mechanisms::UNKNOWN, "unknown"),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Mechanisms) -> bool {
        other.0 != 0 && self.0 & other.0 == other.0
    }

    pub fn insert(&mut self, other: Mechanisms) {
        self.0 |= other.0;
    }

    /// Position of each member in [`Mechanisms::ALL`].
    pub fn indices(self) -> impl Iterator<Item = usize> {
        (0..Mechanisms::ALL.len()).filter(move |&i| self.contains(Mechanisms::ALL[i].0))
    }

    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.indices().map(|i| Mechanisms::ALL[i].1)
    }

    /// The names joined by `,` into `out` (cleared first), in the order of `ALL`.
    pub fn write_names(self, out: &mut String) {
        out.clear();
        for name in self.names() {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(name);
        }
    }

    /// The names joined by `,` (`conditional_access,per_user_mfa`), as the
    /// history keeps them; made once per set, so a row copies nothing.
    pub fn joined(self) -> &'static str {
        static JOINED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let table = JOINED.get_or_init(|| {
            (0..1u16 << Mechanisms::ALL.len())
                .map(|bits| {
                    let mut text = String::new();
                    Mechanisms(bits as u8).write_names(&mut text);
                    text
                })
                .collect()
        });
        table.get(usize::from(self.0)).map_or("", String::as_str)
    }

    /// The set whose [`Mechanisms::joined`] names are `text`; a name it does
    /// not know makes `None` (the report reads the history's words with it).
    pub fn parse_joined(text: &str) -> Option<Mechanisms> {
        let mut set = Mechanisms::default();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            set.insert(Mechanisms::ALL.iter().find(|(_, n)| *n == name)?.0);
        }
        Some(set)
    }

    /// The mechanism a `requirementProvider` value names (ASCII case ignored);
    /// a value that is not documented is `other`.
    pub fn of_provider(provider: &str) -> Mechanisms {
        let provider = provider.trim();
        PROVIDERS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(provider))
            .map_or(Mechanisms::OTHER, |(_, mechanism)| *mechanism)
    }

    /// Adds what one list entry's `requirementProvider` names; an entry
    /// without one (missing, null, empty) names nothing. Both readers call it.
    pub(super) fn insert_provider(&mut self, provider: Option<&str>) {
        if let Some(provider) = provider.filter(|p| !super::fields::is_null_text(p)) {
            self.insert(Mechanisms::of_provider(provider));
        }
    }
}

impl Serialize for Mechanisms {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

/// The documented `requirementProvider` values (Graph beta enum
/// `requirementProvider`) and the mechanism each is. Registration
/// requirements (`mfaRegistrationRequiredBy…`) belong to the feature that
/// asks for the registration; baseline protection is the set of baseline
/// policies security defaults replaced; `user` is per-user MFA (the user's
/// own `StrongAuthenticationRequirement`); an authentication strength is a
/// Conditional Access grant. The rest (an application's `request`, a
/// `servicePrincipal`, the CSP-admin rule, a proof-up code, cross-tenant
/// rules, …) are `other`.
pub const PROVIDERS: [(&str, Mechanisms); 25] = [
    ("v1ConditionalAccess", Mechanisms::CONDITIONAL_ACCESS),
    ("multiConditionalAccess", Mechanisms::CONDITIONAL_ACCESS),
    ("v1ConditionalAccessDependency", Mechanisms::CONDITIONAL_ACCESS),
    ("v1ConditionalAccessPolicyIdRequested", Mechanisms::CONDITIONAL_ACCESS),
    ("mfaRegistrationRequiredByMultiConditionalAccess", Mechanisms::CONDITIONAL_ACCESS),
    ("authenticationStrengths", Mechanisms::CONDITIONAL_ACCESS),
    // Not in Graph's enumeration, but the plain spelling tools and exports use.
    ("conditionalAccess", Mechanisms::CONDITIONAL_ACCESS),
    ("securityDefaults", Mechanisms::SECURITY_DEFAULTS),
    ("mfaRegistrationRequiredBySecurityDefaults", Mechanisms::SECURITY_DEFAULTS),
    ("baselineProtection", Mechanisms::SECURITY_DEFAULTS),
    ("mfaRegistrationRequiredByBaselineProtection", Mechanisms::SECURITY_DEFAULTS),
    ("user", Mechanisms::PER_USER_MFA),
    // Not in Graph's enumeration, but written so by some exports and tools.
    ("perUserMfa", Mechanisms::PER_USER_MFA),
    ("tenantSessionRiskPolicy", Mechanisms::RISK_POLICY),
    ("accountCompromisePolicies", Mechanisms::RISK_POLICY),
    ("mfaRegistrationRequiredByIdentityProtectionPolicy", Mechanisms::RISK_POLICY),
    ("riskBasedPolicy", Mechanisms::RISK_POLICY),
    ("request", Mechanisms::OTHER),
    ("servicePrincipal", Mechanisms::OTHER),
    ("enforcedForCspAdmins", Mechanisms::OTHER),
    ("proofUpCodeRequest", Mechanisms::OTHER),
    ("crossTenantOutboundRule", Mechanisms::OTHER),
    ("gpsLocationCondition", Mechanisms::OTHER),
    ("scopeBasedAuthRequirementPolicy", Mechanisms::OTHER),
    ("unknownFutureValue", Mechanisms::OTHER),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_providers_map_to_their_mechanism_in_any_case() {
        assert_eq!(Mechanisms::of_provider("multiConditionalAccess"), Mechanisms::CONDITIONAL_ACCESS);
        assert_eq!(Mechanisms::of_provider(" MULTICONDITIONALACCESS "), Mechanisms::CONDITIONAL_ACCESS);
        assert_eq!(Mechanisms::of_provider("securityDefaults"), Mechanisms::SECURITY_DEFAULTS);
        assert_eq!(Mechanisms::of_provider("user"), Mechanisms::PER_USER_MFA);
        assert_eq!(Mechanisms::of_provider("riskBasedPolicy"), Mechanisms::RISK_POLICY);
        assert_eq!(Mechanisms::of_provider("request"), Mechanisms::OTHER);
    }

    #[test]
    fn an_undocumented_provider_is_other_never_a_guess() {
        for value in ["perUser", "conditionalAccessPolicy", "securityDefault", "x"] {
            assert_eq!(Mechanisms::of_provider(value), Mechanisms::OTHER, "{value}");
        }
    }

    #[test]
    fn an_entry_without_a_provider_names_nothing() {
        let mut set = Mechanisms::default();
        for provider in [None, Some(""), Some(" "), Some("null")] {
            set.insert_provider(provider);
        }
        assert!(set.is_empty());
        set.insert_provider(Some("user"));
        set.insert_provider(Some("v1ConditionalAccess"));
        let mut text = String::from("stale");
        set.write_names(&mut text);
        assert_eq!(text, "conditional_access,per_user_mfa");
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["conditional_access","per_user_mfa"]"#);
    }

    #[test]
    fn every_set_is_joined_once_and_read_back() {
        for bits in 0..64u8 {
            let set = Mechanisms(bits);
            let mut text = String::new();
            set.write_names(&mut text);
            assert_eq!(set.joined(), text);
            assert_eq!(Mechanisms::parse_joined(set.joined()), Some(set));
        }
        assert_eq!(Mechanisms::parse_joined("conditional_access,nonsense"), None);
    }

    #[test]
    fn names_are_unique_and_never_contain_the_separator() {
        let names: std::collections::HashSet<&str> = Mechanisms::ALL.iter().map(|(_, n)| *n).collect();
        assert_eq!(names.len(), Mechanisms::ALL.len());
        assert!(names.iter().all(|n| !n.contains(',')));
        let providers: std::collections::HashSet<String> =
            PROVIDERS.iter().map(|(p, _)| p.to_ascii_lowercase()).collect();
        assert_eq!(providers.len(), PROVIDERS.len());
    }
}
