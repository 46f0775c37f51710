//! Which mechanism asked a sign-in for MFA (docs/labels.md §4, "Enforcement").
//!
//! Pure, like the rest of `classify`: the record's
//! `authenticationRequirementPolicies` (read by decode into a
//! [`Mechanisms`] set) and the verdict's own outcome, nothing else. It
//! applies only to a user's sign-in that MFA was asked of: one that is
//! mfa_satisfied, one that failed at the MFA step (an `mfa_failure`), and one
//! security defaults blocked (530035, their own evidence). Every other
//! sign-in has no mechanism at all (`None`), which is not `unknown`: nothing
//! was asked.
//!
//! When the record names no mechanism (the field is absent, as in Graph
//! v1.0 and older exports, or its list is empty, as for MFA satisfied by a
//! claim in the token), the answer is `unknown`, never guessed from the
//! Conditional Access status or the tenant's posture.

use crate::decode::{Mechanisms, SignIn};

use super::{BlockedBy, Labels, MfaFailure, Subject};

/// The mechanisms that asked a sign-in for MFA, or `None` when it is not one
/// MFA was asked of. Never empty: a sign-in whose record names none is
/// [`Mechanisms::UNKNOWN`].
pub fn enforcement(
    record: &SignIn<'_>,
    subject: Subject,
    labels: Labels,
    mfa_failure: Option<MfaFailure>,
    blocked_by: Option<BlockedBy>,
) -> Option<Mechanisms> {
    let blocked_by_defaults = blocked_by == Some(BlockedBy::SecurityDefaults);
    let asked = labels.contains(Labels::MFA_SATISFIED) || mfa_failure.is_some() || blocked_by_defaults;
    if subject != Subject::User || !asked {
        return None;
    }
    let mut set = record.fields.requirement_policies.unwrap_or_default();
    if blocked_by_defaults {
        set.insert(Mechanisms::SECURITY_DEFAULTS);
    }
    Some(if set.is_empty() { Mechanisms::UNKNOWN } else { set })
}

#[cfg(test)]
mod tests {
    use crate::classify::{Rules, classify};
    use crate::decode::{Item, Mechanisms, decode_message};

    /// The mechanisms of a one-record diagnostic message.
    fn mechanisms_of(code: i64, requirement: &str, policies: Option<&str>, category: &str) -> Option<Mechanisms> {
        let policies = policies.map_or(String::new(), |p| format!(r#","authenticationRequirementPolicies":{p}"#));
        let message = format!(
            r#"{{"records":[{{"time":"2025-06-01T10:00:00Z","category":"{category}","properties":{{"id":"r1","userId":"u1","userPrincipalName":"a@contoso.example","status":{{"errorCode":{code}}},"authenticationRequirement":"{requirement}","servicePrincipalId":"sp1"{policies}}}}}]}}"#
        );
        let items = decode_message(message.as_bytes());
        let Some(Item::SignIn(record)) = items.first() else { panic!("not a sign-in: {message}") };
        classify(record, &Rules::default()).mechanisms
    }

    const MFA: &str = "multiFactorAuthentication";
    const SINGLE: &str = "singleFactorAuthentication";

    #[test]
    fn an_mfa_sign_in_carries_every_mechanism_its_record_names() {
        let both = r#"[{"requirementProvider":"multiConditionalAccess","detail":"Conditional Access"},{"requirementProvider":"user","detail":"Per-user MFA"}]"#;
        let set = mechanisms_of(0, MFA, Some(both), "SignInLogs").unwrap();
        assert!(set.contains(Mechanisms::CONDITIONAL_ACCESS) && set.contains(Mechanisms::PER_USER_MFA));
        assert!(!set.contains(Mechanisms::UNKNOWN));
        let risk = r#"[{"requirementProvider":"riskBasedPolicy"}]"#;
        assert_eq!(mechanisms_of(0, MFA, Some(risk), "NonInteractiveUserSignInLogs"), Some(Mechanisms::RISK_POLICY));
    }

    #[test]
    fn an_absent_or_empty_list_is_unknown_never_guessed() {
        assert_eq!(mechanisms_of(0, MFA, None, "SignInLogs"), Some(Mechanisms::UNKNOWN));
        assert_eq!(mechanisms_of(0, MFA, Some("[]"), "SignInLogs"), Some(Mechanisms::UNKNOWN));
        assert_eq!(mechanisms_of(0, MFA, Some("null"), "SignInLogs"), Some(Mechanisms::UNKNOWN));
        assert_eq!(mechanisms_of(0, MFA, Some(r#"[{"detail":"x"}]"#), "SignInLogs"), Some(Mechanisms::UNKNOWN));
    }

    #[test]
    fn a_failure_at_the_mfa_step_has_the_mechanism_that_asked() {
        let ca = r#"[{"requirementProvider":"v1ConditionalAccess"}]"#;
        for code in [500121, 50074, 50076, 50079] {
            assert_eq!(
                mechanisms_of(code, MFA, Some(ca), "SignInLogs"),
                Some(Mechanisms::CONDITIONAL_ACCESS),
                "{code}"
            );
        }
        let registration = r#"[{"requirementProvider":"mfaRegistrationRequiredBySecurityDefaults"}]"#;
        assert_eq!(mechanisms_of(50079, SINGLE, Some(registration), "SignInLogs"), Some(Mechanisms::SECURITY_DEFAULTS));
    }

    #[test]
    fn a_security_defaults_block_is_security_defaults_whatever_the_list_says() {
        assert_eq!(mechanisms_of(530035, SINGLE, None, "SignInLogs"), Some(Mechanisms::SECURITY_DEFAULTS));
        let other = r#"[{"requirementProvider":"request"}]"#;
        let set = mechanisms_of(530035, SINGLE, Some(other), "SignInLogs").unwrap();
        assert!(set.contains(Mechanisms::SECURITY_DEFAULTS) && set.contains(Mechanisms::OTHER));
    }

    #[test]
    fn sign_ins_mfa_was_not_asked_of_have_no_mechanism() {
        let ca = r#"[{"requirementProvider":"multiConditionalAccess"}]"#;
        // Single factor, an ordinary failure, a Conditional Access block (not an MFA prompt).
        assert_eq!(mechanisms_of(0, SINGLE, Some(ca), "SignInLogs"), None);
        assert_eq!(mechanisms_of(50126, SINGLE, Some(ca), "SignInLogs"), None);
        assert_eq!(mechanisms_of(53003, SINGLE, Some(ca), "SignInLogs"), None);
        // A workload does no MFA, whatever its record says.
        assert_eq!(mechanisms_of(0, MFA, Some(ca), "ServicePrincipalSignInLogs"), None);
    }
}
