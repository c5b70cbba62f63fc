//! Schedule computation: when a job's runs are due, as a pure function of the schedule and of
//! instants passed in as arguments (no clock is ever read here).
//!
//! # Three schedule languages
//!
//! - **ISO 8601 repeating intervals**, Chronos' own: `R[n]/<start>/<period>`
//!   ([`Schedule::parse_iso`]).
//!   - `R` or `R-1`: repeat forever. `Rn`: `n` more runs. `R0`: never run.
//!   - `<start>`: an ISO 8601 date-time with an offset or `Z`, e.g. `2014-03-08T20:00:00.000Z`
//!     (fractional seconds allowed; minutes-only and basic `+0100` offsets accepted). Empty means
//!     "now", which the caller passes in. A start without offset is read in `scheduleTimeZone`,
//!     or in UTC if that is empty.
//!   - `<period>`: `P[nY][nM][nW][nD][T[nH][nM][nS]]`, e.g. `PT10S`, `P1D`, `P1M`, `P1W`,
//!     `P1Y2M10DT2H30M`. Only seconds may be fractional (`PT0.5S`).
//!   - `scheduleTimeZone` (a tz database name such as `America/New_York`, or one of Java's
//!     three-letter aliases such as `PST`): the wall-clock fields of `<start>` are kept and its
//!     zone is replaced, as in Chronos. When the written offset is one the zone really had at that
//!     wall-clock time, it also picks which of the two instants of a repeated hour is meant.
//! - **Cron expressions** (a Plateau extension for users coming from cron): five fields
//!   `minute hour day-of-month month day-of-week`, evaluated by the `croner` crate in the job's
//!   time zone ([`Schedule::parse_cron`]). Nicknames such as `@daily` work too.
//! - **systemd calendar expressions** (a Plateau extension for users coming from systemd timers,
//!   the `OnCalendar=` syntax of systemd.time(7)): `DayOfWeek Year-Month-Day Hour:Minute:Second
//!   [TimeZone]` with lists, ranges `..`, repetitions `/`, last days of the month `~`, omitted
//!   parts and the shorthands `daily`, `weekly`, ... ([`Schedule::parse_calendar`]). A trailing
//!   time zone name overrides `scheduleTimeZone`. The syntax is detailed in the `calendar`
//!   submodule.
//!
//! # Period arithmetic
//!
//! Instant number `i` of an ISO schedule is computed **from the start**, never by adding the
//! period to the previous instant, so nothing drifts:
//! - the calendar part (years, months, weeks, days) is added `i` times to the start's **local
//!   wall-clock date-time** in the schedule's zone. Years and months are added together as
//!   `12·Y + M` months, clamped to the end of shorter months (`P1M` from Jan 31 gives Feb 29,
//!   Mar 31, Apr 30, ...); weeks are 7 days;
//! - the resulting wall-clock time is turned into an instant by the DST rules below;
//! - the time part (hours, minutes, seconds) is then added `i` times as **exact elapsed time**, so
//!   `PT1H` runs every 3,600 s across DST changes, as Joda-Time (Chronos) does.
//!
//! # Daylight-saving rules
//!
//! The same two rules apply to ISO schedules and to cron expressions, so a daily `P1D` schedule
//! and the cron expression for the same wall-clock time always give the same instants.
//!
//! 1. **Skipped wall-clock time (spring forward).** A wall-clock time that does not exist is
//!    shifted forward by the length of the gap: it is read with the UTC offset in force just
//!    before the transition. A daily 02:30 job in `America/New_York` therefore runs on
//!    2024-03-10 at **03:30 EDT** (07:30Z), exactly once, and on 02:30 again the next day. This is
//!    also what Joda-Time did for Chronos. For cron, a pattern whose minute and hour are single
//!    values gets the same treatment; a pattern with a stepped or wildcard minute or hour
//!    (`*/15 * * * *`) skips the wall-clock times that do not exist, as croner does: it keeps
//!    running on its interval in real time.
//! 2. **Repeated wall-clock time (fall back).** A wall-clock time that occurs twice runs **once,
//!    at its first occurrence** (01:30 EDT on 2024-11-03 in New York, 05:30Z), never twice. The
//!    exceptions are exact elapsed periods (`PT1H`, which run on both passes because they are
//!    distinct hours of real time) and cron patterns with a stepped or wildcard minute or hour
//!    (`30 * * * *`, likewise), following Vixie cron and croner.
//!
//! **Calendar expressions follow systemd instead**: a skipped wall-clock time does not run at all
//! (a daily `02:30` in New York has no run on 2024-03-10, the next is 2024-03-11 02:30 EDT; the
//! same holds for every matching time in the gap, `*:15` included), and a repeated one runs once,
//! at its first occurrence, whatever the pattern (`*:15` runs at 01:15 EDT and not again at
//! 01:15 EST). systemd computes the next run from the wall-clock time with `mktime` and skips
//! times that do not exist; its maintainers keep that as the documented behaviour for the
//! spring-forward gap. In the repeated hour systemd's own results depend on the C library;
//! Plateau fixes them to the first pass, so a calendar run never happens twice for one
//! wall-clock time.
//!
//! Cron searches handle transitions of up to three hours exactly; every daylight-saving rule in
//! the tz database is within that (historic zone changes of a whole day are not).
//!
//! # Counting runs and rewriting the schedule
//!
//! `R<n>` counts **runs**: the next `n` instants from the start are planned. After a run at
//! instant `t`, Chronos rewrites the stored schedule: the start moves to the first instant after
//! `t` and `n` drops by one ([`Schedule::after_run`], [`Schedule::to_chronos_string`]). Instants
//! passed over without a run (see the catch-up policies) consume no repetition, as in Chronos.
//!
//! # Missed runs
//!
//! [`due_instants`] says which instants should run now, given the last instant already scheduled,
//! `now`, an `epsilon` and a [`CatchUp`] policy. See its docs for the precise rules.
use std::fmt;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, Days, FixedOffset, LocalResult, Months, NaiveDateTime, Offset, TimeDelta,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, Direction, JobType};

