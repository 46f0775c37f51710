//! The fast path of decode: a hand-written JSON reader for the common case.
//!
//! `serde_json` through serde's visitors costs about 2.5 times a bare parse
//! of the same bytes, most of it per key (a record has about 160, of which
//! decode wants about 40). This reader does what the serde reader in
//! [`super::fields`] does, to the same [`Fields`], in one pass over the bytes:
//! keys are matched as raw bytes, strings are found eight bytes at a time,
//! and values nobody reads are skipped by a strict, allocation-free walk.
//!
//! It is strict: what it accepts is valid JSON that the serde reader reads to
//! the same fields (a property test checks both on real and mutated
//! messages). For anything unusual (invalid JSON, a value of the wrong type,
//! a float where text is wanted, an escaped key, very deep nesting) it gives
//! up with [`Bail`] and decode falls back to the serde reader, which also
//! explains errors with the path of the bad field. Giving up costs time, never
//! a different answer.

use std::borrow::Cow;

use super::fields::{
    AuthStep, EachRecord, EventTypes, Fields, Layer, ReportOnlyResult, Status, Str, flag_from_text, is_null_text, merge,
};
use super::keys::{self, Known, Seen};
use super::requirement::Mechanisms;

/// The fast path gave up on this message; the serde reader decides.
#[derive(Debug)]
pub struct Bail;

type R<T> = Result<T, Bail>;

/// A value read for `key`, unless `key` was met already in this object.
#[inline(always)]
fn once<T>(seen: &mut Seen, key: Known, value: R<T>) -> R<T> {
    if seen.first(key) { value } else { Err(Bail) }
}

/// Deeper than this, the serde reader decides (it has its own limit).
const MAX_DEPTH: u32 = 100;

/// Same contract as [`super::fields::parse_message`].
pub fn parse_message<'a>(bytes: &'a [u8], each: EachRecord<'_, 'a>) -> R<Option<Fields<'a>>> {
    let mut s = Scanner { b: bytes, i: 0, depth: 0 };
    let single = match s.peek()? {
        b'{' => {
            s.i += 1;
            s.message_object(each)?
        }
        b'[' => {
            s.i += 1;
            s.records(each)?;
            None
        }
        _ => return Err(Bail),
    };
    s.end()?;
    Ok(single)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    depth: u32,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that is `"`, `\` or a control character
/// (exact for the lowest such byte, which is the one used).
#[inline(always)]
fn specials(w: u64) -> u64 {
    let quote = w ^ (ONES * b'"' as u64);
    let backslash = w ^ (ONES * b'\\' as u64);
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    (zero_byte(quote) | zero_byte(backslash) | (w.wrapping_sub(ONES * 0x20) & !w)) & HIGHS
}

/// Index of the first `"`, `\` or control character at or after `i`, and
/// whether a byte before it is not ASCII.
#[inline(always)]
fn next_special(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let mut high = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let m = specials(w);
        if m != 0 {
            let at = m.trailing_zeros();
            // The bytes before the special one: those below its high bit.
            high |= w & ((1u64 << at) - 1);
            return Some((i + (at / 8) as usize, high & HIGHS != 0));
        }
        high |= w;
        i += 8;
    }
    let tail = &b[i.min(b.len())..];
    let p = tail.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    Some((i + p, high & HIGHS != 0 || !tail[..p].is_ascii()))
}

