//! systemd calendar expressions (systemd.time(7), `OnCalendar=`): parsing and the search for the
//! next and previous matching wall-clock time. Mapping wall-clock times to instants (time zones,
//! daylight saving) is done by the caller, [`super::CalendarSchedule`].
//!
//! Normalized form: `DayOfWeek Year-Month-Day Hour:Minute:Second [TimeZone]`.
//! - Each part is a comma-separated list of values `v`, ranges `a..b`, repetitions `v/r`
//!   (`v`, `v+r`, `v+2r`, ... up to the field's maximum) or `a..b/r`, or `*` (any; `*/r` from the
//!   field's minimum).
//! - Weekdays: `Mon`..`Sun` or their full English names, any case; ranges `Mon..Fri`.
//! - The day may follow `~` instead of `-`: it then counts from the end of the month (`~1` is
//!   the last day, `*-02~03` the third last day of February, `Mon *-05~07/1` the last Monday of
//!   May).
//! - The weekday, the date (`*-*-*`) and the time (`00:00:00`) may each be omitted; the year may
//!   be omitted from the date (`12-25`); the seconds from the time (`02:00`). Seconds may carry
//!   a fraction of zeros only (`00.000`): runs have whole-second precision.
//! - Shorthands: `minutely hourly daily monthly weekly yearly annually quarterly
//!   semiannually`.
//! - Years are 1970 to 2199, as in systemd.

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike};

use crate::limits;

/// First year a calendar expression may name.
pub const YEAR_MIN: i32 = 1970;
/// Last year a calendar expression may name (systemd's limit).
pub const YEAR_MAX: i32 = 2199;

/// A set of small non-negative integers (0..256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Set([u64; 4]);

impl Set {
    fn insert(&mut self, value: i32) {
        debug_assert!((0..256).contains(&value));
        self.0[(value / 64) as usize] |= 1 << (value % 64);
    }

    fn contains(&self, value: i32) -> bool {
        (0..256).contains(&value) && self.0[(value / 64) as usize] & (1 << (value % 64)) != 0
    }

    fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The smallest member at or after `value`.
    fn next(&self, value: i32) -> Option<i32> {
        (value.max(0)..256).find(|v| self.contains(*v))
    }

    /// The largest member at or before `value`.
    fn prev(&self, value: i32) -> Option<i32> {
        (0..=value.min(255)).rev().find(|v| self.contains(*v))
    }
}

/// A parsed calendar expression, without its time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarSpec {
    /// Bit `n` set: weekday `n` days from Monday matches.
    weekdays: u8,
    /// Years as offsets from [`YEAR_MIN`].
    years: Set,
    months: Set,
    /// Days of the month; counted from the end (1 = last day) when `from_end`.
    days: Set,
    from_end: bool,
    hours: Set,
    minutes: Set,
    seconds: Set,
}

const WEEKDAYS: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

fn weekday_index(name: &str) -> Option<u8> {
    let lower = name.to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .position(|(short, long)| lower == *short || lower == *long)
        .map(|i| i as u8)
}

fn parse_weekdays(text: &str) -> Result<u8, String> {
    let mut mask = 0u8;
    for item in text.split(',') {
        let (first, last) = match item.split_once("..") {
            Some((a, b)) => (a, b),
            None => (item, item),
        };
        let a = weekday_index(first).ok_or_else(|| format!("'{first}' is not a weekday"))?;
        let b = weekday_index(last).ok_or_else(|| format!("'{last}' is not a weekday"))?;
        if a > b {
            return Err(format!(
                "weekday range '{item}' goes backwards (write Mon..Fri, or Sat,Sun)"
            ));
        }
        for day in a..=b {
            mask |= 1 << day;
        }
    }
    Ok(mask)
}

fn parse_number(text: &str, what: &str) -> Result<i32, String> {
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{text}' is not a {what} number"));
    }
    text.parse()
        .map_err(|_| format!("'{text}' is not a {what} number"))
}

/// Parses one field: a comma-separated list of `*`, `*/r`, `v`, `v/r`, `a..b`, `a..b/r`, with
/// values in `min..=max`. Returns the matching values, each minus `offset`.
fn parse_field(text: &str, what: &str, min: i32, max: i32, offset: i32) -> Result<Set, String> {
    parse_field_directed(text, what, min, max, offset, false)
}