use crate::limits;

/// Default epsilon: how late a run may start and still count as on time. Chronos'
/// `--task_epsilon` default (60 s).
pub const DEFAULT_EPSILON: Duration = Duration::from_secs(60);

/// Largest wall-clock jump around a transition that cron searches handle exactly (see the module
/// docs). Real daylight-saving shifts are one hour, two at most.
const TRANSITION_MARGIN: TimeDelta = TimeDelta::hours(3);

/// How far before a skipped wall-clock time to look for the offset in force before the gap.
const GAP_LOOKBACK_HOURS_MAX: i64 = 48;

/// Errors from parsing a schedule. The messages start with the cause, as Chronos' clients show
/// only the first 120 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The ISO 8601 repeating interval does not parse.
    #[error("Cannot parse schedule '{schedule}': {reason}")]
    Iso {
        /// The schedule as given.
        schedule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The schedule starts before the Unix epoch, which Chronos rejects.
    #[error("Scheduled start date '{0}' is before 1970!")]
    BeforeEpoch(String),
    /// The time zone is not a tz database name or a known alias.
    #[error(
        "Cannot parse schedule time zone '{0}': not a tz database zone such as America/New_York"
    )]
    TimeZone(String),
    /// The cron expression does not parse.
    #[error("Cannot parse cron expression '{expression}': {reason}")]
    Cron {
        /// The expression as given.
        expression: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The systemd calendar expression does not parse.
    #[error("Cannot parse calendar expression '{expression}': {reason}")]
    Calendar {
        /// The expression as given.
        expression: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The time zone a schedule's wall-clock arithmetic happens in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// A fixed UTC offset: the offset written in the start when `scheduleTimeZone` is empty.
    Fixed(FixedOffset),
    /// A tz database zone, with its daylight-saving rules.
    Named(Tz),
}

/// Java's three-letter zone IDs (`java.time.ZoneId.SHORT_IDS`), which Chronos accepted in
/// `scheduleTimeZone` through `java.util.TimeZone`. Names the tz database itself knows (`EST`,
/// `MST`, `HST`, `UTC`, ...) are looked up there first.
const JAVA_SHORT_IDS: &[(&str, &str)] = &[
    ("ACT", "Australia/Darwin"),
    ("AET", "Australia/Sydney"),
    ("AGT", "America/Argentina/Buenos_Aires"),
    ("ART", "Africa/Cairo"),
    ("AST", "America/Anchorage"),
    ("BET", "America/Sao_Paulo"),
    ("BST", "Asia/Dhaka"),
    ("CAT", "Africa/Harare"),
    ("CNT", "America/St_Johns"),
    ("CST", "America/Chicago"),
    ("CTT", "Asia/Shanghai"),
    ("EAT", "Africa/Addis_Ababa"),
    ("ECT", "Europe/Paris"),
    ("IET", "America/Indiana/Indianapolis"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("MIT", "Pacific/Apia"),
    ("NET", "Asia/Yerevan"),
    ("NST", "Pacific/Auckland"),
    ("PLT", "Asia/Karachi"),
    ("PNT", "America/Phoenix"),
    ("PRT", "America/Puerto_Rico"),
    ("PST", "America/Los_Angeles"),
    ("SST", "Pacific/Guadalcanal"),
    ("VST", "Asia/Ho_Chi_Minh"),
];

/// How a wall-clock time maps onto instants in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    /// The usual case: one instant.
    Single(DateTime<Utc>),
    /// A repeated wall-clock time: its first and second occurrence.
    Fold(DateTime<Utc>, DateTime<Utc>),
    /// A skipped wall-clock time, already shifted forward by the gap (rule 1).
    Gap(DateTime<Utc>),
}

impl Zone {
    /// UTC.
    pub const UTC: Zone = Zone::Named(Tz::UTC);

    /// Parses a `scheduleTimeZone`: a tz database name (`America/New_York`, `UTC`, `EST`) or a Java
    /// three-letter alias (`PST`, `CST`, ...).
    pub fn parse(name: &str) -> Result<Zone, ScheduleError> {
        let name = name.trim();
        if let Ok(tz) = name.parse::<Tz>() {
            return Ok(Zone::Named(tz));
        }
        JAVA_SHORT_IDS
            .iter()
            .find(|(alias, _)| *alias == name)
            .and_then(|(_, target)| target.parse::<Tz>().ok())
            .map(Zone::Named)
            .ok_or_else(|| ScheduleError::TimeZone(name.to_string()))
    }

    /// The wall-clock time and offset of an instant in this zone.
    pub fn local(&self, instant: DateTime<Utc>) -> (NaiveDateTime, FixedOffset) {
        match self {
            Zone::Fixed(offset) => {
                let local = instant.with_timezone(offset);
                (local.naive_local(), *offset)
            }
            Zone::Named(tz) => {
                let local = instant.with_timezone(tz);
                (local.naive_local(), local.offset().fix())
            }
        }
    }

    fn map_local(&self, local: NaiveDateTime) -> LocalResult<DateTime<FixedOffset>> {
        match self {
            Zone::Fixed(offset) => offset.from_local_datetime(&local),
            Zone::Named(tz) => tz
                .from_local_datetime(&local)
                .map(|t| t.with_timezone(&t.offset().fix())),
        }
    }

    /// Maps a wall-clock time onto its instants (see the module docs for the gap rule).
    fn resolve_all(&self, local: NaiveDateTime) -> Option<Resolved> {
        match self.map_local(local) {
            LocalResult::Single(t) => Some(Resolved::Single(t.to_utc())),
            LocalResult::Ambiguous(a, b) => {
                let (first, second) = if a <= b { (a, b) } else { (b, a) };
                Some(Resolved::Fold(first.to_utc(), second.to_utc()))
            }
            LocalResult::None => {
                let before = self.offset_before_gap(local)?;
                let shifted = local
                    .checked_sub_signed(TimeDelta::seconds(i64::from(before.local_minus_utc())))?;
                Some(Resolved::Gap(shifted.and_utc()))
            }
        }
    }

    /// The offset in force just before the gap that swallows `local`.
    fn offset_before_gap(&self, local: NaiveDateTime) -> Option<FixedOffset> {
        (1..=GAP_LOOKBACK_HOURS_MAX).find_map(|hours| {
            let earlier = local.checked_sub_signed(TimeDelta::hours(hours))?;
            match self.map_local(earlier) {
                LocalResult::Single(t) => Some(*t.offset()),
                // The later pass of a repeated hour is the one that runs into the gap.
                LocalResult::Ambiguous(a, b) => Some(*a.max(b).offset()),
                LocalResult::None => None,
            }
        })
    }

    /// Maps a wall-clock time to one instant: the first occurrence of a repeated time unless
    /// `hint` names the offset of the second; a skipped time shifted forward by the gap.
    fn resolve(&self, local: NaiveDateTime, hint: Option<FixedOffset>) -> Option<DateTime<Utc>> {
        Some(match self.resolve_all(local)? {
            Resolved::Single(t) | Resolved::Gap(t) => t,
            Resolved::Fold(first, second) => {
                let second_offset = self.local(second).1;
                if hint == Some(second_offset) && self.local(first).1 != second_offset {
                    second
                } else {
                    first
                }
            }
        })
    }

    /// The offset a wall-clock time is written with: its own, the first pass's for a repeated
    /// time, and the pre-transition one for a skipped time (so the written form denotes the
    /// shifted instant and keeps the nominal wall-clock time).
    fn written_offset(&self, local: NaiveDateTime, hint: Option<FixedOffset>) -> FixedOffset {
        match self.map_local(local) {
            LocalResult::Single(t) => *t.offset(),
            LocalResult::Ambiguous(a, b) => {
                if hint == Some(*a.offset()) || hint == Some(*b.offset()) {
                    hint.unwrap_or(*a.offset())
                } else {
                    *a.min(b).offset()
                }
            }
            LocalResult::None => self.offset_before_gap(local).unwrap_or_else(|| Utc.fix()),
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Fixed(offset) => write!(f, "{offset}"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// An ISO 8601 duration as Chronos uses it for schedule periods (and for `epsilon`).
///
/// Fields are kept as written so the schedule string reads back the way it was posted (`PT60M`
/// stays `PT60M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Period {
    /// `nY`.
    pub years: u32,
    /// `nM` before `T`.
    pub months: u32,
    /// `nW`.
    pub weeks: u32,
    /// `nD`.
    pub days: u32,
    /// `nH`.
    pub hours: u32,
    /// `nM` after `T`.
    pub minutes: u32,
    /// Whole seconds of `nS`.
    pub seconds: u32,
    /// Fractional part of `nS`, in nanoseconds (< 1e9).
    pub nanos: u32,
}

impl Period {
    /// Parses `P[nY][nM][nW][nD][T[nH][nM][n[.f]S]]`. At least one field is required; designators
    /// must come in this order; only seconds may carry a fraction.
    pub fn parse(text: &str) -> Result<Period, String> {
        let rest = text
            .strip_prefix('P')
            .ok_or_else(|| format!("period '{text}' must start with P"))?;
        let mut period = Period::default();
        let mut in_time = false;
        // Index of the last designator seen, to enforce the order Y M W D T H M S.
        let mut last_rank = 0u8;
        let mut any_field = false;
        let mut number = String::new();
        for c in rest.chars() {
            if c.is_ascii_digit() || c == '.' || c == ',' {
                number.push(if c == ',' { '.' } else { c });
                continue;
            }
            if c == 'T' {
                if in_time || !number.is_empty() {
                    return Err(format!("period '{text}': misplaced T"));
                }
                in_time = true;
                last_rank = 4;
                continue;
            }
            let rank = match (in_time, c) {
                (false, 'Y') => 1,
                (false, 'M') => 2,
                (false, 'W') => 3,
                (false, 'D') => 4,
                (true, 'H') => 5,
                (true, 'M') => 6,
                (true, 'S') => 7,
                _ => return Err(format!("period '{text}': unexpected '{c}'")),
            };
            if rank <= last_rank {
                return Err(format!("period '{text}': designator '{c}' out of order"));
            }
            if number.is_empty() {
                return Err(format!("period '{text}': '{c}' has no number"));
            }
            let (whole, fraction) = match number.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (number.as_str(), None),
            };
            if fraction.is_some() && rank != 7 {
                return Err(format!("period '{text}': only seconds may be fractional"));
            }
            let value: u32 = whole
                .parse()
                .map_err(|_| format!("period '{text}': '{number}' is not a number in range"))?;
            match rank {
                1 => period.years = value,
                2 => period.months = value,
                3 => period.weeks = value,
                4 => period.days = value,
                5 => period.hours = value,
                6 => period.minutes = value,
                _ => {
                    period.seconds = value;
                    if let Some(fraction) = fraction {
                        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(format!("period '{text}': bad fraction of seconds"));
                        }
                        let digits: String = fraction.chars().take(9).collect();
                        let scale = 10u32.pow(9 - digits.len() as u32);
                        period.nanos = digits.parse::<u32>().unwrap_or(0) * scale;
                    }
                }
            }
            last_rank = rank;
            any_field = true;
            number.clear();
        }
        if !number.is_empty() {
            return Err(format!("period '{text}': number without designator"));
        }
        if !any_field {
            return Err(format!("period '{text}' has no fields"));
        }
        if in_time && last_rank == 4 {
            return Err(format!(
                "period '{text}': T without hours, minutes or seconds"
            ));
        }
        Ok(period)
    }

    /// True when every field is zero.
    pub fn is_zero(&self) -> bool {
        *self == Period::default()
    }

    /// `12·years + months`.
    fn calendar_months(&self) -> u64 {
        u64::from(self.years) * 12 + u64::from(self.months)
    }

    /// `7·weeks + days`.
    fn calendar_days(&self) -> u64 {
        u64::from(self.weeks) * 7 + u64::from(self.days)
    }

    fn has_calendar_part(&self) -> bool {
        self.calendar_months() != 0 || self.calendar_days() != 0
    }

    /// The time part (hours, minutes, seconds) as exact elapsed time.
    fn exact_part(&self) -> TimeDelta {
        TimeDelta::seconds(
            i64::from(self.hours) * 3600 + i64::from(self.minutes) * 60 + i64::from(self.seconds),
        ) + TimeDelta::nanoseconds(i64::from(self.nanos))
    }

    /// The time part added `times` times, as exact elapsed time.
    fn exact_part_times(&self, times: u64) -> Option<TimeDelta> {
        let seconds = i128::from(self.hours) * 3600
            + i128::from(self.minutes) * 60
            + i128::from(self.seconds);
        let nanos =
            (seconds * 1_000_000_000 + i128::from(self.nanos)).checked_mul(i128::from(times))?;
        let whole = i64::try_from(nanos / 1_000_000_000).ok()?;
        TimeDelta::new(whole, u32::try_from(nanos % 1_000_000_000).ok()?)
    }

    /// The period as a fixed duration, if it has no years or months (weeks count 7 days and days
    /// 24 hours). Used for `epsilon`.
    pub fn to_duration(&self) -> Option<Duration> {
        if self.calendar_months() != 0 {
            return None;
        }
        let exact = self.exact_part().to_std().ok()?;
        exact.checked_add(Duration::from_secs(
            self.calendar_days().checked_mul(86_400)?,
        ))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P")?;
        for (value, designator) in [
            (self.years, 'Y'),
            (self.months, 'M'),
            (self.weeks, 'W'),
            (self.days, 'D'),
        ] {
            if value != 0 {
                write!(f, "{value}{designator}")?;
            }
        }
        let has_time = self.hours != 0 || self.minutes != 0 || self.seconds != 0 || self.nanos != 0;
        if has_time || !self.has_calendar_part() {
            f.write_str("T")?;
            if self.hours != 0 {
                write!(f, "{}H", self.hours)?;
            }
            if self.minutes != 0 {
                write!(f, "{}M", self.minutes)?;
            }
            if self.seconds != 0 || self.nanos != 0 || !has_time {
                if self.nanos == 0 {
                    write!(f, "{}S", self.seconds)?;
                } else {
                    let fraction = format!("{:09}", self.nanos);
                    write!(f, "{}.{}S", self.seconds, fraction.trim_end_matches('0'))?;
                }
            }
        }
        Ok(())
    }
}

/// A parsed ISO 8601 repeating interval (`R[n]/<start>/<period>`) with its zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoSchedule {
    /// Remaining runs; `None` repeats forever.
    repetitions: Option<u64>,
    /// The start's wall-clock date-time in `zone`: instant 0 is computed from it.
    anchor: NaiveDateTime,
    /// The offset the start was written with; picks the pass of a repeated wall-clock time.
    anchor_offset: FixedOffset,
    zone: Zone,
    period: Period,
    /// Index (from `anchor`) of the current start. Advancing the start bumps this instead of
    /// moving `anchor`, so month clamping and DST shifts never accumulate.
    first_index: u64,
}

impl IsoSchedule {
    /// Instant number `index` counted from the anchor, or `None` past chrono's range.
    fn occurrence(&self, index: u64) -> Option<DateTime<Utc>> {
        let months = u32::try_from(self.period.calendar_months().checked_mul(index)?).ok()?;
        let days = self.period.calendar_days().checked_mul(index)?;
        let local = self
            .anchor
            .checked_add_months(Months::new(months))?
            .checked_add_days(Days::new(days))?;
        let hint = (local == self.anchor).then_some(self.anchor_offset);
        let base = self.zone.resolve(local, hint)?;
        base.checked_add_signed(self.period.exact_part_times(index)?)
    }

    /// The smallest index `i >= first_index` whose instant is after `t`, or whose instant is out
    /// of range. Instants never decrease with the index (the calendar part is at least a day and
    /// DST shifts are shorter), which is what makes this search valid.
    fn boundary_index_after(&self, t: DateTime<Utc>) -> Option<u64> {
        let beyond = |i: u64| self.occurrence(i).is_none_or(|x| x > t);
        let base = self.first_index;
        if beyond(base) {
            return Some(base);
        }
        // Gallop: find a step that lands beyond, then bisect.
        let mut low = 0u64; // known not beyond (relative to base)
        let mut step = 1u64;
        let high = loop {
            let candidate = base.checked_add(step)?;
            if beyond(candidate) {
                break step;
            }
            low = step;
            step = step.checked_mul(2)?;
        };
        let (mut low, mut high) = (low, high);
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if beyond(base + mid) {
                high = mid;
            } else {
                low = mid;
            }
        }
        Some(base + high)
    }

    fn within_count(&self, index: u64) -> bool {
        match self.repetitions {
            None => true,
            Some(n) => index - self.first_index < n,
        }
    }

    fn next_after(&self, after: DateTime<Utc>, bounded: bool) -> Option<DateTime<Utc>> {
        let index = self.boundary_index_after(after)?;
        if bounded && !self.within_count(index) {
            return None;
        }
        self.occurrence(index)
    }

    fn last_before(&self, before: DateTime<Utc>, bounded: bool) -> Option<DateTime<Utc>> {
        let index =
            self.boundary_index_after(before.checked_sub_signed(TimeDelta::nanoseconds(1))?)?;
        if index == self.first_index {
            return None;
        }
        let index = index - 1;
        if bounded && !self.within_count(index) {
            // Past the count: the last planned instant is the latest one before `before`.
            let n = self.repetitions?;
            return if n == 0 {
                None
            } else {
                self.occurrence(self.first_index + n - 1)
            };
        }
        self.occurrence(index)
    }

    /// The start as Chronos would show it: see the module docs.
    fn start_string(&self) -> String {
        let k = self.first_index;
        let (local, offset) = if self.period.exact_part().is_zero() {
            // Pure calendar period: write the nominal wall-clock time, which keeps a skipped
            // 02:30 as 02:30 (with the pre-gap offset, denoting the shifted instant).
            let months = u32::try_from(self.period.calendar_months().saturating_mul(k));
            let local = months.ok().and_then(|m| {
                self.anchor
                    .checked_add_months(Months::new(m))?
                    .checked_add_days(Days::new(self.period.calendar_days().checked_mul(k)?))
            });
            match local {
                Some(local) => {
                    let hint = (local == self.anchor).then_some(self.anchor_offset);
                    (local, self.zone.written_offset(local, hint))
                }
                None => (self.anchor, self.anchor_offset),
            }
        } else {
            match self.occurrence(k) {
                Some(instant) => self.zone.local(instant),
                None => (self.anchor, self.anchor_offset),
            }
        };
        format_start(local, offset)
    }
}