impl<'a> Scanner<'a> {
    #[inline(always)]
    fn ws(&mut self) {
        // Messages are mostly compact: one comparison says "no whitespace".
        while let Some(&c) = self.b.get(self.i) {
            if c > b' ' || !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return;
            }
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    #[inline(always)]
    fn peek(&mut self) -> R<u8> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Bail)
    }

    fn end(&mut self) -> R<()> {
        self.ws();
        if self.i == self.b.len() { Ok(()) } else { Err(Bail) }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { Err(Bail) } else { Ok(()) }
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// Called after `{` or `[`, or after a member or element: true when
    /// another follows, false at `close`.
    #[inline(always)]
    fn more(&mut self, close: u8, first: &mut bool) -> R<bool> {
        let c = self.peek()?;
        if c == close {
            self.i += 1;
            return Ok(false);
        }
        if !std::mem::take(first) {
            if c != b',' {
                return Err(Bail);
            }
            self.i += 1;
        }
        Ok(true)
    }

    /// The next member's key as raw bytes and the `:` after it; `None` at `}`.
    #[inline(always)]
    fn raw_key(&mut self, first: &mut bool) -> R<Option<RawStr<'a>>> {
        if !self.more(b'}', first)? {
            return Ok(None);
        }
        if self.peek()? != b'"' {
            return Err(Bail);
        }
        self.i += 1;
        let key = self.raw_str()?;
        if self.peek()? != b':' {
            return Err(Bail);
        }
        self.i += 1;
        Ok(Some(key))
    }

    /// The next member's key, unescaped; `None` at `}`.
    #[inline(always)]
    fn plain_key(&mut self, first: &mut bool) -> R<Option<&'a [u8]>> {
        match self.raw_key(first)? {
            None => Ok(None),
            // An escaped key is legal and rare: the serde reader unescapes it.
            Some(RawStr { escaped: true, .. }) => Err(Bail),
            Some(key) => Ok(Some(key.bytes)),
        }
    }

    /// After `{`: hands each member's key to `member`, which reads or skips its value.
    #[inline(always)]
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> R<()>) -> R<()> {
        self.enter()?;
        let mut first = true;
        while let Some(key) = self.plain_key(&mut first)? {
            member(self, key)?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// The next member's key, looked up; `None` at `}`.
    #[inline(always)]
    fn key(&mut self, first: &mut bool) -> R<Option<Known>> {
        Ok(self.plain_key(first)?.map(keys::lookup))
    }

    #[inline(always)]
    fn more_elements(&mut self, first: &mut bool) -> R<bool> {
        self.more(b']', first)
    }

    /// After the opening quote: the bytes up to the closing quote (consumed).
    /// Escapes are checked, not decoded.
    #[inline(always)]
    fn raw_str(&mut self) -> R<RawStr<'a>> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let mut escaped = false;
        let mut ascii = true;
        loop {
            let (j, high) = next_special(b, i).ok_or(Bail)?;
            ascii &= !high;
            match b[j] {
                b'"' => {
                    self.i = j + 1;
                    return Ok(RawStr { bytes: &b[start..j], escaped, ascii });
                }
                b'\\' => {
                    escaped = true;
                    i = match b.get(j + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j + 2,
                        Some(b'u') if b.get(j + 2..j + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => j + 6,
                        _ => return Err(Bail),
                    };
                }
                _ => return Err(Bail),
            }
        }
    }

    /// After the opening quote: the string, borrowed unless it has escapes.
    fn str(&mut self) -> R<Str<'a>> {
        self.raw_str()?.decode()
    }

    fn skip_number(&mut self) -> R<&'a [u8]> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(Bail),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return Err(Bail);
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return Err(Bail);
            }
        }
        self.i = i;
        Ok(&b[start..i])
    }

    /// Skips one value, checking that it is valid JSON: strings, the most
    /// common, here, the rest in [`Self::skip_value`].
    #[inline(always)]
    fn skip(&mut self) -> R<()> {
        if self.peek()? == b'"' {
            self.i += 1;
            self.raw_str().map(drop)
        } else {
            self.skip_value()
        }
    }

    /// Skips one value, checking that it is valid JSON.
    fn skip_value(&mut self) -> R<()> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.raw_str().map(drop)
            }
            b'{' => {
                self.i += 1;
                self.enter()?;
                let mut first = true;
                while self.raw_key(&mut first)?.is_some() {
                    self.skip()?;
                }
                self.depth -= 1;
                Ok(())
            }
            b'[' => {
                self.i += 1;
                self.enter()?;
                let mut first = true;
                while self.more_elements(&mut first)? {
                    self.skip()?;
                }
                self.depth -= 1;
                Ok(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number().map(drop),
            _ => Err(Bail),
        }
    }

    /// A lenient text value (`fields::Text`): string, boolean, null, or a
    /// non-negative integer kept as its digits. Other numbers: [`Bail`].
    fn text(&mut self) -> R<Option<Str<'a>>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.str().map(Some)
            }
            b'n' => self.literal(b"null").map(|()| None),
            b't' => self.literal(b"true").map(|()| Some(Cow::Borrowed("true"))),
            b'f' => self.literal(b"false").map(|()| Some(Cow::Borrowed("false"))),
            b'0'..=b'9' => {
                let number = self.skip_number()?;
                // What serde's u64 gives back; JSON has no leading zeros.
                if number.iter().all(u8::is_ascii_digit) && number.len() < 20 {
                    Ok(Some(Cow::Borrowed(std::str::from_utf8(number).map_err(|_| Bail)?)))
                } else {
                    Err(Bail)
                }
            }
            _ => Err(Bail),
        }
    }

    /// `fields::Flag`.
    fn flag(&mut self) -> R<Option<bool>> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| Some(true)),
            b'f' => self.literal(b"false").map(|()| Some(false)),
            b'n' => self.literal(b"null").map(|()| None),
            b'"' => {
                self.i += 1;
                flag_from_text(&self.str()?).ok_or(Bail)
            }
            _ => match self.skip_number()? {
                b"0" => Ok(Some(false)),
                b"1" => Ok(Some(true)),
                _ => Err(Bail),
            },
        }
    }

    /// A message that is an object: an envelope (`records`, `value`) or one record.
    fn message_object(&mut self, each: EachRecord<'_, 'a>) -> R<Option<Fields<'a>>> {
        let mut fields = Fields::default();
        let mut envelope = false;
        let mut first = true;
        let mut seen = Seen::default();
        while let Some(key) = self.key(&mut first)? {
            if !matches!(key, Known::Other | Known::Records | Known::Value) && !seen.first(key) {
                return Err(Bail);
            }
            match key {
                Known::Records | Known::Value => {
                    if self.peek()? != b'[' {
                        return Err(Bail);
                    }
                    self.i += 1;
                    self.records(&mut *each)?;
                    envelope = true;
                }
                key => {
                    if !self.field(&mut fields, key, Layer::Top)? {
                        self.skip()?;
                    }
                }
            }
        }
        Ok((!envelope).then_some(fields))
    }

    /// After `[`: records, each handed to `each`.
    fn records(&mut self, each: EachRecord<'_, 'a>) -> R<()> {
        let mut first = true;
        while self.more_elements(&mut first)? {
            if self.peek()? != b'{' {
                return Err(Bail);
            }
            self.i += 1;
            let mut fields = Fields::default();
            self.members(&mut fields, Layer::Top)?;
            each(fields);
        }
        Ok(())
    }

    /// After `{`: the members of a record (or its `properties`) into `fields`.
    fn members(&mut self, fields: &mut Fields<'a>, layer: Layer) -> R<()> {
        self.enter()?;
        let mut first = true;
        let mut seen = Seen::default();
        while let Some(key) = self.key(&mut first)? {
            if key != Known::Other && !seen.first(key) {
                return Err(Bail); // a key twice: the serde reader names it
            }
            if !self.field(fields, key, layer)? {
                self.skip()?;
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// `fields::read_field`: reads the value of a record field; false for other keys.
    fn field(&mut self, fields: &mut Fields<'a>, key: Known, layer: Layer) -> R<bool> {
        if key == Known::Other {
            return Ok(false);
        }
        if let Some(field) = fields.text_field(key, layer) {
            merge(field, self.text()?, layer);
            return Ok(true);
        }
        match key {
            Known::Properties if layer == Layer::Top => match self.peek()? {
                b'{' => {
                    self.i += 1;
                    self.members(fields, Layer::Properties)?;
                    fields.has_properties = true;
                }
                b'n' => self.literal(b"null")?,
                _ => return Err(Bail),
            },
            Known::Location => {
                let (country, city) = self.location()?;
                merge(&mut fields.country, country, layer);
                merge(&mut fields.city, city, layer);
            }
            Known::IsInteractive => merge(&mut fields.is_interactive, self.flag()?, layer),
            Known::SignInEventTypes => merge(&mut fields.sign_in_event_types, Some(self.event_types()?), layer),
            Known::Status => merge(&mut fields.status, Some(self.nested::<Status>()?), layer),
            Known::AuthenticationDetails => {
                merge(&mut fields.authentication_details, Some(self.nested::<Vec<AuthStep>>()?), layer)
            }
            Known::AppliedConditionalAccessPolicies | Known::ConditionalAccessPolicies => {
                merge(&mut fields.report_only, Some(self.nested::<Vec<ReportOnlyResult>>()?), layer)
            }
            Known::AuthenticationRequirementPolicies => {
                merge(&mut fields.requirement_policies, Some(self.nested::<Mechanisms>()?), layer)
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `location`: an object, or a country code.
    #[allow(clippy::type_complexity)]
    fn location(&mut self) -> R<(Option<Str<'a>>, Option<Str<'a>>)> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                let country = self.str()?;
                Ok(((!is_null_text(&country)).then_some(country), None))
            }
            b'n' => self.literal(b"null").map(|()| (None, None)),
            b'{' => {
                self.i += 1;
                let (mut country, mut city) = (None, None);
                let mut seen = Seen::default();
                self.object(|s, key| {
                    match key {
                        k if Known::CountryOrRegion.is(k) => {
                            country = once(&mut seen, Known::CountryOrRegion, s.text())?
                        }
                        k if Known::City.is(k) => city = once(&mut seen, Known::City, s.text())?,
                        _ => s.skip()?,
                    }
                    Ok(())
                })?;
                Ok((country, city))
            }
            _ => Err(Bail),
        }
    }

    /// `signInEventTypes`: a list of names, or text of one.
    fn event_types(&mut self) -> R<EventTypes> {
        match self.peek()? {
            b'[' => {
                self.i += 1;
                let mut types = EventTypes::default();
                let mut first = true;
                while self.more_elements(&mut first)? {
                    if let Some(name) = self.text()? {
                        types.insert_named(&name);
                    }
                }
                Ok(types)
            }
            b'"' => {
                self.i += 1;
                EventTypes::from_text(&self.str()?).map_err(|_| Bail)
            }
            b'n' => self.literal(b"null").map(|()| EventTypes::default()),
            _ => Err(Bail),
        }
    }

    /// A nested value (`status`, `authenticationDetails`, Conditional Access
    /// policies): the value itself, JSON text of it in a string (Log
    /// Analytics), or null.
    fn nested<T: Nested<'a, In<'a> = T>>(&mut self) -> R<T> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| T::default()),
            b'"' => {
                self.i += 1;
                let text = self.str()?;
                if is_null_text(&text) {
                    return Ok(T::default());
                }
                nested_in_text::<T>(&text, self.depth)
            }
            c if c == T::OPEN => {
                self.i += 1;
                T::read(self)
            }
            _ => Err(Bail),
        }
    }
}

