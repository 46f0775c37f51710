//! `mfawatch demo`: the real pipeline against an in-process Kafka cluster
//! (librdkafka's mock cluster), fed by the synthetic tenant generator as
//! Entra's diagnostic setting sends it — one hub per category — with seven
//! days of backfill, then live sign-ins; metrics, the API, alerts and the
//! history on localhost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::config::{Config, DEFAULT_TOPICS};
use crate::generate::{Format, PerHub, Tenant, TenantSpec};

/// The audit hub: the demo reads it beside the four sign-in hubs (the
/// directory's story of the run is on it).
const AUDIT_HUB: &str = "insights-logs-auditlogs";

/// Identity Protection's hubs (`RiskyUsers`, `UserRiskEvents`): the demo
/// reads them too (the protections story's risky users are on them).
const RISK_HUBS: [&str; 2] = ["insights-logs-riskyusers", "insights-logs-userriskevents"];

/// The hubs a diagnostic setting makes besides the four sign-in hubs (the
/// ADFS one exists, as it would, but nothing subscribes to it).
const OTHER_HUBS: [&str; 4] = ["insights-logs-adfssigninlogs", AUDIT_HUB, RISK_HUBS[0], RISK_HUBS[1]];

/// The directory hubs the demo subscribes to beside the sign-in hubs.
const DIRECTORY_HUBS: [&str; 3] = [AUDIT_HUB, RISK_HUBS[0], RISK_HUBS[1]];

/// Malformed records the backfill mixes in, per 10,000.
const MALFORMED_PER_10K: u32 = 5;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to serve /metrics and the API.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// Users in the synthetic tenant.
    #[arg(long, default_value_t = 2_000)]
    pub users: u32,
    /// Sign-ins of the last seven days to start with.
    #[arg(long, default_value_t = 40_000)]
    pub backfill: u64,
    /// Live sign-ins per second after the backfill.
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mock = MockCluster::new(1)?;
    for hub in DEFAULT_TOPICS.iter().chain(OTHER_HUBS.iter()) {
        mock.create_topic(hub, 2, 1)?;
    }
    // Kept when the demo ends: the report command it prints reads the history.
    let state = tempfile::Builder::new().prefix("mfawatch-demo-").tempdir()?.keep();

    let now = chrono::Utc::now();
    let backfill = TenantSpec {
        users: args.users,
        records: args.backfill,
        // Two weeks: the last complete ISO week is in it, for a weekly report.
        days: 14,
        seed: args.seed,
        end: now,
        format: Format::Envelope,
        records_per_message: 40,
        malformed_per_10k: MALFORMED_PER_10K,
        fatigue_per_10k: 3,
        redeliveries_per_10k: 20,
    };
    backfill.validate()?;
    let tenant = Tenant::new(&backfill);
    let mut config = Config::default();
    config.kafka.brokers = Some(mock.bootstrap_servers());
    config.kafka.group_id = "mfawatch-demo".into();
    config.kafka.topics.extend(DIRECTORY_HUBS.iter().map(|hub| hub.to_string()));
    config.checkpoint.dir = state.as_path().join("state");
    config.dead_letter.file = Some(state.as_path().join("dead-letters.ndjson"));
    config.alerts.log_file = Some(state.as_path().join("alerts.ndjson"));
    config.http.listen = args.listen.clone();
    config.coverage.privileged = tenant.users.iter().filter(|u| u.admin).map(|u| u.upn.clone()).collect();
    config.coverage.excluded = tenant.users.iter().filter(|u| u.break_glass).map(|u| u.upn.clone()).collect();
    // The malformed records are on purpose: summed up below, not warned of one by one.
    config.log.level = "info,librdkafka=warn,mfawatch::pipeline=error".into();
    config.validate(std::path::Path::new("<demo>"))?;
    crate::logging::init(&config);

    let prepared = crate::daemon::prepare(&config, crate::daemon::Mode::Consume)?;
    let bootstrap = mock.bootstrap_servers();
    let (rate, live_seed) = (args.rate.max(1), args.seed);
    let metrics = prepared.handles.metrics.clone();
    let (coverage, url) = (prepared.handles.coverage.clone(), format!("http://{}", args.listen));
    let files =
        Files { dead_letters: state.join("dead-letters.ndjson"), history: config.history.dir(&config.checkpoint) };
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        std::thread::Builder::new().name("demo-feeder".into()).spawn(move || {
            let story = Story { coverage, url };
            if let Err(e) = feed(&bootstrap, backfill, rate, live_seed, &metrics, &files, &story, &stop) {
                tracing::error!(error = %e, "demo feeder stopped");
            }
        })?
    };

    let result = crate::daemon::serve_and_consume(config, prepared, args.seconds.map(Duration::from_secs), |url| {
        println!(
            "mfawatch demo: a synthetic tenant of {} users through the real pipeline (Ctrl-C to stop)",
            args.users
        );
        println!(
            "  Entra's diagnostic setting sends each category to its own hub; the demo reads the four sign-in hubs, the audit hub and Identity Protection's two."
        );
        println!(
            "  It mixes in malformed records on purpose ({MALFORMED_PER_10K} in 10,000: dead-lettered) and MFA fatigue attacks (alerted on)."
        );
        println!("  {url}/metrics");
        println!("  {url}/api/v1/coverage");
        println!("  {url}/api/v1/users?state=uncovered&privileged=true");
        println!("  {url}/api/v1/users?state=never_mfa&limit=20");
        println!("  {url}/api/v1/alerts");
        println!("  {url}/readyz");
    });
    // The producer goes before the cluster it talks to (else librdkafka
    // complains that the brokers went away).
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    drop(mock);
    println!("mfawatch demo: stopped; its state, history, alerts and dead letters stay in {}", state.display());
    result
}