fn format_start(local: NaiveDateTime, offset: FixedOffset) -> String {
    let mut out = local.format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
    let seconds = offset.local_minus_utc();
    if seconds == 0 {
        out.push('Z');
    } else {
        let sign = if seconds < 0 { '-' } else { '+' };
        let seconds = seconds.abs();
        out.push_str(&format!(
            "{sign}{:02}:{:02}",
            seconds / 3600,
            (seconds % 3600) / 60
        ));
        if seconds % 60 != 0 {
            out.push_str(&format!(":{:02}", seconds % 60));
        }
    }
    out
}

/// A parsed cron expression with its zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    expression: String,
    cron: Cron,
    zone: Zone,
    /// Minute and hour are single values: a repeated wall-clock time runs once (rule 2).
    fixed_time: bool,
}

/// Whether a cron candidate came from an ordered mapping (so no later wall-clock match can beat
/// it) or from a fold's second pass or a gap shift (so later matches must still be checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CandidateKind {
    Ordered,
    OutOfOrder,
}

impl CronSchedule {
    /// The instants a wall-clock match stands for, by the DST rules.
    fn instants(&self, local: NaiveDateTime) -> Vec<(DateTime<Utc>, CandidateKind)> {
        match self.zone.resolve_all(local) {
            None => Vec::new(),
            Some(Resolved::Single(t)) => vec![(t, CandidateKind::Ordered)],
            // A stepped or wildcard pattern skips wall-clock times that do not exist (croner).
            Some(Resolved::Gap(t)) if self.fixed_time => vec![(t, CandidateKind::OutOfOrder)],
            Some(Resolved::Gap(_)) => Vec::new(),
            Some(Resolved::Fold(first, second)) => {
                if self.fixed_time {
                    vec![(first, CandidateKind::Ordered)]
                } else {
                    vec![
                        (first, CandidateKind::Ordered),
                        (second, CandidateKind::OutOfOrder),
                    ]
                }
            }
        }
    }

    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (local_after, _) = self.zone.local(after);
        // When `after` lies in the first pass of a repeated hour, wall-clock times just before it
        // come round again: start the search at the beginning of the fold.
        let mut start = local_after;
        if let Some(Resolved::Fold(first, second)) = self.zone.resolve_all(local_after) {
            if first <= after && after < second {
                start = local_after.checked_sub_signed(second - first)?;
            }
        }
        let start = start.with_nanosecond(0)?;
        let mut best: Option<(DateTime<Utc>, NaiveDateTime)> = None;
        for (step, local) in self.cron.iter_from(start, Direction::Forward).enumerate() {
            if step >= limits::CRON_SEARCH_STEPS_MAX {
                break;
            }
            if let Some((_, best_local)) = best {
                if local > best_local + TRANSITION_MARGIN {
                    break;
                }
            }
            let mut ordered_found = false;
            for (t, kind) in self.instants(local) {
                if t > after {
                    if best.is_none_or(|(b, _)| t < b) {
                        best = Some((t, local));
                    }
                    ordered_found |= kind == CandidateKind::Ordered;
                }
            }
            if ordered_found {
                // Every later match maps to a later instant than an ordered candidate.
                break;
            }
        }
        best.map(|(t, _)| t)
    }

    fn last_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (local_before, _) = self.zone.local(before);
        let start = (local_before + TRANSITION_MARGIN).with_nanosecond(0)?;
        let mut best: Option<(DateTime<Utc>, NaiveDateTime)> = None;
        for (step, local) in self.cron.iter_from(start, Direction::Backward).enumerate() {
            if step >= limits::CRON_SEARCH_STEPS_MAX {
                break;
            }
            if let Some((_, best_local)) = best {
                if local + TRANSITION_MARGIN < best_local {
                    break;
                }
            }
            for (t, _) in self.instants(local) {
                if t < before && best.is_none_or(|(b, _)| t > b) {
                    best = Some((t, local));
                }
            }
        }
        best.map(|(t, _)| t)
    }
}