/// [`parse_field`]; with `descending`, repetitions count down towards `min` (days after `~`:
/// `~07/1` is the 7th last day, the 6th last, ..., the last, as in systemd).
fn parse_field_directed(
    text: &str,
    what: &str,
    min: i32,
    max: i32,
    offset: i32,
    descending: bool,
) -> Result<Set, String> {
    let mut set = Set::default();
    if text.is_empty() {
        return Err(format!("an empty {what}"));
    }
    for item in text.split(',') {
        let (range, repeat) = match item.split_once('/') {
            Some((r, step)) => {
                let step = parse_number(step, "repetition")?;
                if step == 0 {
                    return Err(format!("repetition 0 in '{item}'"));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (first, last) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once("..") {
            let (a, b) = (parse_number(a, what)?, parse_number(b, what)?);
            if a > b {
                return Err(format!("{what} range '{range}' goes backwards"));
            }
            (a, b)
        } else {
            let value = parse_number(range, what)?;
            match (repeat.is_some(), descending) {
                (false, _) => (value, value),
                (true, false) => (value, max),
                (true, true) => (min, value),
            }
        };
        for value in [first, last] {
            if !(min..=max).contains(&value) {
                return Err(format!("{what} {value} is outside {min}..{max}"));
            }
        }
        let step = repeat.unwrap_or(1);
        if descending {
            let mut value = last;
            while value >= first {
                set.insert(value - offset);
                value -= step;
            }
        } else {
            let mut value = first;
            while value <= last {
                set.insert(value - offset);
                value += step;
            }
        }
    }
    Ok(set)
}

/// Strips a fraction of zeros from the seconds field (`05.000` → `05`).
fn whole_seconds(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for item in text.split(',') {
        if !out.is_empty() {
            out.push(',');
        }
        // Fractions may follow any number in the item (`00.5/0.5` is refused, `05.0` kept).
        let mut cleaned = String::new();
        let mut chars = item.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '.' && chars.peek() != Some(&'.') && !cleaned.ends_with('.') {
                let mut fraction = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    fraction.push(d);
                    chars.next();
                }
                if fraction.is_empty() || fraction.bytes().any(|b| b != b'0') {
                    return Err(format!(
                        "fractional seconds '{item}' are not supported: runs have whole-second \
                         precision"
                    ));
                }
                continue;
            }
            cleaned.push(c);
        }
        out.push_str(&cleaned);
    }
    Ok(out)
}

fn shorthand(word: &str) -> Option<&'static str> {
    Some(match word.to_ascii_lowercase().as_str() {
        "minutely" => "*-*-* *:*:00",
        "hourly" => "*-*-* *:00:00",
        "daily" => "*-*-* 00:00:00",
        "monthly" => "*-*-01 00:00:00",
        "weekly" => "Mon *-*-* 00:00:00",
        "yearly" | "annually" => "*-01-01 00:00:00",
        "quarterly" => "*-01,04,07,10-01 00:00:00",
        "semiannually" => "*-01,07-01 00:00:00",
        _ => return None,
    })
}

