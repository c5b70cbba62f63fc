//! The resource model shared by the master, slaves and frameworks.
//!
//! A [`Resources`] value is what a slave has, what an offer carries and what a task asks for:
//! three scalars (`cpus`, `mem` in MB, `disk` in MB) and a set of `ports` ([`Ranges`]).
//!
//! Scalars are stored as fixed-point thousandths in a `u64` — the 3-decimal precision Mesos
//! uses — so that adding and subtracting offers and tasks a million times never drifts: the
//! sum of allocated and available resources on a slave equals its total exactly, which the
//! allocator asserts. `f64` appears only at the edges (constructors, accessors, shares, JSON).
//!
//! The text form is the Mesos flag format, parsed by [`Resources::parse`] and printed by
//! `Display`:
//!
//! ```
//! use plateau_master::resources::Resources;
//!
//! let r = Resources::parse("cpus:4;mem:8192;disk:20000;ports:[31000-31005,31010-31020]")?;
//! assert_eq!(r.cpus(), 4.0);
//! assert_eq!(r.ports().len(), 17);
//! assert_eq!(r.to_string(), "cpus:4;mem:8192;disk:20000;ports:[31000-31005,31010-31020]");
//!
//! let task = Resources::parse("cpus:0.5;mem:128;ports:[31000-31000]")?;
//! assert!(r.contains(&task));
//! let left = r.checked_sub(&task).unwrap();
//! assert_eq!(left.cpus(), 3.5);
//! assert_eq!(left.to_string(), "cpus:3.5;mem:8064;disk:20000;ports:[31001-31005,31010-31020]");
//! # Ok::<(), plateau_master::MasterError>(())
//! ```
//!
//! Slave attributes (`rack:r1;zone:a;level:3`) are parsed by [`Attributes::parse`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, AddAssign};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::MasterError;
use crate::limits::{
    ATTRIBUTES_LEN_MAX, ATTRIBUTE_TEXT_LEN_MAX, RANGES_LEN_MAX, RESOURCES_TEXT_LEN_MAX, SCALAR_MAX,
    SCALAR_MAX_MILLI,
};

/// A set of `u16` values (ports) as sorted, disjoint, non-adjacent inclusive ranges.
///
/// The representation is normalized: `[1-3,4-5]` is stored as `[1-5]`, so two `Ranges` holding
/// the same set are equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<(u16, u16)>", into = "Vec<(u16, u16)>")]
pub struct Ranges(Vec<(u16, u16)>);

/// Appends `next` to ranges sorted by start, uniting it with the last one when they overlap
/// or touch (the merge step of [`Ranges::union`] and [`Resources::sum`]).
fn push_united(out: &mut Vec<(u16, u16)>, next: (u16, u16)) {
    match out.last_mut() {
        Some(prev) if u32::from(next.0) <= u32::from(prev.1) + 1 => prev.1 = prev.1.max(next.1),
        _ => out.push(next),
    }
}

impl Ranges {
    /// No values.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// One inclusive range. Panics if `first > last` (a programmer error; user input goes
    /// through [`Ranges::new`] or [`Ranges::parse`]).
    pub fn single(first: u16, last: u16) -> Self {
        assert!(first <= last, "range {first}-{last} is reversed");
        Self(vec![(first, last)])
    }

    /// Builds a set from inclusive ranges in any order. Adjacent ranges are merged;
    /// reversed or overlapping ranges are errors.
    pub fn new(ranges: impl IntoIterator<Item = (u16, u16)>) -> Result<Self, MasterError> {
        let mut list: Vec<(u16, u16)> = Vec::new();
        for (first, last) in ranges {
            if first > last {
                return Err(MasterError::BadRange {
                    range: format!("{first}-{last}"),
                    reason: "start is above end",
                });
            }
            list.push((first, last));
            if list.len() > RANGES_LEN_MAX {
                return Err(MasterError::TooMany {
                    what: "ranges",
                    len: list.len(),
                    max: RANGES_LEN_MAX,
                });
            }
        }
        list.sort_unstable();
        let mut out: Vec<(u16, u16)> = Vec::with_capacity(list.len());
        for (first, last) in list {
            match out.last_mut() {
                Some(prev) if first <= prev.1 => {
                    return Err(MasterError::OverlappingRanges {
                        first: format!("{}-{}", prev.0, prev.1),
                        second: format!("{first}-{last}"),
                    });
                }
                Some(prev) if u32::from(first) == u32::from(prev.1) + 1 => prev.1 = last,
                _ => out.push((first, last)),
            }
        }
        Ok(Self(out))
    }

