//! privacy: `privacy.pseudonymise` — UPNs, display names and IP addresses
//! are replaced by keyed hashes (HMAC-SHA-256, key from a systemd credential
//! or the environment) as soon as a record is decoded, so the coverage state,
//! the API, alerts and history never hold them in clear. The same user (in
//! any letter case) always gets the same pseudonym; without the key no one
//! can tell who it is. The domain of a UPN is kept (which tenant, not who),
//! and so are object ids: they name accounts, not people, and are what an
//! investigation looks up in Entra with the right to do so.
//!
//! Dead letters are pseudonymised too: a malformed record that still parses
//! as JSON keeps its shape with the same fields replaced, at any depth and in
//! any letter case; one that does not parse keeps only its length, SHA-256
//! and why it was refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::decode::Fields;

#[derive(Clone)]
pub struct Pseudonyms {
    key: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("Pseudonyms(***)")
    }
}

impl Pseudonyms {
    /// From the configuration: `None` when pseudonymisation is off.
    pub fn from_config(config: &crate::config::PrivacyConfig) -> anyhow::Result<Option<Pseudonyms>> {
        if !config.pseudonymise {
            return Ok(None);
        }
        let key = crate::secrets::read(config.key_credential.as_deref(), config.key_env.as_deref())
            .map_err(|e| anyhow::anyhow!("privacy.pseudonymise needs a key: {e}"))?;
        anyhow::ensure!(
            key.expose().len() >= 16,
            "the privacy.pseudonymise key is shorter than 16 characters: use a long random one"
        );
        Ok(Some(Pseudonyms::new(key.expose().as_bytes())))
    }

