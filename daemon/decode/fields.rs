//! The fields decode reads, one typed, borrowed struct for every shape, and
//! the serde reader that fills it. The hand-written reader of `scan` fills
//! the same struct faster and hands anything unusual to this one, which is
//! also the one that explains errors; `text_field` and `merge` are shared.
//!
//! A diagnostic record's `properties`, a Microsoft Graph `signIn` and a Log
//! Analytics row carry the same fields under different spellings
//! (`userPrincipalName`, `UserPrincipalName`, `userprincipalname`), so one
//! visitor matches keys case-insensitively and fills one [`Fields`] struct.
//! Strings borrow from the input unless they contain escapes. Values that
//! Log Analytics exports as JSON text inside a string (`AuthenticationDetails`,
//! `Status`, `ConditionalAccessPolicies`) are parsed from that text, which
//! makes them owned; that shape is rare on the hot path.
//!
//! Nothing here decides what a record means: that is `decode::resolve` and
//! `classify`. Unknown keys are skipped without being looked at twice.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::keys::{self, Known};
use super::requirement::Mechanisms;

pub type Str<'a> = Cow<'a, str>;

/// Every field mfawatch reads from a sign-in, whatever the shape.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    // Envelope / diagnostic-setting top level (also Log Analytics columns).
    pub category: Option<Str<'a>>,
    pub time: Option<Str<'a>>,
    pub result_type: Option<Str<'a>>,
    pub la_type: Option<Str<'a>>,
    pub time_generated: Option<Str<'a>>,
    /// The record had a `properties` object (the diagnostic-setting shape).
    pub has_properties: bool,
    // Sign-in fields.
    pub id: Option<Str<'a>>,
    pub created_date_time: Option<Str<'a>>,
    pub correlation_id: Option<Str<'a>>,
    pub user_principal_name: Option<Str<'a>>,
    pub user_id: Option<Str<'a>>,
    pub user_display_name: Option<Str<'a>>,
    pub user_type: Option<Str<'a>>,
    pub app_display_name: Option<Str<'a>>,
    pub app_id: Option<Str<'a>>,
    pub resource_display_name: Option<Str<'a>>,
    pub ip_address: Option<Str<'a>>,
    pub caller_ip_address: Option<Str<'a>>,
    pub country: Option<Str<'a>>,
    pub city: Option<Str<'a>>,
    pub client_app_used: Option<Str<'a>>,
    pub authentication_requirement: Option<Str<'a>>,
    pub authentication_protocol: Option<Str<'a>>,
    pub is_interactive: Option<bool>,
    pub sign_in_event_types: Option<EventTypes>,
    pub status: Option<Status<'a>>,
    pub authentication_details: Option<Vec<AuthStep<'a>>>,
    /// `authenticationRequirementPolicies`: the mechanisms its entries name;
    /// `Some` of an empty set when the list is there but names none.
    pub requirement_policies: Option<Mechanisms>,
    pub risk_level_during_sign_in: Option<Str<'a>>,
    pub risk_level_aggregated: Option<Str<'a>>,
    pub risk_state: Option<Str<'a>>,
    pub conditional_access_status: Option<Str<'a>>,
    pub report_only: Option<Vec<ReportOnlyResult<'a>>>,
    pub service_principal_id: Option<Str<'a>>,
    pub service_principal_name: Option<Str<'a>>,
    pub tenant_id: Option<Str<'a>>,
    pub user_agent: Option<Str<'a>>,
}

/// `status` of a sign-in (Graph `signInStatus`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Status<'a> {
    pub error_code: Option<Str<'a>>,
    pub failure_reason: Option<Str<'a>>,
    pub additional_details: Option<Str<'a>>,
}

/// One entry of `authenticationDetails[]`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AuthStep<'a> {
    pub method: Option<Str<'a>>,
    pub step_requirement: Option<Str<'a>>,
    pub succeeded: Option<bool>,
    pub result_detail: Option<Str<'a>>,
}

/// A Conditional Access policy that ran in report-only mode: what it *would* have done.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReportOnlyResult<'a> {
    pub policy: Str<'a>,
    pub result: Str<'a>,
}

