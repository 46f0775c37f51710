//! privacy: `privacy.pseudonymise` — UPNs, display names and IP addresses
//! are replaced by keyed hashes (HMAC-SHA-256, key from a systemd credential
//! or the environment) as soon as a record is decoded, so the coverage state,
//! the API, alerts and history never hold them in clear. The same user (in
//! any letter case) always gets the same pseudonym; without the key no one
//! can tell who it is. The domain of a UPN is kept (which tenant, not who),
//! and so are object ids: they name accounts, not people, and are what an
//! investigation looks up in Entra with the right to do so.

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

    /// A configured account (privileged, excluded): object ids stay, UPNs are pseudonymised.
    pub fn account(&self, item: &str) -> String {
        if crate::coverage::is_guid(item.trim()) { item.trim().to_owned() } else { self.upn(item) }
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
}
