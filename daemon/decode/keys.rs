//! The JSON keys decode reads, found case-insensitively in one table lookup.
//!
//! Pipelines rename keys (`userPrincipalName`, `UserPrincipalName`,
//! `userprincipalname`), so every key is compared without regard to ASCII
//! case. A record has about a hundred keys and most are not wanted; looking
//! each one up must cost little more than skipping it. So a key is hashed
//! from its length and four of its bytes (case folded), the hash picks one
//! slot of a table built at compile time, and only the one name in that slot
//! is compared with the key. The build searches for a hash seed under which
//! no two names share a slot, so a lookup never probes twice.

/// A key decode knows. `Other` is every key it skips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    AdditionalDetails,
    AppDisplayName,
    AppId,
    AppliedConditionalAccessPolicies,
    AuthenticationDetails,
    AuthenticationMethod,
    AuthenticationProtocol,
    AuthenticationRequirement,
    AuthenticationRequirementPolicies,
    AuthenticationStepRequirement,
    AuthenticationStepResultDetail,
    CallerIpAddress,
    Category,
    City,
    ClientAppUsed,
    ConditionalAccessPolicies,
    ConditionalAccessStatus,
    CorrelationId,
    CountryOrRegion,
    CreatedDateTime,
    DisplayName,
    ErrorCode,
    FailureReason,
    Id,
    IpAddress,
    IsInteractive,
    Location,
    Properties,
    Records,
    RequirementProvider,
    ResourceDisplayName,
    Result,
    ResultType,
    RiskLevelAggregated,
    RiskLevelDuringSignIn,
    RiskState,
    ServicePrincipalId,
    ServicePrincipalName,
    SignInEventTypes,
    Status,
    Succeeded,
    TenantId,
    Time,
    TimeGenerated,
    Type,
    UserDisplayName,
    UserId,
    UserPrincipalName,
    UserAgent,
    UserType,
    Value,
    Other,
}

/// Every known key, as Entra spells it.
const NAMES: [(&str, Known); 51] = [
    ("additionalDetails", Known::AdditionalDetails),
    ("appDisplayName", Known::AppDisplayName),
    ("appId", Known::AppId),
    ("appliedConditionalAccessPolicies", Known::AppliedConditionalAccessPolicies),
    ("authenticationDetails", Known::AuthenticationDetails),
    ("authenticationMethod", Known::AuthenticationMethod),
    ("authenticationProtocol", Known::AuthenticationProtocol),
    ("authenticationRequirement", Known::AuthenticationRequirement),
    ("authenticationRequirementPolicies", Known::AuthenticationRequirementPolicies),
    ("authenticationStepRequirement", Known::AuthenticationStepRequirement),
    ("authenticationStepResultDetail", Known::AuthenticationStepResultDetail),
    ("callerIpAddress", Known::CallerIpAddress),
    ("category", Known::Category),
    ("city", Known::City),
    ("clientAppUsed", Known::ClientAppUsed),
    ("conditionalAccessPolicies", Known::ConditionalAccessPolicies),
    ("conditionalAccessStatus", Known::ConditionalAccessStatus),
    ("correlationId", Known::CorrelationId),
    ("countryOrRegion", Known::CountryOrRegion),
    ("createdDateTime", Known::CreatedDateTime),
    ("displayName", Known::DisplayName),
    ("errorCode", Known::ErrorCode),
    ("failureReason", Known::FailureReason),
    ("id", Known::Id),
    ("ipAddress", Known::IpAddress),
    ("isInteractive", Known::IsInteractive),
    ("location", Known::Location),
    ("properties", Known::Properties),
    ("records", Known::Records),
    ("requirementProvider", Known::RequirementProvider),
    ("resourceDisplayName", Known::ResourceDisplayName),
    ("result", Known::Result),
    ("resultType", Known::ResultType),
    ("riskLevelAggregated", Known::RiskLevelAggregated),
    ("riskLevelDuringSignIn", Known::RiskLevelDuringSignIn),
    ("riskState", Known::RiskState),
    ("servicePrincipalId", Known::ServicePrincipalId),
    ("servicePrincipalName", Known::ServicePrincipalName),
    ("signInEventTypes", Known::SignInEventTypes),
    ("status", Known::Status),
    ("succeeded", Known::Succeeded),
    ("tenantId", Known::TenantId),
    ("time", Known::Time),
    ("timeGenerated", Known::TimeGenerated),
    ("type", Known::Type),
    ("userDisplayName", Known::UserDisplayName),
    ("userId", Known::UserId),
    ("userPrincipalName", Known::UserPrincipalName),
    ("userAgent", Known::UserAgent),
    ("userType", Known::UserType),
    ("value", Known::Value),
];

const SLOTS: usize = 512;