/// A parsed systemd calendar expression (`OnCalendar=` syntax) with its zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarSchedule {
    expression: String,
    spec: calendar::CalendarSpec,
    zone: Zone,
}

impl CalendarSchedule {
    /// The instant a matching wall-clock time runs at: the first pass of a repeated time, none
    /// for a skipped time (see the module docs).
    fn instant(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.zone.resolve_all(local)? {
            Resolved::Single(t) | Resolved::Fold(t, _) => Some(t),
            Resolved::Gap(_) => None,
        }
    }

    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Runs map to instants in the order of their wall-clock times (first passes only), so
        // the first match at or after `after`'s wall-clock time that lies after `after` is the
        // next run.
        let (local, _) = self.zone.local(after);
        let mut cursor = local.with_nanosecond(0)?;
        for _ in 0..limits::CALENDAR_SEARCH_STEPS_MAX {
            let found = self.spec.next_local(cursor)?;
            if let Some(t) = self.instant(found) {
                if t > after {
                    return Some(t);
                }
            }
            cursor = found.checked_add_signed(calendar::SECOND)?;
        }
        None
    }

    fn last_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (local, _) = self.zone.local(before);
        let mut cursor = local;
        // In the second pass of a repeated hour, later wall-clock times of that hour already
        // ran (on their first pass): start the search at the end of the fold.
        if let Some(Resolved::Fold(first, second)) = self.zone.resolve_all(local) {
            if before >= second {
                cursor = local.checked_add_signed(second - first)?;
            }
        }
        let mut cursor = cursor.with_nanosecond(0)?;
        for _ in 0..limits::CALENDAR_SEARCH_STEPS_MAX {
            let found = self.spec.prev_local(cursor)?;
            if let Some(t) = self.instant(found) {
                if t < before {
                    return Some(t);
                }
            }
            cursor = found.checked_sub_signed(calendar::SECOND)?;
        }
        None
    }
}