impl CalendarSpec {
    /// Parses an expression without its time zone (the caller splits that off).
    pub fn parse(text: &str) -> Result<CalendarSpec, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() {
            return Err("the expression is empty".to_string());
        }
        if let [word] = words[..] {
            if let Some(expanded) = shorthand(word) {
                return CalendarSpec::parse(expanded);
            }
        }
        let mut rest = &words[..];
        let mut weekdays = 0x7f;
        if rest[0].starts_with(|c: char| c.is_ascii_alphabetic()) {
            weekdays = parse_weekdays(rest[0])?;
            rest = &rest[1..];
        }
        let (date, time) = match rest {
            [] => (None, None),
            [one] if one.contains(':') => (None, Some(*one)),
            [one] => (Some(*one), None),
            [date, time] => (Some(*date), Some(*time)),
            _ => {
                return Err(
                    "expected [weekdays] [year-month-day] [hour:minute[:second]] [zone]"
                        .to_string(),
                )
            }
        };
        let mut spec = CalendarSpec {
            weekdays,
            years: parse_field("*", "year", YEAR_MIN, YEAR_MAX, YEAR_MIN)?,
            months: parse_field("*", "month", 1, 12, 0)?,
            days: parse_field("*", "day", 1, 31, 0)?,
            from_end: false,
            hours: parse_field("0", "hour", 0, 23, 0)?,
            minutes: parse_field("0", "minute", 0, 59, 0)?,
            seconds: parse_field("0", "second", 0, 59, 0)?,
        };
        if let Some(date) = date {
            let (head, day, from_end) = match date.split_once('~') {
                Some((head, day)) => (head, day, true),
                None => match date.rsplit_once('-') {
                    Some((head, day)) => (head, day, false),
                    None => return Err(format!("date '{date}' is not year-month-day")),
                },
            };
            let (year, month) = match head.split_once('-') {
                Some((year, month)) => (Some(year), month),
                None => (None, head),
            };
            if month.contains('-') {
                return Err(format!("date '{date}' has too many parts"));
            }
            if let Some(year) = year {
                let year = expand_short_years(year);
                spec.years = parse_field(&year, "year", YEAR_MIN, YEAR_MAX, YEAR_MIN)?;
            }
            spec.months = parse_field(month, "month", 1, 12, 0)?;
            spec.days = parse_field_directed(day, "day", 1, 31, 0, from_end)?;
            spec.from_end = from_end;
        }
        if let Some(time) = time {
            let parts: Vec<&str> = time.split(':').collect();
            let (hour, minute, second) = match parts[..] {
                [h, m] => (h, m, "00".to_string()),
                [h, m, s] => (h, m, whole_seconds(s)?),
                _ => return Err(format!("time '{time}' is not hour:minute[:second]")),
            };
            spec.hours = parse_field(hour, "hour", 0, 23, 0)?;
            spec.minutes = parse_field(minute, "minute", 0, 59, 0)?;
            spec.seconds = parse_field(&second, "second", 0, 59, 0)?;
        }
        debug_assert!(!spec.months.is_empty() && !spec.hours.is_empty());
        Ok(spec)
    }

    fn day_matches(&self, year: i32, month: u32, day: u32, days_in_month: u32) -> bool {
        let numbered = if self.from_end {
            days_in_month + 1 - day
        } else {
            day
        };
        if !self.days.contains(numbered as i32) {
            return false;
        }
        if self.weekdays == 0x7f {
            return true;
        }
        NaiveDate::from_ymd_opt(year, month, day)
            .is_some_and(|d| self.weekdays & (1 << d.weekday().num_days_from_monday()) != 0)
    }

    /// The first matching wall-clock time at or after `from` (whole seconds), or `None` if there
    /// is none up to [`YEAR_MAX`].
    pub fn next_local(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let (mut y, mut mo, mut d) = (from.year(), from.month() as i32, from.day() as i32);
        let (mut h, mut mi, mut s) = (
            from.hour() as i32,
            from.minute() as i32,
            from.second() as i32,
        );
        for _ in 0..limits::CALENDAR_SEARCH_STEPS_MAX {
            if y > YEAR_MAX {
                return None;
            }
            if y < YEAR_MIN {
                (y, mo, d, h, mi, s) = (YEAR_MIN, 1, 1, 0, 0, 0);
            }
            match self.years.next(y - YEAR_MIN) {
                None => return None,
                Some(found) if found + YEAR_MIN != y => {
                    (y, mo, d, h, mi, s) = (found + YEAR_MIN, 1, 1, 0, 0, 0);
                }
                Some(_) => {}
            }
            match self.months.next(mo) {
                None => {
                    (y, mo, d, h, mi, s) = (y + 1, 1, 1, 0, 0, 0);
                    continue;
                }
                Some(found) if found != mo => (mo, d, h, mi, s) = (found, 1, 0, 0, 0),
                Some(_) => {}
            }
            let dim = days_in_month(y, mo as u32)?;
            match (d.max(1)..=dim as i32).find(|&dd| self.day_matches(y, mo as u32, dd as u32, dim))
            {
                None => {
                    (mo, d, h, mi, s) = (mo + 1, 1, 0, 0, 0);
                    continue;
                }
                Some(found) if found != d => (d, h, mi, s) = (found, 0, 0, 0),
                Some(_) => {}
            }
            match self.hours.next(h) {
                None => {
                    (d, h, mi, s) = (d + 1, 0, 0, 0);
                    continue;
                }
                Some(found) if found != h => (h, mi, s) = (found, 0, 0),
                Some(_) => {}
            }
            match self.minutes.next(mi) {
                None => {
                    (h, mi, s) = (h + 1, 0, 0);
                    continue;
                }
                Some(found) if found != mi => (mi, s) = (found, 0),
                Some(_) => {}
            }
            match self.seconds.next(s) {
                None => {
                    (mi, s) = (mi + 1, 0);
                    continue;
                }
                Some(found) => s = found,
            }
            return NaiveDate::from_ymd_opt(y, mo as u32, d as u32)?
                .and_hms_opt(h as u32, mi as u32, s as u32);
        }
        None
    }

    /// The last matching wall-clock time at or before `from` (whole seconds), or `None` if there
    /// is none from [`YEAR_MIN`] on.
    pub fn prev_local(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let (mut y, mut mo, mut d) = (from.year(), from.month() as i32, from.day() as i32);
        let (mut h, mut mi, mut s) = (
            from.hour() as i32,
            from.minute() as i32,
            from.second() as i32,
        );
        for _ in 0..limits::CALENDAR_SEARCH_STEPS_MAX {
            if y < YEAR_MIN {
                return None;
            }
            if y > YEAR_MAX {
                (y, mo, d, h, mi, s) = (YEAR_MAX, 12, 31, 23, 59, 59);
            }
            match self.years.prev(y - YEAR_MIN) {
                None => return None,
                Some(found) if found + YEAR_MIN != y => {
                    (y, mo, d, h, mi, s) = (found + YEAR_MIN, 12, 31, 23, 59, 59);
                }
                Some(_) => {}
            }
            match self.months.prev(mo) {
                None => {
                    (y, mo, d, h, mi, s) = (y - 1, 12, 31, 23, 59, 59);
                    continue;
                }
                Some(found) if found != mo => (mo, d, h, mi, s) = (found, 31, 23, 59, 59),
                Some(_) => {}
            }
            let dim = days_in_month(y, mo as u32)? as i32;
            if d > dim {
                // Only after a reset to the end of a longer month: the time is already 23:59:59.
                d = dim;
            }
            match (1..=d)
                .rev()
                .find(|&dd| self.day_matches(y, mo as u32, dd as u32, dim as u32))
            {
                None => {
                    (mo, d, h, mi, s) = (mo - 1, 31, 23, 59, 59);
                    continue;
                }
                Some(found) if found != d => (d, h, mi, s) = (found, 23, 59, 59),
                Some(_) => {}
            }
            match self.hours.prev(h) {
                None => {
                    (d, h, mi, s) = (d - 1, 23, 59, 59);
                    continue;
                }
                Some(found) if found != h => (h, mi, s) = (found, 59, 59),
                Some(_) => {}
            }
            match self.minutes.prev(mi) {
                None => {
                    (h, mi, s) = (h - 1, 59, 59);
                    continue;
                }
                Some(found) if found != mi => (mi, s) = (found, 59),
                Some(_) => {}
            }
            match self.seconds.prev(s) {
                None => {
                    (mi, s) = (mi - 1, 59);
                    continue;
                }
                Some(found) => s = found,
            }
            return NaiveDate::from_ymd_opt(y, mo as u32, d as u32)?
                .and_hms_opt(h as u32, mi as u32, s as u32);
        }
        None
    }
}

/// Two-digit years mean 1970–2069, as in systemd (`26-03-29` is 2026).
fn expand_short_years(field: &str) -> String {
    let expand = |text: &str| -> String {
        if text.len() == 2 && text.bytes().all(|b| b.is_ascii_digit()) {
            let value: i32 = text.parse().unwrap_or(0);
            (if value < 70 {
                2000 + value
            } else {
                1900 + value
            })
            .to_string()
        } else {
            text.to_string()
        }
    };
    field
        .split(',')
        .map(|item| {
            let (range, repeat) = match item.split_once('/') {
                Some((r, step)) => (r, Some(step)),
                None => (item, None),
            };
            let range = match range.split_once("..") {
                Some((a, b)) => format!("{}..{}", expand(a), expand(b)),
                None => expand(range),
            };
            match repeat {
                Some(step) => format!("{range}/{step}"),
                None => range,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    u32::try_from((next - first).num_days()).ok()
}

/// One second, the precision of calendar expressions.
pub const SECOND: TimeDelta = TimeDelta::seconds(1);