/// Messages the backfill may be ahead of the consumer. librdkafka's mock
/// cluster keeps only the newest few MB of a partition (its segments are not
/// a log you can fall behind on), so the backfill waits for the consumer.
const AHEAD: u64 = 24;

/// Where the demo keeps what it tells the user about.
struct Files {
    dead_letters: std::path::PathBuf,
    history: std::path::PathBuf,
}

/// What the directory's story needs: whom the backfill left uncovered, and
/// the address to point at.
struct Story {
    coverage: Arc<crate::coverage::Handle>,
    url: String,
}

/// The directory changes of the run, once the backfill has been read (so
/// they are live, and alerted on): an uncovered user made Global
/// Administrator, another uncovered user registering the Authenticator app
/// (registered, their sign-ins still single-factor: a policy gap), an
/// admin's methods changed and a sign-in of theirs from a new address
/// minutes later, and a role given to a break-glass account. Returns the
/// messages by hub, and what to tell the user.
fn directory_story(tenant: &Tenant, story: &Story) -> (Vec<(&'static str, Vec<u8>)>, Vec<String>) {
    use crate::generate::story;
    let accounts = story.coverage.accounts();
    let uncovered: Vec<&crate::generate::User> = {
        let coverage = story.coverage.read();
        tenant
            .users
            .iter()
            .filter(|u| !u.admin && !u.break_glass && !u.unresolved && !u.guest)
            .filter(|u| coverage.user(&accounts, &u.id).is_some_and(|v| v.state == crate::coverage::State::Uncovered))
            .take(2)
            .collect()
    };
    let admin = tenant.users.iter().find(|u| u.admin && !u.unresolved);
    let break_glass = tenant.users.iter().find(|u| u.break_glass);
    let (Some(&new_admin), Some(&registering), Some(admin), Some(break_glass)) =
        (uncovered.first(), uncovered.get(1), admin, break_glass)
    else {
        return (Vec::new(), vec!["  (the tenant is too small for the directory story)".into()]);
    };
    let now = chrono::Utc::now();
    let minutes = |m: i64| now - chrono::Duration::minutes(m);
    let authenticator = "Authenticator App with Notification and Code";
    let audit = story::envelope(&[
        story::security_info_registered(admin, authenticator, minutes(4)),
        story::role_added(new_admin, story::GLOBAL_ADMINISTRATOR, minutes(3), admin),
        story::security_info_registered(registering, authenticator, minutes(2)),
        story::role_added(break_glass, story::GLOBAL_ADMINISTRATOR, minutes(1), admin),
    ]);
    let sign_in = story::envelope(&[story::sign_in_from(admin, "192.0.2.250", now)]);
    let url = &story.url;
    let told = vec![
        "  the audit hub, live: the directory changes during the run (the alerts: /api/v1/alerts):".to_owned(),
        format!(
            "    {} made Global Administrator while uncovered (privileged_not_covered): {url}/api/v1/users/{}",
            new_admin.upn, new_admin.id
        ),
        format!(
            "    {} registered the Authenticator app after single-factor sign-ins (a policy gap): {url}/api/v1/users/{}",
            registering.upn, registering.id
        ),
        format!(
            "    {}'s methods changed, then a sign-in from a new address (privileged_methods_changed, critical)",
            admin.upn
        ),
        format!("    break-glass {} given a role (break_glass_role_change)", break_glass.upn),
    ];
    (vec![(AUDIT_HUB, audit), ("insights-logs-signinlogs", sign_in)], told)
}

/// A story's messages by hub: `records` first, `then` once they have been
/// read; and what to tell the user.
struct Act {
    records: Vec<(&'static str, Vec<u8>)>,
    then: Vec<(&'static str, Vec<u8>)>,
    told: Vec<String>,
}

/// The protections' story, once the backfill has been read (live, so the
/// alert rules judge it): an admin adds "Require MFA for all users"
/// (enabled, the break-glass accounts excluded) and then switches security
/// defaults off, the tenant moving to Conditional Access (MFA stays
/// enforced throughout); another admin switches the policy to report-only
/// and back to enabled a minute later, and disables an ordinary user's
/// per-user MFA. Identity Protection put a user at high risk (a leaked
/// credentials detection) 30 hours ago, never remediated, and they sign in
/// now; another user at high risk as long ago changed their password
/// securely minutes ago (remediated) and signs in too. The users are the
/// tenant's, chosen by profile (always MFA) from the end of the list, so
/// the same seed plays the same records.
fn protections_story(tenant: &Tenant, url: &str) -> Act {
    use crate::decode::directory::PolicyState;
    use crate::generate::{Profile, story};
    let admins: Vec<&crate::generate::User> =
        tenant.users.iter().filter(|u| u.admin && !u.unresolved).take(2).collect();
    let ordinary: Vec<&crate::generate::User> = tenant
        .users
        .iter()
        .rev()
        .filter(|u| !u.admin && !u.break_glass && !u.unresolved && !u.guest && u.profile == Profile::AlwaysMfa)
        .take(3)
        .collect();
    let break_glass: Vec<&crate::generate::User> = tenant.users.iter().filter(|u| u.break_glass).collect();
    let (Some(&ann), Some(&eve), Some(&mfa_off), Some(&risky), Some(&remediated)) =
        (admins.first(), admins.get(1), ordinary.first(), ordinary.get(1), ordinary.get(2))
    else {
        return Act {
            records: Vec::new(),
            then: Vec::new(),
            told: vec!["  (the tenant is too small for the protections story)".into()],
        };
    };
    let now = chrono::Utc::now();
    let minutes = |m: i64| now - chrono::Duration::minutes(m);
    let day_ago = now - chrono::Duration::hours(30);
    let policy = story::ConditionalAccessPolicy::require_mfa_for_all_users(&break_glass, minutes(12));
    let report_only = policy.switched(PolicyState::ReportOnly, minutes(10));
    let enabled = report_only.switched(PolicyState::Enabled, minutes(9));
    let audit = story::envelope(&[
        story::policy_added(&policy, minutes(12), ann),
        story::security_defaults(false, minutes(11), ann),
        story::policy_updated(&policy, &report_only, minutes(10), eve),
        story::policy_updated(&report_only, &enabled, minutes(9), eve),
        story::strong_authentication_disabled(mfa_off, minutes(8), eve),
    ]);
    let detections = story::envelope(&[story::risk_detection(risky, "leakedCredentials", "high", day_ago)]);
    let risky_users = story::envelope(&[
        story::risky_user(risky, "high", "atRisk", "none", day_ago),
        story::risky_user(remediated, "high", "atRisk", "none", day_ago),
        story::risky_user(remediated, "none", "remediated", "userPerformedSecuredPasswordChange", minutes(7)),
    ]);
    let sign_ins = story::envelope(&[
        story::sign_in_from(risky, "203.0.113.77", now),
        story::sign_in_from(remediated, "203.0.113.78", now),
    ]);
    let user = |u: &crate::generate::User| format!("{url}/api/v1/users/{}", u.id);
    let told = vec![
        format!("  the protections, live (the posture and its timeline: {url}/api/v1/protections):"),
        format!(
            "    {} added \"{}\" (enabled, MFA, the break-glass accounts excluded), then switched security defaults off: the tenant moved to Conditional Access (MFA still enforced, no mfa_enforcement_lost)",
            ann.upn, policy.name
        ),
        format!("    {} switched it to report-only (mfa_policy_weakened), and back to enabled a minute later", eve.upn),
        format!("    {} disabled per-user MFA of {} (per_user_mfa_disabled): {}", eve.upn, mfa_off.upn, user(mfa_off)),
        format!(
            "    {} at high risk for 30 hours (leaked credentials), not remediated, signs in (risky_user_unremediated): {}",
            risky.upn,
            user(risky)
        ),
        format!(
            "    {} at high risk as long, remediated by a secure password change minutes ago, signs in (no alert): {}",
            remediated.upn,
            user(remediated)
        ),
    ];
    Act {
        records: vec![(AUDIT_HUB, audit), (RISK_HUBS[1], detections), (RISK_HUBS[0], risky_users)],
        then: vec![("insights-logs-signinlogs", sign_ins)],
        told,
    }
}

/// Produces the backfill hub by hub, never more than [`AHEAD`] messages
/// ahead of what the pipeline has read, then the directory's and the
/// protections' stories, then live sign-ins at `rate` a second.
#[allow(clippy::too_many_arguments)]
fn feed(
    bootstrap: &str,
    backfill: TenantSpec,
    rate: u32,
    seed: u64,
    metrics: &crate::metrics::Metrics,
    files: &Files,
    story: &Story,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let (dead_letters, history) = (&files.dead_letters, &files.history);
    let read = || metrics.messages_read();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("linger.ms", "20").create()?;
    let subscribed = |hub: &str| DEFAULT_TOPICS.contains(&hub) || DIRECTORY_HUBS.contains(&hub);
    let send = |hub: &str, message: &[u8], key: u64| -> anyhow::Result<()> {
        let key = key.to_string();
        loop {
            match producer.send(BaseRecord::to(hub).key(&key).payload(message)) {
                Ok(()) => return Ok(()),
                Err((e, _)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    };
    let records = backfill.records;
    let users = backfill.users;
    let tenant = Tenant::new(&backfill);
    let (first_day, last_day) =
        ((backfill.end - chrono::Duration::days(i64::from(backfill.days))).date_naive(), backfill.end.date_naive());
    let mut per_hub = PerHub::new(backfill);
    let mut n = 0u64;
    while let Some((hub, message)) = per_hub.next_message() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if subscribed(&hub) {
            while n >= read() + AHEAD {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                producer.poll(Duration::from_millis(10));
            }
            n += 1;
        }
        send(&hub, &message, n)?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10))?;
    // Nothing else is produced until the backfill has been read, so that the
    // demo says truthfully whether it all got through.
    let started = Instant::now();
    while read() < n && started.elapsed() < Duration::from_secs(60) && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if read() >= n {
        let (_, malformed) = metrics.records_read();
        println!(
            "  backfill: {records} records in {n} messages on the four sign-in hubs and the audit hub, all read; {malformed} malformed on purpose, dead-lettered in {}",
            dead_letters.display()
        );
        let week = crate::report::Window::last_complete_week(chrono::Utc::now().date_naive()).label();
        println!(
            "  now live at {rate} sign-ins/s; the history is in {} (kept when the demo stops):",
            history.display()
        );
        println!("    mfawatch report --history {} --week {week} --out demo-report", history.display());
        println!(
            "    mfawatch report --history {} --from {first_day} --to {last_day} --out demo-report-all",
            history.display()
        );
    } else {
        tracing::warn!(read = read(), produced = n, "the demo backfill was not all read within a minute");
    }
    let (messages, mut told) = directory_story(&tenant, story);
    let protections = protections_story(&tenant, &story.url);
    for (hub, message) in messages.iter().chain(&protections.records) {
        send(hub, message, n)?;
        n += 1;
    }
    producer.flush(Duration::from_secs(10))?;
    // The hubs are read in no order between them: the sign-ins that are
    // judged by the risk as the records left it wait until they are read.
    let started = Instant::now();
    while read() < n && started.elapsed() < Duration::from_secs(15) && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (hub, message) in &protections.then {
        send(hub, message, n)?;
        n += 1;
    }
    producer.flush(Duration::from_secs(10))?;
    told.extend(protections.told);
    for line in told {
        println!("{line}");
    }

    let per_message = (rate / 5).max(1);
    // Live sign-ins are dated now: the generator spreads records up to 90 s
    // either side of their slot, so the slots start 90 s back.
    let live = TenantSpec {
        users,
        records: u64::from(rate) * 86_400 * 365,
        days: 365,
        end: chrono::Utc::now() + chrono::Duration::days(365) - chrono::Duration::seconds(90),
        records_per_message: per_message,
        seed,
        malformed_per_10k: MALFORMED_PER_10K,
        redeliveries_per_10k: 20,
        ..TenantSpec::default()
    };
    let mut per_hub = PerHub::new(live);
    let started = Instant::now();
    let mut sent = 0u64;
    while let Some((hub, message)) = per_hub.next_message() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        send(&hub, &message, n + sent)?;
        sent += 1;
        producer.poll(Duration::ZERO);
        let due = Duration::from_secs_f64((sent * per_message as u64) as f64 / rate as f64);
        while let Some(wait) = due.checked_sub(started.elapsed()) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(wait.min(Duration::from_millis(200)));
        }
    }
    producer.flush(Duration::from_secs(2))?;
    Ok(())
}