    /// Parses the Mesos range list form `[31000-31005,31010-31020]`. A single value `[80]` is
    /// accepted as `80-80`.
    pub fn parse(text: &str) -> Result<Self, MasterError> {
        let text = text.trim();
        let bad = |reason| MasterError::BadRange {
            range: text.to_owned(),
            reason,
        };
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .ok_or_else(|| bad("expected [first-last,...]"))?;
        if inner.trim().is_empty() {
            return Ok(Self::empty());
        }
        let mut list = Vec::new();
        for part in inner.split(',') {
            let part = part.trim();
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (parse_port(part, a)?, parse_port(part, b)?),
                None => {
                    let value = parse_port(part, part)?;
                    (value, value)
                }
            };
            list.push((first, last));
        }
        Self::new(list)
    }

    /// The ranges, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        self.0.iter().copied()
    }

    /// How many disjoint ranges there are.
    pub fn ranges_len(&self) -> usize {
        self.0.len()
    }

    /// How many values (ports) there are.
    pub fn len(&self) -> u32 {
        self.0
            .iter()
            .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
            .sum()
    }

    /// True if there are no values.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True if `value` is in the set.
    pub fn contains_value(&self, value: u16) -> bool {
        // The list is sorted by start: find the last range starting at or below `value`.
        let idx = self.0.partition_point(|&(first, _)| first <= value);
        idx > 0 && self.0[idx - 1].1 >= value
    }

    /// True if every value of `other` is in `self`.
    pub fn contains(&self, other: &Ranges) -> bool {
        let mut i = 0;
        for &(first, last) in &other.0 {
            while i < self.0.len() && self.0[i].1 < first {
                i += 1;
            }
            // Normalized: a covering range must be a single range of `self`.
            match self.0.get(i) {
                Some(&(a, b)) if a <= first && b >= last => {}
                _ => return false,
            }
        }
        true
    }

    /// True if no value is in both sets.
    pub fn is_disjoint(&self, other: &Ranges) -> bool {
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            if a.1 < b.0 {
                i += 1;
            } else if b.1 < a.0 {
                j += 1;
            } else {
                return false;
            }
        }
        true
    }

    /// The values in both sets.
    pub fn intersection(&self, other: &Ranges) -> Ranges {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            let first = a.0.max(b.0);
            let last = a.1.min(b.1);
            if first <= last {
                out.push((first, last));
            }
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Ranges(out)
    }

    /// The values in either set.
    pub fn union(&self, other: &Ranges) -> Ranges {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut out: Vec<(u16, u16)> = Vec::with_capacity(self.0.len() + other.0.len());
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() || j < other.0.len() {
            let next = if j >= other.0.len() || (i < self.0.len() && self.0[i].0 <= other.0[j].0) {
                i += 1;
                self.0[i - 1]
            } else {
                j += 1;
                other.0[j - 1]
            };
            push_united(&mut out, next);
        }
        Ranges(out)
    }

    /// The values of `self` that are not in `other`.
    pub fn difference(&self, other: &Ranges) -> Ranges {
        if other.is_empty() {
            return self.clone();
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut j = 0;
        for &(first, last) in &self.0 {
            while j < other.0.len() && other.0[j].1 < first {
                j += 1;
            }
            // u32 so that `last + 1` cannot overflow at 65535.
            let mut cursor = u32::from(first);
            let last32 = u32::from(last);
            let mut k = j;
            while k < other.0.len() && u32::from(other.0[k].0) <= last32 {
                let (a, b) = (u32::from(other.0[k].0), u32::from(other.0[k].1));
                if a > cursor {
                    out.push((cursor as u16, (a - 1) as u16));
                }
                cursor = cursor.max(b + 1);
                if cursor > last32 {
                    break;
                }
                k += 1;
            }
            if cursor <= last32 {
                out.push((cursor as u16, last));
            }
        }
        Ranges(out)
    }

    /// Takes the `count` lowest values out of the set and returns them, or returns `None`
    /// (leaving the set unchanged) if there are fewer than `count`.
    pub fn take_lowest(&mut self, count: u32) -> Option<Ranges> {
        if self.len() < count {
            return None;
        }
        let mut taken = Vec::new();
        let mut left = count;
        let mut consumed = 0;
        for i in 0..self.0.len() {
            if left == 0 {
                break;
            }
            let (first, last) = self.0[i];
            let size = u32::from(last) - u32::from(first) + 1;
            if size <= left {
                taken.push((first, last));
                left -= size;
                consumed += 1;
            } else {
                let end = (u32::from(first) + left - 1) as u16;
                taken.push((first, end));
                self.0[i].0 = end + 1;
                left = 0;
            }
        }
        self.0.drain(..consumed);
        Some(Ranges(taken))
    }
}

fn parse_port(part: &str, value: &str) -> Result<u16, MasterError> {
    let value = value.trim();
    value.parse::<u16>().map_err(|_| MasterError::BadRange {
        range: part.to_owned(),
        reason: if value.parse::<u64>().is_ok() {
            "value is above 65535"
        } else {
            "not a whole number"
        },
    })
}

impl TryFrom<Vec<(u16, u16)>> for Ranges {
    type Error = MasterError;

    fn try_from(list: Vec<(u16, u16)>) -> Result<Self, Self::Error> {
        Ranges::new(list)
    }
}

impl From<Ranges> for Vec<(u16, u16)> {
    fn from(ranges: Ranges) -> Self {
        ranges.0
    }
}

impl fmt::Display for Ranges {
    /// `[31000-31005,31010-31020]`; a single value prints as `80-80`, as Mesos does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (first, last)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{first}-{last}")?;
        }
        f.write_str("]")
    }
}

