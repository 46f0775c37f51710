//! kafka: how mfawatch talks to Kafka and Event Hubs as a client — the
//! settings shared by the consumer (`source::kafka`) and the dead-letter
//! producer (`deadletter`), Event Hubs connection strings, SASL, and
//! OAUTHBEARER tokens from Microsoft Entra ([`entra`]).
//!
//! Secrets (the connection string, SASL passwords, the Entra client secret
//! or certificate) come from a systemd credential or the environment, go
//! straight into librdkafka's configuration (or the token request) and are
//! never logged, printed or put in an error. Knows no stage: it is used by a
//! source and a sink alike, and by `check-config`.

pub mod entra;

use std::sync::Arc;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;

use crate::config::{Auth, Config};
use crate::events::{EntraTokenFailed, Events};
use crate::secrets::{Secret, read_credential};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no Event Hubs connection string: systemd credential {name:?} is not available ({reason}) and environment variable {env} is not set (run under systemd with LoadCredential=, or export {env})"
    )]
    Credential { name: String, reason: String, env: String },
    #[error("environment variable {0} is not set: it must hold the Event Hubs connection string")]
    MissingEnv(String),
    #[error(
        "the Event Hubs connection string from {0} does not look like one (expected \"Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...\")"
    )]
    NotAConnectionString(String),
    #[error(
        "the Event Hubs connection string from {0} is scoped to one hub (it has an EntityPath): it cannot read the other hubs; use a shared access policy of the namespace (Listen) instead"
    )]
    HubScoped(String),
    #[error(
        "the Event Hubs connection string from {from} is for namespace {endpoint:?}, but kafka.eventhubs_namespace is {configured:?}"
    )]
    OtherNamespace { from: String, endpoint: String, configured: String },
    #[error("no SASL password: {0}")]
    MissingPassword(String),
    #[error("cannot create the Kafka client: {}", redacted(.0))]
    Client(KafkaError),
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe { topics: Vec<String>, source: KafkaError },
}

/// The Event Hubs connection string, from the systemd credential or the environment.
pub fn eventhubs_connection_string(config: &Config) -> Result<Secret, ClientError> {
    connection_string_from(config, read_credential, |name| std::env::var(name).ok())
}

/// [`eventhubs_connection_string`] with where credentials and variables come from.
fn connection_string_from(
    config: &Config,
    read_credential: impl Fn(&str) -> Result<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Secret, ClientError> {
    let k = &config.kafka;
    let from_env = || {
        env(&k.connection_string_env).map(|text| (text, format!("environment variable {}", k.connection_string_env)))
    };
    // The systemd credential first; failing that, the environment variable.
    let (value, from) = match &k.connection_string_credential {
        Some(name) => match read_credential(name) {
            Ok(text) => (text, format!("systemd credential {name:?}")),
            Err(reason) => from_env().ok_or_else(|| ClientError::Credential {
                name: name.clone(),
                reason,
                env: k.connection_string_env.clone(),
            })?,
        },
        None => from_env().ok_or_else(|| ClientError::MissingEnv(k.connection_string_env.clone()))?,
    };
    let value = value.trim().to_owned();
    check_connection_string(&value, k.eventhubs_namespace.as_deref(), &from)?;
    Ok(Secret::new(value))
}

/// A connection string mfawatch can use: the three parts a shared access
/// policy gives, for the configured namespace, and namespace-wide (a key
/// scoped to one hub cannot read the other three). Errors never quote it.
fn check_connection_string(value: &str, namespace: Option<&str>, from: &str) -> Result<(), ClientError> {
    let parts: Vec<(&str, &str)> = value
        .split(';')
        .filter(|p| !p.trim().is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let get = |key: &str| parts.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| *v);
    let (Some(endpoint), Some(_), Some(_)) = (get("Endpoint"), get("SharedAccessKeyName"), get("SharedAccessKey"))
    else {
        return Err(ClientError::NotAConnectionString(from.to_owned()));
    };
    if get("EntityPath").is_some() {
        return Err(ClientError::HubScoped(from.to_owned()));
    }
    let host = endpoint.trim_start_matches("sb://").split(['/', ':']).next().unwrap_or("");
    let endpoint_namespace = host.split('.').next().unwrap_or("");
    if let Some(ns) = namespace
        && !endpoint_namespace.eq_ignore_ascii_case(ns.trim())
    {
        return Err(ClientError::OtherNamespace {
            from: from.to_owned(),
            endpoint: endpoint_namespace.to_owned(),
            configured: ns.to_owned(),
        });
    }
    Ok(())
}

/// A librdkafka error as text, without the value of a setting it names
/// (librdkafka puts values in its configuration errors, and a value can be
/// a secret).
pub fn redacted(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, _, key, _) => format!("librdkafka refuses the setting {key:?}"),
        e => e.to_string(),
    }
}