/// A job's schedule: an ISO 8601 repeating interval (Chronos), a cron expression or a systemd
/// calendar expression (Plateau).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `R[n]/<start>/<period>`.
    Iso(IsoSchedule),
    /// A five-field cron expression (boxed: croner's parsed pattern is large).
    Cron(Box<CronSchedule>),
    /// A systemd calendar expression.
    Calendar(Box<CalendarSchedule>),
}

impl Schedule {
    /// Parses a Chronos schedule. `time_zone` is the job's `scheduleTimeZone` (empty for none);
    /// `now` stands in for an empty start.
    pub fn parse_iso(
        schedule: &str,
        time_zone: &str,
        now: DateTime<Utc>,
    ) -> Result<Schedule, ScheduleError> {
        let fail = |reason: String| ScheduleError::Iso {
            schedule: schedule.to_string(),
            reason,
        };
        if schedule.len() > limits::SCHEDULE_LEN_MAX {
            return Err(fail(format!(
                "longer than {} bytes",
                limits::SCHEDULE_LEN_MAX
            )));
        }
        let named_zone = if time_zone.trim().is_empty() {
            None
        } else {
            Some(Zone::parse(time_zone)?)
        };
        let parts: Vec<&str> = schedule.trim().split('/').collect();
        let [repeat, start, period] = parts[..] else {
            return Err(fail("expected R[n]/<start>/<period>".to_string()));
        };
        let repetitions = match repeat.strip_prefix('R') {
            Some("") | Some("-1") => None,
            Some(n) if n.bytes().all(|b| b.is_ascii_digit()) => Some(
                n.parse::<u64>()
                    .map_err(|_| fail(format!("repetitions '{n}' out of range")))?,
            ),
            _ => return Err(fail(format!("'{repeat}' is not R, R<n> or R-1"))),
        };
        let period = Period::parse(period).map_err(fail)?;
        if period.is_zero() {
            return Err(fail("the period is zero".to_string()));
        }
        let (anchor, anchor_offset, zone) = if start.is_empty() {
            let zone = named_zone.unwrap_or(Zone::UTC);
            let (local, offset) = zone.local(now);
            (local, offset, zone)
        } else {
            match parse_start(start) {
                Some(StartTime::WithOffset(t)) => {
                    let zone = named_zone.unwrap_or(Zone::Fixed(*t.offset()));
                    (t.naive_local(), *t.offset(), zone)
                }
                Some(StartTime::Local(local)) => {
                    let zone = named_zone.unwrap_or(Zone::UTC);
                    let offset = zone.written_offset(local, None);
                    (local, offset, zone)
                }
                None => return Err(fail(format!("cannot read start '{start}'"))),
            }
        };
        let iso = IsoSchedule {
            repetitions,
            anchor,
            anchor_offset,
            zone,
            period,
            first_index: 0,
        };
        let first = iso
            .occurrence(0)
            .ok_or_else(|| fail("start out of range".to_string()))?;
        if first < DateTime::UNIX_EPOCH {
            return Err(ScheduleError::BeforeEpoch(start.to_string()));
        }
        Ok(Schedule::Iso(iso))
    }

