//! config: the TOML configuration, its defaults and its validation.
//!
//! Every field's doc comment is its user documentation; the annotated
//! examples in `config/` follow it. Defaults are named functions in one place.
//! Unknown keys are errors (serde's `deny_unknown_fields` names the key and
//! lists what is allowed); [`Config::validate`] checks values and names the
//! key of each problem. Secrets never live here: the config names the
//! environment variable or systemd credential that holds them.
//!
//! `validate.rs` holds the value checks. Config is read by every stage and
//! imports none: nothing here may call into a source, a sink or the pipeline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::classify::{RiskLevel, Rules};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub classify: ClassifyConfig,
    pub coverage: CoverageConfig,
    pub directory: DirectoryConfig,
    pub checkpoint: CheckpointConfig,
    pub dead_letter: DeadLetterConfig,
    pub alerts: AlertsConfig,
    pub history: HistoryConfig,
    pub privacy: PrivacyConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
}

/// Where sign-ins are read from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// How to connect: `none` (plaintext Kafka), `eventhubs` (Azure Event Hubs
    /// Kafka endpoint: SASL_SSL, PLAIN, `$ConnectionString`), `entra` (Event
    /// Hubs with a Microsoft Entra service principal: SASL_SSL, OAUTHBEARER,
    /// for namespaces without shared access keys), or `sasl` (generic SASL,
    /// see `sasl_mechanism`).
    pub auth: Auth,
    /// Bootstrap servers, `host:port[,host:port]`. With `auth = "eventhubs"` it
    /// defaults to `<eventhubs_namespace>.servicebus.windows.net:9093`.
    pub brokers: Option<String>,
    /// Event Hubs namespace name (`contoso-logs` for contoso-logs.servicebus.windows.net).
    pub eventhubs_namespace: Option<String>,
    /// Environment variable holding the Event Hubs connection string (auth = "eventhubs").
    pub connection_string_env: String,
    /// systemd credential holding the connection string (`LoadCredential=`), read
    /// from `$CREDENTIALS_DIRECTORY/<name>`. Preferred over the environment when set.
    pub connection_string_credential: Option<String>,
    /// Topics (event hubs) to read. Entra's default hub names are
    /// `insights-logs-signinlogs`, `insights-logs-noninteractiveusersigninlogs`,
    /// `insights-logs-serviceprincipalsigninlogs`, `insights-logs-managedidentitysigninlogs`.
    pub topics: Vec<String>,
    /// Consumer group. For Event Hubs, create it on the hub first (or use `$Default`).
    pub group_id: String,
    /// Static group membership (`group.instance.id`): a restarted daemon takes
    /// its partitions back at once instead of waiting out the session timeout
    /// of its previous life. Default `mfawatch@<hostname>`; give each instance
    /// of a group its own; `""` turns static membership off.
    pub group_instance_id: Option<String>,
    /// Where a partition the state has never read starts: `earliest` (all the
    /// hub still holds: 1–7 days on Event Hubs Standard) or `latest` (only
    /// what arrives from now on). The snapshot is the only authority on
    /// offsets: a group's committed offsets are never used to resume.
    pub start: StartPosition,
    /// Several daemons share `group_id` on purpose, each holding some of the
    /// partitions (each then sees only part of the sign-ins: its coverage is
    /// partial). Off: holding fewer than all partitions makes the daemon not
    /// ready, since two daemons "for HA" in one group would each report half.
    pub shared_group: bool,
    /// SASL mechanism for `auth = "sasl"`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    /// SASL user name for `auth = "sasl"`.
    pub sasl_username: Option<String>,
    /// systemd credential holding the SASL password for `auth = "sasl"`
    /// (preferred over the environment when set).
    pub sasl_password_credential: Option<String>,
    /// Environment variable holding the SASL password for `auth = "sasl"`.
    pub sasl_password_env: Option<String>,
    /// Use TLS with `auth = "sasl"` (SASL_SSL instead of SASL_PLAINTEXT).
    pub tls: bool,
    /// `auth = "entra"`: the directory (tenant) id of the service principal.
    pub entra_tenant_id: Option<String>,
    /// `auth = "entra"`: the application (client) id of the service principal.
    pub entra_client_id: Option<String>,
    /// systemd credential holding the client secret.
    pub entra_client_secret_credential: Option<String>,
    /// Environment variable holding the client secret.
    pub entra_client_secret_env: Option<String>,
    /// systemd credential holding a client certificate and its PKCS#8 key
    /// (PEM), instead of a secret.
    pub entra_certificate_credential: Option<String>,
    /// Environment variable holding the certificate and key (PEM).
    pub entra_certificate_env: Option<String>,
    /// Token endpoint; default `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`
    /// (set it for a national cloud).
    pub entra_token_url: Option<String>,
    /// The token endpoint gets the client secret (or a signed assertion):
    /// https only; `true` allows plain http to a loopback address (a test endpoint).
    pub entra_token_plain_http_loopback: bool,
    /// CA bundle for TLS (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// Upper bound on prefetched data held by the consumer, in KiB
    /// (librdkafka `queued.max.messages.kbytes`). Bounds memory when far behind.
    pub prefetch_kbytes: u32,
    /// Raw librdkafka settings applied last, e.g. `{ "fetch.wait.max.ms" = "200" }`.
    /// Secrets are refused here: use the `*_env` settings.
    pub librdkafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    None,
    Eventhubs,
    Entra,
    Sasl,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Eventhubs => "eventhubs",
            Auth::Entra => "entra",
            Auth::Sasl => "sasl",
        }
    }

    /// What the connection to the brokers is, for people.
    pub fn security(self, tls: bool) -> &'static str {
        match self {
            Auth::None => "PLAINTEXT (no TLS, no authentication)",
            Auth::Eventhubs => "SASL_SSL, PLAIN with the $ConnectionString",
            Auth::Entra => "SASL_SSL, OAUTHBEARER with a Microsoft Entra service principal",
            Auth::Sasl if tls => "SASL_SSL",
            Auth::Sasl => "SASL_PLAINTEXT (no TLS)",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    Earliest,
    Latest,
}

