//! metrics: every Prometheus metric of mfawatch, defined once.
//!
//! Stages call small named functions (`sign_in`, `malformed`, `checkpoint`...)
//! that say what happened; this module knows the names, labels and types. All
//! label values are bounded: enums of the contract, the contract's legacy
//! clients (`other` for any added in configuration), Conditional Access
//! policy names (capped), topic/partition.
//! No user, UPN, IP or record id ever becomes a label.
//!
//! Per-record counters are resolved to handles when the registry is built, so
//! counting a sign-in is a few atomic increments with no label hashing.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::classify::{
    BlockedBy, ClientClass, DEFAULT_LEGACY_CLIENTS, Labels, MfaFailure, RiskLevel, Rules, Strength, Verdict,
};
use crate::coverage::{State, Summary, UserType};
use crate::decode::{Category, DecodeError, Mechanisms};

/// Categories mfawatch does not read, named in metrics; anything else is
/// `other` (the directory categories have their own counter).
const SKIPPED_CATEGORIES: [&str; 7] = [
    "ProvisioningLogs",
    "RiskyServicePrincipals",
    "ServicePrincipalRiskEvents",
    "NetworkAccessTrafficLogs",
    "MicrosoftGraphActivityLogs",
    "EnrichedOffice365AuditLogs",
    "B2CRequestLogs",
];

/// At most this many Conditional Access policy names become label values.
const MAX_POLICIES: usize = 200;

/// How a sign-in authenticated, as a label.
fn auth_label(v: &Verdict<'_>) -> usize {
    if v.labels.contains(Labels::MFA_SATISFIED) {
        0
    } else if v.labels.contains(Labels::SINGLE_FACTOR) {
        1
    } else if v.labels.contains(Labels::NOT_APPLICABLE) {
        2
    } else {
        3
    }
}
const AUTH: [&str; 4] = ["mfa", "single_factor", "not_applicable", "none"];
const OUTCOME: [&str; 2] = ["success", "failure"];
/// `result` of `mfawatch_mfa_mechanism_signins_total`.
const MECHANISM_RESULTS: [&str; 2] = ["satisfied", "failed"];

pub struct Metrics {
    registry: Registry,
    read: Read,
    coverage: CoverageGauges,
    progress: Progress,
    sinks: SinkMetrics,
    service: Service,
    directory: DirectoryMetrics,
}

/// The directory records and state: records by category, family and what
/// applying them did; privileged accounts by source; users by registration.
struct DirectoryMetrics {
    records: IntCounterVec,
    graph_fetches: IntCounterVec,
    graph_seeded: GaugeVec,
    privileged: IntGaugeVec,
    registration: IntGaugeVec,
    phishing_resistant: IntGauge,
    newest: Gauge,
    mfa_policies: IntGaugeVec,
    security_defaults: IntGaugeVec,
    risky_users: IntGaugeVec,
}

/// The states of `mfawatch_mfa_policies`.
pub const POLICY_STATES: [&str; 3] = ["enabled", "report_only", "disabled"];
/// The states of `mfawatch_security_defaults`.
pub const DEFAULTS_STATES: [&str; 3] = ["enabled", "disabled", "unknown"];

impl DirectoryMetrics {
    fn new(registry: &Registry) -> DirectoryMetrics {
        let records = counter_vec(
            registry,
            "mfawatch_directory_records_total",
            "Directory records read (AuditLogs, RiskyUsers, UserRiskEvents, registration and role seeds), by category, \
             operation family and result: applied (changed the state), stale (older than what it holds), \
             not_user (a service principal's role), skipped (an operation mfawatch does not read).",
            &["category", "family", "result"],
        );
        for c in crate::decode::directory::DirCategory::ALL {
            for f in crate::decode::directory::Family::ALL {
                for r in crate::directory::Applied::ALL {
                    records.with_label_values(&[c.as_str(), f.as_str(), r.as_str()]);
                }
            }
        }
        let privileged = gauge_vec(
            registry,
            "mfawatch_privileged_accounts",
            "Privileged accounts by source: list (coverage.privileged, coverage.privileged_file), roles (holding a \
             privileged directory role now: active, PIM-eligible or activated).",
            &["source"],
        );
        let registration = gauge_vec(
            registry,
            "mfawatch_directory_users",
            "Users the directory records name, by MFA registration (registered, not_registered, unknown: no \
             registration evidence).",
            &["registration"],
        );
        let graph_fetches = counter_vec(
            registry,
            "mfawatch_graph_fetches_total",
            "Requests for a page of a Microsoft Graph listing (directory.graph), by listing and result: ok, \
             throttled (429 or 503: retried after Retry-After), denied (401 or 403: a permission missing), failed \
             (another answer, or none).",
            &["listing", "result"],
        );
        let graph_seeded = register(
            registry,
            GaugeVec::new(
                Opts::new(
                    "mfawatch_graph_last_seed_timestamp_seconds",
                    "When the last complete Microsoft Graph listing was read and applied, by listing (0: not yet in \
                     this run).",
                ),
                &["listing"],
            )
            .expect("valid metric"),
        );
        for listing in GRAPH_LISTINGS {
            graph_seeded.with_label_values(&[listing]);
            for result in GRAPH_RESULTS {
                graph_fetches.with_label_values(&[listing, result]);
            }
        }
        let mfa_policies = gauge_vec(
            registry,
            "mfawatch_mfa_policies",
            "Conditional Access policies that require MFA (the mfa grant control or an authentication strength), as \
             the audit log last set them, by state: enabled (enforced), report_only, disabled. Deleted policies are \
             not counted.",
            &["state"],
        );
        for state in POLICY_STATES {
            mfa_policies.with_label_values(&[state]);
        }
        let security_defaults = gauge_vec(
            registry,
            "mfawatch_security_defaults",
            "Security defaults as the audit log last switched them: 1 for the state it is in (enabled, disabled, or \
             unknown when no record has said), 0 for the others.",
            &["state"],
        );
        for state in DEFAULTS_STATES {
            security_defaults.with_label_values(&[state]).set(i64::from(state == "unknown"));
        }
        let risky_users = gauge_vec(
            registry,
            "mfawatch_risky_users",
            "Users by where Identity Protection's newest RiskyUsers record left them: level (high, medium, low, \
             hidden, none, other) and state (at_risk, confirmed_compromised, remediated, dismissed, none, other).",
            &["level", "state"],
        );
        DirectoryMetrics {
            mfa_policies,
            security_defaults,
            risky_users,
            records,
            graph_fetches,
            graph_seeded,
            privileged,
            registration,
            phishing_resistant: register(
                registry,
                IntGauge::new(
                    "mfawatch_directory_phishing_resistant_users",
                    "Users with a phishing-resistant method registered (FIDO2, passkey, Windows Hello for Business, certificate).",
                )
                .expect("valid"),
            ),
            newest: register(
                registry,
                Gauge::new(
                    "mfawatch_directory_newest_record_timestamp_seconds",
                    "Event time of the newest directory record read (0: none yet). Far behind the newest sign-in: the \
                     audit hub is silent and the privileged set is going stale.",
                )
                .expect("valid"),
            ),
        }
    }
}