/// A string as [`Scanner::raw_str`] found it: its bytes between the quotes,
/// whether they hold escapes, and whether they are all ASCII.
#[derive(Clone, Copy)]
struct RawStr<'a> {
    bytes: &'a [u8],
    escaped: bool,
    ascii: bool,
}

impl<'a> RawStr<'a> {
    /// The string: borrowed unless it has escapes, checked to be UTF-8.
    #[inline(always)]
    fn decode(self) -> R<Str<'a>> {
        if self.escaped {
            unescape(self.bytes).map(Cow::Owned)
        } else if self.ascii {
            // SAFETY: ASCII is UTF-8, and `raw_str` saw every byte while it
            // looked for the closing quote. Most kept strings are short and
            // ASCII; `from_utf8` would look at each byte again, one at a time.
            Ok(Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(self.bytes) }))
        } else {
            std::str::from_utf8(self.bytes).map(Cow::Borrowed).map_err(|_| Bail)
        }
    }
}

/// A nested value from JSON text, made owned.
fn nested_in_text<'a, T: Nested<'a>>(text: &str, depth: u32) -> R<T> {
    let mut inner = Scanner { b: text.as_bytes(), i: 0, depth };
    if inner.peek()? != T::OPEN {
        return Err(Bail);
    }
    inner.i += 1;
    let value = T::read(&mut inner)?;
    inner.end()?;
    Ok(T::owned(value))
}