    pub fn new(key: &[u8]) -> Pseudonyms {
        Pseudonyms { key: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length") }
    }

    fn digest(&self, kind: &str, text: &str) -> String {
        let mut mac = self.key.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(text.trim().to_lowercase().as_bytes());
        mac.finalize().into_bytes()[..10].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `ann@contoso.com` → `u-3f…@contoso.com`.
    pub fn upn(&self, upn: &str) -> String {
        let domain = upn.trim().rsplit_once('@').map(|(_, d)| d.to_lowercase());
        match domain {
            Some(domain) => format!("u-{}@{domain}", self.digest("upn", upn)),
            None => format!("u-{}", self.digest("upn", upn)),
        }
    }

    pub fn display_name(&self, name: &str) -> String {
        format!("user {}", &self.digest("name", name)[..8])
    }

    pub fn ip(&self, ip: &str) -> String {
        format!("ip-{}", &self.digest("ip", ip)[..12])
    }

    /// Replaces the identifying fields of a record.
    pub fn apply(&self, f: &mut Fields<'_>) {
        use std::borrow::Cow;
        let present = |s: &Option<Cow<'_, str>>| s.as_deref().is_some_and(|s| !s.trim().is_empty());
        if present(&f.user_principal_name) {
            f.user_principal_name = Some(Cow::Owned(self.upn(f.user_principal_name.as_deref().unwrap_or(""))));
        }
        if present(&f.user_display_name) {
            f.user_display_name = Some(Cow::Owned(self.display_name(f.user_display_name.as_deref().unwrap_or(""))));
        }
        for ip in [&mut f.ip_address, &mut f.caller_ip_address] {
            if present(ip) {
                *ip = Some(Cow::Owned(self.ip(ip.as_deref().unwrap_or(""))));
            }
        }
    }

    /// Replaces the identifying fields of a directory record: the user's UPN
    /// and display name, who made the change, a detection's address.
    pub fn apply_directory(&self, record: &mut crate::decode::directory::DirectoryRecord) {
        use crate::decode::directory::Fact;
        if let Some(by) = &record.initiated_by {
            // A UPN, or an app's name (which names no person and stays).
            if by.contains('@') {
                record.initiated_by = Some(self.upn(by));
            }
        }
        if let Some(user) = record.fact.subject_mut() {
            user.upn = user.upn.as_deref().map(|u| self.upn(u));
            user.display_name = user.display_name.as_deref().map(|n| self.display_name(n));
        }
        if let Fact::Risk(detection) = &mut record.fact {
            detection.ip = detection.ip.as_deref().map(|ip| self.ip(ip));
        }
    }

    /// A raw record with its identifying fields replaced, for a dead letter;
    /// `None` when it does not parse as JSON (then nothing of it is kept).
    pub fn raw_record(&self, raw: &[u8]) -> Option<Vec<u8>> {
        let mut value: serde_json::Value = serde_json::from_slice(raw).ok()?;
        self.value(&mut value, 0);
        serde_json::to_vec(&value).ok()
    }

    fn value(&self, value: &mut serde_json::Value, depth: usize) {
        use serde_json::Value;
        // Deeper than any record is nested: what is below is dropped, not kept unread.
        if depth > 32 {
            *value = Value::Null;
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    let replace: Option<fn(&Pseudonyms, &str) -> String> = match key.to_ascii_lowercase().as_str() {
                        "userprincipalname" | "signinidentifier" | "alternatesigninname" | "upn" => {
                            Some(Pseudonyms::upn)
                        }
                        "userdisplayname" => Some(Pseudonyms::display_name),
                        "ipaddress" | "calleripaddress" => Some(Pseudonyms::ip),
                        _ => None,
                    };
                    match (replace, &*v) {
                        (Some(f), Value::String(text)) if !text.trim().is_empty() => *v = Value::String(f(self, text)),
                        (Some(_), Value::String(_) | Value::Null) => {}
                        // A name given as something else than text is not kept at all.
                        (Some(_), _) => *v = Value::Null,
                        (None, _) => self.value(v, depth + 1),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v, depth + 1)),
            _ => {}
        }
    }

    /// A configured account (privileged, excluded): object ids stay, UPNs are pseudonymised.
    pub fn account(&self, item: &str) -> String {
        if crate::decode::is_guid(item.trim()) { item.trim().to_owned() } else { self.upn(item) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_user_always_gets_the_same_pseudonym_and_another_key_another() {
        let p = Pseudonyms::new(b"0123456789abcdef-test-key");
        assert_eq!(p.upn("Ann@Contoso.com"), p.upn("ann@contoso.com "));
        assert!(p.upn("ann@contoso.com").ends_with("@contoso.com"));
        assert!(!p.upn("ann@contoso.com").contains("ann"));
        assert_ne!(p.upn("ann@contoso.com"), p.upn("bob@contoso.com"));
        assert_ne!(p.upn("ann@contoso.com"), Pseudonyms::new(b"another-key-0123456789").upn("ann@contoso.com"));
        assert!(p.ip("203.0.113.7").starts_with("ip-") && !p.ip("203.0.113.7").contains("203"));
        assert_eq!(p.account("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"), "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9");
        assert_eq!(p.account("Ann@contoso.com"), p.upn("ann@contoso.com"));
    }

    #[test]
    fn a_dead_letter_keeps_the_records_shape_without_names_or_addresses() {
        let p = Pseudonyms::new(b"0123456789abcdef-test-key");
        let raw = br#"{"records":[{"time":"x","properties":{"userPrincipalName":"Ann@contoso.com","UserDisplayName":"Ann Example","ipAddress":"203.0.113.7","status":{"errorCode":"oops"}}}],"CallerIpAddress":"198.51.100.1"}"#;
        let text = String::from_utf8(p.raw_record(raw).unwrap()).unwrap();
        for real in ["Ann", "ann@", "203.0.113.7", "198.51.100.1"] {
            assert!(!text.contains(real), "{real} in {text}");
        }
        assert!(text.contains(&p.upn("ann@contoso.com")) && text.contains("\"oops\""), "{text}");
        assert!(p.raw_record(b"{\"userPrincipalName\":\"ann@contoso.com\",").is_none(), "not JSON: nothing kept");
    }
}