/// The Microsoft Graph listings (`source/graph.rs`), as labels.
pub const GRAPH_LISTINGS: [&str; 3] = ["role_assignments", "role_eligibilities", "registration_details"];
/// What a request for a page of a Graph listing came to, as labels.
pub const GRAPH_RESULTS: [&str; 4] = ["ok", "throttled", "denied", "failed"];

/// What was read: messages, records, sign-ins by label, decode errors, dead letters.
struct Read {
    /// [category][outcome][auth][client_class]; `None` where the combination
    /// cannot occur (a managed identity does no MFA, a failed sign-in has none).
    sign_ins: Vec<Option<IntCounter>>,
    /// [legacy client][outcome]
    legacy: Vec<IntCounter>,
    legacy_clients: usize,
    /// The `protocol` label of each configured legacy client.
    legacy_protocols: Vec<&'static str>,
    /// [risk level][mfa yes/no]
    risky: Vec<IntCounter>,
    risk_levels: Vec<IntCounter>,
    mfa_failures: Vec<IntCounter>,
    /// [mechanism][satisfied/failed]: who asked for MFA (`classify::mechanism`).
    mechanisms: Vec<IntCounter>,
    /// [strength]: how strong users' MFA was (`classify::Strength`).
    strengths: Vec<IntCounter>,
    blocked: Vec<IntCounter>,
    report_only: IntCounterVec,
    report_only_policies: Mutex<HashSet<String>>,
    skipped: IntCounterVec,
    decode_errors: Vec<IntCounter>,
    dead_letters: IntCounter,
    messages: IntCounter,
    bytes: IntCounter,
    records: IntCounter,
    event_time_lag: Histogram,
    unknown_accounts: IntCounterVec,
}

/// Coverage: users by state, the ratio, what the state refused or saw twice.
struct CoverageGauges {
    users: IntGaugeVec,
    never_mfa: IntGaugeVec,
    registration: IntGaugeVec,
    phishing_resistant: IntGaugeVec,
    coverage_ratio: GaugeVec,
    users_tracked: IntGauge,
    users_refused: IntCounter,
    late_sign_ins: IntCounter,
    duplicate_sign_ins: IntCounter,
    enriched_sign_ins: IntCounterVec,
    privileged_configured: IntGauge,
}

/// How the source keeps up and how durable it is: topics, partitions, lag, Kafka errors, the clock, checkpoints and commits.
struct Progress {
    newest_sign_in: GaugeVec,
    last_message: GaugeVec,
    consumer_lag: IntGaugeVec,
    offsets_skipped: IntCounterVec,
    partitions_refused: IntGauge,
    partitions_assigned: IntGauge,
    partitions_total: IntGauge,
    clock_skew: IntGauge,
    kafka_errors: IntCounterVec,
    checkpoint_time: Gauge,
    checkpoint_duration: Histogram,
    checkpoints: IntCounterVec,
    commit_answers: IntCounterVec,
}

/// The sinks: alerts made, held back and delivered; history written and merged.
struct SinkMetrics {
    alerts: IntCounterVec,
    alerts_suppressed: IntCounterVec,
    alert_deliveries: IntCounterVec,
    alert_outbox: IntGauge,
    spray_sources_evicted: IntCounter,
    history_rows: IntCounter,
    history_bytes: IntCounter,
    history_parts: IntCounter,
    history_compactions: IntCounterVec,
}

/// The daemon as a service: reloads, refused HTTP requests, readiness.
struct Service {
    reloads: IntCounterVec,
    http_refused: IntCounterVec,
    ready: IntGauge,
    /// Where people reach this daemon's API (`alerts.api_url`): one series, for links.
    api_info: IntGaugeVec,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(v.clone())).expect("registered once");
    v
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(v.clone())).expect("registered once");
    v
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