impl FromStr for Ranges {
    type Err = MasterError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ranges::parse(text)
    }
}

/// Scalar resources (cpus, mem, disk) and ports, with scalars in fixed-point thousandths.
///
/// `Default` is the empty set. Ordering of offers and shares uses only the scalars; ports are
/// a set that is split and merged exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ResourcesWire")]
pub struct Resources {
    cpus_milli: u64,
    mem_milli: u64,
    disk_milli: u64,
    ports: Ranges,
}

/// What arrives on the wire, checked against the limits before it becomes `Resources`.
#[derive(Deserialize)]
struct ResourcesWire {
    cpus_milli: u64,
    mem_milli: u64,
    disk_milli: u64,
    ports: Ranges,
}

impl TryFrom<ResourcesWire> for Resources {
    type Error = MasterError;

    fn try_from(wire: ResourcesWire) -> Result<Self, Self::Error> {
        for (name, milli) in [
            ("cpus", wire.cpus_milli),
            ("mem", wire.mem_milli),
            ("disk", wire.disk_milli),
        ] {
            if milli > SCALAR_MAX_MILLI {
                return Err(MasterError::TooLarge {
                    name: name.to_owned(),
                    value: format_milli(milli),
                    max: SCALAR_MAX,
                });
            }
        }
        Ok(Resources {
            cpus_milli: wire.cpus_milli,
            mem_milli: wire.mem_milli,
            disk_milli: wire.disk_milli,
            ports: wire.ports,
        })
    }
}

/// Converts a user-facing scalar to thousandths, rounding to the nearest thousandth.
fn scalar_to_milli(name: &str, value: f64, text: &dyn Fn() -> String) -> Result<u64, MasterError> {
    if !value.is_finite() {
        return Err(MasterError::BadNumber {
            name: name.to_owned(),
            value: text(),
        });
    }
    if value < 0.0 {
        return Err(MasterError::Negative {
            name: name.to_owned(),
            value: text(),
        });
    }
    if value > SCALAR_MAX as f64 {
        return Err(MasterError::TooLarge {
            name: name.to_owned(),
            value: text(),
            max: SCALAR_MAX,
        });
    }
    Ok((value * 1000.0).round() as u64)
}