impl StartPosition {
    pub fn as_str(self) -> &'static str {
        match self {
            StartPosition::Earliest => "earliest",
            StartPosition::Latest => "latest",
        }
    }
}

/// How sign-ins are labelled (SIGNIN-SEMANTICS §4).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyConfig {
    /// `clientAppUsed` values counted as legacy authentication (case-insensitive).
    pub legacy_clients: Vec<String>,
    /// Lowest Identity Protection risk level that makes a sign-in risky: `low`, `medium` or `high`.
    #[serde(deserialize_with = "threshold")]
    pub risk_threshold: RiskLevel,
}

/// A risk threshold: only the levels that can be one.
fn threshold<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RiskLevel, D::Error> {
    let text = String::deserialize(d)?;
    match RiskLevel::parse(Some(&text)) {
        Some(level @ (RiskLevel::Low | RiskLevel::Medium | RiskLevel::High)) => Ok(level),
        _ => Err(serde::de::Error::custom(format!("{text:?}: use low, medium or high"))),
    }
}

/// Per-user MFA coverage (SIGNIN-SEMANTICS §6).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CoverageConfig {
    /// Rolling window, in whole days (`"7d"`). Event time decides the window.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Count successful non-interactive user sign-ins too (as the Entra "MFA gaps" workbook can).
    pub count_non_interactive: bool,
    /// How long a user may stay registration_pending before being overdue.
    #[serde(with = "humantime_serde")]
    pub registration_grace: Duration,
    /// Privileged accounts (admins): UPNs or object ids.
    pub privileged: Vec<String>,
    /// A file with more privileged UPNs / object ids, one per line (`#` comments).
    /// Re-read on SIGHUP.
    pub privileged_file: Option<PathBuf>,
    /// Excluded (break-glass) accounts: never counted as uncovered; every sign-in is reported.
    pub excluded: Vec<String>,
    /// At most this many users are tracked (about 200 bytes each); sign-ins
    /// of new users past it are counted (`mfawatch_users_refused_total`) but
    /// not tracked. A last line of defence: failed sign-ins of accounts that
    /// do not exist never create users anyway.
    pub max_users: u64,
}

/// The delivery guarantee: state snapshots and offset commits.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Directory for the state snapshot (and nothing else). Must be writable.
    pub dir: PathBuf,
    /// How often to checkpoint: make sinks durable, write the snapshot, commit offsets.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

/// Where malformed records go.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// Append dead letters to this file (one JSON line each).
    pub file: Option<PathBuf>,
    /// Produce dead letters to this Kafka topic on the source cluster. It is
    /// checked at start (it must exist and take a probe message, marked
    /// `reason: "probe"`); with Event Hubs the credential needs Send rights.
    pub topic: Option<String>,
    /// Largest dead letter, in bytes: a larger record keeps only its
    /// beginning (with its full length and SHA-256), so that a dead letter
    /// always fits the topic's message size (1 MB on Event Hubs).
    pub max_bytes: u32,
}

/// The default `dead_letter.max_bytes`: well under the 1 MB that Event Hubs
/// and librdkafka take by default.
pub const DEAD_LETTER_MAX_BYTES: u32 = 512 * 1024;

/// Alerts that name the user, made by the daemon per sign-in (README "Alerts").
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Make alerts at all (they are listed at /api/v1/alerts even with no receiver).
    pub enabled: bool,
    /// Sign-ins older than this (event time against now) update the rules'
    /// state but do not page; counted as suppressed with reason `stale`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// At most this many alerts per rule per minute are sent; the rest are
    /// counted and summarised in one alert (a password spray must not flood a pager).
    pub rate_limit_per_minute: u32,
    /// Alerts waiting for a receiver are kept up to this many (in the
    /// snapshot too); past it new alerts are counted as suppressed (`outbox_full`).
    pub outbox_max: u32,
    /// An event alert resolves by itself this long after it was sent
    /// (Alertmanager `endsAt`); a break-glass sign-in fires at least 7 days
    /// (silence it once confirmed).
    #[serde(with = "humantime_serde")]
    pub resolve_after: Duration,
    /// The address at which people reach this daemon's API, for the links in
    /// alerts (`generatorURL`), the rules and the dashboard
    /// (`mfawatch_api_info`). Default: `http(s)://<http.listen>`.
    pub api_url: Option<String>,
    /// Prometheus Alertmanager (API v2).
    pub alertmanager: Option<AlertmanagerConfig>,
    /// A generic JSON webhook.
    pub webhook: Option<WebhookConfig>,
    /// JSON lines appended to a file (for a SIEM forwarder).
    pub log_file: Option<PathBuf>,
    pub rules: AlertRulesConfig,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagerConfig {
    /// Every Alertmanager of an HA pair (`http://am1:9093`); each gets every alert.
    pub urls: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where alerts are POSTed as JSON. A URL that is itself a secret (a
    /// Slack-style path) belongs in a credential instead: `url_credential`
    /// or `url_env`. It is never logged or printed whole.
    pub url: Option<String>,
    /// systemd credential holding the URL.
    pub url_credential: Option<String>,
    /// Environment variable holding the URL.
    pub url_env: Option<String>,
    /// systemd credential holding the bearer token (preferred when set).
    pub token_credential: Option<String>,
    /// Environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// A token or secret URL goes over https only; `true` lets it go over
    /// plain http to a loopback address (a test receiver on this host).
    pub plain_http_loopback: bool,
}

/// One rule's switch and tuning.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// One alert per user per this much event time; repeats inside it add to
    /// the alert's count. `0s`: every sign-in alerts. Left out, the rule's
    /// own default ([`AlertRulesConfig::fill_cooldowns`]).
    #[serde(default = "cooldown_unset", with = "humantime_serde")]
    pub cooldown: Duration,
}

