//! How strong a sign-in's MFA was (docs/labels.md §4, "Method strength").
//!
//! Pure, like the rest of `classify`: the record's `authenticationDetails`
//! and the MFA method §4 already found, nothing else. Only an mfa_satisfied
//! user sign-in has a strength; a single-factor one has none (`None`).
//!
//! A phishing-resistant credential in any succeeded step — the primary one
//! included, since Windows Hello for Business, a FIDO2 key, a passkey or a
//! certificate is both factors at once — makes the sign-in
//! `phishing_resistant`. Otherwise the method §4 names decides: an app push
//! (number matching, passwordless phone sign-in), a one-time code (app or
//! hardware token, e-mail), telephony (SMS, voice), another method named
//! (a Temporary Access Pass, an external provider), MFA met by a claim in
//! the token (`previously_satisfied`: the strength was the earlier sign-in's,
//! not known here), or `unknown`. Method names are matched without letter
//! case on the words Entra writes ("FIDO2 security key", "Text message",
//! "Phone call approval (Authentication phone)", …), so a renamed variant
//! of a known method still lands in its class; a name none matches is
//! `other`, never guessed stronger.

use serde::Serialize;

use crate::decode::AuthStep;

use super::MfaMethod;

/// The strength class of an MFA sign-in's method (a bounded metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// FIDO2 security key, Windows Hello for Business, passkey, certificate (CBA), platform credential.
    PhishingResistant,
    /// Microsoft Authenticator push, number matching, passwordless phone sign-in.
    Push,
    /// A one-time code: authenticator app code, OATH hardware or software token, e-mail code.
    Otp,
    /// SMS or a voice call.
    Telephony,
    /// A method named that is none of these (Temporary Access Pass, an external provider, "Other").
    Other,
    /// MFA met by a claim in the token: the strength was the earlier sign-in's.
    PreviouslySatisfied,
    /// MFA met, no method named.
    Unknown,
}