impl Read {
    fn new(registry: &Registry, rules: &Rules) -> Read {
        let sign_ins_vec = counter_vec(
            registry,
            "mfawatch_signins_total",
            "Sign-ins by category, outcome, authentication (mfa, single_factor, not_applicable, none = failed user sign-in) and client class.",
            &["category", "outcome", "auth", "client_class"],
        );
        let mut sign_ins = Vec::new();
        for c in Category::ALL {
            let user = crate::classify::subject_of(c).0 == crate::classify::Subject::User;
            for o in OUTCOME {
                for a in AUTH {
                    let possible = matches!(
                        (user, o, a),
                        (true, "success", "mfa" | "single_factor")
                            | (true, "failure", "none")
                            | (false, _, "not_applicable")
                    );
                    for k in ClientClass::ALL {
                        sign_ins
                            .push(possible.then(|| sign_ins_vec.with_label_values(&[c.as_str(), o, a, k.as_str()])));
                    }
                }
            }
        }
        let legacy_vec = counter_vec(
            registry,
            "mfawatch_legacy_signins_total",
            "Legacy-authentication sign-ins by protocol (clientAppUsed of the contract's list, other for clients added in configuration) and outcome.",
            &["protocol", "outcome"],
        );
        let legacy = rules
            .legacy_clients
            .iter()
            .flat_map(|p| OUTCOME.map(|o| legacy_vec.with_label_values(&[protocol_label(p), o])))
            .collect();
        let risky_vec = counter_vec(
            registry,
            "mfawatch_risky_signins_total",
            "Users' risky sign-ins that got in, by risk level (the higher of during-sign-in and aggregated) and whether MFA was satisfied (mfa=\"no\": risky without MFA).",
            &["level", "mfa"],
        );
        let risky = RiskLevel::ALL
            .iter()
            .flat_map(|l| ["yes", "no"].map(|m| risky_vec.with_label_values(&[l.as_str(), m])))
            .collect();
        let risk_vec = counter_vec(
            registry,
            "mfawatch_signin_risk_levels_total",
            "Sign-ins by risk level; `hidden` means the tenant lacks the licence that shows risk.",
            &["level"],
        );
        let risk_levels = RiskLevel::ALL.iter().map(|l| risk_vec.with_label_values(&[l.as_str()])).collect();
        let failures_vec = counter_vec(
            registry,
            "mfawatch_mfa_failures_total",
            "Failed sign-ins with an MFA meaning, by reason.",
            &["reason"],
        );
        let mfa_failures = MfaFailure::ALL.iter().map(|f| failures_vec.with_label_values(&[f.as_str()])).collect();
        let mechanisms_vec = counter_vec(
            registry,
            "mfawatch_mfa_mechanism_signins_total",
            "Users' sign-ins MFA was asked of, by the mechanism that asked (authenticationRequirementPolicies; security defaults for a 530035 block; unknown when the record does not say) and whether MFA was satisfied. A sign-in two mechanisms asked counts under each.",
            &["mechanism", "result"],
        );
        let mechanisms = Mechanisms::ALL
            .iter()
            .flat_map(|(_, name)| MECHANISM_RESULTS.map(|r| mechanisms_vec.with_label_values(&[name, r])))
            .collect();
        let strengths_vec = counter_vec(
            registry,
            "mfawatch_mfa_strength_signins_total",
            "Users' mfa_satisfied sign-ins by the strength of the method: phishing_resistant (FIDO2, Windows Hello for Business, passkey, certificate), push, otp, telephony (SMS, voice), other, previously_satisfied (a claim in the token), unknown.",
            &["strength"],
        );
        let strengths = Strength::ALL.iter().map(|s| strengths_vec.with_label_values(&[s.as_str()])).collect();
        let blocked_vec = counter_vec(
            registry,
            "mfawatch_blocked_signins_total",
            "Sign-ins blocked by Conditional Access (53003) or security defaults (530035).",
            &["by"],
        );
        let blocked = [BlockedBy::ConditionalAccess, BlockedBy::SecurityDefaults]
            .iter()
            .map(|b| blocked_vec.with_label_values(&[b.as_str()]))
            .collect();
        let report_only = counter_vec(
            registry,
            "mfawatch_report_only_results_total",
            "What report-only Conditional Access policies would have done, by policy display name and result.",
            &["policy", "result"],
        );
        let skipped = counter_vec(
            registry,
            "mfawatch_skipped_records_total",
            "Records of categories mfawatch does not read (ProvisioningLogs, NetworkAccessTrafficLogs, ...) skipped, by category.",
            &["category"],
        );
        for category in SKIPPED_CATEGORIES.iter().chain(&["other"]) {
            skipped.with_label_values(&[category]);
        }
        let errors_vec = counter_vec(
            registry,
            "mfawatch_decode_errors_total",
            "Records (or whole messages) that could not be used, by reason. Each is dead-lettered.",
            &["reason"],
        );
        let decode_errors = DecodeError::REASONS.iter().map(|r| errors_vec.with_label_values(&[r])).collect();
        let unknown_accounts = counter_vec(
            registry,
            "mfawatch_unknown_account_signins_total",
            "Failed user sign-ins that name no account (no object id: 50034 user not found, unresolved names), by category, client class and legacy protocol (none for modern clients). A burst over legacy protocols is a password spray.",
            &["category", "client_class", "protocol"],
        );
        let time_lag = Histogram::with_opts(
            HistogramOpts::new("mfawatch_event_time_lag_seconds", "Time between a sign-in and mfawatch processing it.")
                .buckets(vec![
                    1.0,
                    5.0,
                    15.0,
                    30.0,
                    60.0,
                    120.0,
                    300.0,
                    600.0,
                    1800.0,
                    3600.0,
                    6.0 * 3600.0,
                    86400.0,
                    7.0 * 86400.0,
                ]),
        )
        .expect("valid metric");
        Read {
            sign_ins,
            legacy,
            legacy_clients: rules.legacy_clients.len(),
            legacy_protocols: rules.legacy_clients.iter().map(|c| protocol_label(c)).collect(),
            risky,
            risk_levels,
            mfa_failures,
            mechanisms,
            strengths,
            blocked,
            report_only,
            report_only_policies: Mutex::new(HashSet::new()),
            skipped,
            decode_errors,
            dead_letters: register(
                registry,
                IntCounter::new("mfawatch_dead_letters_total", "Dead letters written.").expect("valid"),
            ),
            messages: register(
                registry,
                IntCounter::new("mfawatch_messages_total", "Messages read (Kafka messages, file lines or documents).")
                    .expect("valid"),
            ),
            bytes: register(
                registry,
                IntCounter::new("mfawatch_bytes_total", "Bytes of messages read.").expect("valid"),
            ),
            records: register(
                registry,
                IntCounter::new("mfawatch_records_total", "Records read, whatever became of them.").expect("valid"),
            ),
            event_time_lag: register(registry, time_lag),
            unknown_accounts,
        }
    }
}