/// `4000` -> `4`, `500` -> `0.5`, `8192125` -> `8192.125`.
fn format_milli(milli: u64) -> String {
    let whole = milli / 1000;
    let frac = milli % 1000;
    if frac == 0 {
        whole.to_string()
    } else {
        let digits = format!("{frac:03}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

fn milli_to_f64(milli: u64) -> f64 {
    milli as f64 / 1000.0
}

impl Resources {
    /// No resources.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The sum of many, as adding them one by one would give, but with the ports united in
    /// one sort instead of one union per item (a slave with a hundred tasks).
    pub fn sum<'a>(items: impl IntoIterator<Item = &'a Resources>) -> Resources {
        let mut out = Resources::empty();
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        for r in items {
            out.cpus_milli += r.cpus_milli;
            out.mem_milli += r.mem_milli;
            out.disk_milli += r.disk_milli;
            ranges.extend_from_slice(&r.ports.0);
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for next in ranges {
            push_united(&mut merged, next);
        }
        out.ports = Ranges(merged);
        out
    }

    /// Scalar resources from user-facing numbers (rounded to thousandths), no ports.
    /// Negative, non-finite or too large values are errors.
    pub fn new(cpus: f64, mem_mb: f64, disk_mb: f64) -> Result<Self, MasterError> {
        Ok(Self {
            cpus_milli: scalar_to_milli("cpus", cpus, &|| cpus.to_string())?,
            mem_milli: scalar_to_milli("mem", mem_mb, &|| mem_mb.to_string())?,
            disk_milli: scalar_to_milli("disk", disk_mb, &|| disk_mb.to_string())?,
            ports: Ranges::empty(),
        })
    }

    /// Scalar resources in thousandths (1 cpu = 1000), no ports. Panics above
    /// [`SCALAR_MAX_MILLI`] (a programmer error; user input goes through [`Resources::new`] or
    /// [`Resources::parse`]).
    pub fn from_milli(cpus_milli: u64, mem_milli: u64, disk_milli: u64) -> Self {
        assert!(
            cpus_milli <= SCALAR_MAX_MILLI
                && mem_milli <= SCALAR_MAX_MILLI
                && disk_milli <= SCALAR_MAX_MILLI,
            "scalar above SCALAR_MAX_MILLI"
        );
        Self {
            cpus_milli,
            mem_milli,
            disk_milli,
            ports: Ranges::empty(),
        }
    }

    /// The same resources with `ports` instead of the current ports.
    pub fn with_ports(mut self, ports: Ranges) -> Self {
        self.ports = ports;
        self
    }

    /// CPUs, e.g. `0.5`.
    pub fn cpus(&self) -> f64 {
        milli_to_f64(self.cpus_milli)
    }

    /// Memory in MB.
    pub fn mem_mb(&self) -> f64 {
        milli_to_f64(self.mem_milli)
    }

    /// Disk in MB.
    pub fn disk_mb(&self) -> f64 {
        milli_to_f64(self.disk_milli)
    }

    /// CPUs in thousandths.
    pub fn cpus_milli(&self) -> u64 {
        self.cpus_milli
    }

    /// Memory in thousandths of a MB.
    pub fn mem_milli(&self) -> u64 {
        self.mem_milli
    }

    /// Disk in thousandths of a MB.
    pub fn disk_milli(&self) -> u64 {
        self.disk_milli
    }

    /// The ports.
    pub fn ports(&self) -> &Ranges {
        &self.ports
    }

    /// The ports, to take some out (see [`Ranges::take_lowest`]).
    pub fn ports_mut(&mut self) -> &mut Ranges {
        &mut self.ports
    }

    /// True if there are no resources at all (no scalars, no ports).
    pub fn is_empty(&self) -> bool {
        self.cpus_milli == 0 && self.mem_milli == 0 && self.disk_milli == 0 && self.ports.is_empty()
    }

    /// The same resources without ports: what shares are computed from.
    pub fn scalars(&self) -> Resources {
        Resources::from_milli(self.cpus_milli, self.mem_milli, self.disk_milli)
    }

    /// True if every scalar of `other` is at most ours and all of its ports are ours.
    pub fn contains(&self, other: &Resources) -> bool {
        self.cpus_milli >= other.cpus_milli
            && self.mem_milli >= other.mem_milli
            && self.disk_milli >= other.disk_milli
            && self.ports.contains(&other.ports)
    }

    /// `self - other`, or `None` if `self` does not [contain](Resources::contains) `other`.
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        if !self.contains(other) {
            return None;
        }
        Some(Resources {
            cpus_milli: self.cpus_milli - other.cpus_milli,
            mem_milli: self.mem_milli - other.mem_milli,
            disk_milli: self.disk_milli - other.disk_milli,
            ports: self.ports.difference(&other.ports),
        })
    }

    /// The largest fraction of `total` this uses across cpus, mem and disk (ports do not
    /// count, as in Mesos' DRF sorter). Dimensions where `total` is zero are ignored.
    pub fn dominant_share(&self, total: &Resources) -> f64 {
        dominant_share_milli(
            [self.cpus_milli, self.mem_milli, self.disk_milli],
            [total.cpus_milli, total.mem_milli, total.disk_milli],
        )
    }

    /// Parses the Mesos flag format `cpus:4;mem:8192;disk:20000;ports:[31000-32000]`. Parts
    /// may come in any order and be missing (zero); the empty text is no resources.
    pub fn parse(text: &str) -> Result<Self, MasterError> {
        if text.len() > RESOURCES_TEXT_LEN_MAX {
            return Err(MasterError::TooMany {
                what: "bytes of resource text",
                len: text.len(),
                max: RESOURCES_TEXT_LEN_MAX,
            });
        }
        let mut out = Resources::empty();
        let mut seen = [false; 4];
        for part in text.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, value) = part
                .split_once(':')
                .ok_or_else(|| MasterError::MissingValue {
                    part: part.to_owned(),
                })?;
            let (name, value) = (name.trim(), value.trim());
            let slot = match name {
                "cpus" => 0,
                "mem" => 1,
                "disk" => 2,
                "ports" => 3,
                _ => {
                    return Err(MasterError::UnknownResource {
                        name: name.to_owned(),
                    })
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(MasterError::DuplicateResource {
                    name: name.to_owned(),
                });
            }
            match slot {
                0 => out.cpus_milli = parse_scalar(name, value)?,
                1 => out.mem_milli = parse_scalar(name, value)?,
                2 => out.disk_milli = parse_scalar(name, value)?,
                _ => out.ports = Ranges::parse(value)?,
            }
        }
        Ok(out)
    }

    /// The JSON form Mesos uses in `/master/state`:
    /// `{"cpus":4.0,"mem":8192.0,"disk":20000.0,"ports":"[31000-32000]"}`. Scalars are always
    /// present; `ports` only when there are ports.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("cpus".into(), self.cpus().into());
        map.insert("mem".into(), self.mem_mb().into());
        map.insert("disk".into(), self.disk_mb().into());
        if !self.ports.is_empty() {
            map.insert("ports".into(), self.ports.to_string().into());
        }
        serde_json::Value::Object(map)
    }
}

/// Dominant share over three scalar dimensions in thousandths; zero-total dimensions ignored.
pub(crate) fn dominant_share_milli(used: [u64; 3], total: [u64; 3]) -> f64 {
    let mut share: f64 = 0.0;
    for (u, t) in used.into_iter().zip(total) {
        if t > 0 {
            share = share.max(u as f64 / t as f64);
        }
    }
    share
}