/// A nested value read by [`Scanner::nested`].
trait Nested<'a>: Default {
    /// `{` or `[`.
    const OPEN: u8;
    /// Reads the value after `OPEN`.
    fn read<'t>(s: &mut Scanner<'t>) -> R<Self::In<'t>>;
    type In<'t>;
    /// The value read from text, made owned.
    fn owned(value: Self::In<'_>) -> Self;
}

impl<'a> Nested<'a> for Status<'a> {
    const OPEN: u8 = b'{';
    type In<'t> = Status<'t>;
    fn read<'t>(s: &mut Scanner<'t>) -> R<Status<'t>> {
        let mut status = Status::default();
        let mut seen = Seen::default();
        s.object(|s, key| {
            match key {
                k if Known::ErrorCode.is(k) => status.error_code = once(&mut seen, Known::ErrorCode, s.text())?,
                k if Known::FailureReason.is(k) => {
                    status.failure_reason = once(&mut seen, Known::FailureReason, s.text())?
                }
                k if Known::AdditionalDetails.is(k) => {
                    status.additional_details = once(&mut seen, Known::AdditionalDetails, s.text())?
                }
                _ => s.skip()?,
            }
            Ok(())
        })?;
        Ok(status)
    }
    fn owned(value: Status<'_>) -> Self {
        value.into_owned()
    }
}

