//! The one event-time parser. Entra and the pipelines in front of it write
//! `time` in many ways (SIGNIN-SEMANTICS §1): ISO-8601 with 0–9 fractional
//! digits and `Z` or an offset, a space instead of `T`, no zone at all, or US
//! style `11/14/2025 1:48:53 AM [+01:00]`. A time without a zone is UTC.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};

/// Formats without a zone, tried in order after RFC 3339.
const NAIVE_FORMATS: [&str; 6] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

/// Formats that carry an offset but are not RFC 3339.
const ZONED_FORMATS: [&str; 7] = [
    "%m/%d/%Y %I:%M:%S %p %:z",
    "%m/%d/%Y %H:%M:%S %:z",
    "%m/%d/%Y %I:%M:%S %p %z",
    "%Y-%m-%d %H:%M:%S%.f %:z",
    // ISO-8601 offsets RFC 3339 does not take: "+0100", "+01".
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%#z",
];

/// Parses an event time, returning it in UTC. `None` when no known format fits.
pub fn parse_event_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    // Hot path: what Entra itself writes ("2022-01-24T05:10:08.6816663Z").
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // RFC 3339 allows at most what chrono reads; more than 9 fractional digits
    // or a lower-case zone are normalised once and retried.
    if let Some(t) = parse_long_fraction(text) {
        return Some(t);
    }
    for format in ZONED_FORMATS {
        if let Ok(t) = DateTime::<FixedOffset>::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for format in NAIVE_FORMATS {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    None
}

/// Handles ISO times whose fraction has more than nine digits by truncating it.
fn parse_long_fraction(text: &str) -> Option<DateTime<Utc>> {
    let dot = text.find('.')?;
    let digits = text[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
    if digits <= 9 {
        return None;
    }
    let shortened = format!("{}{}", &text[..dot + 10], &text[dot + 1 + digits..]);
    parse_event_time(&shortened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> String {
        parse_event_time(text).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)).unwrap_or_default()
    }

    #[test]
    fn iso_with_any_fraction_and_zone_parses() {
        assert_eq!(utc("2007-01-09T09:41:00Z"), "2007-01-09T09:41:00Z");
        assert_eq!(utc("2007-01-09T09:41:00.22Z"), "2007-01-09T09:41:00.220Z");
        assert_eq!(utc("2007-01-09T09:41:00.6816663Z"), "2007-01-09T09:41:00.681666300Z");
        assert_eq!(utc("2007-01-09T09:41:00.535404056Z"), "2007-01-09T09:41:00.535404056Z");
        assert_eq!(utc("2007-01-09T09:41:00.992099+00:00"), "2007-01-09T09:41:00.992099Z");
        assert_eq!(utc("2007-01-09T11:41:00+02:00"), "2007-01-09T09:41:00Z");
        assert_eq!(utc("2019-10-18T04:45:48.0729893-05:00"), "2019-10-18T09:45:48.072989300Z");
    }

    #[test]
    fn time_without_zone_is_utc() {
        assert_eq!(utc("2007-01-09T09:41:00"), "2007-01-09T09:41:00Z");
        assert_eq!(utc("2023-07-26 23:00:20.889"), "2023-07-26T23:00:20.889Z");
        assert_eq!(utc("2023-07-26 22:58:30.983201900"), "2023-07-26T22:58:30.983201900Z");
    }

    #[test]
    fn us_style_times_parse_with_and_without_offset() {
        assert_eq!(utc("01/09/2007 09:41:00"), "2007-01-09T09:41:00Z");
        assert_eq!(utc("1/9/2007 09:41:00"), "2007-01-09T09:41:00Z");
        assert_eq!(utc("01/09/2007 09:41:00 AM"), "2007-01-09T09:41:00Z");
        assert_eq!(utc("1/9/2007 9:41:00 AM"), "2007-01-09T09:41:00Z");
        assert_eq!(utc("1/9/2007 10:41:00 AM +01:00"), "2007-01-09T09:41:00Z");
        assert_eq!(utc("11/14/2025 1:48:53 AM"), "2025-11-14T01:48:53Z");
        assert_eq!(utc("12/12/2025 3:03:58 PM"), "2025-12-12T15:03:58Z");
    }

    #[test]
    fn iso_offsets_without_colon_or_minutes_parse() {
        assert_eq!(utc("2007-01-09T10:41:00+0100"), "2007-01-09T09:41:00Z");
        assert_eq!(utc("2007-01-09T10:41:00.5+01"), "2007-01-09T09:41:00.500Z");
        assert_eq!(utc("2007-01-09 10:41:00+0100"), "2007-01-09T09:41:00Z");
    }

    #[test]
    fn more_than_nine_fraction_digits_are_truncated() {
        assert_eq!(utc("2007-01-09T09:41:00.1234567891Z"), "2007-01-09T09:41:00.123456789Z");
    }

    #[test]
    fn garbage_is_not_a_time() {
        for text in ["", "yesterday", "2007-13-45T99:00:00Z", "1/9/2007", "Success"] {
            assert_eq!(parse_event_time(text), None, "{text}");
        }
    }
}
