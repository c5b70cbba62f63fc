//! Marathon timestamps: ISO 8601 UTC with exactly three fraction digits and `Z`
//! (`2015-09-25T15:13:48.343Z`), as `state/Timestamp.scala` formats them.
//!
//! Values are unix milliseconds (`i64`). Output always has three fraction digits, even `.000`;
//! input accepts any ISO 8601 / RFC 3339 instant (any offset, any number of fraction digits,
//! which are truncated to milliseconds as Marathon's `Timestamp` does).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};

use crate::error::Error;

/// Formats unix milliseconds as Marathon does: `2015-09-25T15:13:48.343Z`.
///
/// ```
/// assert_eq!(
///     plateau_marathon::time::format_timestamp(1_443_194_028_343).unwrap(),
///     "2015-09-25T15:13:48.343Z"
/// );
/// ```
pub fn format_timestamp(unix_ms: i64) -> Result<String, Error> {
    let instant = Utc
        .timestamp_millis_opt(unix_ms)
        .single()
        .ok_or(Error::TimestampOutOfRange { unix_ms })?;
    Ok(instant.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Parses an ISO 8601 instant into unix milliseconds (sub-millisecond digits are truncated).
///
/// Accepts `Z` or a numeric offset, `T` or a space between date and time, and a missing
/// fraction. A date-time without any offset is read as UTC, as Marathon's parser does for
/// `version` fields written by old clients.
pub fn parse_timestamp(text: &str) -> Result<i64, Error> {
    let invalid = |reason: &str| Error::InvalidTimestamp {
        input: text.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    if let Ok(instant) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(instant.timestamp_millis());
    }
    // ISO 8601 also allows a lowercase designator or no offset at all.
    let upper = trimmed.to_ascii_uppercase();
    if let Ok(instant) = DateTime::parse_from_rfc3339(&upper) {
        return Ok(instant.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&upper, format) {
            return Ok(naive.and_utc().timestamp_millis());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y%m%dT%H%M%S%.fZ",
    ] {
        if let Ok(instant) = DateTime::parse_from_str(&upper, format) {
            return Ok(instant.timestamp_millis());
        }
        if let Ok(naive) = NaiveDateTime::parse_from_str(&upper, format) {
            return Ok(naive.and_utc().timestamp_millis());
        }
    }
    Err(invalid("not an ISO 8601 instant"))
}

/// Re-formats any accepted ISO 8601 instant into Marathon's canonical form.
pub fn canonical_timestamp(text: &str) -> Result<String, Error> {
    format_timestamp(parse_timestamp(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_three_fraction_digits_and_z() {
        assert_eq!(format_timestamp(0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_443_194_028_343).unwrap(),
            "2015-09-25T15:13:48.343Z"
        );
        assert_eq!(
            format_timestamp(1_795_629_052_123).unwrap(),
            "2026-11-25T17:50:52.123Z"
        );
        assert_eq!(format_timestamp(-1).unwrap(), "1969-12-31T23:59:59.999Z");
        assert!(format_timestamp(i64::MAX).is_err());
    }

    #[test]
    fn parses_iso_8601_variants() {
        let expected = 1_443_194_028_343;
        for text in [
            "2015-09-25T15:13:48.343Z",
            "2015-09-25T15:13:48.343+00:00",
            "2015-09-25T17:13:48.343+02:00",
            "2015-09-25T15:13:48.343999Z",
            "2015-09-25t15:13:48.343z",
            "2015-09-25T15:13:48.343",
        ] {
            assert_eq!(parse_timestamp(text).unwrap(), expected, "{text}");
        }
        assert_eq!(
            parse_timestamp("2015-09-25T15:13:48Z").unwrap(),
            1_443_194_028_000
        );
        assert!(parse_timestamp("").is_err());
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2015-13-25T15:13:48Z").is_err());
    }

    #[test]
    fn canonical_form_round_trips() {
        assert_eq!(
            canonical_timestamp("2015-09-25T17:13:48+02:00").unwrap(),
            "2015-09-25T15:13:48.000Z"
        );
    }

    proptest::proptest! {
        #[test]
        fn format_then_parse_is_identity(ms in -62_135_596_800_000i64..253_402_300_799_999i64) {
            let text = format_timestamp(ms).unwrap();
            proptest::prop_assert_eq!(text.len(), 24);
            proptest::prop_assert_eq!(parse_timestamp(&text).unwrap(), ms);
        }
    }
}