impl<'a> Nested<'a> for Vec<AuthStep<'a>> {
    const OPEN: u8 = b'[';
    type In<'t> = Vec<AuthStep<'t>>;
    fn read<'t>(s: &mut Scanner<'t>) -> R<Vec<AuthStep<'t>>> {
        s.enter()?;
        let mut steps = Vec::new();
        let mut first = true;
        while s.more_elements(&mut first)? {
            if s.peek()? != b'{' {
                return Err(Bail);
            }
            s.i += 1;
            let mut step = AuthStep::default();
            let mut seen = Seen::default();
            s.object(|s, key| {
                match key {
                    k if Known::AuthenticationMethod.is(k) => {
                        step.method = once(&mut seen, Known::AuthenticationMethod, s.text())?
                    }
                    k if Known::AuthenticationStepRequirement.is(k) => {
                        step.step_requirement = once(&mut seen, Known::AuthenticationStepRequirement, s.text())?
                    }
                    k if Known::Succeeded.is(k) => step.succeeded = once(&mut seen, Known::Succeeded, s.flag())?,
                    k if Known::AuthenticationStepResultDetail.is(k) => {
                        step.result_detail = once(&mut seen, Known::AuthenticationStepResultDetail, s.text())?
                    }
                    _ => s.skip()?,
                }
                Ok(())
            })?;
            steps.push(step);
        }
        s.depth -= 1;
        Ok(steps)
    }
    fn owned(value: Vec<AuthStep<'_>>) -> Self {
        value.into_iter().map(AuthStep::into_owned).collect()
    }
}

impl<'a> Nested<'a> for Vec<ReportOnlyResult<'a>> {
    const OPEN: u8 = b'[';
    type In<'t> = Vec<ReportOnlyResult<'t>>;
    /// Most policies are not report-only: they are read without allocating.
    fn read<'t>(s: &mut Scanner<'t>) -> R<Vec<ReportOnlyResult<'t>>> {
        s.enter()?;
        let mut kept = Vec::new();
        let mut first = true;
        while s.more_elements(&mut first)? {
            match s.peek()? {
                b'n' => s.literal(b"null")?,
                b'{' => {
                    s.i += 1;
                    let (mut name, mut result) = (None, None);
                    let mut seen = Seen::default();
                    s.object(|s, key| {
                        match key {
                            k if Known::DisplayName.is(k) => name = once(&mut seen, Known::DisplayName, s.text())?,
                            k if Known::Result.is(k) => result = once(&mut seen, Known::Result, s.text())?,
                            _ => s.skip()?,
                        }
                        Ok(())
                    })?;
                    kept.extend(ReportOnlyResult::of(name, result));
                }
                _ => return Err(Bail),
            }
        }
        s.depth -= 1;
        Ok(kept)
    }
    fn owned(value: Vec<ReportOnlyResult<'_>>) -> Self {
        value.into_iter().map(ReportOnlyResult::into_owned).collect()
    }
}