impl<'a> ReportOnlyResult<'a> {
    pub(super) fn into_owned(self) -> ReportOnlyResult<'static> {
        ReportOnlyResult { policy: Cow::Owned(self.policy.into_owned()), result: Cow::Owned(self.result.into_owned()) }
    }

    /// The report-only result of a policy that ran, if it ran in report-only mode.
    pub(super) fn of(name: Option<Str<'a>>, result: Option<Str<'a>>) -> Option<ReportOnlyResult<'a>> {
        match result {
            Some(result) if starts_with_ignore_case(&result, "reportOnly") => {
                Some(ReportOnlyResult { policy: name.unwrap_or(Cow::Borrowed("")), result })
            }
            _ => None,
        }
    }
}

/// Graph `signInEventTypes`, as a small bit set.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EventTypes(u8);

impl EventTypes {
    pub const INTERACTIVE_USER: u8 = 1;
    pub const NON_INTERACTIVE_USER: u8 = 2;
    pub const SERVICE_PRINCIPAL: u8 = 4;
    pub const MANAGED_IDENTITY: u8 = 8;

    pub fn contains(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// A list in text: JSON (`["interactiveUser"]`) or comma-separated.
    pub(super) fn from_text(v: &str) -> Result<EventTypes, String> {
        let mut types = EventTypes::default();
        let names: Vec<String> = if v.trim_start().starts_with('[') {
            serde_json::from_str(v).map_err(|e| format!("JSON text inside string: {e}"))?
        } else {
            v.split(',').map(str::to_owned).collect()
        };
        for name in &names {
            types.insert_named(name);
        }
        Ok(types)
    }

    pub(super) fn insert_named(&mut self, name: &str) {
        const NAMES: [(&str, u8); 4] = [
            ("interactiveUser", EventTypes::INTERACTIVE_USER),
            ("nonInteractiveUser", EventTypes::NON_INTERACTIVE_USER),
            ("servicePrincipal", EventTypes::SERVICE_PRINCIPAL),
            ("managedIdentity", EventTypes::MANAGED_IDENTITY),
        ];
        if let Some((_, bit)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.trim())) {
            self.0 |= bit;
        }
    }
}

// ---------------------------------------------------------------------------
// Keys are read as raw bytes (no UTF-8 check: they are only compared) and
// looked up in `keys`, which ignores ASCII case. When decode explains an
// error it wants the path of the bad field, and serde_path_to_error only sees
// keys read as text: `explaining_errors` switches to that, slower, reading.

struct Key(Known);

thread_local! {
    static KEYS_AS_TEXT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with keys read as text, so that error paths name them.
pub fn explaining_errors<T>(f: impl FnOnce() -> T) -> T {
    KEYS_AS_TEXT.set(true);
    let result = f();
    KEYS_AS_TEXT.set(false);
    result
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Key, E> {
                Ok(Key(keys::lookup(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(keys::lookup(v.as_bytes())))
            }
        }
        if KEYS_AS_TEXT.get() { d.deserialize_str(KeyVisitor) } else { d.deserialize_bytes(KeyVisitor) }
    }
}

// ---------------------------------------------------------------------------
// Lenient scalars. Real pipelines turn numbers into strings and back
// (`resultType` 0 / "0", `Level` 4 / "4"), so a text field takes any scalar.

/// A string that borrows from the input when it can; numbers and booleans
/// are kept as their text, `null` becomes `None`.
struct Text<'a>(Option<Str<'a>>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Borrowed(if v { "true" } else { "false" }))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
        }
        d.deserialize_any(TextVisitor)
    }
}

/// Whether a text cell means "no value": empty, or a null written out
/// (`az monitor log-analytics query` prints null cells as `None`).
pub(super) fn is_null_text(v: &str) -> bool {
    let v = v.trim();
    v.is_empty() || v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("null")
}

/// A boolean that also accepts "true"/"false" in any case, 1/0 and null.
struct Flag(Option<bool>);