fn yes() -> bool {
    true
}

/// A rule's table written without `cooldown`, until the rule's default fills it.
const COOLDOWN_UNSET: Duration = Duration::MAX;

fn cooldown_unset() -> Duration {
    COOLDOWN_UNSET
}

fn rule(enabled: bool, cooldown_secs: u64) -> AlertRuleConfig {
    AlertRuleConfig { enabled, cooldown: Duration::from_secs(cooldown_secs) }
}

/// `legacy_auth_success`: a successful legacy-auth sign-in, every one (per
/// cooldown) or only a protocol new to the user (`mode = "first_seen"`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LegacyRuleConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `every`: one alert per user per `cooldown`. `first_seen`: one per
    /// sign-in with a protocol the user has not used successfully in the
    /// `lookback` before it (the cooldown does not apply).
    #[serde(default)]
    pub mode: LegacyMode,
    /// As in every rule (required, as in every rule); `every` mode only.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// `first_seen` mode: how far back a use of the protocol makes it not new.
    #[serde(with = "humantime_serde", default = "seven_days")]
    pub lookback: Duration,
}

/// `alerts.rules.legacy_auth_success.mode`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LegacyMode {
    #[default]
    Every,
    FirstSeen,
}

fn seven_days() -> Duration {
    Duration::from_secs(7 * 86_400)
}

impl Default for LegacyRuleConfig {
    fn default() -> Self {
        LegacyRuleConfig {
            enabled: true,
            mode: LegacyMode::Every,
            cooldown: Duration::from_secs(3600),
            lookback: seven_days(),
        }
    }
}

/// `mfa_fatigue`: MFA prompts denied or left unanswered, then a success.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FatigueRuleConfig {
    pub enabled: bool,
    /// At least this many MFA denials or unanswered prompts...
    pub failures: u32,
    /// ...within this long, followed by a successful sign-in within this long of the last one.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How far behind the newest sign-in seen (event time) a prompt or
    /// success may arrive and still be matched: partitions are read at
    /// different paces. Interactive sign-ins of this long are kept.
    #[serde(with = "humantime_serde")]
    pub reorder_tolerance: Duration,
}

/// `mfa_denial_storm`: MFA prompts denied or left unanswered, many, with no
/// success yet: the attack in progress, before `mfa_fatigue` pages on the success.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StormRuleConfig {
    pub enabled: bool,
    /// At least this many MFA denials or unanswered prompts for one user...
    pub failures: u32,
    /// ...within this long, with no successful sign-in of theirs after the first of them.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// One alert per user per this much event time (a storm goes on: its
    /// further prompts add to the alert's count).
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for StormRuleConfig {
    fn default() -> Self {
        StormRuleConfig {
            enabled: true,
            failures: 10,
            window: Duration::from_secs(600),
            cooldown: Duration::from_secs(3600),
        }
    }
}

/// `legacy_auth_attempt`: failed legacy sign-ins, per source network per hour.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttemptRuleConfig {
    pub enabled: bool,
    /// Alert once a source reaches this many failed legacy sign-ins in an hour (UTC, event time).
    pub min_attempts: u32,
    /// IPv6 addresses count together per prefix of this many bits (an
    /// attacker rotates through a /64 for free); IPv4 addresses one by one.
    pub ipv6_prefix: u8,
    /// At most this many (source, hour) entries are kept; past it the
    /// oldest are forgotten (counted in `mfawatch_spray_sources_evicted_total`).
    pub max_sources: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRulesConfig {
    pub legacy_auth_success: LegacyRuleConfig,
    pub privileged_single_factor: AlertRuleConfig,
    pub risky_without_mfa: AlertRuleConfig,
    pub risky_with_mfa: AlertRuleConfig,
    pub break_glass_signin: AlertRuleConfig,
    pub registration_overdue: AlertRuleConfig,
    pub mfa_fatigue: FatigueRuleConfig,
    pub legacy_auth_attempt: AttemptRuleConfig,
    pub privileged_not_covered: AlertRuleConfig,
    pub privileged_methods_changed: MethodsRuleConfig,
    pub break_glass_role_change: AlertRuleConfig,
    pub per_user_mfa_disabled: AlertRuleConfig,
    pub mfa_policy_weakened: AlertRuleConfig,
    pub mfa_enforcement_lost: AlertRuleConfig,
    pub break_glass_protection_change: AlertRuleConfig,
    pub risky_user_unremediated: UnremediatedRuleConfig,
    pub mfa_denial_storm: StormRuleConfig,
    /// `ropc_signin`: a successful sign-in over the resource-owner password
    /// flow without MFA, legacy client or modern.
    pub ropc_signin: AlertRuleConfig,
}

/// `risky_user_unremediated`: a user Identity Protection holds at high
/// risk (at risk or confirmed compromised, neither remediated nor
/// dismissed) for `after` or longer signs in successfully.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UnremediatedRuleConfig {
    pub enabled: bool,
    /// How long a user may stay at high risk before a successful sign-in alerts.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// One alert per user per this long (event time).
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for UnremediatedRuleConfig {
    fn default() -> Self {
        UnremediatedRuleConfig {
            enabled: true,
            after: Duration::from_secs(24 * 3600),
            cooldown: Duration::from_secs(24 * 3600),
        }
    }
}