    /// Parses a five-field cron expression evaluated in `time_zone` (empty means UTC).
    pub fn parse_cron(expression: &str, time_zone: &str) -> Result<Schedule, ScheduleError> {
        let fail = |reason: String| ScheduleError::Cron {
            expression: expression.to_string(),
            reason,
        };
        if expression.len() > limits::SCHEDULE_LEN_MAX {
            return Err(fail(format!(
                "longer than {} bytes",
                limits::SCHEDULE_LEN_MAX
            )));
        }
        let trimmed = expression.trim();
        if !trimmed.starts_with('@') && trimmed.split_whitespace().count() != 5 {
            return Err(fail(
                "expected five fields: minute hour day-of-month month day-of-week".to_string(),
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(trimmed)
            .map_err(|e| fail(e.to_string()))?;
        let zone = Self::default_zone(time_zone)?;
        let fixed_time = cron.determine_job_type() == JobType::FixedTime;
        Ok(Schedule::Cron(Box::new(CronSchedule {
            expression: trimmed.to_string(),
            cron,
            zone,
            fixed_time,
        })))
    }

    /// Parses a systemd calendar expression (`OnCalendar=` syntax, see the module docs). A
    /// trailing time zone name in the expression overrides `time_zone` (the job's
    /// `scheduleTimeZone`; empty means UTC).
    pub fn parse_calendar(expression: &str, time_zone: &str) -> Result<Schedule, ScheduleError> {
        let fail = |reason: String| ScheduleError::Calendar {
            expression: expression.to_string(),
            reason,
        };
        if expression.len() > limits::SCHEDULE_LEN_MAX {
            return Err(fail(format!(
                "longer than {} bytes",
                limits::SCHEDULE_LEN_MAX
            )));
        }
        let trimmed = expression.trim();
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let (body, zone) = match words.split_last() {
            Some((last, rest)) if !rest.is_empty() => match Zone::parse(last) {
                Ok(zone) => (rest.join(" "), zone),
                Err(_) => (words.join(" "), Self::default_zone(time_zone)?),
            },
            _ => (words.join(" "), Self::default_zone(time_zone)?),
        };
        let spec = calendar::CalendarSpec::parse(&body).map_err(fail)?;
        let earliest = chrono::NaiveDate::from_ymd_opt(calendar::YEAR_MIN, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("1970-01-01 is a date");
        if spec.next_local(earliest).is_none() {
            return Err(fail(format!(
                "it matches no date between {} and {}",
                calendar::YEAR_MIN,
                calendar::YEAR_MAX
            )));
        }
        Ok(Schedule::Calendar(Box::new(CalendarSchedule {
            expression: trimmed.to_string(),
            spec,
            zone,
        })))
    }

    fn default_zone(time_zone: &str) -> Result<Zone, ScheduleError> {
        if time_zone.trim().is_empty() {
            Ok(Zone::UTC)
        } else {
            Zone::parse(time_zone)
        }
    }

    /// The zone the schedule's wall-clock arithmetic happens in.
    pub fn zone(&self) -> Zone {
        match self {
            Schedule::Iso(iso) => iso.zone,
            Schedule::Cron(cron) => cron.zone,
            Schedule::Calendar(calendar) => calendar.zone,
        }
    }

    /// Remaining planned runs: `Some(n)` for `R<n>`, `None` for unbounded schedules.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Schedule::Iso(iso) => iso.repetitions,
            Schedule::Cron(_) | Schedule::Calendar(_) => None,
        }
    }

    /// True when no run remains (`R0`).
    pub fn is_exhausted(&self) -> bool {
        self.remaining() == Some(0)
    }

    /// The first planned instant strictly after `after`, honouring the `R<n>` count.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Iso(iso) => iso.next_after(after, true),
            Schedule::Cron(cron) => cron.next_after(after),
            Schedule::Calendar(calendar) => calendar.next_after(after),
        }
    }