/// A boolean written as text; `None` when it is not one.
pub(super) fn flag_from_text(v: &str) -> Option<Option<bool>> {
    match v.trim() {
        t if t.eq_ignore_ascii_case("true") || t == "1" => Some(Some(true)),
        t if t.eq_ignore_ascii_case("false") || t == "0" => Some(Some(false)),
        t if is_null_text(t) => Some(None),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Flag, D::Error> {
        struct FlagVisitor;
        impl Visitor<'_> for FlagVisitor {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(Some(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                flag_from_text(v).map(Flag).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flag, E> {
                match v {
                    0 | 1 => Ok(Flag(Some(v == 1))),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flag, E> {
                match v {
                    0 | 1 => Ok(Flag(Some(v == 1))),
                    _ => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag(None))
            }
        }
        d.deserialize_any(FlagVisitor)
    }
}

// ---------------------------------------------------------------------------
// Nested values that Log Analytics may export as JSON text inside a string.

/// Deserialises `T` from either the value itself or JSON text in a string.
/// A value parsed from text cannot borrow from the input, so it is made owned.
fn nested<'de, T, A>(map: &mut A) -> Result<T, A::Error>
where
    T: Deserialize<'de> + FromJsonText,
    A: MapAccess<'de>,
{
    map.next_value_seed(NestedSeed(std::marker::PhantomData))
}

/// A nested value that can also be read from JSON text inside a string.
trait FromJsonText: Sized {
    fn from_json_text(text: &str) -> serde_json::Result<Self>;
    /// The value for JSON `null` or an empty string.
    fn empty() -> Self;
}

struct NestedSeed<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de> + FromJsonText> DeserializeSeed<'de> for NestedSeed<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        struct NestedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + FromJsonText> Visitor<'de> for NestedVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object or array, or JSON text of one")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
                if is_null_text(v) {
                    return Ok(T::empty());
                }
                T::from_json_text(v).map_err(|e| E::custom(format_args!("JSON text inside string: {e}")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<T, E> {
                Ok(T::empty())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
                T::deserialize(de::value::SeqAccessDeserializer::new(seq))
            }
        }
        d.deserialize_any(NestedVisitor(std::marker::PhantomData))
    }
}

pub(super) fn owned(s: Option<Str<'_>>) -> Option<Str<'static>> {
    s.map(|s| Cow::Owned(s.into_owned()))
}

impl<'a> Status<'a> {
    pub(super) fn into_owned(self) -> Status<'static> {
        Status {
            error_code: owned(self.error_code),
            failure_reason: owned(self.failure_reason),
            additional_details: owned(self.additional_details),
        }
    }
}

impl<'de> Deserialize<'de> for Status<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Status<'de>, D::Error> {
        struct StatusVisitor;
        impl<'de> Visitor<'de> for StatusVisitor {
            type Value = Status<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sign-in status object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Status<'de>, A::Error> {
                let mut status = Status::default();
                let mut seen = super::keys::Seen::default();
                while let Some(Key(key)) = map.next_key::<Key>()? {
                    if key != Known::Other && !seen.first(key) {
                        return Err(duplicate(key));
                    }
                    match key {
                        Known::ErrorCode => status.error_code = map.next_value::<Text>()?.0,
                        Known::FailureReason => status.failure_reason = map.next_value::<Text>()?.0,
                        Known::AdditionalDetails => status.additional_details = map.next_value::<Text>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(status)
            }
        }
        d.deserialize_map(StatusVisitor)
    }
}

impl FromJsonText for Status<'_> {
    fn from_json_text(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str::<Status>(text).map(Status::into_owned)
    }
    fn empty() -> Self {
        Status::default()
    }
}

impl<'a> AuthStep<'a> {
    pub(super) fn into_owned(self) -> AuthStep<'static> {
        AuthStep {
            method: owned(self.method),
            step_requirement: owned(self.step_requirement),
            succeeded: self.succeeded,
            result_detail: owned(self.result_detail),
        }
    }
}

impl<'de> Deserialize<'de> for AuthStep<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AuthStep<'de>, D::Error> {
        struct StepVisitor;
        impl<'de> Visitor<'de> for StepVisitor {
            type Value = AuthStep<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an authenticationDetails entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AuthStep<'de>, A::Error> {
                let mut step = AuthStep::default();
                let mut seen = super::keys::Seen::default();
                while let Some(Key(key)) = map.next_key::<Key>()? {
                    if key != Known::Other && !seen.first(key) {
                        return Err(duplicate(key));
                    }
                    match key {
                        Known::AuthenticationMethod => step.method = map.next_value::<Text>()?.0,
                        Known::AuthenticationStepRequirement => step.step_requirement = map.next_value::<Text>()?.0,
                        Known::Succeeded => step.succeeded = map.next_value::<Flag>()?.0,
                        Known::AuthenticationStepResultDetail => step.result_detail = map.next_value::<Text>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(step)
            }
        }
        d.deserialize_map(StepVisitor)
    }
}