impl CoverageGauges {
    fn new(registry: &Registry) -> CoverageGauges {
        let users = gauge_vec(
            registry,
            "mfawatch_users",
            "Users by coverage state over the window, user type and privileged.",
            &["state", "user_type", "privileged"],
        );
        let never_mfa = gauge_vec(
            registry,
            "mfawatch_users_never_mfa",
            "Uncovered users with no MFA sign-in at all in the window.",
            &["user_type", "privileged"],
        );
        let registration = gauge_vec(
            registry,
            "mfawatch_users_registration_pending",
            "Users who hit MFA registration required and have not done MFA since; overdue past the grace period.",
            &["overdue"],
        );
        let phishing_resistant = gauge_vec(
            registry,
            "mfawatch_users_phishing_resistant",
            "Covered users whose counted sign-ins in the window with a known MFA method all used a phishing-resistant one (FIDO2, Windows Hello for Business, passkey, certificate), by privileged.",
            &["privileged"],
        );
        let coverage_ratio = GaugeVec::new(
            Opts::new("mfawatch_mfa_coverage_ratio", "covered / (covered + uncovered) users over the window, by user type and privileged (all = every user)."),
            &["user_type", "privileged"],
        )
        .expect("valid metric");
        let coverage_ratio = register(registry, coverage_ratio);
        CoverageGauges {
            users,
            never_mfa,
            registration,
            phishing_resistant,
            coverage_ratio,
            users_tracked: register(
                registry,
                IntGauge::new("mfawatch_users_tracked", "Users held in the coverage state.").expect("valid"),
            ),
            users_refused: register(
                registry,
                IntCounter::new(
                    "mfawatch_users_refused_total",
                    "Sign-ins of new users not tracked because coverage.max_users was reached.",
                )
                .expect("valid"),
            ),
            late_sign_ins: register(
                registry,
                IntCounter::new(
                    "mfawatch_late_signins_total",
                    "Counted sign-ins that arrived after their day had left the coverage window (last-seen times updated, counts not).",
                )
                .expect("valid"),
            ),
            duplicate_sign_ins: register(
                registry,
                IntCounter::new(
                    "mfawatch_duplicate_signins_total",
                    "Counted sign-ins seen before (same record identity: delivered twice, or replayed after Kafka delivered them), not counted again.",
                )
                .expect("valid"),
            ),
            enriched_sign_ins: {
                let v = counter_vec(
                    registry,
                    "mfawatch_enriched_signins_total",
                    "Counted sign-ins seen before whose later copy carried more (a re-delivery Entra enriched), by what it added: field risk (a higher risk level, or risky), mfa (MFA evidence: the sign-in moves from single factor to MFA), mfa_method (the method named). Not counted again, nor as duplicates.",
                    &["field"],
                );
                for field in crate::classify::Enriched::ALL {
                    v.with_label_values(&[field.as_str()]);
                }
                v
            },
            privileged_configured: register(
                registry,
                IntGauge::new(
                    "mfawatch_privileged_accounts_configured",
                    "Accounts on the privileged list (coverage.privileged, coverage.privileged_file). 0: privileged coverage is not watched.",
                )
                .expect("valid"),
            ),
        }
    }
}

impl Progress {
    fn new(registry: &Registry) -> Progress {
        let consumer_lag = gauge_vec(
            registry,
            "mfawatch_consumer_lag_messages",
            "Messages between the consumer's position and the end of each partition.",
            &["topic", "partition"],
        );
        let kafka_errors =
            counter_vec(registry, "mfawatch_kafka_errors_total", "librdkafka errors by kind.", &["kind"]);
        let offsets_skipped = counter_vec(
            registry,
            "mfawatch_offsets_skipped_total",
            "Messages never read because the broker no longer had them when a partition resumed (retention ran out while mfawatch was down): lost sign-ins.",
            &["topic"],
        );
        let checkpoints = counter_vec(
            registry,
            "mfawatch_checkpoints_total",
            "Checkpoints by result: ok; error (nothing made durable, retried); commit_failed (snapshot durable, the broker refused the offsets).",
            &["result"],
        );
        for result in ["ok", "error", "commit_failed"] {
            checkpoints.with_label_values(&[result]);
        }
        let commit_answers = counter_vec(
            registry,
            "mfawatch_offset_commit_answers_total",
            "Answers of the brokers to the offset commits checkpoints send: ok (taken) or refused.",
            &["result"],
        );
        for result in ["ok", "refused"] {
            commit_answers.with_label_values(&[result]);
        }
        let checkpoint_duration = Histogram::with_opts(
            HistogramOpts::new(
                "mfawatch_checkpoint_duration_seconds",
                "How long checkpoints take (sinks durable, snapshot, commit).",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        Progress {
            newest_sign_in: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "mfawatch_newest_signin_timestamp_seconds",
                        "Event time of the newest sign-in read from each topic (Unix time): coverage's window ends with it.",
                    ),
                    &["topic"],
                )
                .expect("valid"),
            ),
            last_message: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "mfawatch_last_message_received_timestamp_seconds",
                        "When the last message of each topic was read (Unix time, this host's clock).",
                    ),
                    &["topic"],
                )
                .expect("valid"),
            ),
            consumer_lag,
            offsets_skipped,
            clock_skew: register(
                registry,
                IntGauge::new(
                    "mfawatch_clock_skew_seconds",
                    "How far the host's clock is ahead of the brokers' (negative: behind), from messages read as they arrived.",
                )
                .expect("valid"),
            ),
            partitions_assigned: register(
                registry,
                IntGauge::new("mfawatch_partitions_assigned", "Partitions of the subscribed topics this daemon holds.")
                    .expect("valid"),
            ),
            partitions_total: register(
                registry,
                IntGauge::new("mfawatch_partitions", "Partitions of the subscribed topics on the brokers.")
                    .expect("valid"),
            ),
            partitions_refused: register(
                registry,
                IntGauge::new(
                    "mfawatch_partitions_refused",
                    "Assigned partitions not consumed because the snapshot's offset is past their end (another cluster or a recreated hub).",
                )
                .expect("valid"),
            ),
            kafka_errors,
            checkpoint_time: register(
                registry,
                Gauge::new(
                    "mfawatch_last_checkpoint_timestamp_seconds",
                    "When the last successful checkpoint finished (Unix time).",
                )
                .expect("valid"),
            ),
            checkpoint_duration: register(registry, checkpoint_duration),
            checkpoints,
            commit_answers,
        }
    }
}

