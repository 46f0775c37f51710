//! validate: the checks serde cannot make, each error naming its key —
//! values in range, settings that must come together, and what
//! `[kafka.librdkafka]` may not override (mfawatch's own offsets, the
//! authentication, the TLS trust where a secret is sent; librdkafka's own
//! check of every raw setting). Reads the configuration only: no file, no
//! network, no stage.

use std::path::Path;
use std::time::Duration;

use super::*;

/// `"100d"` for whole days, else what humantime says (`"1day 12h"`).
fn days_or_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(86_400) && d.subsec_nanos() == 0 {
        format!("{}d", secs / 86_400)
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// librdkafka settings that mfawatch sets from its own configuration, or
/// that would break the delivery guarantee (mfawatch stores and commits
/// offsets itself, after each checkpoint): refused in `[kafka.librdkafka]`.
const OWNED_SETTINGS: [(&str, &str); 7] = [
    ("enable.auto.commit", "offsets are committed after each checkpoint"),
    ("enable.auto.offset.store", "offsets are committed after each checkpoint"),
    ("group.id", "use kafka.group_id"),
    ("group.instance.id", "use kafka.group_instance_id"),
    ("bootstrap.servers", "use kafka.brokers"),
    ("metadata.broker.list", "use kafka.brokers"),
    ("auto.offset.reset", "use kafka.start"),
];

/// What `auth = "eventhubs"` and `auth = "sasl"` set: overriding it could send
/// the secret in clear text or to the wrong mechanism.
const AUTH_SETTINGS: [&str; 4] = ["security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username"];

/// What decides whether the brokers' certificate is trusted: refused where a
/// secret is sent (a private CA goes in `kafka.ca_file`).
const TLS_SETTINGS: [&str; 6] = [
    "enable.ssl.certificate.verification",
    "ssl.endpoint.identification.algorithm",
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.ca.certificate.stores",
    "https.ca.location",
];

/// Whether a librdkafka setting (lower-cased) carries a secret. Those are
/// refused in `[kafka.librdkafka]`, under any spelling, and never echoed.
fn is_secret_setting(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || matches!(key, "ssl.key.pem" | "ssl_key" | "sasl.oauthbearer.config" | "ssl.keystore.location")
}

/// librdkafka's own check of one raw setting: is it a property, and is the
/// value one it takes? The message names the key, never the value.
fn librdkafka_accepts(key: &str, value: &str) -> Result<(), String> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let mut c = rdkafka::ClientConfig::new();
    c.set(key, value);
    match c.create_native_config() {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..)) => {
            Err(format!("{key:?} is not a librdkafka setting (see librdkafka's CONFIGURATION.md)"))
        }
        // librdkafka quotes the value in its description: it is taken out.
        Err(KafkaError::ClientConfig(_, description, ..)) => {
            let description = if value.is_empty() { description } else { description.replace(value, "…") };
            Err(format!("{key:?}: librdkafka says: {description}"))
        }
        Err(e) => Err(format!("{key:?}: {}", e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail))),
    }
}

/// The app registration a Microsoft Entra token needs, for `what`: the
/// tenant, the client and exactly one credential; else the key to set and why.
fn app_registration(k: &KafkaConfig, what: &str) -> Result<(), (&'static str, String)> {
    for (key, value) in [("kafka.entra_tenant_id", &k.entra_tenant_id), ("kafka.entra_client_id", &k.entra_client_id)] {
        if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
            return Err((key, format!("required for {what} (see the app registration's overview)")));
        }
    }
    let secret = k.entra_client_secret_credential.is_some() || k.entra_client_secret_env.is_some();
    let certificate = k.entra_certificate_credential.is_some() || k.entra_certificate_env.is_some();
    if secret == certificate {
        return Err((
            "kafka.entra_client_secret_credential",
            format!(
                "name one credential for {what}: a client secret (entra_client_secret_credential / _env) or a certificate (entra_certificate_credential / _env)"
            ),
        ));
    }
    Ok(())
}