/// `authenticationDetails[]`.
struct AuthSteps<'a>(Vec<AuthStep<'a>>);

impl<'de> Deserialize<'de> for AuthSteps<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AuthSteps<'de>, D::Error> {
        Vec::<AuthStep<'de>>::deserialize(d).map(AuthSteps)
    }
}

impl FromJsonText for AuthSteps<'_> {
    fn from_json_text(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str::<AuthSteps>(text).map(|s| AuthSteps(s.0.into_iter().map(AuthStep::into_owned).collect()))
    }
    fn empty() -> Self {
        AuthSteps(Vec::new())
    }
}

/// `appliedConditionalAccessPolicies[]`, keeping only the report-only results.
/// Records carry up to dozens of policies; most are not report-only, so they
/// are read and dropped without allocating.
struct ReportOnlyResults<'a>(Vec<ReportOnlyResult<'a>>);

impl<'de> Deserialize<'de> for ReportOnlyResults<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ReportOnlyResults<'de>, D::Error> {
        struct PolicyVisitor;
        impl<'de> Visitor<'de> for PolicyVisitor {
            type Value = Option<ReportOnlyResult<'de>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Conditional Access policy object")
            }
            /// A `null` entry is no policy (seen in re-serialised exports).
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut name, mut result) = (None, None);
                let mut seen = super::keys::Seen::default();
                while let Some(Key(key)) = map.next_key::<Key>()? {
                    if key != Known::Other && !seen.first(key) {
                        return Err(duplicate(key));
                    }
                    match key {
                        Known::DisplayName => name = map.next_value::<Text>()?.0,
                        Known::Result => result = map.next_value::<Text>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(ReportOnlyResult::of(name, result))
            }
        }
        struct Policy<'a>(Option<ReportOnlyResult<'a>>);
        impl<'de> Deserialize<'de> for Policy<'de> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Policy<'de>, D::Error> {
                d.deserialize_any(PolicyVisitor).map(Policy)
            }
        }
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = ReportOnlyResults<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of Conditional Access policies")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut kept = Vec::new();
                while let Some(Policy(policy)) = seq.next_element::<Policy>()? {
                    kept.extend(policy);
                }
                Ok(ReportOnlyResults(kept))
            }
        }
        d.deserialize_seq(ListVisitor)
    }
}

impl FromJsonText for ReportOnlyResults<'_> {
    fn from_json_text(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str::<ReportOnlyResults>(text)
            .map(|r| ReportOnlyResults(r.0.into_iter().map(ReportOnlyResult::into_owned).collect()))
    }
    fn empty() -> Self {
        ReportOnlyResults(Vec::new())
    }
}

/// `authenticationRequirementPolicies[]`: each entry's `requirementProvider`
/// folded into the set (`requirement.rs`); `detail` and a `null` entry are skipped.
impl<'de> Deserialize<'de> for Mechanisms {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mechanisms, D::Error> {
        struct EntryVisitor<'m>(&'m mut Mechanisms);
        impl<'de> Visitor<'de> for EntryVisitor<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an authenticationRequirementPolicies entry")
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                let mut provider = None;
                let mut seen = super::keys::Seen::default();
                while let Some(Key(key)) = map.next_key::<Key>()? {
                    if key != Known::Other && !seen.first(key) {
                        return Err(duplicate(key));
                    }
                    match key {
                        Known::RequirementProvider => provider = map.next_value::<Text>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                self.0.insert_provider(provider.as_deref());
                Ok(())
            }
        }
        struct Entry<'m>(&'m mut Mechanisms);
        impl<'de> DeserializeSeed<'de> for Entry<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(EntryVisitor(self.0))
            }
        }
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = Mechanisms;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of authentication requirement policies")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Mechanisms, A::Error> {
                let mut set = Mechanisms::default();
                while seq.next_element_seed(Entry(&mut set))?.is_some() {}
                Ok(set)
            }
        }
        d.deserialize_seq(ListVisitor)
    }
}