impl SinkMetrics {
    fn new(registry: &Registry) -> SinkMetrics {
        let alerts = counter_vec(
            registry,
            "mfawatch_alerts_total",
            "Alerts made, by rule and severity (each names a user: see /api/v1/alerts and the receivers).",
            &["rule", "severity"],
        );
        let alerts_suppressed = counter_vec(
            registry,
            "mfawatch_alerts_suppressed_total",
            "Alerts not sent, by rule and reason: cooldown (a repeat counted on the alert already made), rate_limit, stale (older than alerts.max_age), outbox_full.",
            &["rule", "reason"],
        );
        let alert_deliveries = counter_vec(
            registry,
            "mfawatch_alert_deliveries_total",
            "Alerts handed to a receiver, by receiver kind (alertmanager, webhook, file) and result (ok, error: retried).",
            &["sink", "result"],
        );
        SinkMetrics {
            alerts,
            alerts_suppressed,
            alert_deliveries,
            alert_outbox: register(
                registry,
                IntGauge::new("mfawatch_alert_outbox", "Alerts waiting for a receiver to take them.").expect("valid"),
            ),
            spray_sources_evicted: register(
                registry,
                IntCounter::new(
                    "mfawatch_spray_sources_evicted_total",
                    "Sources of failed legacy sign-ins the spray rule forgot to stay within legacy_auth_attempt.max_sources.",
                )
                .expect("valid"),
            ),
            history_rows: register(
                registry,
                IntCounter::new("mfawatch_history_rows_total", "Sign-ins written to the history (Parquet rows).")
                    .expect("valid"),
            ),
            history_bytes: register(
                registry,
                IntCounter::new("mfawatch_history_bytes_total", "Bytes of history parts written.").expect("valid"),
            ),
            history_parts: register(
                registry,
                IntCounter::new("mfawatch_history_parts_total", "History part files written.").expect("valid"),
            ),
            history_compactions: counter_vec(
                registry,
                "mfawatch_history_compactions_total",
                "History days merged into one file, by result.",
                &["result"],
            ),
        }
    }
}

impl Service {
    fn new(registry: &Registry) -> Service {
        Service {
            reloads: counter_vec(
                registry,
                "mfawatch_reloads_total",
                "SIGHUP reloads of the privileged accounts, API tokens and TLS certificate, by result (ok, error: the previous ones kept).",
                &["result"],
            ),
            http_refused: counter_vec(
                registry,
                "mfawatch_http_refused_total",
                "HTTP requests refused, by reason: unauthorized (no or a wrong token), busy (too many connections).",
                &["reason"],
            ),
            ready: register(
                registry,
                IntGauge::new("mfawatch_ready", "1 when the source is connected and the state loaded.").expect("valid"),
            ),
            api_info: IntGaugeVec::new(
                Opts::new(
                    "mfawatch_api_info",
                    "Where people reach this daemon's API (alerts.api_url, else http.listen): the rules' and the dashboard's links start with `url`; always 1.",
                ),
                &["url"],
            )
            .expect("valid metric"),
        }
    }
}

impl Metrics {
    pub fn new(rules: &Rules) -> Metrics {
        let registry = Registry::new();
        let metrics = Metrics {
            read: Read::new(&registry, rules),
            coverage: CoverageGauges::new(&registry),
            progress: Progress::new(&registry),
            sinks: SinkMetrics::new(&registry),
            service: Service::new(&registry),
            directory: DirectoryMetrics::new(&registry),
            registry,
        };
        let build_info =
            IntGaugeVec::new(Opts::new("mfawatch_build_info", "mfawatch's version; always 1."), &["version"])
                .expect("valid metric");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        register(&metrics.registry, build_info);
        register(&metrics.registry, metrics.service.api_info.clone());
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("registered once");
        metrics
    }

    /// The API's address people click (`Config::api_url`): the one series of `mfawatch_api_info`.
    pub fn set_api_url(&self, url: &str) {
        self.service.api_info.reset();
        self.service.api_info.with_label_values(&[url]).set(1);
    }

    /// Messages read so far.
    pub fn messages_read(&self) -> u64 {
        self.read.messages.get()
    }

    /// Records read so far and, of them, dead-lettered ones.
    pub fn records_read(&self) -> (u64, u64) {
        (self.read.records.get(), self.read.dead_letters.get())
    }

    pub fn message(&self, bytes: usize) {
        self.read.messages.inc();
        self.read.bytes.inc_by(bytes as u64);
    }

    /// A sign-in was classified.
    pub fn sign_in(&self, category: Category, verdict: &Verdict<'_>, lag_seconds: f64) {
        self.read.records.inc();
        let outcome = usize::from(!verdict.success);
        let class = ClientClass::ALL.iter().position(|c| *c == verdict.client_class).unwrap_or(3);
        let idx =
            ((category as usize * 2 + outcome) * AUTH.len() + auth_label(verdict)) * ClientClass::ALL.len() + class;
        if let Some(counter) = &self.read.sign_ins[idx] {
            counter.inc();
        }
        if let Some(i) = verdict.legacy_client.filter(|&i| i < self.read.legacy_clients) {
            self.read.legacy[i * 2 + outcome].inc();
        }
        self.read.risk_levels[verdict.risk_level as usize].inc();
        // "Risky without MFA" has one meaning (docs/labels.md): a user's
        // risky sign-in that got in; a service principal cannot do MFA.
        if verdict.labels.contains(Labels::RISKY)
            && verdict.success
            && verdict.subject == crate::classify::Subject::User
        {
            let mfa = usize::from(!verdict.labels.contains(Labels::MFA_SATISFIED));
            self.read.risky[verdict.risk_level as usize * 2 + mfa].inc();
        }
        if let Some(f) = verdict.mfa_failure {
            self.read.mfa_failures[f as usize].inc();
        }
        if let Some(b) = verdict.blocked_by {
            self.read.blocked[b as usize].inc();
        }
        if let Some(set) = verdict.mechanisms {
            let result = usize::from(!verdict.labels.contains(Labels::MFA_SATISFIED));
            for i in set.indices() {
                self.read.mechanisms[i * MECHANISM_RESULTS.len() + result].inc();
            }
        }
        if let Some(strength) = verdict.strength {
            self.read.strengths[strength as usize].inc();
        }
        for r in verdict.report_only {
            let policy = self.policy_label(&r.policy);
            self.read.report_only.with_label_values(&[policy, r.result.as_ref()]).inc();
        }
        if lag_seconds.is_finite() && lag_seconds >= 0.0 {
            self.read.event_time_lag.observe(lag_seconds);
        }
    }

