//! Value syntaxes of systemd directives: booleans, byte sizes, time spans, percentages.

use std::time::Duration;

/// A boolean as systemd reads it: `1 yes y true t on` / `0 no n false f off`, any case.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Ok(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Ok(false),
        other => Err(format!(
            "'{other}' is not a boolean (yes/no, true/false, 1/0, on/off)"
        )),
    }
}

/// A memory limit (`MemoryMax=`): `None` for `infinity`, else bytes. Suffixes `K`, `M`, `G`,
/// `T`, `P`, `E` are powers of 1,024; a plain number is bytes; a decimal point is allowed
/// (`1.5G`). Percentages (relative to the machine's memory) are refused.
pub fn parse_bytes(text: &str) -> Result<Option<f64>, String> {
    let text = text.trim();
    if text == "infinity" {
        return Ok(None);
    }
    if text.ends_with('%') || text.ends_with('‰') || text.ends_with('‱') {
        return Err(format!(
            "'{text}' is relative to the memory of the machine, which differs from agent to \
             agent; give a size such as 512M"
        ));
    }
    let (number, scale) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => {
            let exponent = match c {
                'K' => 1,
                'M' => 2,
                'G' => 3,
                'T' => 4,
                'P' => 5,
                'E' => 6,
                _ => {
                    return Err(format!(
                        "'{text}': unknown size suffix '{c}' (K, M, G, T, P, E)"
                    ))
                }
            };
            (&text[..at], 1024f64.powi(exponent))
        }
        _ => (text, 1.0),
    };
    let value = parse_decimal(number).ok_or_else(|| format!("'{text}' is not a size"))?;
    Ok(Some(value * scale))
}

fn parse_decimal(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || text.bytes().filter(|&b| b == b'.').count() > 1
        || text == "."
    {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A percentage such as `150%` as a fraction (`1.5`).
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let number = text
        .strip_suffix('%')
        .ok_or_else(|| format!("'{text}' is not a percentage such as 150%"))?;
    let value = parse_decimal(number).ok_or_else(|| format!("'{text}' is not a percentage"))?;
    Ok(value / 100.0)
}

/// A time span as systemd.time(7) writes it: numbers with units (`usec us µs msec ms seconds
/// second sec s minutes minute min m hours hour hr h days day d weeks week w months month M
/// years year y`), summed, blanks allowed (`1min 30s`, `2h30m`); a bare number is seconds.
/// `infinity` is refused by the callers that need a finite span.
pub fn parse_timespan(text: &str) -> Result<Duration, String> {
    let original = text;
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty time span".to_string());
    }
    if text == "infinity" {
        return Err("'infinity' is not a finite time span".to_string());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = parse_decimal(&rest[..number_len])
            .ok_or_else(|| format!("'{original}' is not a time span such as 1min 30s"))?;
        rest = rest[number_len..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds = match unit {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "usec" | "us" | "µs" | "μs" => 1e-6,
            "msec" | "ms" => 1e-3,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3_600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "M" | "month" | "months" => 2_629_800.0,
            "y" | "year" | "years" => 31_557_600.0,
            other => {
                return Err(format!(
                    "'{original}': unknown time unit '{other}' (us, ms, s, min, h, d, w, M, y)"
                ))
            }
        };
        total += number * seconds;
    }
    // A hundred years: beyond any schedule a unit could mean.
    if !total.is_finite() || total > 3.2e9 {
        return Err(format!("'{original}' is too long a time span"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// A duration in Chronos' ISO 8601 form: `PT<seconds>S`, with a fraction when needed.
pub fn iso_seconds(duration: Duration) -> String {
    let nanos = duration.subsec_nanos();
    if nanos == 0 {
        format!("PT{}S", duration.as_secs())
    } else {
        let fraction = format!("{nanos:09}");
        format!(
            "PT{}.{}S",
            duration.as_secs(),
            fraction.trim_end_matches('0')
        )
    }
}