/// `privileged_methods_changed`: a privileged account's authentication
/// methods registered, deleted or replaced; critical when a successful
/// sign-in from an address not seen for the account before follows.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MethodsRuleConfig {
    pub enabled: bool,
    /// A sign-in from a new address this soon after the change makes it critical.
    #[serde(with = "humantime_serde")]
    pub new_ip_within: Duration,
    /// The addresses a privileged account was seen using over this long before a change are not new.
    #[serde(with = "humantime_serde")]
    pub ip_history: Duration,
}

impl Default for MethodsRuleConfig {
    fn default() -> Self {
        MethodsRuleConfig {
            enabled: true,
            new_ip_within: Duration::from_secs(3600),
            ip_history: Duration::from_secs(30 * 86_400),
        }
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            max_age: Duration::from_secs(24 * 3600),
            rate_limit_per_minute: 100,
            outbox_max: 100_000,
            resolve_after: Duration::from_secs(3600),
            api_url: None,
            alertmanager: None,
            webhook: None,
            log_file: None,
            rules: AlertRulesConfig::default(),
        }
    }
}

impl Default for AlertRulesConfig {
    fn default() -> Self {
        AlertRulesConfig {
            legacy_auth_success: LegacyRuleConfig::default(),
            privileged_single_factor: rule(true, 3600),
            risky_without_mfa: rule(true, 3600),
            risky_with_mfa: rule(false, 3600),
            break_glass_signin: rule(true, 0),
            registration_overdue: rule(true, 0),
            mfa_fatigue: FatigueRuleConfig::default(),
            legacy_auth_attempt: AttemptRuleConfig::default(),
            privileged_not_covered: rule(true, 0),
            privileged_methods_changed: MethodsRuleConfig::default(),
            break_glass_role_change: rule(true, 0),
            per_user_mfa_disabled: rule(true, 0),
            mfa_policy_weakened: rule(true, 0),
            mfa_enforcement_lost: rule(true, 0),
            break_glass_protection_change: rule(true, 0),
            risky_user_unremediated: UnremediatedRuleConfig::default(),
            mfa_denial_storm: StormRuleConfig::default(),
            ropc_signin: rule(true, 3600),
        }
    }
}

impl AlertRulesConfig {
    /// Gives each rule written without a `cooldown` its own default.
    fn fill_cooldowns(&mut self) {
        let defaults = AlertRulesConfig::default();
        for (rule, default) in [
            (&mut self.privileged_single_factor, &defaults.privileged_single_factor),
            (&mut self.risky_without_mfa, &defaults.risky_without_mfa),
            (&mut self.risky_with_mfa, &defaults.risky_with_mfa),
            (&mut self.break_glass_signin, &defaults.break_glass_signin),
            (&mut self.registration_overdue, &defaults.registration_overdue),
            (&mut self.privileged_not_covered, &defaults.privileged_not_covered),
            (&mut self.break_glass_role_change, &defaults.break_glass_role_change),
            (&mut self.per_user_mfa_disabled, &defaults.per_user_mfa_disabled),
            (&mut self.mfa_policy_weakened, &defaults.mfa_policy_weakened),
            (&mut self.mfa_enforcement_lost, &defaults.mfa_enforcement_lost),
            (&mut self.break_glass_protection_change, &defaults.break_glass_protection_change),
            (&mut self.ropc_signin, &defaults.ropc_signin),
        ] {
            if rule.cooldown == COOLDOWN_UNSET {
                rule.cooldown = default.cooldown;
            }
        }
    }
}

impl Default for FatigueRuleConfig {
    fn default() -> Self {
        FatigueRuleConfig {
            enabled: true,
            failures: 3,
            window: Duration::from_secs(600),
            reorder_tolerance: Duration::from_secs(3600),
        }
    }
}

impl Default for AttemptRuleConfig {
    fn default() -> Self {
        AttemptRuleConfig { enabled: false, min_attempts: 10, ipv6_prefix: 64, max_sources: 100_000 }
    }
}

/// One Parquet row per sign-in, for the weekly report and any engine that
/// reads Parquet (README "History").
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Keep the history (about 100 bytes per sign-in on disk).
    pub enabled: bool,
    /// Where: `date=YYYY-MM-DD/` folders of Parquet files. Default:
    /// `history` under `checkpoint.dir`.
    pub dir: Option<PathBuf>,
    /// Days of history kept (by event date); older folders are deleted.
    pub retention_days: u32,
    /// A day's many small files (one per checkpoint) are merged into one
    /// once every partition being read has moved this far past the day's end
    /// (sign-ins arrive hours late); a file for later stragglers is merged in
    /// the next time.
    #[serde(with = "humantime_serde")]
    pub compact_after: Duration,
}

impl HistoryConfig {
    /// The history folder, `dir` or `<checkpoint.dir>/history`.
    pub fn dir(&self, checkpoint: &CheckpointConfig) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| checkpoint.dir.join("history"))
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig { enabled: true, dir: None, retention_days: 400, compact_after: Duration::from_secs(6 * 3600) }
    }
}

/// The directory records (AuditLogs, RiskyUsers, UserRiskEvents) and what
/// they make privileged.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// Directory roles whose holders are privileged, by template id or
    /// display name. Empty (the default): Microsoft's privileged roles (the
    /// "Require MFA for admins" template's fourteen, with Intune, Hybrid
    /// Identity and Authentication Policy Administrator; docs/labels.md).
    /// The accounts of `coverage.privileged` stay privileged as well.
    pub privileged_roles: Vec<String>,
    /// A PIM-eligible assignment makes its holder privileged (they can
    /// activate the role at any time).
    pub eligible_is_privileged: bool,
    /// Seeding the directory state from Microsoft Graph.
    pub graph: GraphConfig,
}

impl Default for DirectoryConfig {
    fn default() -> DirectoryConfig {
        DirectoryConfig { privileged_roles: Vec::new(), eligible_is_privileged: true, graph: GraphConfig::default() }
    }
}