fn parse_scalar(name: &str, value: &str) -> Result<u64, MasterError> {
    if value.starts_with('-') {
        return Err(MasterError::Negative {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }
    let number: f64 = value.parse().map_err(|_| MasterError::BadNumber {
        name: name.to_owned(),
        value: value.to_owned(),
    })?;
    scalar_to_milli(name, number, &|| value.to_owned())
}

impl fmt::Display for Resources {
    /// The Mesos flag format, zero parts left out: `cpus:0.5;mem:128;ports:[31000-31000]`.
    /// Empty resources print as the empty string. [`Resources::parse`] reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            if !std::mem::replace(&mut first, false) {
                f.write_str(";")?;
            }
            Ok(())
        };
        for (name, milli) in [
            ("cpus", self.cpus_milli),
            ("mem", self.mem_milli),
            ("disk", self.disk_milli),
        ] {
            if milli > 0 {
                sep(f)?;
                write!(f, "{name}:{}", format_milli(milli))?;
            }
        }
        if !self.ports.is_empty() {
            sep(f)?;
            write!(f, "ports:{}", self.ports)?;
        }
        Ok(())
    }
}

impl FromStr for Resources {
    type Err = MasterError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Resources::parse(text)
    }
}

impl AddAssign<&Resources> for Resources {
    /// Sums scalars and unites ports. Adding the same port twice keeps it once: callers that
    /// must not double-count (the allocator) check [`Ranges::is_disjoint`] first.
    fn add_assign(&mut self, other: &Resources) {
        self.cpus_milli += other.cpus_milli;
        self.mem_milli += other.mem_milli;
        self.disk_milli += other.disk_milli;
        if !other.ports.is_empty() {
            self.ports = self.ports.union(&other.ports);
        }
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, other: Resources) {
        *self += &other;
    }
}

impl Add<&Resources> for Resources {
    type Output = Resources;

    fn add(mut self, other: &Resources) -> Resources {
        self += other;
        self
    }
}

impl Add for Resources {
    type Output = Resources;

    fn add(mut self, other: Resources) -> Resources {
        self += &other;
        self
    }
}

/// The value of one slave attribute: a number if the text parses as one, as in Mesos.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttributeValue {
    /// A numeric attribute, e.g. `level:3`.
    Scalar(f64),
    /// A text attribute, e.g. `rack:r1`.
    Text(String),
}

impl fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeValue::Scalar(value) => write!(f, "{value}"),
            AttributeValue::Text(text) => f.write_str(text),
        }
    }
}

/// Slave attributes (`rack:r1;zone:a;level:3`): name -> value, ordered by name. Never changed
/// once parsed, so shared: every offer of a slave carries its attributes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attributes(Arc<BTreeMap<String, AttributeValue>>);

impl Attributes {
    /// Parses `name:value;name:value`. Names are unique; a value that parses as a finite
    /// number is a [`AttributeValue::Scalar`], anything else is text.
    pub fn parse(text: &str) -> Result<Self, MasterError> {
        if text.len() > RESOURCES_TEXT_LEN_MAX {
            return Err(MasterError::TooMany {
                what: "bytes of attribute text",
                len: text.len(),
                max: RESOURCES_TEXT_LEN_MAX,
            });
        }
        let mut map = BTreeMap::new();
        for part in text.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let bad = |reason| MasterError::BadAttribute {
                part: part.to_owned(),
                reason,
            };
            let (name, value) = part
                .split_once(':')
                .ok_or_else(|| bad("expected name:value"))?;
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() {
                return Err(bad("empty name"));
            }
            if value.is_empty() {
                return Err(bad("empty value"));
            }
            if name.len() > ATTRIBUTE_TEXT_LEN_MAX || value.len() > ATTRIBUTE_TEXT_LEN_MAX {
                return Err(bad("name or value too long"));
            }
            let value = match value.parse::<f64>() {
                Ok(number) if number.is_finite() => AttributeValue::Scalar(number),
                _ => AttributeValue::Text(value.to_owned()),
            };
            if map.insert(name.to_owned(), value).is_some() {
                return Err(MasterError::DuplicateAttribute {
                    name: name.to_owned(),
                });
            }
            if map.len() > ATTRIBUTES_LEN_MAX {
                return Err(MasterError::TooMany {
                    what: "attributes",
                    len: map.len(),
                    max: ATTRIBUTES_LEN_MAX,
                });
            }
        }
        Ok(Self(Arc::new(map)))
    }

    /// The value of attribute `name`.
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.0.get(name)
    }

    /// Attributes ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttributeValue)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }

    /// How many attributes there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The JSON form of `/master/state`: `{"level":3.0,"rack":"r1"}`.
    pub fn to_json(&self) -> serde_json::Value {
        let map = self
            .0
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    AttributeValue::Scalar(number) => serde_json::Value::from(*number),
                    AttributeValue::Text(text) => serde_json::Value::from(text.as_str()),
                };
                (name.clone(), value)
            })
            .collect();
        serde_json::Value::Object(map)
    }
}

impl fmt::Display for Attributes {
    /// `level:3;rack:r1` (ordered by name); [`Attributes::parse`] reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{name}:{value}")?;
        }
        Ok(())
    }
}

impl FromStr for Attributes {
    type Err = MasterError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Attributes::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(text: &str) -> Resources {
        Resources::parse(text).unwrap()
    }