impl<'a> Nested<'a> for Mechanisms {
    const OPEN: u8 = b'[';
    type In<'t> = Mechanisms;
    /// `authenticationRequirementPolicies[]`, folded into a set as it is read.
    fn read<'t>(s: &mut Scanner<'t>) -> R<Mechanisms> {
        s.enter()?;
        let mut set = Mechanisms::default();
        let mut first = true;
        while s.more_elements(&mut first)? {
            match s.peek()? {
                b'n' => s.literal(b"null")?,
                b'{' => {
                    s.i += 1;
                    let mut provider = None;
                    let mut seen = Seen::default();
                    s.object(|s, key| {
                        match key {
                            k if Known::RequirementProvider.is(k) => {
                                provider = once(&mut seen, Known::RequirementProvider, s.text())?
                            }
                            _ => s.skip()?,
                        }
                        Ok(())
                    })?;
                    set.insert_provider(provider.as_deref());
                }
                _ => return Err(Bail),
            }
        }
        s.depth -= 1;
        Ok(set)
    }
    fn owned(value: Mechanisms) -> Self {
        value
    }
}

/// Decodes the escapes of a string whose escapes [`Scanner::raw_str`] checked.
/// A lone surrogate gives up (serde decides what it is).
fn unescape(raw: &[u8]) -> R<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let Some(p) = raw[i..].iter().position(|&c| c == b'\\') else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        out.extend_from_slice(&raw[i..i + p]);
        i += p;
        let escape = *raw.get(i + 1).ok_or(Bail)?;
        i += 2;
        let c = match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = hex4(raw, i)?;
                i += 4;
                let code = match high {
                    0xD800..=0xDBFF => {
                        if raw.get(i..i + 2) != Some(b"\\u") {
                            return Err(Bail);
                        }
                        let low = hex4(raw, i + 2)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(Bail);
                        }
                        i += 6;
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(Bail),
                    code => code,
                };
                char::from_u32(code).ok_or(Bail)?
            }
            _ => return Err(Bail),
        };
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    }
    String::from_utf8(out).map_err(|_| Bail)
}