/// Settings shared by the consumer and the dead-letter producer.
pub fn client_config(config: &Config) -> Result<ClientConfig, ClientError> {
    let k = &config.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.brokers());
    c.set("client.id", concat!("mfawatch/", env!("CARGO_PKG_VERSION")));
    c.set("socket.keepalive.enable", "true");
    match k.auth {
        Auth::None => {}
        Auth::Eventhubs | Auth::Entra => {
            c.set("security.protocol", "SASL_SSL");
            if k.auth == Auth::Eventhubs {
                let secret = eventhubs_connection_string(config)?;
                c.set("sasl.mechanisms", "PLAIN");
                c.set("sasl.username", "$ConnectionString");
                c.set("sasl.password", secret.expose());
            } else {
                // The token comes from the client context (`generate_oauth_token`).
                c.set("sasl.mechanisms", "OAUTHBEARER");
            }
            // Microsoft's recommended client settings for Event Hubs: the
            // service closes connections idle for 240 s.
            c.set("metadata.max.age.ms", "180000");
            c.set("connections.max.idle.ms", "180000");
            c.set("socket.timeout.ms", "60000");
        }
        Auth::Sasl => {
            let password = crate::secrets::read(k.sasl_password_credential.as_deref(), k.sasl_password_env.as_deref())
                .map_err(ClientError::MissingPassword)?;
            let password = password.expose().to_owned();
            c.set("security.protocol", if k.tls { "SASL_SSL" } else { "SASL_PLAINTEXT" });
            c.set("sasl.mechanisms", k.sasl_mechanism.clone().unwrap_or_default());
            c.set("sasl.username", k.sasl_username.clone().unwrap_or_default());
            c.set("sasl.password", password);
        }
    }
    if let Some(ca) = &k.ca_file {
        c.set("ssl.ca.location", ca.to_string_lossy());
    }
    Ok(c)
}

fn apply_overrides(c: &mut ClientConfig, config: &Config) {
    for (key, value) in &config.kafka.librdkafka {
        c.set(key, value);
    }
}

/// The consumer's settings: manual offsets, bounded prefetch, statistics.
pub fn consumer_config(config: &Config) -> Result<ClientConfig, ClientError> {
    let k = &config.kafka;
    let mut c = client_config(config)?;
    c.set("group.id", &k.group_id);
    if let Some(id) = config.group_instance_id() {
        c.set("group.instance.id", id);
    }
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    // Never jump silently: a fetch at an offset that is gone (retention ran
    // out during a backlog) is an error the loop handles — it counts the
    // messages lost and resumes at the log start (see `resume_after_reset`).
    // Where a partition starts when it is new is decided in `place`.
    c.set("auto.offset.reset", "error");
    c.set("session.timeout.ms", "30000");
    c.set("heartbeat.interval.ms", "3000");
    c.set("max.poll.interval.ms", "300000");
    // Prefetch: bounded so that a group 7 days behind does not fill memory.
    c.set("queued.max.messages.kbytes", k.prefetch_kbytes.to_string());
    c.set("queued.min.messages", "1000");
    // How long a broker may hold a fetch when it has nothing new: the wait a
    // sign-in can sit at the broker before it is read (librdkafka's default
    // of 500 ms was most of what mfawatch added to the broker's latency;
    // `bench latency`). An idle partition costs ten fetches a second.
    c.set("fetch.wait.max.ms", "100");
    c.set("fetch.max.bytes", (k.prefetch_kbytes.min(64 * 1024) as u64 * 1024 / 4).max(1 << 20).to_string());
    c.set("statistics.interval.ms", "5000");
    c.set_log_level(RDKafkaLogLevel::Info);
    apply_overrides(&mut c, config);
    Ok(c)
}

/// The dead-letter producer's settings.
pub fn producer_config(config: &Config) -> Result<ClientConfig, ClientError> {
    let mut c = client_config(config)?;
    c.set("request.timeout.ms", "60000");
    c.set("message.timeout.ms", "300000");
    c.set("compression.codec", "none");
    apply_overrides(&mut c, config);
    Ok(c)
}

/// Where an OAUTHBEARER token comes from (`auth = "entra"`), for a client context.
pub fn token_source(config: &Config) -> anyhow::Result<Option<Arc<entra::TokenSource>>> {
    match config.kafka.auth {
        Auth::Entra => Ok(Some(Arc::new(entra::TokenSource::from_config(config)?))),
        _ => Ok(None),
    }
}

/// A token for librdkafka, or why there is none (logged once a minute).
pub fn oauth_token(
    tokens: Option<&entra::TokenSource>,
    events: &Events,
) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
    let Some(tokens) = tokens else {
        return Err("OAUTHBEARER needs kafka.auth = \"entra\"".into());
    };
    tokens.token().map_err(|e| {
        events.emit(EntraTokenFailed(&e));
        e.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eventhubs(credential: bool) -> Config {
        let credential = if credential { "connection_string_credential = \"cs\"\n" } else { "" };
        let text = format!(
            "[kafka]\nauth = \"eventhubs\"\neventhubs_namespace = \"contoso\"\n{credential}connection_string_env = \"CS\"\n"
        );
        Config::parse(&text, std::path::Path::new("test.toml")).unwrap()
    }

    const GOOD: &str =
        "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0";

    #[test]
    fn the_connection_string_comes_from_the_credential_failing_that_the_environment() {
        let credential = |text: Option<&'static str>| {
            move |_: &str| text.map(str::to_owned).ok_or("CREDENTIALS_DIRECTORY is not set".to_owned())
        };
        let env = |text: Option<&'static str>| move |_: &str| text.map(str::to_owned);
        let got = |config: &Config, c, e| {
            connection_string_from(config, credential(c), env(e)).map(|s| s.expose().to_owned())
        };
        assert_eq!(got(&eventhubs(true), Some(GOOD), Some("other")).unwrap(), GOOD);
        assert_eq!(got(&eventhubs(true), None, Some(GOOD)).unwrap(), GOOD);
        assert_eq!(got(&eventhubs(false), Some("unused"), Some(GOOD)).unwrap(), GOOD);
        let both_missing = got(&eventhubs(true), None, None).unwrap_err().to_string();
        assert!(both_missing.contains("\"cs\"") && both_missing.contains("CS"), "{both_missing}");
        let not_one = got(&eventhubs(false), None, Some("hunter2")).unwrap_err().to_string();
        assert!(not_one.contains("does not look like one") && !not_one.contains("hunter2"), "{not_one}");
    }
}
