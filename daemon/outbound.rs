//! outbound: how mfawatch makes HTTP requests of others — alert receivers,
//! the Microsoft Entra token endpoint — and the rule for sending a secret.
//!
//! One client setup for all of them: bounded in time, and no redirects
//! followed (a redirected POST becomes a GET without its body, which would
//! count an alert as delivered that nobody got; a redirected token request
//! would carry the client secret elsewhere). A secret (a bearer token, a
//! client secret, a webhook URL kept as a credential) only goes over
//! https; plain http only to a loopback address, and only where the
//! configuration says so in so many words (a test receiver). This module
//! knows no stage.

use std::time::Duration;

/// An HTTP client that answers every status as a response (3xx included)
/// and gives up after `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("mfawatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// Whether `url` may be used by the setting `key`: an http(s) URL, and
/// https when it carries a `secret` unless it is plain http to a loopback
/// address and `plain_http_loopback` allows that. The error names the key
/// and the way out, never the URL (it may be the secret).
pub fn check_secret_url(key: &str, url: &str, secret: bool, plain_http_loopback: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|_| format!("{key}: not an http:// or https:// URL"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if !secret => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback && plain_http_loopback {
                Ok(())
            } else if loopback {
                Err(format!(
                    "{key}: a secret would go over plain http; use https, or (a test receiver on this host) set plain_http_loopback = true"
                ))
            } else {
                Err(format!("{key}: a secret would go over plain http to another host; use https"))
            }
        }
        _ => Err(format!("{key}: not an http:// or https:// URL")),
    }
}

/// `url` as it may be shown: scheme and host, no user, password, path or
/// query (a Slack-style webhook's path is its secret).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path().len() > 1 || u.query().is_some() { "/…" } else { "" };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_urls_are_shown_without_their_secrets() {
        assert_eq!(redact_url("https://user:pass@am.example:9093"), "https://am.example:9093");
        assert_eq!(redact_url("https://hooks.slack.com/services/T000/B000/XXXXSECRET"), "https://hooks.slack.com/…");
        assert_eq!(redact_url("http://siem.example/hook?token=s3cret"), "http://siem.example/…");
        assert_eq!(redact_url("not a url with s3cret"), "(not a URL)");
    }

    #[test]
    fn a_secret_goes_over_https_or_to_a_loopback_test_receiver_when_allowed() {
        assert!(check_secret_url("k", "https://siem.example/hook", true, false).is_ok());
        assert!(check_secret_url("k", "http://siem.example/hook", false, false).is_ok());
        let err = check_secret_url("k", "http://siem.example/hook?token=s3cret", true, true).unwrap_err();
        assert!(err.contains("plain http to another host") && !err.contains("s3cret"), "{err}");
        assert!(
            check_secret_url("k", "http://127.0.0.1:8080/hook", true, false)
                .unwrap_err()
                .contains("plain_http_loopback")
        );
        assert!(check_secret_url("k", "http://127.0.0.1:8080/hook", true, true).is_ok());
        assert!(check_secret_url("k", "http://[::1]:8080/hook", true, true).is_ok());
        assert!(check_secret_url("k", "ftp://x", false, false).is_err());
    }
}