    /// The last planned instant strictly before `before`, honouring the `R<n>` count.
    pub fn last_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Iso(iso) => iso.last_before(before, true),
            Schedule::Cron(cron) => cron.last_before(before),
            Schedule::Calendar(calendar) => calendar.last_before(before),
        }
    }

    /// The first planned instant: the start of an ISO schedule (`None` for `R0`); for cron, which
    /// has no start, the first match after `after`.
    pub fn first_at_or_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after(after.checked_sub_signed(TimeDelta::nanoseconds(1))?)
    }

    /// The planned instants strictly after `after`, in increasing order (finite for `R<n>`).
    pub fn instants_after(&self, after: DateTime<Utc>) -> Instants<'_> {
        Instants {
            schedule: self,
            cursor: Some(after),
        }
    }

    /// The schedule after a run at instant `ran`, as Chronos rewrites it: the start moves to the
    /// first instant strictly after `ran`, and `R<n>` becomes `R<n-1>` (`R0` and unbounded
    /// schedules keep their count). A cron or calendar schedule is unchanged.
    pub fn after_run(&self, ran: DateTime<Utc>) -> Schedule {
        match self {
            Schedule::Iso(iso) => {
                let mut next = iso.clone();
                if let Some(index) = iso.boundary_index_after(ran) {
                    next.first_index = index;
                }
                next.repetitions = iso.repetitions.map(|n| n.saturating_sub(1));
                Schedule::Iso(next)
            }
            Schedule::Cron(_) | Schedule::Calendar(_) => self.clone(),
        }
    }

    /// The schedule string Chronos would show (`GET /scheduler/jobs`): `R[n]/<start>/<period>`
    /// with the current start (milliseconds and offset, `Z` for UTC), or the cron or calendar
    /// expression as given.
    pub fn to_chronos_string(&self) -> String {
        match self {
            Schedule::Iso(iso) => {
                let repeat = match iso.repetitions {
                    None => "R".to_string(),
                    Some(n) => format!("R{n}"),
                };
                format!("{repeat}/{}/{}", iso.start_string(), iso.period)
            }
            Schedule::Cron(cron) => cron.expression.clone(),
            Schedule::Calendar(calendar) => calendar.expression.clone(),
        }
    }

    /// The same schedule with no run count, for scanning instants that may be passed over.
    fn uncounted(&self) -> Schedule {
        match self {
            Schedule::Iso(iso) => Schedule::Iso(IsoSchedule {
                repetitions: None,
                ..iso.clone()
            }),
            Schedule::Cron(_) | Schedule::Calendar(_) => self.clone(),
        }
    }
}