impl Strength {
    pub const ALL: [Strength; 7] = [
        Strength::PhishingResistant,
        Strength::Push,
        Strength::Otp,
        Strength::Telephony,
        Strength::Other,
        Strength::PreviouslySatisfied,
        Strength::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strength::PhishingResistant => "phishing_resistant",
            Strength::Push => "push",
            Strength::Otp => "otp",
            Strength::Telephony => "telephony",
            Strength::Other => "other",
            Strength::PreviouslySatisfied => "previously_satisfied",
            Strength::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<Strength> {
        Strength::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the sign-in's own method is known (neither a claim nor unnamed):
    /// the sign-ins that say whether a user is on phishing-resistant MFA.
    pub fn is_known(self) -> bool {
        !matches!(self, Strength::PreviouslySatisfied | Strength::Unknown)
    }

    /// The class of a method's name as Entra writes it.
    pub fn of_method(name: &str) -> Strength {
        let m = name.trim().to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| m.contains(w));
        if m.is_empty() {
            Strength::Unknown
        } else if m == "previously satisfied" {
            Strength::PreviouslySatisfied
        } else if has(PHISHING_RESISTANT) {
            Strength::PhishingResistant
        } else if has(TELEPHONY) {
            Strength::Telephony
        } else if has(OTP) {
            Strength::Otp
        } else if has(PUSH) {
            Strength::Push
        } else {
            Strength::Other
        }
    }

    /// The strength of an mfa_satisfied sign-in: a phishing-resistant
    /// credential in any succeeded step, else the class of its MFA method.
    pub fn of(steps: &[AuthStep<'_>], method: &MfaMethod<'_>) -> Strength {
        let strong = steps
            .iter()
            .filter(|s| s.succeeded == Some(true))
            .filter_map(|s| s.method.as_deref())
            .any(|m| Strength::of_method(m) == Strength::PhishingResistant);
        if strong {
            return Strength::PhishingResistant;
        }
        match method {
            MfaMethod::Method(m) => Strength::of_method(m),
            MfaMethod::PreviouslySatisfied => Strength::PreviouslySatisfied,
            MfaMethod::Unknown => Strength::Unknown,
        }
    }
}

/// Words of phishing-resistant methods' names ("FIDO2 security key",
/// "Windows Hello for Business", "Passkey (Microsoft Authenticator)",
/// "Passkey (device-bound)", "X.509 Certificate", "Certificate-based
/// authentication", "Platform Credential for macOS").
const PHISHING_RESISTANT: &[&str] =
    &["fido", "windows hello", "passkey", "x.509", "x509", "certificate", "platform credential", "secure enclave"];

/// Telephony: "Text message", "Phone call approval (Authentication phone)",
/// "(Alternate phone)", "(Office phone)", "Phone call", "SMS", "Voice".
/// ("Passwordless phone sign-in" is the Authenticator app: push.)
const TELEPHONY: &[&str] = &["text message", "sms", "phone call", "voice", "office phone", "alternate phone"];

/// One-time codes: "OATH verification code", "Mobile app verification
/// code", "OATH hardware token", "OATH software token", "Email
/// verification code", "One-time passcode".
const OTP: &[&str] = &["verification code", "oath", "token", "one-time", "passcode", "otp"];

/// App push: "Mobile app notification", "Microsoft Authenticator",
/// "Passwordless phone sign-in", "Passwordless Microsoft Authenticator",
/// "Number matching".
const PUSH: &[&str] = &["notification", "authenticator", "passwordless phone", "number match", "push"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Rules, classify};
    use crate::decode::{Item, decode_message};

    #[test]
    fn every_documented_method_name_lands_in_its_class() {
        let table = [
            ("FIDO2 security key", Strength::PhishingResistant),
            ("Windows Hello for Business", Strength::PhishingResistant),
            ("Passkey (Microsoft Authenticator)", Strength::PhishingResistant),
            ("Passkey (device-bound)", Strength::PhishingResistant),
            ("X.509 Certificate", Strength::PhishingResistant),
            ("Certificate-based authentication", Strength::PhishingResistant),
            ("Mobile app notification", Strength::Push),
            ("Passwordless phone sign-in", Strength::Push),
            ("Passwordless Microsoft Authenticator", Strength::Push),
            ("OATH verification code", Strength::Otp),
            ("Mobile app verification code", Strength::Otp),
            ("OATH hardware token", Strength::Otp),
            ("Email verification code", Strength::Otp),
            ("Text message", Strength::Telephony),
            ("Phone call approval (Authentication phone)", Strength::Telephony),
            ("Phone call approval (Alternate phone)", Strength::Telephony),
            ("Phone call approval (Office phone)", Strength::Telephony),
            ("Temporary Access Pass", Strength::Other),
            ("Other", Strength::Other),
            ("Previously satisfied", Strength::PreviouslySatisfied),
            ("  ", Strength::Unknown),
        ];
        for (name, want) in table {
            assert_eq!(Strength::of_method(name), want, "{name:?}");
            assert_eq!(Strength::of_method(&name.to_uppercase()), want, "{name:?} in capitals");
        }
        for s in Strength::ALL {
            assert_eq!(Strength::parse(s.as_str()), Some(s));
        }
    }

    /// The strength of a one-record message's sign-in.
    fn strength_of(steps: &str, details: &str) -> Option<Strength> {
        let message = format!(
            r#"{{"records":[{{"time":"2025-06-01T10:00:00Z","category":"SignInLogs","properties":{{"id":"r1","userId":"u1","status":{{"errorCode":0,"additionalDetails":"{details}"}},"authenticationRequirement":"multiFactorAuthentication","authenticationDetails":{steps}}}}}]}}"#
        );
        let items = decode_message(message.as_bytes());
        let Some(Item::SignIn(record)) = items.first() else { panic!("not a sign-in: {message}") };
        classify(record, &Rules::default()).strength
    }

    #[test]
    fn a_phishing_resistant_primary_credential_makes_the_sign_in_phishing_resistant_even_by_claim() {
        let whfb = r#"[{"authenticationMethod":"Windows Hello for Business","succeeded":true,"authenticationStepRequirement":"Primary authentication"}]"#;
        assert_eq!(
            strength_of(whfb, "MFA requirement satisfied by claim in the token"),
            Some(Strength::PhishingResistant)
        );
        let sms = r#"[{"authenticationMethod":"Password","succeeded":true,"authenticationStepRequirement":"Primary authentication"},{"authenticationMethod":"Text message","succeeded":true,"authenticationStepRequirement":"Multifactor authentication","authenticationStepResultDetail":"MFA successfully completed"}]"#;
        assert_eq!(strength_of(sms, ""), Some(Strength::Telephony));
        // A FIDO2 step that failed proves nothing: the SMS that followed decides.
        let failed_key = r#"[{"authenticationMethod":"FIDO2 security key","succeeded":false},{"authenticationMethod":"Text message","succeeded":true,"authenticationStepRequirement":"Multifactor authentication"}]"#;
        assert_eq!(strength_of(failed_key, ""), Some(Strength::Telephony));
        let claim = r#"[{"authenticationMethod":"Previously satisfied","succeeded":true,"authenticationStepRequirement":"Multifactor authentication"}]"#;
        assert_eq!(strength_of(claim, ""), Some(Strength::PreviouslySatisfied));
        let unnamed = r#"[{"authenticationMethod":"Password","succeeded":true,"authenticationStepRequirement":"Primary authentication"}]"#;
        assert_eq!(strength_of(unnamed, ""), Some(Strength::Unknown));
    }

    #[test]
    fn a_single_factor_sign_in_has_no_strength() {
        let message = r#"{"records":[{"time":"2025-06-01T10:00:00Z","category":"SignInLogs","properties":{"id":"r1","userId":"u1","status":{"errorCode":0},"authenticationRequirement":"singleFactorAuthentication","authenticationDetails":[{"authenticationMethod":"Password","succeeded":true}]}}]}"#;
        let items = decode_message(message.as_bytes());
        let Some(Item::SignIn(record)) = items.first() else { panic!() };
        assert_eq!(classify(record, &Rules::default()).strength, None);
    }
}