/// `[directory.graph]`: the role assignments, PIM eligibilities and
/// registration details listed from Microsoft Graph at start and every
/// `refresh`, with the app registration of `kafka.entra_tenant_id`,
/// `kafka.entra_client_id` and its credential (`kafka.entra_client_secret_*`
/// or `kafka.entra_certificate_*`; `kafka.entra_token_url` for a national
/// cloud). The application needs Graph's `RoleManagement.Read.Directory` and
/// `AuditLog.Read.All` permissions, admin-consented.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GraphConfig {
    /// Read the directory from Graph (off by default).
    pub enabled: bool,
    /// How often the listings are read again, e.g. "6h".
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// Graph's root, without the version: `https://graph.microsoft.com`
    /// (`https://graph.microsoft.us`, `https://microsoftgraph.chinacloudapi.cn`
    /// for national clouds). The token's scope is `<url>/.default`.
    pub url: String,
}

impl Default for GraphConfig {
    fn default() -> GraphConfig {
        GraphConfig {
            enabled: false,
            refresh: Duration::from_secs(6 * 3600),
            url: "https://graph.microsoft.com".into(),
        }
    }
}

/// Running without clear-text identities.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Replace UPNs, display names and IP addresses by keyed hashes as soon
    /// as a record is read: the API, alerts and history then hold only
    /// pseudonyms (the same user always the same one). Privileged and
    /// excluded accounts may still be listed by UPN: they are hashed alike.
    pub pseudonymise: bool,
    /// systemd credential holding the key (16 characters or more).
    pub key_credential: Option<String>,
    /// Environment variable holding the key.
    pub key_env: Option<String>,
}

/// The HTTP server: /metrics, /healthz, /readyz, /api/v1/...
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address. Loopback by default; the API shows user names. On any
    /// other address the API needs tokens (below), or mfawatch refuses to start.
    pub listen: String,
    /// systemd credential holding API bearer tokens, one per line (several
    /// at once let you rotate them). /metrics and the probes stay open.
    pub api_token_credential: Option<String>,
    /// Environment variable holding API tokens, comma-separated.
    pub api_token_env: Option<String>,
    /// A file holding API tokens, one per line (`#` comments). Re-read on SIGHUP.
    pub api_token_file: Option<PathBuf>,
    /// TLS certificate chain (PEM). With `tls_key`, the server speaks HTTPS;
    /// both files are re-read on SIGHUP (a renewed certificate, no restart).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Connections served at once; more are closed at once.
    pub max_connections: u32,
    /// Ask for a token on /metrics too (it tells the tenant's posture: which
    /// legacy protocols succeed, how many privileged users lack MFA).
    /// Prometheus then sends it (`authorization: { credentials_file: ... }`).
    pub metrics_require_token: bool,
    /// Longest a request may take before it gets a 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `mfawatch=debug,rdkafka=warn`. `RUST_LOG` overrides it.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

// Defaults, in one place.

pub const DEFAULT_TOPICS: [&str; 4] = [
    "insights-logs-signinlogs",
    "insights-logs-noninteractiveusersigninlogs",
    "insights-logs-serviceprincipalsigninlogs",
    "insights-logs-managedidentitysigninlogs",
];

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            auth: Auth::None,
            brokers: None,
            eventhubs_namespace: None,
            connection_string_env: "MFAWATCH_EVENTHUBS_CONNECTION_STRING".into(),
            connection_string_credential: None,
            topics: DEFAULT_TOPICS.iter().map(|s| s.to_string()).collect(),
            group_id: "mfawatch".into(),
            group_instance_id: None,
            start: StartPosition::Earliest,
            shared_group: false,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password_credential: None,
            sasl_password_env: None,
            tls: false,
            entra_tenant_id: None,
            entra_client_id: None,
            entra_client_secret_credential: None,
            entra_client_secret_env: None,
            entra_certificate_credential: None,
            entra_certificate_env: None,
            entra_token_url: None,
            entra_token_plain_http_loopback: false,
            ca_file: None,
            prefetch_kbytes: 32 * 1024,
            librdkafka: BTreeMap::new(),
        }
    }
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        let rules = Rules::default();
        ClassifyConfig { legacy_clients: rules.legacy_clients, risk_threshold: rules.risk_threshold }
    }
}