impl FromJsonText for Mechanisms {
    fn from_json_text(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str::<Mechanisms>(text)
    }
    fn empty() -> Self {
        Mechanisms::default()
    }
}

/// `signInEventTypes`: a list of names (or JSON text of one).
struct EventTypeList(EventTypes);

impl<'de> Deserialize<'de> for EventTypeList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EventTypeList, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = EventTypeList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of sign-in event types")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventTypeList, A::Error> {
                let mut types = EventTypes::default();
                while let Some(Text(name)) = seq.next_element::<Text>()? {
                    if let Some(name) = name {
                        types.insert_named(&name);
                    }
                }
                Ok(EventTypeList(types))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EventTypeList, E> {
                EventTypes::from_text(v).map(EventTypeList).map_err(E::custom)
            }
            fn visit_unit<E: de::Error>(self) -> Result<EventTypeList, E> {
                Ok(EventTypeList(EventTypes::default()))
            }
        }
        d.deserialize_any(ListVisitor)
    }
}

/// `location`: an object in diagnostic records and Graph, a country code
/// string at the diagnostic top level and in Log Analytics.
struct Location<'a> {
    country: Option<Str<'a>>,
    city: Option<Str<'a>>,
}

impl<'de> Deserialize<'de> for Location<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Location<'de>, D::Error> {
        struct LocationVisitor;
        impl<'de> Visitor<'de> for LocationVisitor {
            type Value = Location<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a location object or country code")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Location<'de>, E> {
                Ok(Location { country: (!is_null_text(v)).then_some(Cow::Borrowed(v)), city: None })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Location<'de>, E> {
                Ok(Location { country: (!is_null_text(v)).then(|| Cow::Owned(v.to_owned())), city: None })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Location<'de>, E> {
                Ok(Location { country: None, city: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Location<'de>, A::Error> {
                let mut location = Location { country: None, city: None };
                let mut seen = super::keys::Seen::default();
                while let Some(Key(key)) = map.next_key::<Key>()? {
                    if key != Known::Other && !seen.first(key) {
                        return Err(duplicate(key));
                    }
                    match key {
                        Known::CountryOrRegion => location.country = map.next_value::<Text>()?.0,
                        Known::City => location.city = map.next_value::<Text>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(location)
            }
        }
        d.deserialize_any(LocationVisitor)
    }
}

// ---------------------------------------------------------------------------
// Records and messages.

/// Which object of a record a key was read in. In a diagnostic record the
/// `properties` win: the top level only fills in what they lack, whichever
/// comes first in the text. Flat shapes (Graph, Log Analytics) are all `Top`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Layer {
    Top,
    Properties,
}

impl<'a> Fields<'a> {
    /// The field a key names when its value is plain text (a [`Text`]).
    /// Envelope keys (`category`, `time`, ...) are only fields at the top
    /// level: an AuditLogs record's `properties.category` is not its category.
    pub(super) fn text_field(&mut self, key: Known, layer: Layer) -> Option<&mut Option<Str<'a>>> {
        Some(match key {
            Known::Category | Known::Time | Known::ResultType | Known::Type | Known::TimeGenerated
                if layer == Layer::Properties =>
            {
                return None;
            }
            Known::Category => &mut self.category,
            Known::Time => &mut self.time,
            Known::ResultType => &mut self.result_type,
            Known::Type => &mut self.la_type,
            Known::TimeGenerated => &mut self.time_generated,
            Known::Id => &mut self.id,
            Known::CreatedDateTime => &mut self.created_date_time,
            Known::CorrelationId => &mut self.correlation_id,
            Known::UserPrincipalName => &mut self.user_principal_name,
            Known::UserId => &mut self.user_id,
            Known::UserDisplayName => &mut self.user_display_name,
            Known::UserType => &mut self.user_type,
            Known::AppDisplayName => &mut self.app_display_name,
            Known::AppId => &mut self.app_id,
            Known::ResourceDisplayName => &mut self.resource_display_name,
            Known::IpAddress => &mut self.ip_address,
            Known::CallerIpAddress => &mut self.caller_ip_address,
            Known::ClientAppUsed => &mut self.client_app_used,
            Known::AuthenticationRequirement => &mut self.authentication_requirement,
            Known::AuthenticationProtocol => &mut self.authentication_protocol,
            Known::RiskLevelDuringSignIn => &mut self.risk_level_during_sign_in,
            Known::RiskLevelAggregated => &mut self.risk_level_aggregated,
            Known::RiskState => &mut self.risk_state,
            Known::ConditionalAccessStatus => &mut self.conditional_access_status,
            Known::ServicePrincipalId => &mut self.service_principal_id,
            Known::ServicePrincipalName => &mut self.service_principal_name,
            Known::TenantId => &mut self.tenant_id,
            Known::UserAgent => &mut self.user_agent,
            _ => return None,
        })
    }
}