    /// Policy names are tenant-defined but few; past the cap they are `other`.
    fn policy_label<'a>(&self, name: &'a str) -> &'a str {
        let mut seen = crate::locks::lock(&self.read.report_only_policies);
        if seen.contains(name) {
            return name;
        }
        if seen.len() < MAX_POLICIES {
            seen.insert(name.to_owned());
            return name;
        }
        "other"
    }

    /// A record of another category was skipped.
    pub fn skipped(&self, category: &str) {
        self.read.records.inc();
        let label = SKIPPED_CATEGORIES.iter().find(|c| c.eq_ignore_ascii_case(category)).copied().unwrap_or("other");
        self.read.skipped.with_label_values(&[label]).inc();
    }

    /// A directory record was read and applied.
    pub fn directory_record(
        &self,
        record: &crate::decode::directory::DirectoryRecord,
        applied: crate::directory::Applied,
    ) {
        self.read.records.inc();
        self.directory
            .records
            .with_label_values(&[record.category.as_str(), record.family().as_str(), applied.as_str()])
            .inc();
    }

    /// A request for a page of Graph listing `listing` came to `result` (of [`GRAPH_RESULTS`]).
    pub fn graph_fetch(&self, listing: &'static str, result: &'static str) {
        self.directory.graph_fetches.with_label_values(&[listing, result]).inc();
    }

    /// A complete Graph listing read at `at` has been applied.
    pub fn graph_seeded(&self, listing: &'static str, at: chrono::DateTime<chrono::Utc>) {
        self.directory.graph_seeded.with_label_values(&[listing]).set(at.timestamp_millis() as f64 / 1000.0);
    }

    /// The directory gauges, from the directory's summary and the configured list.
    pub fn directory(&self, summary: &crate::directory::DirectorySummary, listed: usize) {
        self.directory.privileged.with_label_values(&["list"]).set(listed as i64);
        self.directory.privileged.with_label_values(&["roles"]).set(summary.privileged as i64);
        use crate::directory::Registration;
        for (registration, n) in [
            (Registration::Registered, summary.registered),
            (Registration::NotRegistered, summary.not_registered),
            (Registration::Unknown, summary.unknown),
        ] {
            self.directory.registration.with_label_values(&[registration.as_str()]).set(n as i64);
        }
        self.directory.phishing_resistant.set(summary.phishing_resistant as i64);
        self.directory.newest.set(summary.newest.map_or(0.0, |t| t as f64 / 1000.0));
        let p = summary.mfa_policies;
        for (state, n) in POLICY_STATES.into_iter().zip([p.enabled, p.report_only, p.disabled]) {
            self.directory.mfa_policies.with_label_values(&[state]).set(n as i64);
        }
        let defaults = match summary.security_defaults {
            Some(true) => "enabled",
            Some(false) => "disabled",
            None => "unknown",
        };
        for state in DEFAULTS_STATES {
            self.directory.security_defaults.with_label_values(&[state]).set(i64::from(state == defaults));
        }
        self.directory.risky_users.reset();
        for ((level, state), n) in &summary.risky {
            self.directory.risky_users.with_label_values(&[level, state]).set(*n as i64);
        }
    }

    /// A record or message could not be used.
    pub fn malformed(&self, error: &DecodeError) {
        self.read.records.inc();
        let i = DecodeError::REASONS.iter().position(|r| *r == error.reason()).unwrap_or(0);
        self.read.decode_errors[i].inc();
    }

    pub fn dead_letter(&self) {
        self.read.dead_letters.inc();
    }

    /// The coverage gauges, from a fresh summary.
    /// The summary of `coverage` as it is now, with the coverage gauges brought up to date.
    pub fn coverage_summary(&self, coverage: &crate::coverage::Handle) -> Summary {
        let (summary, users) = coverage.summary();
        self.coverage(&summary, users);
        summary
    }

    pub fn coverage(&self, summary: &Summary, users_tracked: usize) {
        self.coverage.users.reset();
        self.coverage.never_mfa.reset();
        for b in &summary.breakdown {
            let (t, p) = (b.user_type.as_str(), if b.privileged { "true" } else { "false" });
            for (state, n) in [
                (State::Covered, b.covered),
                (State::Uncovered, b.uncovered),
                (State::Inactive, b.inactive),
                (State::Excluded, b.excluded),
            ] {
                self.coverage.users.with_label_values(&[state.as_str(), t, p]).set(n as i64);
            }
            self.coverage.never_mfa.with_label_values(&[t, p]).set(b.never_mfa as i64);
            match b.coverage_ratio {
                Some(r) => self.coverage.coverage_ratio.with_label_values(&[t, p]).set(r),
                None => {
                    let _ = self.coverage.coverage_ratio.remove_label_values(&[t, p]);
                }
            }
        }
        // Every combination is present, zero or not, so queries never see gaps.
        for t in UserType::ALL {
            for p in ["true", "false"] {
                for state in State::ALL {
                    let _ = self.coverage.users.get_metric_with_label_values(&[state.as_str(), t.as_str(), p]);
                }
                let _ = self.coverage.never_mfa.get_metric_with_label_values(&[t.as_str(), p]);
            }
        }
        match summary.coverage_ratio {
            Some(r) => self.coverage.coverage_ratio.with_label_values(&["all", "all"]).set(r),
            None => {
                let _ = self.coverage.coverage_ratio.remove_label_values(&["all", "all"]);
            }
        }
        self.coverage
            .registration
            .with_label_values(&["false"])
            .set((summary.registration_pending - summary.registration_overdue) as i64);
        self.coverage.registration.with_label_values(&["true"]).set(summary.registration_overdue as i64);
        let privileged = summary.privileged_phishing_resistant;
        self.coverage.phishing_resistant.with_label_values(&["true"]).set(privileged as i64);
        self.coverage
            .phishing_resistant
            .with_label_values(&["false"])
            .set((summary.phishing_resistant - privileged) as i64);
        self.coverage.users_tracked.set(users_tracked as i64);
    }

    /// A failed sign-in that names no account (the spray signal).
    pub fn unknown_account(&self, category: Category, verdict: &Verdict<'_>) {
        let protocol = match verdict.legacy_client {
            Some(i) => self.read.legacy_protocols.get(i).copied().unwrap_or("other"),
            None => "none",
        };
        self.read
            .unknown_accounts
            .with_label_values(&[category.as_str(), verdict.client_class.as_str(), protocol])
            .inc();
    }

    /// A counted sign-in arrived after its day had left the window.
    pub fn late_sign_in(&self) {
        self.coverage.late_sign_ins.inc();
    }

    /// A message of `topic` was read; its newest sign-in is from `newest` (Unix seconds), if it had any.
    pub fn topic_read(&self, topic: &str, newest: Option<i64>) {
        self.progress
            .last_message
            .with_label_values(&[topic])
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        if let Some(t) = newest {
            let g = self.progress.newest_sign_in.with_label_values(&[topic]);
            if (t as f64) > g.get() {
                g.set(t as f64);
            }
        }
    }

    pub fn set_privileged_configured(&self, n: usize) {
        self.coverage.privileged_configured.set(n as i64);
    }

    /// A counted sign-in seen before: not counted again.
    pub fn duplicate_sign_in(&self) {
        self.coverage.duplicate_sign_ins.inc();
    }

    /// A counted sign-in seen before whose copy added `fields`: not counted again.
    pub fn enriched_sign_in(&self, fields: impl Iterator<Item = crate::classify::Enriched>) {
        for field in fields {
            self.coverage.enriched_sign_ins.with_label_values(&[field.as_str()]).inc();
        }
    }

    /// A new user was not tracked: `coverage.max_users` reached.
    pub fn user_refused(&self) {
        self.coverage.users_refused.inc();
    }

    /// Messages of `topic` that were gone before they could be read.
    pub fn offsets_skipped(&self, topic: &str, messages: u64) {
        self.progress.offsets_skipped.with_label_values(&[topic]).inc_by(messages);
    }

    /// An alert was made: its rule and severity (the alert rules' names, a bounded set).
    pub fn alert_made(&self, rule: &'static str, severity: &'static str) {
        self.sinks.alerts.with_label_values(&[rule, severity]).inc();
    }

    pub fn alert_suppressed(&self, rule: &'static str, reason: &'static str) {
        self.sinks.alerts_suppressed.with_label_values(&[rule, reason]).inc();
    }

    /// `n` alerts handed to a receiver of kind `sink`.
    pub fn alert_delivered(&self, sink: &'static str, result: &'static str, n: usize) {
        self.sinks.alert_deliveries.with_label_values(&[sink, result]).inc_by(n as u64);
    }

    pub fn alert_outbox(&self, n: usize) {
        self.sinks.alert_outbox.set(n as i64);
    }

    pub fn spray_sources_evicted(&self, n: u64) {
        self.sinks.spray_sources_evicted.inc_by(n);
    }

    pub fn clock_skew(&self, seconds: i64) {
        self.progress.clock_skew.set(seconds);
    }

    /// A SIGHUP reload ended: `ok`, or `error` (what was there before stays).
    pub fn reload(&self, result: &'static str) {
        self.service.reloads.with_label_values(&[result]).inc();
    }

    /// A history part of `rows` rows, `bytes` long, was written.
    pub fn history_part(&self, rows: usize, bytes: u64) {
        self.sinks.history_rows.inc_by(rows as u64);
        self.sinks.history_bytes.inc_by(bytes);
        self.sinks.history_parts.inc();
    }

    pub fn history_compaction(&self, result: &'static str) {
        self.sinks.history_compactions.with_label_values(&[result]).inc();
    }

    pub fn http_unauthorized(&self) {
        self.service.http_refused.with_label_values(&["unauthorized"]).inc();
    }

    /// A connection turned away (`busy`: every connection in a request;
    /// `per_peer`: that peer holds its share) or an idle one closed for a new one (`evicted_idle`).
    pub fn http_refused(&self, reason: &'static str) {
        self.service.http_refused.with_label_values(&[reason]).inc();
    }

    /// Partitions held of all the subscribed topics' partitions.
    pub fn partitions(&self, assigned: usize, total: usize) {
        self.progress.partitions_assigned.set(assigned as i64);
        self.progress.partitions_total.set(total as i64);
    }

    pub fn set_partitions_refused(&self, n: usize) {
        self.progress.partitions_refused.set(n as i64);
    }

    /// Messages behind, over every partition held.
    pub fn total_lag(&self) -> i64 {
        use prometheus::core::Collector;
        self.progress
            .consumer_lag
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_gauge().get_value() as i64)
            .sum()
    }

    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.progress.consumer_lag.with_label_values(&[topic, &partition.to_string()]).set(lag);
    }

    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let _ = self.progress.consumer_lag.remove_label_values(&[topic, &partition.to_string()]);
    }

    /// A librdkafka error; `kind` is its bounded error-code name.
    pub fn kafka_error(&self, kind: &str) {
        self.progress.kafka_errors.with_label_values(&[kind]).inc();
    }

    pub fn checkpoint_done(&self, seconds: f64) {
        self.checkpoint_result("ok");
        self.progress.checkpoint_duration.observe(seconds);
        self.progress.checkpoint_time.set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    }

    /// A checkpoint ended: `ok`, `error` (nothing made durable) or
    /// `commit_failed` (snapshot durable, offsets not committed).
    pub fn checkpoint_result(&self, result: &'static str) {
        self.progress.checkpoints.with_label_values(&[result]).inc();
    }

    /// The brokers answered an offset commit: taken (`ok` true) or refused.
    pub fn commit_answered(&self, ok: bool) {
        self.progress.commit_answers.with_label_values(&[if ok { "ok" } else { "refused" }]).inc();
    }

    pub fn set_ready(&self, ready: bool) {
        self.service.ready.set(i64::from(ready));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("encoding to memory");
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The sum of the series in exposition `text` whose lines start with `prefix`.
pub fn sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The `protocol` label of a configured legacy client: its name as the
/// contract spells it, or `other` for a client the configuration added, so the
/// label's values stay the contract's list whatever is configured.
fn protocol_label(client: &str) -> &'static str {
    DEFAULT_LEGACY_CLIENTS.iter().find(|known| known.eq_ignore_ascii_case(client.trim())).copied().unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_handles_cover_every_label_combination_once() {
        let m = Metrics::new(&Rules::default());
        assert_eq!(m.read.sign_ins.len(), Category::ALL.len() * 2 * AUTH.len() * ClientClass::ALL.len());
        // User categories: mfa/single_factor on success, none on failure; workloads: not_applicable.
        let users = Category::ALL
            .iter()
            .filter(|c| crate::classify::subject_of(**c).0 == crate::classify::Subject::User)
            .count();
        let possible = (users * 3 + (Category::ALL.len() - users) * 2) * ClientClass::ALL.len();
        assert_eq!(m.read.sign_ins.iter().flatten().count(), possible);
        let text = m.render();
        assert!(text.contains("mfawatch_signins_total{auth=\"mfa\",category=\"SignInLogs\",client_class=\"browser\",outcome=\"success\"} 0"));
        assert!(!text.contains("auth=\"mfa\",category=\"ManagedIdentitySignInLogs\""), "no series that cannot occur");
        assert!(text.contains("mfawatch_legacy_signins_total{outcome=\"failure\",protocol=\"IMAP4\"} 0"));
    }

    #[test]
    fn legacy_clients_added_in_configuration_are_counted_as_other() {
        let rules = Rules {
            legacy_clients: vec!["imap4 ".into(), "Contoso Mailer 1.0".into(), "Fabrikam Sync".into()],
            ..Rules::default()
        };
        let m = Metrics::new(&rules);
        assert_eq!(m.read.legacy.len(), 6);
        m.read.legacy[2].inc(); // Contoso Mailer 1.0, success
        m.read.legacy[4].inc(); // Fabrikam Sync, success
        m.read.legacy[0].inc(); // imap4, success
        let text = m.render();
        assert!(text.contains("mfawatch_legacy_signins_total{outcome=\"success\",protocol=\"other\"} 2"), "{text}");
        assert!(text.contains("mfawatch_legacy_signins_total{outcome=\"success\",protocol=\"IMAP4\"} 1"), "{text}");
        assert!(!text.contains("Contoso"));
    }

    #[test]
    fn metric_names_follow_prometheus_conventions() {
        let m = Metrics::new(&Rules::default());
        for family in m.registry.gather() {
            let name = family.name();
            assert!(name.starts_with("mfawatch_") || name.starts_with("process_"), "{name}");
            let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
            assert_eq!(counter, name.ends_with("_total"), "{name}");
        }
    }

    #[test]
    fn mfa_sign_ins_are_counted_under_each_mechanism_that_asked() {
        let m = Metrics::new(&Rules::default());
        let message = br#"{"records":[{"time":"2025-06-01T10:00:00Z","category":"SignInLogs","properties":{"userId":"u1","status":{"errorCode":0},"authenticationRequirement":"multiFactorAuthentication","authenticationRequirementPolicies":[{"requirementProvider":"multiConditionalAccess"},{"requirementProvider":"user"}]}},{"time":"2025-06-01T10:00:00Z","category":"SignInLogs","properties":{"userId":"u2","status":{"errorCode":500121}}},{"time":"2025-06-01T10:00:00Z","category":"SignInLogs","properties":{"userId":"u3","status":{"errorCode":0}}}]}"#;
        for item in crate::decode::decode_message(message) {
            let crate::decode::Item::SignIn(record) = item else { panic!("a sign-in") };
            m.sign_in(record.category, &crate::classify::classify(&record, &Rules::default()), 0.0);
        }
        let text = m.render();
        let value = |mechanism: &str, result: &str| {
            let series =
                format!("mfawatch_mfa_mechanism_signins_total{{mechanism=\"{mechanism}\",result=\"{result}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&series))
                .unwrap_or_else(|| panic!("{series} in {text}"))
                .to_owned()
        };
        assert_eq!(value("conditional_access", "satisfied"), "1");
        assert_eq!(value("per_user_mfa", "satisfied"), "1");
        assert_eq!(value("unknown", "failed"), "1", "a denial whose record names no mechanism");
        assert_eq!(value("security_defaults", "satisfied"), "0");
        assert_eq!(value("unknown", "satisfied"), "0", "a single-factor sign-in is not counted");
        // The MFA sign-in named no method: its strength is unknown, the others have none.
        let strength = |s: &str| {
            let series = format!("mfawatch_mfa_strength_signins_total{{strength=\"{s}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(&series)).unwrap_or_else(|| panic!("{series}")).to_owned()
        };
        assert_eq!(strength("unknown"), "1");
        assert_eq!(strength("telephony"), "0");
    }

    #[test]
    fn report_only_policy_labels_are_capped() {
        let m = Metrics::new(&Rules::default());
        for i in 0..MAX_POLICIES + 5 {
            m.policy_label(&format!("policy {i}"));
        }
        assert_eq!(m.policy_label("one too many"), "other");
        assert_eq!(m.policy_label("policy 3"), "policy 3");
    }
}