    #[test]
    fn parses_the_mesos_flag_format() {
        let res = r("cpus:4;mem:8192;disk:20000;ports:[31000-32000]");
        assert_eq!(res.cpus_milli(), 4000);
        assert_eq!(res.mem_mb(), 8192.0);
        assert_eq!(res.disk_mb(), 20000.0);
        assert_eq!(res.ports(), &Ranges::single(31000, 32000));
        assert_eq!(
            res.to_string(),
            "cpus:4;mem:8192;disk:20000;ports:[31000-32000]"
        );

        let two = r(" ports : [31000-31005, 31010-31020] ; cpus:0.125 ");
        assert_eq!(two.ports().ranges_len(), 2);
        assert_eq!(two.ports().len(), 6 + 11);
        assert_eq!(two.cpus(), 0.125);
        assert_eq!(Resources::parse("").unwrap(), Resources::empty());
        // Adjacent ranges merge.
        assert_eq!(r("ports:[1-3,4-5]").ports(), &Ranges::single(1, 5));
        assert_eq!(r("ports:[80]").ports(), &Ranges::single(80, 80));
    }

    #[test]
    fn parse_errors_name_the_bad_part() {
        let err = |text| Resources::parse(text).unwrap_err();
        assert_eq!(
            err("cpus:1;gpus:2"),
            MasterError::UnknownResource {
                name: "gpus".into()
            }
        );
        assert_eq!(
            err("mem:lots"),
            MasterError::BadNumber {
                name: "mem".into(),
                value: "lots".into()
            }
        );
        assert_eq!(
            err("disk:-5"),
            MasterError::Negative {
                name: "disk".into(),
                value: "-5".into()
            }
        );
        assert!(matches!(err("cpus:NaN"), MasterError::BadNumber { .. }));
        assert!(matches!(err("cpus:inf"), MasterError::BadNumber { .. }));
        assert!(matches!(err("cpus:1e12"), MasterError::TooLarge { .. }));
        assert!(matches!(err("cpus"), MasterError::MissingValue { .. }));
        assert!(matches!(
            err("cpus:1;cpus:2"),
            MasterError::DuplicateResource { .. }
        ));
        assert!(matches!(
            err("cpus(web):1"),
            MasterError::UnknownResource { .. }
        ));
        assert_eq!(
            err("ports:[32000-31000]"),
            MasterError::BadRange {
                range: "32000-31000".into(),
                reason: "start is above end"
            }
        );
        assert_eq!(
            err("ports:[31000-x]"),
            MasterError::BadRange {
                range: "31000-x".into(),
                reason: "not a whole number"
            }
        );
        assert!(matches!(
            err("ports:[1-70000]"),
            MasterError::BadRange {
                reason: "value is above 65535",
                ..
            }
        ));
        assert!(matches!(
            err("ports:31000-32000"),
            MasterError::BadRange { .. }
        ));
        assert_eq!(
            err("ports:[31000-31010,31005-31020]"),
            MasterError::OverlappingRanges {
                first: "31000-31010".into(),
                second: "31005-31020".into()
            }
        );
        let message = err("ports:[31000-31010,31005-31020]").to_string();
        assert!(message.contains("31005-31020"), "{message}");
    }

    #[test]
    fn arithmetic_is_exact() {
        let slave = r("cpus:24;mem:4096;disk:4096;ports:[31000-32000]");
        let mut left = slave.clone();
        // 0.1 cpu taken 240 times leaves exactly zero: no float drift.
        let tenth = r("cpus:0.1");
        for _ in 0..240 {
            left = left.checked_sub(&tenth).unwrap();
        }
        assert_eq!(left.cpus_milli(), 0);
        assert!(left.checked_sub(&tenth).is_none());
        assert!(!slave.contains(&r("ports:[30999-31000]")));
        assert!(slave.contains(&r("cpus:24;ports:[31500-31600]")));
        let split = slave.checked_sub(&r("mem:96;ports:[31500-31600]")).unwrap();
        assert_eq!(split.ports().to_string(), "[31000-31499,31601-32000]");
        let back = split + r("mem:96;ports:[31500-31600]");
        assert_eq!(back, slave);
        assert!(Resources::empty().is_empty());
        assert!(!r("ports:[1-1]").is_empty());
    }

    #[test]
    fn dominant_share_takes_the_largest_fraction() {
        let total = r("cpus:10;mem:1000;disk:0");
        assert_eq!(r("cpus:1;mem:500").dominant_share(&total), 0.5);
        assert_eq!(r("cpus:5;mem:100;disk:7").dominant_share(&total), 0.5);
        assert_eq!(Resources::empty().dominant_share(&Resources::empty()), 0.0);
    }

    #[test]
    fn take_lowest_ports() {
        let mut ports = Ranges::parse("[10-12,20-29]").unwrap();
        assert_eq!(ports.take_lowest(4).unwrap().to_string(), "[10-12,20-20]");
        assert_eq!(ports.to_string(), "[21-29]");
        assert!(ports.take_lowest(10).is_none());
        assert_eq!(ports.len(), 9);
        assert_eq!(ports.take_lowest(9).unwrap().to_string(), "[21-29]");
        assert!(ports.is_empty());
        assert_eq!(ports.take_lowest(0), Some(Ranges::empty()));
        let mut top = Ranges::single(65530, 65535);
        assert_eq!(top.take_lowest(6).unwrap(), Ranges::single(65530, 65535));
    }