/// Puts a value read in `layer` into a field: `properties` win, but a null
/// there does not erase the top level's value.
pub(super) fn merge<T>(field: &mut Option<T>, value: Option<T>, layer: Layer) {
    if field.is_none() || (layer == Layer::Properties && value.is_some()) {
        *field = value;
    }
}

/// Reads one record field into `fields`; returns false for keys that are not
/// record fields (the caller decides what they are). `scan::Scanner::field`
/// is the same for the fast path.
fn read_field<'de, A: MapAccess<'de>>(
    fields: &mut Fields<'de>,
    key: Known,
    layer: Layer,
    map: &mut A,
) -> Result<bool, A::Error> {
    if let Some(field) = fields.text_field(key, layer) {
        merge(field, map.next_value::<Text>()?.0, layer);
        return Ok(true);
    }
    match key {
        Known::Properties if layer == Layer::Top => {
            fields.has_properties |= map.next_value_seed(PropertiesSeed(fields))?;
        }
        Known::Location => {
            let location = map.next_value::<Location>()?;
            merge(&mut fields.country, location.country, layer);
            merge(&mut fields.city, location.city, layer);
        }
        Known::IsInteractive => merge(&mut fields.is_interactive, map.next_value::<Flag>()?.0, layer),
        Known::SignInEventTypes => {
            merge(&mut fields.sign_in_event_types, Some(map.next_value::<EventTypeList>()?.0), layer)
        }
        Known::Status => merge(&mut fields.status, Some(nested::<Status, A>(map)?), layer),
        Known::AuthenticationDetails => {
            merge(&mut fields.authentication_details, Some(nested::<AuthSteps, A>(map)?.0), layer)
        }
        Known::AppliedConditionalAccessPolicies | Known::ConditionalAccessPolicies => {
            merge(&mut fields.report_only, Some(nested::<ReportOnlyResults, A>(map)?.0), layer)
        }
        Known::AuthenticationRequirementPolicies => {
            merge(&mut fields.requirement_policies, Some(nested::<Mechanisms, A>(map)?), layer)
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Reads the members of `map` into `fields`.
fn read_fields<'de, A: MapAccess<'de>>(fields: &mut Fields<'de>, layer: Layer, map: &mut A) -> Result<(), A::Error> {
    let mut seen = super::keys::Seen::default();
    while let Some(Key(key)) = map.next_key::<Key>()? {
        if key != Known::Other && !seen.first(key) {
            return Err(duplicate(key));
        }
        if !read_field(fields, key, layer, map)? {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(())
}

/// Reads a `properties` object into the record's fields; true when it was an object.
struct PropertiesSeed<'f, 'de>(&'f mut Fields<'de>);

impl<'de> DeserializeSeed<'de> for PropertiesSeed<'_, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        struct PropertiesVisitor<'f, 'de>(&'f mut Fields<'de>);
        impl<'de> Visitor<'de> for PropertiesVisitor<'_, 'de> {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a `properties` object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
                read_fields(self.0, Layer::Properties, &mut map)?;
                Ok(true)
            }
            fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
                Ok(false)
            }
        }
        d.deserialize_any(PropertiesVisitor(self.0))
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fields<'de>, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sign-in record (JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Fields::default();
                read_fields(&mut fields, Layer::Top, &mut map)?;
                Ok(fields)
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

/// A record of an envelope, handed over as soon as it is read.
pub type EachRecord<'f, 'de> = &'f mut dyn FnMut(Fields<'de>);

/// Parses one message: an envelope (`{"records":[...]}`, Graph `{"value":[...]}`,
/// a JSON array of rows) or a single record. Records of an envelope go to
/// `each` one by one, so no list of them is built; a single record is returned.
pub fn parse_message<'de>(bytes: &'de [u8], each: EachRecord<'_, 'de>) -> serde_json::Result<Option<Fields<'de>>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let single = MessageSeed(each).deserialize(&mut de)?;
    de.end()?;
    Ok(single)
}