fn hex4(raw: &[u8], i: usize) -> R<u32> {
    let hex = raw.get(i..i + 4).ok_or(Bail)?;
    u32::from_str_radix(std::str::from_utf8(hex).map_err(|_| Bail)?, 16).map_err(|_| Bail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast<B: AsRef<[u8]> + ?Sized>(json: &B) -> Option<Vec<Fields<'_>>> {
        let mut records = Vec::new();
        let single = parse_message(json.as_ref(), &mut |r| records.push(r)).ok()?;
        records.extend(single);
        Some(records)
    }

    fn serde<B: AsRef<[u8]> + ?Sized>(json: &B) -> Option<Vec<Fields<'_>>> {
        let mut records = Vec::new();
        let single = super::super::fields::parse_message(json.as_ref(), &mut |r| records.push(r)).ok()?;
        records.extend(single);
        Some(records)
    }

    #[test]
    fn reads_what_the_serde_reader_reads() {
        for json in [
            r#"{"records":[{"time":"2025-01-01T00:00:00Z","category":"SignInLogs","location":"US","properties":{"userPrincipalName":"a@b.c","location":{"city":"X","countryOrRegion":"DE"},"status":{"errorCode":0},"isInteractive":"True","appliedConditionalAccessPolicies":[null,{"displayName":"P","result":"reportOnlyFailure"},{"displayName":"Q","result":"success"}],"authenticationDetails":[{"authenticationMethod":"Password","succeeded":true}]}}]}"#,
            r#"[{"Type":"SigninLogs","TimeGenerated":"x","Status":"{\"errorCode\":50126}","AuthenticationDetails":"[{\"authenticationMethod\":\"Password\",\"succeeded\":\"false\"}]","ConditionalAccessPolicies":"None","LocationDetails":"{}"}]"#,
            r#"{"value":[{"createdDateTime":"x","signInEventTypes":["interactiveUser"],"userDisplayName":"A \u00e9 \ud83d\ude00 \"q\"\n","status":{"errorCode":50074,"additionalDetails":null}}]}"#,
            r#" {"time":"t","category":"SignInLogs","resultType":"0","properties":null} "#,
            r#"{"category":"SignInLogs","properties":{"category":"nope","time":"no","userId":"u","x":[1,-2.5e+3,true,false,null,{"a":[]}]}}"#,
        ] {
            let fast = fast(json).unwrap_or_else(|| panic!("fast path gave up on {json}"));
            assert_eq!(Some(fast), serde(json), "{json}");
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_read_itself() {
        for json in [
            r#"{"records":[1]}"#,
            r#"{"resultType":1.5}"#,
            r#"{"resultType":-1}"#,
            r#"{"us\u0065rId":"x"}"#,
            r#"{"userId":"\ud800"}"#,
            r#""text""#,
            r#"{"records":null}"#,
            // Found in review: policy names serde checks even when nothing keeps them.
            r#"{"appliedConditionalAccessPolicies":[{"displayName":"\ud800","result":"success"}]}"#,
            r#"{"appliedConditionalAccessPolicies":[{"result":"\ud800","result":"success"}]}"#,
            r#"{"ConditionalAccessPolicies":"[{\"displayName\":\"\\udc00\",\"result\":\"success\"}]"}"#,
        ] {
            assert!(fast(json).is_none(), "{json}");
        }
        let bad_utf8 = b"{\"appliedConditionalAccessPolicies\":[{\"displayName\":\"\xff\",\"displayName\":\"P\",\"result\":\"reportOnlySuccess\"}]}";
        assert!(fast(bad_utf8.as_slice()).is_none());
        assert!(serde(bad_utf8.as_slice()).is_none());
    }

    #[test]
    fn rejects_what_is_not_json() {
        for json in [
            "",
            "{",
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":1e}"#,
            r#"{"a":"x\q"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":[1,]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a" 1}"#,
            r#"{"a":tru}"#,
            r#"{"a":1} x"#,
            r#"{"a":"\u12"}"#,
            r#"[{"a":1}{"b":2}]"#,
        ] {
            assert!(fast(json).is_none(), "{json}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn the_generated_tenant_never_needs_the_serde_reader() {
        use crate::generate::{Format, Generator, TenantSpec};
        for format in [Format::Envelope, Format::Ndjson] {
            let spec = TenantSpec { users: 300, records: 3_000, format, ..TenantSpec::default() };
            for message in Generator::new(spec) {
                for line in message.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let text = std::str::from_utf8(line).unwrap();
                    let fast = fast(text).unwrap_or_else(|| panic!("fast path gave up on {text}"));
                    assert_eq!(Some(fast), serde(text));
                }
            }
        }
    }

    #[test]
    fn finds_specials_in_every_lane() {
        for at in 0..20 {
            for special in [b'"', b'\\', 0x1f, 0x00] {
                let mut bytes = vec![b'a'; 20];
                bytes[at] = special;
                assert_eq!(next_special(&bytes, 0), Some((at, false)));
            }
        }
        assert_eq!(next_special(b"\x7f\x80\xff abcdefgh", 0), None);
        for at in 0..20 {
            let mut bytes = vec![b'a'; 21];
            bytes[at] = 0xc3;
            bytes[20] = b'"';
            assert_eq!(next_special(&bytes, 0), Some((20, true)));
            bytes[at] = b'"';
            bytes[at + 1..].fill(0xc3);
            assert_eq!(next_special(&bytes, 0), Some((at, false)), "non-ASCII after the quote");
        }
    }
}