impl Default for CoverageConfig {
    fn default() -> Self {
        CoverageConfig {
            window: Duration::from_secs(7 * 86_400),
            count_non_interactive: false,
            registration_grace: Duration::from_secs(14 * 86_400),
            privileged: Vec::new(),
            privileged_file: None,
            excluded: Vec::new(),
            max_users: 2_000_000,
        }
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { dir: PathBuf::from("/var/lib/mfawatch"), interval: Duration::from_secs(10) }
    }
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig { file: None, topic: None, max_bytes: DEAD_LETTER_MAX_BYTES }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".into(),
            api_token_credential: None,
            api_token_env: None,
            api_token_file: None,
            tls_cert: None,
            tls_key: None,
            max_connections: 64,
            metrics_require_token: false,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: `{key}`: {message}")]
    Invalid { path: PathBuf, key: &'static str, message: String },
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let mut message = e.to_string();
            if message.contains("expected a duration") || message.contains("unknown time unit") {
                message.push_str("\n(durations are written like \"10s\", \"5m\", \"2h\" or \"7d\")");
            }
            ConfigError::Parse { path: path.to_owned(), message }
        })?;
        config.alerts.rules.fill_cooldowns();
        config.validate(path)?;
        Ok(config)
    }

    /// The classification rules this configuration asks for.
    pub fn rules(&self) -> Rules {
        Rules { legacy_clients: self.classify.legacy_clients.clone(), risk_threshold: self.classify.risk_threshold }
    }

    /// The static membership id, if any.
    pub fn group_instance_id(&self) -> Option<String> {
        match &self.kafka.group_instance_id {
            Some(id) if id.trim().is_empty() => None,
            Some(id) => Some(id.clone()),
            None => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                let host = host.trim();
                Some(format!("mfawatch@{}", if host.is_empty() { "localhost" } else { host }))
            }
        }
    }

    /// Where people reach the API: `alerts.api_url`, else this daemon's
    /// `http.listen` (https when `http.tls_cert` is set); no trailing slash.
    /// Every link mfawatch makes (alerts, the rules' and the dashboard's
    /// through `mfawatch_api_info`) starts with it.
    pub fn api_url(&self) -> String {
        let url = match &self.alerts.api_url {
            Some(url) => url.clone(),
            None => {
                let scheme = if self.http.tls_cert.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", self.http.listen)
            }
        };
        url.trim_end_matches('/').to_owned()
    }

    /// Bootstrap servers, derived for Event Hubs.
    pub fn brokers(&self) -> String {
        match (&self.kafka.brokers, &self.kafka.eventhubs_namespace) {
            (Some(b), _) => b.clone(),
            (None, Some(ns)) if matches!(self.kafka.auth, Auth::Eventhubs | Auth::Entra) => {
                format!("{ns}.servicebus.windows.net:9093")
            }
            (None, _) => "localhost:9092".into(),
        }
    }

    /// The effective configuration as TOML, for `check-config`. The file holds
    /// no secrets, only where to find them; those names are shown, not values.
    pub fn to_toml(&self) -> String {
        let mut effective = self.clone();
        effective.kafka.brokers = Some(self.brokers());
        effective.kafka.group_instance_id = Some(self.group_instance_id().unwrap_or_default());
        // Receiver addresses may hold a user and password, or be a secret themselves.
        if let Some(am) = &mut effective.alerts.alertmanager {
            am.urls = am.urls.iter().map(|u| crate::outbound::redact_url(u)).collect();
        }
        if let Some(w) = &mut effective.alerts.webhook {
            w.url = w.url.as_deref().map(crate::outbound::redact_url);
        }
        let text = toml::to_string_pretty(&effective).unwrap_or_else(|e| format!("# cannot print: {e}\n"));
        // `tls` is auth = "sasl"'s switch; say what the connection really is.
        let security = self.kafka.auth.security(self.kafka.tls);
        text.replacen("[kafka]\n", &format!("[kafka]\n# the connection to the brokers: {security}\n"), 1)
    }
}