struct RecordsSeed<'f, 'g, 'de>(&'g mut EachRecord<'f, 'de>);

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        struct RecordsVisitor<'f, 'g, 'de>(&'g mut EachRecord<'f, 'de>);
        impl<'de> Visitor<'de> for RecordsVisitor<'_, '_, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of sign-in records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while let Some(record) = seq.next_element::<Fields<'de>>()? {
                    (self.0)(record);
                }
                Ok(())
            }
        }
        d.deserialize_seq(RecordsVisitor(self.0))
    }
}

struct MessageSeed<'f, 'de>(EachRecord<'f, 'de>);

impl<'de> DeserializeSeed<'de> for MessageSeed<'_, 'de> {
    type Value = Option<Fields<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Fields<'de>>, D::Error> {
        struct MessageVisitor<'f, 'de>(EachRecord<'f, 'de>);
        impl<'de> Visitor<'de> for MessageVisitor<'_, 'de> {
            type Value = Option<Fields<'de>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sign-in record, an array of records, or an object with \"records\" or \"value\"")
            }
            fn visit_seq<A: SeqAccess<'de>>(mut self, seq: A) -> Result<Self::Value, A::Error> {
                RecordsSeed(&mut self.0).deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Fields::default();
                let mut envelope = false;
                let mut seen = super::keys::Seen::default();
                while let Some(Key(key)) = map.next_key::<Key>()? {
                    // Records under a repeated key follow on: not ambiguous.
                    if !matches!(key, Known::Other | Known::Records | Known::Value) && !seen.first(key) {
                        return Err(duplicate(key));
                    }
                    match key {
                        Known::Records | Known::Value => {
                            map.next_value_seed(RecordsSeed(&mut self.0))?;
                            envelope = true;
                        }
                        key => {
                            if !read_field(&mut fields, key, Layer::Top, &mut map)? {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                }
                Ok((!envelope).then_some(fields))
            }
        }
        d.deserialize_any(MessageVisitor(self.0))
    }
}

/// The same message split into the raw bytes of each record, used only when
/// the typed parse failed: it finds which records are bad and keeps their bytes.
pub enum RawMessage<'a> {
    Batch(Vec<&'a RawValue>),
    Single,
}

impl<'de> Deserialize<'de> for RawMessage<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawMessage<'de>, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawMessage<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object or array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawMessage<'de>, A::Error> {
                Vec::<&'de RawValue>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(RawMessage::Batch)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMessage<'de>, A::Error> {
                let mut batch = None;
                while let Some(Key(key)) = map.next_key::<Key>()? {
                    match key {
                        // Records under a repeated key follow on, as both readers read them.
                        Known::Records | Known::Value => {
                            if let Some(more) = map.next_value::<Option<Vec<&'de RawValue>>>()? {
                                batch.get_or_insert_with(Vec::new).extend(more);
                            }
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(batch.map_or(RawMessage::Single, RawMessage::Batch))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RawMessage<'de>, E> {
                Ok(RawMessage::Single)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawMessage<'de>, E> {
                Ok(RawMessage::Single)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawMessage<'de>, E> {
                Ok(RawMessage::Single)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawMessage<'de>, E> {
                Ok(RawMessage::Single)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawMessage<'de>, E> {
                Ok(RawMessage::Single)
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawMessage<'de>, E> {
                Ok(RawMessage::Single)
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

pub fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// The error for a key given twice in one object.
fn duplicate<E: de::Error>(key: Known) -> E {
    E::custom(format_args!(
        "duplicate key `{}` in one object (in any letter case): which value holds is ambiguous",
        key.name()
    ))
}