impl Config {
    /// Checks values serde cannot: each error names its key.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |key: &'static str, message: String| Err(ConfigError::Invalid { path: path.to_owned(), key, message });
        let k = &self.kafka;
        if k.topics.is_empty() || k.topics.iter().any(|t| t.trim().is_empty()) {
            return invalid("kafka.topics", "list at least one topic; names cannot be empty".into());
        }
        if k.group_id.trim().is_empty() {
            return invalid("kafka.group_id", "cannot be empty".into());
        }
        match k.auth {
            Auth::Eventhubs => {
                if k.eventhubs_namespace.as_deref().is_none_or(|n| n.trim().is_empty()) {
                    return invalid(
                        "kafka.eventhubs_namespace",
                        "set the namespace for auth = \"eventhubs\": the key is sent to that namespace only".into(),
                    );
                }
                if let Some(ns) = &k.eventhubs_namespace
                    && (ns.contains('.') || ns.contains(':'))
                {
                    return invalid(
                        "kafka.eventhubs_namespace",
                        format!("{ns:?}: give the namespace name only (\"contoso-logs\"), not a host name"),
                    );
                }
            }
            Auth::Entra => {
                if k.eventhubs_namespace.as_deref().is_none_or(|n| n.trim().is_empty() || n.contains('.')) {
                    return invalid(
                        "kafka.eventhubs_namespace",
                        "set the namespace name (\"contoso-logs\") for auth = \"entra\": it names the token's scope"
                            .into(),
                    );
                }
                if let Err((key, message)) = app_registration(k, "auth = \"entra\"") {
                    return invalid(key, message);
                }
            }
            Auth::Sasl => {
                let mechanism = k.sasl_mechanism.as_deref().unwrap_or("");
                if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism) {
                    return invalid(
                        "kafka.sasl_mechanism",
                        format!("{mechanism:?}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
                    );
                }
                if k.sasl_username.as_deref().is_none_or(str::is_empty) {
                    return invalid("kafka.sasl_username", "required for auth = \"sasl\"".into());
                }
                if k.sasl_password_env.as_deref().is_none_or(str::is_empty)
                    && k.sasl_password_credential.as_deref().is_none_or(str::is_empty)
                {
                    return invalid(
                        "kafka.sasl_password_credential",
                        "name the systemd credential (or the environment variable, sasl_password_env) holding the password"
                            .into(),
                    );
                }
            }
            Auth::None => {}
        }
        // Settings of one auth mode given under another say the file is not what its author thinks.
        let sasl_set = k.sasl_mechanism.is_some()
            || k.sasl_username.is_some()
            || k.sasl_password_env.is_some()
            || k.sasl_password_credential.is_some()
            || k.tls;
        let entra_set = k.entra_tenant_id.is_some()
            || k.entra_client_id.is_some()
            || k.entra_client_secret_credential.is_some()
            || k.entra_client_secret_env.is_some()
            || k.entra_certificate_credential.is_some()
            || k.entra_certificate_env.is_some()
            || k.entra_token_url.is_some()
            || k.entra_token_plain_http_loopback;
        if let Some(url) = &k.entra_token_url
            && let Err(e) =
                crate::outbound::check_secret_url("kafka.entra_token_url", url, true, k.entra_token_plain_http_loopback)
        {
            return invalid("kafka.entra_token_url", e);
        }
        if k.auth != Auth::Sasl && sasl_set {
            return invalid(
                "kafka.auth",
                format!("{:?} does not use sasl_* or tls (they are for auth = \"sasl\"): remove them", k.auth.as_str()),
            );
        }
        let graph = &self.directory.graph;
        if graph.enabled {
            let needs = "directory.graph (it reads Graph with the app registration of kafka.entra_*)";
            if let Err((key, message)) = app_registration(k, needs) {
                return invalid(key, message);
            }
            if let Err(e) = crate::outbound::check_secret_url(
                "directory.graph.url",
                &graph.url,
                true,
                k.entra_token_plain_http_loopback,
            ) {
                return invalid("directory.graph.url", e);
            }
            if graph.refresh < Duration::from_secs(1) {
                return invalid(
                    "directory.graph.refresh",
                    format!("{}: at least 1s (hours in production: \"6h\")", days_or_duration(graph.refresh)),
                );
            }
        }
        if k.auth != Auth::Entra && entra_set && !graph.enabled {
            return invalid(
                "kafka.auth",
                format!(
                    "{:?} does not use entra_* (they are for auth = \"entra\" and directory.graph): remove them",
                    k.auth.as_str()
                ),
            );
        }
        if !matches!(k.auth, Auth::Eventhubs | Auth::Entra) && k.brokers.as_deref().is_some_and(|b| b.trim().is_empty())
        {
            return invalid("kafka.brokers", "cannot be empty".into());
        }
        if k.prefetch_kbytes < 1024 {
            return invalid(
                "kafka.prefetch_kbytes",
                format!("{}: at least 1024 (a message can be 1 MB)", k.prefetch_kbytes),
            );
        }
        // A key or token goes to the namespace's own host, and nowhere else.
        if matches!(k.auth, Auth::Eventhubs | Auth::Entra)
            && let (Some(brokers), Some(ns)) = (&k.brokers, &k.eventhubs_namespace)
        {
            let host = format!("{}.servicebus.windows.net", ns.trim());
            let elsewhere = brokers.split(',').map(str::trim).find(|b| {
                let name = b.rsplit_once(':').map_or(*b, |(h, _)| h);
                !name.eq_ignore_ascii_case(&host)
            });
            if let Some(other) = elsewhere {
                return invalid(
                    "kafka.brokers",
                    format!(
                        "{other:?} is not the namespace's host: with auth = {:?} the secret is sent only to {host}:9093 (leave kafka.brokers out)",
                        k.auth.as_str()
                    ),
                );
            }
        }
        for (key, value) in &k.librdkafka {
            let normal = key.trim().to_ascii_lowercase();
            let secret_sent = matches!(k.auth, Auth::Eventhubs | Auth::Entra) || (k.auth == Auth::Sasl && k.tls);
            if secret_sent && TLS_SETTINGS.contains(&normal.as_str()) {
                return invalid(
                    "kafka.librdkafka",
                    format!(
                        "{key:?} would weaken the TLS that carries the secret (certificate verification, host name check, trusted CAs): not allowed; give a private CA with kafka.ca_file"
                    ),
                );
            }
            if is_secret_setting(&normal) {
                return invalid(
                    "kafka.librdkafka",
                    format!(
                        "{key:?} is a secret: pass it through the environment (`sasl_password_env`) or a systemd credential, not the config file"
                    ),
                );
            }
            if let Some((_, instead)) = OWNED_SETTINGS.iter().find(|(owned, _)| *owned == normal) {
                return invalid("kafka.librdkafka", format!("{key:?} is set by mfawatch: {instead}"));
            }
            let auth_sets = match k.auth {
                Auth::Eventhubs => Some("auth = \"eventhubs\" (SASL_SSL, PLAIN, $ConnectionString)"),
                Auth::Entra => Some("auth = \"entra\" (SASL_SSL, OAUTHBEARER)"),
                Auth::Sasl => Some("auth = \"sasl\": use kafka.tls, kafka.sasl_mechanism, kafka.sasl_username"),
                Auth::None => None,
            };
            if let Some(auth) = auth_sets.filter(|_| AUTH_SETTINGS.contains(&normal.as_str())) {
                return invalid("kafka.librdkafka", format!("{key:?} is set by {auth}"));
            }
            if let Err(message) = librdkafka_accepts(key, value) {
                return invalid("kafka.librdkafka", message);
            }
        }
        if self.classify.legacy_clients.iter().any(|c| c.trim().is_empty()) {
            return invalid("classify.legacy_clients", "entries cannot be empty".into());
        }
        let c = &self.coverage;
        if !c.window.as_secs().is_multiple_of(86_400) || c.window.as_secs() == 0 || c.window.as_secs() > 90 * 86_400 {
            return invalid(
                "coverage.window",
                format!("{}: use whole days from 1d to 90d", days_or_duration(c.window)),
            );
        }
        // Coverage keeps 32 days of registration failures per user.
        if c.registration_grace > Duration::from_secs(30 * 86_400) {
            return invalid(
                "coverage.registration_grace",
                format!("{}: at most 30d (security defaults give 14d)", days_or_duration(c.registration_grace)),
            );
        }
        if c.max_users == 0 {
            return invalid("coverage.max_users", "at least 1".into());
        }
        if !(4096..=900_000).contains(&self.dead_letter.max_bytes) {
            return invalid(
                "dead_letter.max_bytes",
                format!("{}: from 4096 to 900000 (a Kafka message is at most about 1 MB)", self.dead_letter.max_bytes),
            );
        }
        let a = &self.alerts;
        if a.rate_limit_per_minute == 0 {
            return invalid("alerts.rate_limit_per_minute", "at least 1".into());
        }
        if a.outbox_max < 100 {
            return invalid("alerts.outbox_max", format!("{}: at least 100", a.outbox_max));
        }
        if a.resolve_after < Duration::from_secs(60) {
            return invalid("alerts.resolve_after", "at least 1m".into());
        }
        let url_ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        if let Some(am) = &a.alertmanager
            && (am.urls.is_empty() || am.urls.len() > 6 || !am.urls.iter().all(|u| url_ok(u)))
        {
            return invalid(
                "alerts.alertmanager.urls",
                "list 1 to 6 Alertmanager URLs, each http:// or https://".into(),
            );
        }
        if let Some(w) = &a.webhook {
            let named = [w.url.is_some(), w.url_credential.is_some() || w.url_env.is_some()];
            if named.iter().filter(|&&n| n).count() != 1 {
                return invalid(
                    "alerts.webhook.url",
                    "give the URL once: url, or (when the URL is a secret) url_credential / url_env".into(),
                );
            }
            if let Some(url) = &w.url {
                let token = w.token_credential.is_some() || w.token_env.is_some();
                if let Err(e) =
                    crate::outbound::check_secret_url("alerts.webhook.url", url, token, w.plain_http_loopback)
                {
                    return invalid("alerts.webhook.url", e);
                }
            }
        }
        if let Some(api) = &a.api_url
            && !url_ok(api)
        {
            return invalid("alerts.api_url", format!("{api:?}: an http:// or https:// URL"));
        }
        let f = &a.rules.mfa_fatigue;
        if f.failures < 2
            || f.window < Duration::from_secs(60)
            || f.window > Duration::from_secs(6 * 3600)
            || f.reorder_tolerance > Duration::from_secs(24 * 3600)
        {
            return invalid(
                "alerts.rules.mfa_fatigue",
                "failures at least 2, window from 1m to 6h, reorder_tolerance at most 24h (defaults 3, 10m, 1h)".into(),
            );
        }
        let legacy = &a.rules.legacy_auth_success;
        if !(Duration::from_secs(3600)..=Duration::from_secs(90 * 86_400)).contains(&legacy.lookback) {
            return invalid(
                "alerts.rules.legacy_auth_success.lookback",
                format!("{}: from 1h to 90d (default 7d)", days_or_duration(legacy.lookback)),
            );
        }
        let storm = &a.rules.mfa_denial_storm;
        // The prompts are counted over the sign-ins mfa_fatigue keeps per user (at most 64).
        if !(2..=50).contains(&storm.failures)
            || storm.window < Duration::from_secs(60)
            || storm.window > Duration::from_secs(6 * 3600)
        {
            return invalid(
                "alerts.rules.mfa_denial_storm",
                "failures from 2 to 50, window from 1m to 6h (defaults 10, 10m)".into(),
            );
        }
        let spray = &a.rules.legacy_auth_attempt;
        if spray.min_attempts == 0 {
            return invalid("alerts.rules.legacy_auth_attempt.min_attempts", "at least 1".into());
        }
        if !(16..=128).contains(&spray.ipv6_prefix) {
            return invalid(
                "alerts.rules.legacy_auth_attempt.ipv6_prefix",
                format!("{}: from 16 to 128", spray.ipv6_prefix),
            );
        }
        if spray.max_sources < 1000 {
            return invalid(
                "alerts.rules.legacy_auth_attempt.max_sources",
                format!("{}: at least 1000", spray.max_sources),
            );
        }
        if !(1..=3650).contains(&self.history.retention_days) {
            return invalid("history.retention_days", format!("{}: from 1 to 3650", self.history.retention_days));
        }
        if self.checkpoint.interval < Duration::from_millis(100) {
            return invalid("checkpoint.interval", "at least 100ms".into());
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid("http.listen", format!("{:?}: use ip:port, e.g. 127.0.0.1:9464", self.http.listen));
        }
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            return invalid("http.tls_cert", "set both http.tls_cert and http.tls_key, or neither".into());
        }
        let h = &self.http;
        if h.metrics_require_token
            && h.api_token_credential.is_none()
            && h.api_token_env.is_none()
            && h.api_token_file.is_none()
        {
            return invalid(
                "http.metrics_require_token",
                "needs API tokens (http.api_token_credential, _env or _file): the token Prometheus sends is one of them".into(),
            );
        }
        if self.http.max_connections == 0 || self.http.request_timeout < Duration::from_secs(1) {
            return invalid(
                "http.max_connections",
                "at least 1 connection and a request_timeout of at least 1s".into(),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return invalid("log.level", format!("{:?}: {e}", self.log.level));
        }
        // A bare word that is not a level is read as a target name and silences
        // everything else ("verbose"): say so instead.
        const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
        if let Some(word) = self
            .log
            .level
            .split(',')
            .map(str::trim)
            .find(|d| !d.is_empty() && !d.contains('=') && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(d)))
        {
            return invalid(
                "log.level",
                format!(
                    "{word:?} is not a level: use error, warn, info, debug or trace, or target=level (mfawatch=debug)"
                ),
            );
        }
        Ok(())
    }
}