/// Hash of a non-empty key: its length and its first two, middle and last
/// bytes, case folded, in one multiply. (`| 0x20` folds ASCII letters; what
/// it does to other bytes only changes the slot, never the final comparison.)
#[inline(always)]
const fn signature(key: &[u8], seed: u32) -> usize {
    let n = key.len();
    let bytes =
        (key[0] as u32) | (key[n / 2] as u32) << 8 | (key[n - 1] as u32) << 16 | (key[(n > 1) as usize] as u32) << 24;
    let h = ((bytes | 0x2020_2020) ^ (n as u32).wrapping_mul(0x9E37_79B1) ^ seed).wrapping_mul(0x85EB_CA77);
    (h >> 23) as usize % SLOTS
}

/// Slot table for `seed`, or `None` when two names collide under it.
const fn table_for(seed: u32) -> Option<[u8; SLOTS]> {
    let mut table = [0u8; SLOTS];
    let mut i = 0;
    while i < NAMES.len() {
        let slot = signature(NAMES[i].0.as_bytes(), seed);
        if table[slot] != 0 {
            return None;
        }
        table[slot] = i as u8 + 1;
        i += 1;
    }
    Some(table)
}

/// The first seed without collisions; found by the compiler.
const SEED: u32 = {
    let mut seed = 0;
    while table_for(seed).is_none() {
        seed += 1;
        assert!(seed < 100_000, "no collision-free seed: enlarge SLOTS");
    }
    seed
};

/// Slot → index + 1 into `NAMES`; 0 is empty.
const TABLE: [u8; SLOTS] = match table_for(SEED) {
    Some(table) => table,
    None => panic!("SEED was checked"),
};

impl Known {
    /// The key as Entra spells it.
    pub fn name(self) -> &'static str {
        NAMES.get(self as usize).map_or("(other)", |(name, _)| name)
    }

    /// Whether `key` is this key, ignoring ASCII case. Cheaper than [`lookup`]
    /// where only a few keys matter (inside a Conditional Access policy).
    #[inline(always)]
    pub fn is(self, key: &[u8]) -> bool {
        NAMES
            .get(self as usize)
            .is_some_and(|(name, _)| name.len() == key.len() && name.as_bytes().eq_ignore_ascii_case(key))
    }
}

/// The known key `key` names, compared ignoring ASCII case; `Other` if none.
#[inline(always)]
pub fn lookup(key: &[u8]) -> Known {
    if key.is_empty() {
        return Known::Other;
    }
    match TABLE[signature(key, SEED)] {
        0 => Known::Other,
        slot => {
            // The name is in hand: compared directly, not through `Known::is`,
            // which would look it up again (this runs for every key).
            let (name, id) = NAMES[slot as usize - 1];
            if name.as_bytes().eq_ignore_ascii_case(key) { id } else { Known::Other }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_found_in_any_case() {
        for (name, id) in NAMES {
            assert_eq!(lookup(name.as_bytes()), id, "{name}");
            assert_eq!(lookup(name.to_ascii_lowercase().as_bytes()), id, "{name}");
            assert_eq!(lookup(name.to_ascii_uppercase().as_bytes()), id, "{name}");
            let pascal = name[..1].to_ascii_uppercase() + &name[1..];
            assert_eq!(lookup(pascal.as_bytes()), id, "{pascal}");
        }
    }

    #[test]
    fn other_keys_are_other() {
        for key in [
            "",
            "x",
            "deviceDetail",
            "userprincipalnam",
            "userPrincipalNames",
            "p_event_time",
            "idd",
            "tim\u{e9}",
            "@odata.context",
        ] {
            assert_eq!(lookup(key.as_bytes()), Known::Other, "{key}");
        }
    }

    #[test]
    fn keys_that_differ_only_outside_letters_do_not_match() {
        // `|0x20` maps '@' to '`' and 'I' to 'i': only letters may fold together.
        assert_eq!(lookup(b"userId\x00"), Known::Other);
        assert_eq!(lookup(b"user_d"), Known::Other);
        assert_eq!(lookup(b"t\x09me"), Known::Other);
    }

    #[test]
    fn is_matches_lookup() {
        for (i, (name, id)) in NAMES.iter().enumerate() {
            assert_eq!(*id as usize, i, "NAMES is in the order of Known");
            assert!(id.is(name.to_ascii_uppercase().as_bytes()));
            assert!(!id.is(&name.as_bytes()[1..]));
        }
        assert!(!Known::Other.is(b"other"));
    }

    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in NAMES {
            assert!(seen.insert(name.to_ascii_lowercase()), "{name} twice");
        }
    }
}

/// The known keys met so far in one JSON object. A key given twice in one
/// object (in any letter case) with values that may differ makes the record
/// ambiguous: both readers refuse it, so it is dead-lettered, never read as
/// one value or the other.
#[derive(Default, Clone, Copy)]
pub struct Seen(u64);

impl Seen {
    /// Notes `key`; false when it was met already.
    #[inline(always)]
    pub fn first(&mut self, key: Known) -> bool {
        let bit = 1u64 << (key as u32 & 63);
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }
}

const _: () = assert!((Known::Other as u32) < 64, "Seen holds one bit per known key");