    #[test]
    fn json_and_wire_forms() {
        let res = r("cpus:4;mem:8192;disk:20000;ports:[31000-32000]");
        assert_eq!(
            res.to_json(),
            serde_json::json!({"cpus":4.0,"mem":8192.0,"disk":20000.0,"ports":"[31000-32000]"})
        );
        assert_eq!(
            r("cpus:0.5").to_json(),
            serde_json::json!({"cpus":0.5,"mem":0.0,"disk":0.0})
        );
        let bytes = postcard::to_allocvec(&res).unwrap();
        assert_eq!(postcard::from_bytes::<Resources>(&bytes).unwrap(), res);
        let json = serde_json::to_string(&res).unwrap();
        assert_eq!(serde_json::from_str::<Resources>(&json).unwrap(), res);
        // Malformed wire input is rejected, not trusted.
        let overlapping = r#"{"cpus_milli":0,"mem_milli":0,"disk_milli":0,"ports":[[5,9],[7,8]]}"#;
        assert!(serde_json::from_str::<Resources>(overlapping).is_err());
        let huge = r#"{"cpus_milli":18446744073709551615,"mem_milli":0,"disk_milli":0,"ports":[]}"#;
        assert!(serde_json::from_str::<Resources>(huge).is_err());
    }

    #[test]
    fn attributes() {
        let attrs = Attributes::parse("rack:r1;zone:a;level:3").unwrap();
        assert_eq!(attrs.get("rack"), Some(&AttributeValue::Text("r1".into())));
        assert_eq!(attrs.get("level"), Some(&AttributeValue::Scalar(3.0)));
        assert_eq!(attrs.to_string(), "level:3;rack:r1;zone:a");
        assert_eq!(Attributes::parse(&attrs.to_string()).unwrap(), attrs);
        assert_eq!(
            attrs.to_json(),
            serde_json::json!({"level":3.0,"rack":"r1","zone":"a"})
        );
        assert!(matches!(
            Attributes::parse("rack:r1;rack:r2"),
            Err(MasterError::DuplicateAttribute { .. })
        ));
        assert!(matches!(
            Attributes::parse("rack"),
            Err(MasterError::BadAttribute { .. })
        ));
        assert!(matches!(
            Attributes::parse(":x"),
            Err(MasterError::BadAttribute { .. })
        ));
        let bytes = postcard::to_allocvec(&attrs).unwrap();
        assert_eq!(postcard::from_bytes::<Attributes>(&bytes).unwrap(), attrs);
    }

    fn set_of(ranges: &Ranges) -> std::collections::BTreeSet<u16> {
        ranges.iter().flat_map(|(a, b)| a..=b).collect()
    }

    fn arb_ranges() -> impl Strategy<Value = Ranges> {
        proptest::collection::btree_set(0u16..200, 0..60).prop_map(|values| {
            let mut list: Vec<(u16, u16)> = Vec::new();
            for v in values {
                match list.last_mut() {
                    Some(last) if last.1 + 1 == v => last.1 = v,
                    _ => list.push((v, v)),
                }
            }
            Ranges::new(list).unwrap()
        })
    }

    fn arb_resources() -> impl Strategy<Value = Resources> {
        (0u64..50_000, 0u64..50_000, 0u64..50_000, arb_ranges())
            .prop_map(|(c, m, d, p)| Resources::from_milli(c, m, d).with_ports(p))
    }

    proptest! {
        #[test]
        fn a_sum_equals_adding_one_by_one(items in proptest::collection::vec(arb_resources(), 0..12)) {
            let mut added = Resources::empty();
            for r in &items {
                added += r;
            }
            prop_assert_eq!(Resources::sum(&items), added);
        }

        #[test]
        fn range_ops_match_set_ops(a in arb_ranges(), b in arb_ranges()) {
            let (sa, sb) = (set_of(&a), set_of(&b));
            prop_assert_eq!(set_of(&a.union(&b)), sa.union(&sb).copied().collect());
            prop_assert_eq!(set_of(&a.difference(&b)), sa.difference(&sb).copied().collect());
            prop_assert_eq!(set_of(&a.intersection(&b)), sa.intersection(&sb).copied().collect());
            prop_assert_eq!(a.contains(&b), sb.is_subset(&sa));
            prop_assert_eq!(a.is_disjoint(&b), sa.is_disjoint(&sb));
            prop_assert_eq!(a.len() as usize, sa.len());
            for v in 0u16..210 {
                prop_assert_eq!(a.contains_value(v), sa.contains(&v));
            }
            // Results stay normalized: rebuilding them from their ranges changes nothing.
            for result in [a.union(&b), a.difference(&b), a.intersection(&b)] {
                prop_assert_eq!(Ranges::new(result.iter()).unwrap(), result);
            }
        }

        #[test]
        fn add_then_sub_round_trips(a in arb_resources(), b in arb_resources()) {
            let b = b.clone().with_ports(b.ports().difference(a.ports()));
            let sum = a.clone() + &b;
            prop_assert!(sum.contains(&a) && sum.contains(&b));
            prop_assert_eq!(sum.checked_sub(&b).unwrap(), a.clone());
            prop_assert_eq!(sum.checked_sub(&a).unwrap(), b);
        }

        #[test]
        fn text_round_trips(a in arb_resources()) {
            prop_assert_eq!(Resources::parse(&a.to_string()).unwrap(), a.clone());
            let bytes = postcard::to_allocvec(&a).unwrap();
            prop_assert_eq!(postcard::from_bytes::<Resources>(&bytes).unwrap(), a);
        }

        #[test]
        fn take_lowest_takes_the_smallest(a in arb_ranges(), n in 0u32..80) {
            let mut rest = a.clone();
            match rest.take_lowest(n) {
                None => prop_assert!(a.len() < n),
                Some(taken) => {
                    prop_assert_eq!(taken.len(), n);
                    prop_assert_eq!(taken.union(&rest), a.clone());
                    prop_assert!(taken.is_disjoint(&rest));
                    if let (Some(max_taken), Some(min_rest)) = (set_of(&taken).last(), set_of(&rest).first()) {
                        prop_assert!(max_taken < min_rest);
                    }
                }
            }
        }
    }
}