mod validate;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn a_rule_written_without_its_cooldown_keeps_the_rules_own_default() {
        let defaults = AlertRulesConfig::default();
        let c = parse(
            "[alerts.rules.risky_with_mfa]\nenabled = true\n[alerts.rules.break_glass_signin]\nenabled = false\n",
        )
        .unwrap();
        let r = &c.alerts.rules;
        assert!(r.risky_with_mfa.enabled && !r.break_glass_signin.enabled);
        assert_eq!(r.risky_with_mfa.cooldown, defaults.risky_with_mfa.cooldown);
        assert_eq!(r.break_glass_signin.cooldown, defaults.break_glass_signin.cooldown);
        // Every rule of that form: written with only `enabled`, its default cooldown.
        for rule in [
            "privileged_single_factor",
            "risky_without_mfa",
            "registration_overdue",
            "ropc_signin",
            "mfa_policy_weakened",
        ] {
            let c = parse(&format!("[alerts.rules.{rule}]\nenabled = true\n")).unwrap();
            assert_eq!(c.alerts.rules, AlertRulesConfig::default(), "{rule}");
        }
        let c = parse("[alerts.rules.ropc_signin]\ncooldown = \"5m\"\n").unwrap();
        assert_eq!(c.alerts.rules.ropc_signin.cooldown, Duration::from_secs(300));
    }

    #[test]
    fn an_event_hubs_secret_goes_only_to_the_namespace_over_verified_tls() {
        let eh = "[kafka]\nauth = \"eventhubs\"\neventhubs_namespace = \"contoso\"\n";
        let err = parse(&format!("{eh}brokers = \"attacker.example:9093\"\n")).unwrap_err().to_string();
        assert!(err.contains("kafka.brokers") && err.contains("contoso.servicebus.windows.net"), "{err}");
        assert!(parse(&format!("{eh}brokers = \"CONTOSO.servicebus.windows.net:9093\"\n")).is_ok());
        for (key, value) in [
            ("enable.ssl.certificate.verification", "false"),
            ("ssl.endpoint.identification.algorithm", "none"),
            ("ssl.ca.location", "/tmp/evil.pem"),
        ] {
            let err = parse(&format!("{eh}[kafka.librdkafka]\n{key:?} = {value:?}\n")).unwrap_err().to_string();
            assert!(err.contains("weaken the TLS") && err.contains(key), "{err}");
        }
        let entra = "[kafka]\nauth = \"entra\"\neventhubs_namespace = \"contoso\"\nentra_tenant_id = \"t\"\nentra_client_id = \"c\"\nentra_client_secret_env = \"S\"\n";
        let err = parse(&format!("{entra}entra_token_url = \"http://login.example/token\"\n")).unwrap_err().to_string();
        assert!(err.contains("plain http"), "{err}");
        let local = format!("{entra}entra_token_url = \"http://127.0.0.1:8080/token\"\n");
        assert!(parse(&local).unwrap_err().to_string().contains("plain_http_loopback"));
        assert!(parse(&format!("{local}entra_token_plain_http_loopback = true\n")).is_ok());
        let hook = "[alerts.webhook]\nurl = \"http://siem.example/hook\"\ntoken_env = \"T\"\n";
        assert!(parse(hook).unwrap_err().to_string().contains("plain http"));
    }

    #[test]
    fn graph_seeding_says_which_app_setting_is_missing_and_takes_them_beside_any_auth() {
        let config = parse("").unwrap();
        assert!(!config.directory.graph.enabled);
        assert_eq!(config.directory.graph.refresh, Duration::from_secs(6 * 3600));
        assert_eq!(config.directory.graph.url, "https://graph.microsoft.com");
        let on = "[directory.graph]\nenabled = true\n";
        let err = parse(on).unwrap_err().to_string();
        assert!(err.contains("kafka.entra_tenant_id") && err.contains("directory.graph"), "{err}");
        let app = "[kafka]\nentra_tenant_id = \"t\"\nentra_client_id = \"c\"\n";
        let err = parse(&format!("{app}{on}")).unwrap_err().to_string();
        assert!(err.contains("kafka.entra_client_secret_credential") && err.contains("name one credential"), "{err}");
        let app = format!("{app}entra_client_secret_env = \"S\"\n");
        assert!(parse(&format!("{app}{on}")).is_ok(), "the app settings serve Graph with auth = \"none\"");
        let err = parse(&app).unwrap_err().to_string();
        assert!(err.contains("remove them"), "without Graph they are for auth = \"entra\" only: {err}");
        let err = parse(&format!("{app}{on}url = \"http://graph.example\"\n")).unwrap_err().to_string();
        assert!(err.contains("directory.graph.url") && err.contains("plain http"), "{err}");
        let err = parse(&format!("{app}{on}refresh = \"0s\"\n")).unwrap_err().to_string();
        assert!(err.contains("directory.graph.refresh"), "{err}");
    }

    #[test]
    fn an_empty_file_gives_the_contract_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.rules(), Rules::default());
        assert_eq!(config.coverage.window, Duration::from_secs(7 * 86_400));
        assert_eq!(config.checkpoint.interval, Duration::from_secs(10));
        assert_eq!(config.http.listen, "127.0.0.1:9464");
    }

    #[test]
    fn legacy_auth_success_takes_a_mode_and_a_lookback_and_refuses_an_unknown_mode() {
        let rule = |c: &Config| c.alerts.rules.legacy_auth_success.clone();
        let default = rule(&parse("").unwrap());
        assert_eq!((default.mode, default.cooldown), (LegacyMode::Every, Duration::from_secs(3600)));
        assert_eq!(default.lookback, Duration::from_secs(7 * 86_400));
        // A table written before the mode existed reads as it did; its cooldown is still required.
        let table = "[alerts.rules.legacy_auth_success]\nenabled = true\ncooldown = \"2h\"\n";
        let old = rule(&parse(table).unwrap());
        assert_eq!((old.mode, old.cooldown), (LegacyMode::Every, Duration::from_secs(7200)));
        let err = parse("[alerts.rules.legacy_auth_success]\nenabled = true\n").unwrap_err().to_string();
        assert!(err.contains("cooldown"), "{err}");
        assert_eq!(rule(&parse(&format!("{table}mode = \"every\"\n")).unwrap()).mode, LegacyMode::Every);
        let first = rule(&parse(&format!("{table}mode = \"first_seen\"\nlookback = \"14d\"\n")).unwrap());
        assert_eq!((first.mode, first.lookback), (LegacyMode::FirstSeen, Duration::from_secs(14 * 86_400)));
        let err = parse(&format!("{table}mode = \"firstseen\"\n")).unwrap_err().to_string();
        assert!(err.contains("mode = \"firstseen\"") && err.contains("`every` or `first_seen`"), "{err}");
        let err = parse(&format!("{table}lookback = \"30m\"\n")).unwrap_err().to_string();
        assert!(err.contains("alerts.rules.legacy_auth_success.lookback") && err.contains("from 1h to 90d"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let err = parse("[coverage]\nwindw = \"7d\"\n").unwrap_err().to_string();
        assert!(err.contains("windw") && err.contains("window"), "{err}");
        let err = parse("[kafak]\n").unwrap_err().to_string();
        assert!(err.contains("kafak"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_and_what_is_allowed() {
        let err = parse("[classify]\nrisk_threshold = \"extreme\"\n").unwrap_err().to_string();
        assert!(err.contains("risk_threshold") && err.contains("medium"), "{err}");
        let err = parse("[coverage]\nwindow = \"36h\"\n").unwrap_err().to_string();
        assert!(err.contains("coverage.window") && err.contains("whole days"), "{err}");
        let err = parse("[http]\nlisten = \"localhost\"\n").unwrap_err().to_string();
        assert!(err.contains("http.listen"), "{err}");
        let err = parse("[kafka]\nauth = \"eventhubs\"\n").unwrap_err().to_string();
        assert!(err.contains("kafka.eventhubs_namespace"), "{err}");
    }

    #[test]
    fn the_denial_storm_and_ropc_rules_parse_with_their_defaults_and_bounds() {
        let rules = parse("").unwrap().alerts.rules;
        assert_eq!(rules.mfa_denial_storm, StormRuleConfig::default());
        assert_eq!((rules.mfa_denial_storm.failures, rules.mfa_denial_storm.window), (10, Duration::from_secs(600)));
        assert!(rules.mfa_denial_storm.enabled && rules.ropc_signin.enabled);
        assert_eq!(rules.ropc_signin.cooldown, Duration::from_secs(3600));
        let text = "[alerts.rules.mfa_denial_storm]\nfailures = 20\nwindow = \"30m\"\ncooldown = \"2h\"\n[alerts.rules.ropc_signin]\nenabled = false\ncooldown = \"0s\"\n";
        let rules = parse(text).unwrap().alerts.rules;
        assert_eq!(rules.mfa_denial_storm.failures, 20);
        assert_eq!(rules.mfa_denial_storm.cooldown, Duration::from_secs(7200));
        assert!(!rules.ropc_signin.enabled);
        // More prompts than mfa_fatigue keeps per user could never be counted.
        let err = parse("[alerts.rules.mfa_denial_storm]\nfailures = 100\n").unwrap_err().to_string();
        assert!(err.contains("alerts.rules.mfa_denial_storm") && err.contains("from 2 to 50"), "{err}");
    }

    #[test]
    fn secrets_are_refused_in_raw_librdkafka_settings() {
        let err = parse("[kafka.librdkafka]\n\"sasl.password\" = \"hunter2\"\n").unwrap_err().to_string();
        assert!(err.contains("kafka.librdkafka") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn messages_say_what_is_allowed_in_the_terms_of_the_file() {
        let err = parse("[classify]\nrisk_threshold = \"extreme\"\n").unwrap_err().to_string();
        assert!(err.contains("use low, medium or high") && !err.contains("hidden"), "{err}");
        let err = parse("[classify]\nrisk_threshold = \"none\"\n").unwrap_err().to_string();
        assert!(err.contains("use low, medium or high"), "{err}");
        let err = parse("[coverage]\nwindow = \"100d\"\n").unwrap_err().to_string();
        assert!(err.contains("100d: use whole days from 1d to 90d"), "{err}");
        let err = parse("[coverage]\nregistration_grace = \"60d\"\n").unwrap_err().to_string();
        assert!(err.contains("coverage.registration_grace") && err.contains("at most 30d"), "{err}");
        let err = parse("[checkpoint]\ninterval = \"ten seconds\"\n").unwrap_err().to_string();
        assert!(err.contains("\"10s\""), "{err}");
    }

    #[test]
    fn a_log_level_that_is_not_one_is_refused() {
        let err = parse("[log]\nlevel = \"verbose\"\n").unwrap_err().to_string();
        assert!(err.contains("log.level") && err.contains("not a level"), "{err}");
        assert!(parse("[log]\nlevel = \"info,librdkafka=warn\"\n").is_ok());
        assert!(parse("[log]\nlevel = \"DEBUG\"\n").is_ok());
    }

    #[test]
    fn secrets_are_refused_under_any_spelling_and_never_echoed() {
        for key in
            ["SASL.PASSWORD", " sasl.password", "sasl.oauthbearer.config", "ssl.keystore.password", "Ssl.Key.Pem"]
        {
            let err = parse(&format!("[kafka.librdkafka]\n{key:?} = \"hunter2\"\n")).unwrap_err().to_string();
            assert!(err.contains("is a secret") && !err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn raw_librdkafka_settings_are_checked_by_librdkafka_without_echoing_the_value() {
        let err = parse("[kafka.librdkafka]\n\"sasl.pasword\" = \"hunter2\"\n").unwrap_err().to_string();
        assert!(err.contains("\"sasl.pasword\" is not a librdkafka setting") && !err.contains("hunter2"), "{err}");
        let err = parse("[kafka.librdkafka]\n\"fetch.wait.max.ms\" = \"abc\"\n").unwrap_err().to_string();
        assert!(err.contains("kafka.librdkafka") && err.contains("fetch.wait.max.ms"), "{err}");
        // librdkafka quotes a bad value; a secret pasted into the wrong key stays out.
        let err =
            parse("[kafka.librdkafka]\n\"ssl.endpoint.identification.algorithm\" = \"SharedAccessKey=hunter2\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("ssl.endpoint.identification.algorithm") && !err.contains("hunter2"), "{err}");
        assert!(parse("[kafka.librdkafka]\n\"fetch.wait.max.ms\" = \"200\"\n").is_ok());
    }

    #[test]
    fn what_mfawatch_sets_itself_is_refused_with_the_setting_to_use() {
        for (key, instead) in [
            ("metadata.broker.list", "kafka.brokers"),
            ("auto.offset.reset", "kafka.start"),
            ("group.instance.id", "kafka.group_instance_id"),
        ] {
            let err = parse(&format!("[kafka.librdkafka]\n{key:?} = \"x\"\n")).unwrap_err().to_string();
            assert!(err.contains(instead), "{err}");
        }
        let eventhubs = "[kafka]\nauth = \"eventhubs\"\neventhubs_namespace = \"contoso\"\n[kafka.librdkafka]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n";
        let err = parse(eventhubs).unwrap_err().to_string();
        assert!(err.contains("set by auth = \"eventhubs\""), "{err}");
        let sasl = "[kafka]\nauth = \"sasl\"\nbrokers = \"k:9093\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\nsasl_password_env = \"P\"\ntls = true\n[kafka.librdkafka]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n";
        let err = parse(sasl).unwrap_err().to_string();
        assert!(err.contains("set by auth = \"sasl\""), "{err}");
    }

    #[test]
    fn settings_that_would_break_the_delivery_guarantee_are_refused() {
        let err = parse("[kafka.librdkafka]\n\"enable.auto.commit\" = \"true\"\n").unwrap_err().to_string();
        assert!(err.contains("enable.auto.commit") && err.contains("checkpoint"), "{err}");
    }

    #[test]
    fn eventhubs_bootstrap_is_derived_from_the_namespace() {
        let config = parse("[kafka]\nauth = \"eventhubs\"\neventhubs_namespace = \"contoso-logs\"\n").unwrap();
        assert_eq!(config.brokers(), "contoso-logs.servicebus.windows.net:9093");
        assert!(config.to_toml().contains("contoso-logs.servicebus.windows.net:9093"));
    }

    #[test]
    fn the_example_configs_are_valid() {
        for file in ["config/kafka.toml", "config/eventhubs.toml"] {
            let root = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
            let path = Path::new(&root).join(file);
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