/// The planned instants of a [`Schedule`] after a given instant, strictly increasing.
#[derive(Debug, Clone)]
pub struct Instants<'a> {
    schedule: &'a Schedule,
    cursor: Option<DateTime<Utc>>,
}

impl Iterator for Instants<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        let next = self.schedule.next_after(self.cursor?);
        self.cursor = next;
        next
    }
}

/// Free-function form of [`Schedule::next_after`]: the first planned instant strictly after
/// `after`.
pub fn next_after(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.next_after(after)
}

enum StartTime {
    WithOffset(DateTime<FixedOffset>),
    Local(NaiveDateTime),
}

fn parse_start(text: &str) -> Option<StartTime> {
    let normalized = match text.strip_suffix(['Z', 'z']) {
        Some(rest) => format!("{rest}+00:00"),
        None => text.to_string(),
    };
    const WITH_OFFSET: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%dT%H:%M%z",
    ];
    for format in WITH_OFFSET {
        if let Ok(t) = DateTime::parse_from_str(&normalized, format) {
            return Some(StartTime::WithOffset(t));
        }
    }
    const LOCAL: &[&str] = &["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"];
    for format in LOCAL {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(StartTime::Local(t));
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .filter(|d| d.year() > 0)
        .map(StartTime::Local)
}

/// What to do with instants that were missed (the scheduler was down, or the leader changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Run missed instants once, at the latest one, unless an on-time instant runs anyway (like
    /// systemd's `Persistent=true`, and like Chronos 3.x, which runs a job whose start is in the
    /// past once and moves the start to the future).
    #[default]
    Once,
    /// Run every missed instant, oldest first.
    All,
    /// Run only instants that are on time (within epsilon); drop the others, as Chronos 2.x did.
    Skip,
}

/// Which instants of `schedule` should run now, oldest first.
///
/// Definitions (all instants are instants of `schedule`):
/// - **due**: after `last_scheduled` (strictly) and not after `now`. With `last_scheduled = None`
///   an ISO schedule is due from its start (inclusive); a cron schedule, which has no start, owes
///   nothing from before `now - epsilon`.
/// - **on time**: due and not earlier than `now - epsilon` (Chronos' epsilon: a run that would
///   start more than `epsilon` after its instant is late).
/// - **late**: due and earlier than `now - epsilon`.
///
/// Policies:
/// - [`CatchUp::Skip`]: the on-time instants; late ones are dropped.
/// - [`CatchUp::Once`]: the on-time instants; if there are none, the single latest late instant.
/// - [`CatchUp::All`]: every due instant.
///
/// The result holds at most `min(max, limits::DUE_INSTANTS_MAX, remaining runs)` instants, the
/// oldest ones. Late instants passed over are not counted against `R<n>` (see the module docs),
/// so a policy may return an instant past the first `n` planned ones.
///
/// The caller runs each returned instant, replaces the schedule with
/// [`Schedule::after_run`] of it and records it as `last_scheduled`; calling again with the same
/// `now` then continues a truncated catch-up where it stopped.
pub fn due_instants(
    schedule: &Schedule,
    last_scheduled: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    epsilon: Duration,
    policy: CatchUp,
    max: usize,
) -> Vec<DateTime<Utc>> {
    let mut cap = max.min(limits::DUE_INSTANTS_MAX);
    if let Some(remaining) = schedule.remaining() {
        cap = cap.min(usize::try_from(remaining).unwrap_or(usize::MAX));
    }
    let mut due = Vec::new();
    if cap == 0 {
        return due;
    }
    let scan = schedule.uncounted();
    let epsilon = TimeDelta::from_std(epsilon).unwrap_or(TimeDelta::MAX);
    let on_time_from = now
        .checked_sub_signed(epsilon)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let just_before = |t: DateTime<Utc>| t.checked_sub_signed(TimeDelta::nanoseconds(1));
    // Exclusive lower bound of "due"; None means from the ISO schedule's start.
    let lower = match (last_scheduled, &scan) {
        (Some(t), _) => Some(t),
        (None, Schedule::Iso(_)) => None,
        (None, Schedule::Cron(_) | Schedule::Calendar(_)) => just_before(on_time_from),
    };
    let collect_from = |from: Option<DateTime<Utc>>, due: &mut Vec<DateTime<Utc>>| {
        let mut cursor = match from {
            Some(t) => scan.next_after(t),
            None => match &scan {
                Schedule::Iso(iso) => iso.occurrence(iso.first_index),
                Schedule::Cron(_) | Schedule::Calendar(_) => None,
            },
        };
        while let Some(t) = cursor {
            if t > now || due.len() >= cap {
                break;
            }
            due.push(t);
            cursor = scan.next_after(t);
        }
    };
    match policy {
        CatchUp::All => collect_from(lower, &mut due),
        CatchUp::Skip | CatchUp::Once => {
            let on_time_lower = match (lower, just_before(on_time_from)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            collect_from(on_time_lower, &mut due);
            if policy == CatchUp::Once && due.is_empty() {
                if let Some(t) = scan.last_before(on_time_from) {
                    if lower.is_none_or(|l| t > l) && t <= now {
                        due.push(t);
                    }
                }
            }
        }
    }
    debug_assert!(due.windows(2).all(|w| w[0] < w[1]));
    due
}

mod calendar;

#[cfg(test)]
mod tests;