/// Fuzz targets of the resource and attribute text forms (`--resources`, `--attributes`, and
/// what frameworks and operators type): any text is parsed or refused with an error, never a
/// panic; what parses prints back to text that parses to the same value.
#[cfg(test)]
mod fuzz {
    use super::*;
    use plateau_runtime::fuzzing::fuzz_cases;
    use proptest::prelude::*;

    /// Text close to the grammar, where the interesting errors are.
    fn resource_like() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("cpus"),
            Just("mem"),
            Just("disk"),
            Just("ports"),
            Just("gpus"),
            Just("")
        ];
        let value = prop_oneof![
            "-?[0-9]{0,12}(\\.[0-9]{0,5})?(e[+-]?[0-9]{1,3})?",
            Just("NaN".to_string()),
            Just("inf".to_string()),
            Just("-inf".to_string()),
            "\\[([0-9]{0,6}(-[0-9]{0,6})?,?){0,4}\\]",
            "\\PC{0,8}",
        ];
        proptest::collection::vec((name, value, any::<bool>()), 0..6).prop_map(|parts| {
            parts
                .into_iter()
                .map(|(n, v, colon)| {
                    if colon {
                        format!("{n}:{v}")
                    } else {
                        format!("{n}{v}")
                    }
                })
                .collect::<Vec<_>>()
                .join(";")
        })
    }

    fn check_resources(text: &str) -> Result<(), TestCaseError> {
        if let Ok(r) = Resources::parse(text) {
            let printed = r.to_string();
            let back = Resources::parse(&printed);
            prop_assert_eq!(
                back.as_ref().ok(),
                Some(&r),
                "{:?} printed as {:?}",
                text,
                printed
            );
        }
        Ok(())
    }

    fn check_ranges(text: &str) -> Result<(), TestCaseError> {
        if let Ok(r) = Ranges::parse(text) {
            prop_assert!(r.ranges_len() <= RANGES_LEN_MAX);
            let printed = r.to_string();
            prop_assert_eq!(Ranges::parse(&printed).ok(), Some(r), "{:?}", text);
        }
        Ok(())
    }

    fn check_attributes(text: &str) -> Result<(), TestCaseError> {
        if let Ok(a) = Attributes::parse(text) {
            for (_, value) in a.iter() {
                if let AttributeValue::Scalar(number) = value {
                    prop_assert!(number.is_finite());
                }
            }
            let printed = a.to_string();
            let back = Attributes::parse(&printed);
            prop_assert_eq!(
                back.as_ref().ok(),
                Some(&a),
                "{:?} printed as {:?}",
                text,
                printed
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        #[test]
        fn fuzz_resources_text(text in "\\PC{0,64}", near in resource_like()) {
            check_resources(&text)?;
            check_resources(&near)?;
        }

        #[test]
        fn fuzz_ranges_text(text in "\\PC{0,32}", near in "\\[ ?([0-9]{0,6} ?(- ?[0-9]{0,6})?,?){0,6}\\]") {
            check_ranges(&text)?;
            check_ranges(&near)?;
        }

        #[test]
        fn fuzz_attributes_text(text in "\\PC{0,64}", near in "([a-z ]{0,4}:[-+a-zA-Z0-9.: ]{0,10};?){0,5}") {
            check_attributes(&text)?;
            check_attributes(&near)?;
        }
    }

    /// Numbers at the edges of the text form: refused with an error naming the resource.
    #[test]
    fn fuzz_regression_scalar_edges() {
        for text in [
            "cpus:NaN",
            "cpus:inf",
            "mem:-1",
            "disk:1e300",
            "cpus:-0",
            "mem:1e10",
        ] {
            let err = Resources::parse(text).unwrap_err().to_string();
            assert!(
                err.contains(text.split(':').next().unwrap()),
                "{text}: {err}"
            );
        }
        assert_eq!(Resources::parse("cpus:0.0004").unwrap().cpus_milli(), 0);
    }
}
