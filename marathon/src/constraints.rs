//! Placement constraints with Marathon's semantics (`mesosphere/mesos/Constraints.scala`,
//! `api/v2/validation/SchedulingValidation.scala`, `docs/docs/constraints.md`).
//!
//! A constraint is `[field, OPERATOR]` or `[field, OPERATOR, value]`. The field is `hostname`
//! (or `@hostname`), `@region`, `@zone`, or the name of an agent attribute. Attribute values are
//! compared as strings, formatted as Marathon (and Mesos) format them: a scalar with at most three
//! decimals rounded half-even and no trailing zeros, ranges as `[b-e,...]` sorted by begin, sets
//! as `{a,b}` sorted. "Placed" means the app's current instances.
//!
//! | operator | offer accepted when |
//! |---|---|
//! | `UNIQUE` | no placed instance has the offer's value |
//! | `CLUSTER` | with a value: the offer's value equals it; without: there is no placed instance, or the first placed instance has the offer's value |
//! | `GROUP_BY [k]` | no placed instance has the offer's value yet, or (the number of groups ≥ k and the offer's group holds the minimum count); groups are keyed by the placed instances' values, a missing value being a group of its own |
//! | `LIKE re` | the whole value matches `re` |
//! | `UNLIKE re` | the whole value does not match `re` |
//! | `MAX_PER m` | fewer than `m` placed instances have the offer's value |
//! | `IS v` | the value equals `v` (a scalar attribute also matches `v` after formatting `v` as a scalar) |
//!
//! If the offer lacks the field (an attribute the agent does not have), only `UNLIKE` accepts.
//!
//! GROUP_BY follows the classic, documented rule (Marathon 1.3–1.10.x releases), not the
//! `⌊n/k⌋` rule of the last unreleased 1.10 commits (#7206). Without a count the groups are only
//! the values seen so far among placed instances: a new value is always welcome, an existing one
//! only if it is (one of) the smallest.
//!
//! Regular expressions: Marathon uses Java's `String.matches` (the whole string must match);
//! here the expression is compiled by the `regex` crate as `^(?:re)$`. Java-only syntax
//! (look-around, back-references, possessive quantifiers) is refused as
//! "is not a valid regular expression".
//!
//! When scaling down, only `GROUP_BY` influences which instances are killed: see
//! [`select_instances_to_kill`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use regex::{Regex, RegexBuilder};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::app::KillSelection;
use crate::error::Error;
use crate::limits;

/// Marathon's validation messages for constraints, sent in 422 bodies.
pub mod messages {
    /// Wrong number of elements.
    pub const WRONG_LENGTH: &str = "Each constraint must have either 2 or 3 fields";
    /// Empty field name.
    pub const ILLEGAL_SPECIFICATION: &str = "illegal constraint specification";
    /// Unknown operator.
    pub const OPERATOR_INVALID: &str =
        "operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS";
    /// UNIQUE with a value.
    pub const UNIQUE_NO_VALUE: &str = "UNIQUE does not accept a value";
    /// GROUP_BY with a non-integer value.
    pub const GROUP_BY_INT_OR_NOTHING: &str =
        "GROUP BY must define an integer value or else no value at all";
    /// MAX_PER without an integer value.
    pub const MAX_PER_INT: &str = "MAX_PER requires an integer value";
    /// LIKE / UNLIKE without a value.
    pub const LIKE_REQUIRES_REGEX: &str =
        "LIKE and UNLIKE require a non-empty, regular expression value";
    /// LIKE / UNLIKE with a bad expression.
    pub const INVALID_REGEX: &str = "is not a valid regular expression";
    /// IS with a value that is neither Mesos text nor a float.
    pub const IS_TEXT_OR_FLOAT: &str = "IS only supports Mesos text and float values (see http://mesos.apache.org/documentation/latest/attributes-resources/)";
}

/// A constraint operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// One instance per value.
    Unique,
    /// All instances on one value.
    Cluster,
    /// Spread evenly across values.
    GroupBy,
    /// Value matches a regular expression.
    Like,
    /// Value does not match a regular expression (or is missing).
    Unlike,
    /// At most `m` instances per value.
    MaxPer,
    /// Value equals a literal.
    Is,
}

impl Operator {
    /// All operators, in Marathon's order.
    pub const ALL: [Operator; 7] = [
        Operator::Unique,
        Operator::Cluster,
        Operator::GroupBy,
        Operator::Like,
        Operator::Unlike,
        Operator::MaxPer,
        Operator::Is,
    ];

    /// The upper-case name Marathon stores and returns.
    pub fn name(self) -> &'static str {
        match self {
            Operator::Unique => "UNIQUE",
            Operator::Cluster => "CLUSTER",
            Operator::GroupBy => "GROUP_BY",
            Operator::Like => "LIKE",
            Operator::Unlike => "UNLIKE",
            Operator::MaxPer => "MAX_PER",
            Operator::Is => "IS",
        }
    }

    /// Parses an operator name in any case (Marathon upper-cases before looking it up).
    pub fn parse(name: &str) -> Option<Self> {
        let upper = name.to_uppercase();
        Operator::ALL.into_iter().find(|op| op.name() == upper)
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One validated placement constraint. Serializes as Marathon's JSON array form.
#[derive(Clone)]
pub struct Constraint {
    field: String,
    operator: Operator,
    value: Option<String>,
    /// Compiled `^(?:value)$` for LIKE / UNLIKE; None for other operators.
    regex: Option<Regex>,
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entry(&self.field)
            .entry(&self.operator.name())
            .entries(self.value.iter())
            .finish()
    }
}

impl PartialEq for Constraint {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && self.operator == other.operator && self.value == other.value
    }
}

impl Eq for Constraint {}

fn is_integer(text: &str) -> bool {
    // Scala's String.toInt: optional sign, decimal digits, fits in an Int.
    text.parse::<i32>().is_ok()
}

fn compile_full_match(pattern: &str) -> Result<Regex, Error> {
    if pattern.len() > limits::CONSTRAINT_REGEX_BYTES_MAX {
        return Err(Error::InvalidConstraint {
            message: messages::INVALID_REGEX.to_string(),
        });
    }
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(limits::CONSTRAINT_REGEX_COMPILED_BYTES_MAX)
        .build()
        .map_err(|_| Error::InvalidConstraint {
            message: messages::INVALID_REGEX.to_string(),
        })
}

fn is_mesos_text_or_float(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.' | '-'))
}

impl Constraint {
    /// Builds a constraint, applying Marathon's validation (the error carries Marathon's message).
    ///
    /// The operator name is accepted in any case. An empty value on `UNIQUE` is treated as no
    /// value: old Marathon versions returned `["hostname","UNIQUE",""]`, and clients send it back.
    pub fn new(field: &str, operator: &str, value: Option<&str>) -> Result<Self, Error> {
        let invalid = |message: &str| Error::InvalidConstraint {
            message: message.to_string(),
        };
        if field.is_empty() {
            return Err(invalid(messages::ILLEGAL_SPECIFICATION));
        }
        let operator =
            Operator::parse(operator).ok_or_else(|| invalid(messages::OPERATOR_INVALID))?;
        let mut regex = None;
        let value = match operator {
            Operator::Unique => match value {
                None | Some("") => None,
                Some(_) => return Err(invalid(messages::UNIQUE_NO_VALUE)),
            },
            Operator::Cluster => value.map(str::to_string),
            Operator::GroupBy => match value {
                Some(v) if !is_integer(v) => {
                    return Err(invalid(messages::GROUP_BY_INT_OR_NOTHING))
                }
                v => v.map(str::to_string),
            },
            Operator::MaxPer => match value {
                Some(v) if is_integer(v) => Some(v.to_string()),
                _ => return Err(invalid(messages::MAX_PER_INT)),
            },
            Operator::Like | Operator::Unlike => match value {
                Some(v) if !v.is_empty() => {
                    regex = Some(compile_full_match(v)?);
                    Some(v.to_string())
                }
                _ => return Err(invalid(messages::LIKE_REQUIRES_REGEX)),
            },
            Operator::Is => match value {
                Some(v) if !is_mesos_text_or_float(v) => {
                    return Err(invalid(messages::IS_TEXT_OR_FLOAT))
                }
                v => v.map(str::to_string),
            },
        };
        Ok(Self {
            field: field.to_string(),
            operator,
            value,
            regex,
        })
    }

    /// Builds a constraint from Marathon's array form (`[field, OP]` or `[field, OP, value]`).
    pub fn from_parts<S: AsRef<str>>(parts: &[S]) -> Result<Self, Error> {
        match parts {
            [field, operator] => Self::new(field.as_ref(), operator.as_ref(), None),
            [field, operator, value] => {
                Self::new(field.as_ref(), operator.as_ref(), Some(value.as_ref()))
            }
            _ => Err(Error::InvalidConstraint {
                message: messages::WRONG_LENGTH.to_string(),
            }),
        }
    }

    /// The field: `hostname`, `@hostname`, `@region`, `@zone`, or an attribute name.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The value, if any.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// Marathon's array form: `[field, OP]` or `[field, OP, value]`.
    pub fn to_parts(&self) -> Vec<String> {
        let mut parts = vec![self.field.clone(), self.operator.name().to_string()];
        parts.extend(self.value.clone());
        parts
    }
}

impl Serialize for Constraint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = if self.value.is_some() { 3 } else { 2 };
        let mut seq = serializer.serialize_seq(Some(len))?;
        seq.serialize_element(&self.field)?;
        seq.serialize_element(self.operator.name())?;
        if let Some(value) = &self.value {
            seq.serialize_element(value)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PartsVisitor;
        impl<'de> Visitor<'de> for PartsVisitor {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a constraint array [field, OPERATOR, value?]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::new();
                while let Some(part) = seq.next_element::<String>()? {
                    if parts.len() == 3 {
                        return Err(de::Error::custom(messages::WRONG_LENGTH));
                    }
                    parts.push(part);
                }
                Ok(parts)
            }
        }
        let parts = deserializer.deserialize_seq(PartsVisitor)?;
        Constraint::from_parts(&parts).map_err(de::Error::custom)
    }
}

/// An agent attribute value, as Mesos reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// A text attribute (`rack:r1`).
    Text(String),
    /// A scalar attribute (`weight:0.8`).
    Scalar(f64),
    /// A ranges attribute (`ports:[1-5,10-20]`), inclusive bounds.
    Ranges(Vec<(u64, u64)>),
    /// A set attribute (`disks:{a,b}`).
    Set(Vec<String>),
}

impl AttrValue {
    /// The string Marathon compares constraint values with.
    pub fn to_constraint_string(&self) -> String {
        match self {
            AttrValue::Text(text) => text.clone(),
            AttrValue::Scalar(value) => format_scalar(*value),
            AttrValue::Ranges(ranges) => {
                let mut sorted = ranges.clone();
                // Marathon sorts by begin only; the end breaks ties so output is deterministic.
                sorted.sort_unstable();
                let inner: Vec<String> = sorted.iter().map(|(b, e)| format!("{b}-{e}")).collect();
                format!("[{}]", inner.join(","))
            }
            AttrValue::Set(items) => {
                let mut sorted = items.clone();
                sorted.sort_unstable();
                format!("{{{}}}", sorted.join(","))
            }
        }
    }
}

/// Formats a scalar as Marathon's `NumberFormat` does for constraints: at most three decimals,
/// rounded half-even on the exact binary value, no trailing zeros, no grouping.
///
/// ```
/// use plateau_marathon::constraints::format_scalar;
/// assert_eq!(format_scalar(0.8), "0.8");
/// assert_eq!(format_scalar(2.0), "2");
/// assert_eq!(format_scalar(1.23456), "1.235");
/// ```
pub fn format_scalar(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "∞" } else { "-∞" }.to_string();
    }
    // Rust's fixed-precision formatting works on the exact binary value and breaks exact ties
    // to even, which is what java.text.DecimalFormat's HALF_EVEN does.
    let fixed = format!("{value:.3}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        // DecimalFormat keeps the sign of a negative value that rounds to zero.
        return "-0".to_string();
    }
    trimmed.to_string()
}

/// Where an instance runs, or what an offer is on: the agent's hostname, attributes and fault
/// domain.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement {
    /// Agent hostname.
    pub hostname: String,
    /// Agent attributes by name.
    pub attributes: BTreeMap<String, AttrValue>,
    /// Fault domain region, if the agent has one.
    pub region: Option<String>,
    /// Fault domain zone, if the agent has one.
    pub zone: Option<String>,
}

impl Placement {
    /// A placement on a host with no attributes.
    pub fn on_host(hostname: &str) -> Self {
        Self {
            hostname: hostname.to_string(),
            ..Self::default()
        }
    }

    /// Adds an attribute (builder style).
    pub fn with_attribute(mut self, name: &str, value: AttrValue) -> Self {
        self.attributes.insert(name.to_string(), value);
        self
    }

    /// The value of a constraint field on this agent, formatted for comparison.
    pub fn field_value(&self, field: &str) -> Option<String> {
        match field {
            "hostname" | "@hostname" => Some(self.hostname.clone()),
            "@region" => self.region.clone(),
            "@zone" => self.zone.clone(),
            attribute => self
                .attributes
                .get(attribute)
                .map(AttrValue::to_constraint_string),
        }
    }
}

/// True when an offer from `offer_hostname` with `offer_attributes` satisfies every constraint,
/// given the app's placed (running) instances.
///
/// ```
/// use std::collections::BTreeMap;
/// use plateau_marathon::constraints::{offer_matches, Constraint, Placement};
/// let unique = [Constraint::new("hostname", "unique", None).unwrap()];
/// let placed = [Placement::on_host("a")];
/// assert!(!offer_matches(&unique, "a", &BTreeMap::new(), &placed));
/// assert!(offer_matches(&unique, "b", &BTreeMap::new(), &placed));
/// ```
pub fn offer_matches(
    constraints: &[Constraint],
    offer_hostname: &str,
    offer_attributes: &BTreeMap<String, AttrValue>,
    running_instances: &[Placement],
) -> bool {
    let offer = Placement {
        hostname: offer_hostname.to_string(),
        attributes: offer_attributes.clone(),
        region: None,
        zone: None,
    };
    agent_matches(constraints, &offer, running_instances)
}

/// Like [`offer_matches`], with the offer's fault domain (`@region`, `@zone`) as well.
pub fn agent_matches(constraints: &[Constraint], offer: &Placement, placed: &[Placement]) -> bool {
    constraints
        .iter()
        .all(|constraint| meets_constraint(constraint, offer, placed))
}

/// True when one constraint accepts the offer.
pub fn meets_constraint(constraint: &Constraint, offer: &Placement, placed: &[Placement]) -> bool {
    let field = constraint.field();
    let Some(offer_value) = offer.field_value(field) else {
        // Only UNLIKE accepts an agent lacking the attribute.
        return constraint.operator == Operator::Unlike;
    };
    let value = constraint.value.as_deref();
    match constraint.operator {
        Operator::Like => constraint
            .regex
            .as_ref()
            .is_some_and(|re| re.is_match(&offer_value)),
        Operator::Unlike => constraint
            .regex
            .as_ref()
            .is_some_and(|re| !re.is_match(&offer_value)),
        Operator::Unique => placed
            .iter()
            .all(|p| p.field_value(field).as_deref() != Some(offer_value.as_str())),
        Operator::Cluster => match value {
            None | Some("") => placed.first().is_none_or(|first| {
                first.field_value(field).as_deref() == Some(offer_value.as_str())
            }),
            Some(expected) => offer_value == expected,
        },
        Operator::GroupBy => check_group_by(field, value, &offer_value, placed),
        Operator::MaxPer => match value.and_then(|v| v.parse::<i64>().ok()) {
            Some(max) => {
                let same = placed
                    .iter()
                    .filter(|p| p.field_value(field).as_deref() == Some(offer_value.as_str()))
                    .count();
                (same as i64) < max
            }
            None => false,
        },
        Operator::Is => {
            let expected = value.unwrap_or("");
            if offer_value == expected {
                return true;
            }
            // A scalar attribute equals a value written with other digits (`0.80` vs `0.8`).
            match (
                offer.attributes.get(field),
                expected.parse::<f64>().ok().filter(|v| v.is_finite()),
            ) {
                (Some(AttrValue::Scalar(_)), Some(number)) => format_scalar(number) == offer_value,
                _ => false,
            }
        }
    }
}

/// Group sizes of the placed instances by their value of `field`; a missing value is a group.
fn group_counts(field: &str, placed: &[Placement]) -> BTreeMap<Option<String>, usize> {
    let mut counts = BTreeMap::new();
    for placement in placed {
        *counts.entry(placement.field_value(field)).or_insert(0) += 1;
    }
    counts
}

fn group_by_minimum(value: Option<&str>) -> usize {
    // Marathon's getIntValue: "inf" is Int.MaxValue, anything unparsable is 0, floor at 0.
    match value {
        Some("inf") => i32::MAX as usize,
        Some(text) => text.parse::<i32>().map_or(0, |n| n.max(0) as usize),
        None => 0,
    }
}

fn check_group_by(
    field: &str,
    value: Option<&str>,
    offer_value: &str,
    placed: &[Placement],
) -> bool {
    let minimum = group_by_minimum(value);
    let counts = group_counts(field, placed);
    let min_count = counts.values().copied().min().unwrap_or(0);
    match counts.get(&Some(offer_value.to_string())) {
        Some(&count) => counts.len() >= minimum && count == min_count,
        None => true,
    }
}

/// How far along an instance is, for choosing whom to kill first when scaling down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KillPriority {
    /// Unreachable (or lost): killed first.
    Unreachable,
    /// Staging: not running yet.
    Staging,
    /// Starting: not running yet.
    Starting,
    /// Running: killed last.
    Running,
}

/// One instance that may be killed when scaling down.
#[derive(Debug, Clone, PartialEq)]
pub struct KillCandidate {
    /// Where it runs.
    pub placement: Placement,
    /// How far along it is.
    pub priority: KillPriority,
    /// When it was started (or staged), unix ms; None when not known (treated as youngest).
    pub started_at_ms: Option<i64>,
}

/// Indices of `candidates` in the order Marathon kills them: unreachable, then staging, then
/// starting, then running; within each, by `selection` (YOUNGEST_FIRST: latest start first).
/// Ties keep the input order.
pub fn kill_order(candidates: &[KillCandidate], selection: KillSelection) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        let (ca, cb) = (&candidates[a], &candidates[b]);
        // Unknown start time sorts as the youngest instance.
        let start = |c: &KillCandidate| c.started_at_ms.unwrap_or(i64::MAX);
        let by_age = match selection {
            KillSelection::YoungestFirst => start(cb).cmp(&start(ca)),
            KillSelection::OldestFirst => start(ca).cmp(&start(cb)),
        };
        ca.priority.cmp(&cb.priority).then(by_age).then(a.cmp(&b))
    });
    order
}

/// The instances of one GROUP_BY constraint, grouped by value, each group in kill order.
struct GroupByDistribution {
    groups: Vec<Vec<usize>>,
}

impl GroupByDistribution {
    fn new(field: &str, candidates: &[KillCandidate], order: &[usize]) -> Self {
        let mut by_value: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
        for &index in order {
            by_value
                .entry(candidates[index].placement.field_value(field))
                .or_default()
                .push(index);
        }
        Self {
            groups: by_value.into_values().collect(),
        }
    }

    fn sizes_without(&self, without: &BTreeSet<usize>) -> Vec<usize> {
        self.groups
            .iter()
            .map(|group| group.iter().filter(|i| !without.contains(i)).count())
            .collect()
    }

    /// Largest minus smallest group size once `without` are gone (empty groups count as 0).
    fn difference(&self, without: &BTreeSet<usize>) -> usize {
        let sizes = self.sizes_without(without);
        match (sizes.iter().max(), sizes.iter().min()) {
            (Some(max), Some(min)) => max - min,
            _ => 0,
        }
    }

    fn is_more_even_without(&self, selected: &BTreeSet<usize>) -> bool {
        let after = self.difference(selected);
        after <= 1 || self.difference(&BTreeSet::new()) > after
    }

    /// Members of the largest groups (not yet selected), unless all groups are even.
    fn instances_to_kill(&self, without: &BTreeSet<usize>, position: &[usize]) -> Vec<usize> {
        let sizes = self.sizes_without(without);
        let distinct: BTreeSet<usize> = sizes.iter().copied().collect();
        if distinct.len() <= 1 {
            return Vec::new();
        }
        let largest = *distinct.iter().next_back().unwrap_or(&0);
        let mut members: Vec<usize> = self
            .groups
            .iter()
            .zip(&sizes)
            .filter(|(_, &size)| size == largest)
            .flat_map(|(group, _)| group.iter().copied())
            .filter(|i| !without.contains(i))
            .collect();
        members.sort_by_key(|&i| position[i]);
        members
    }
}

/// Chooses `kill_count` instances to kill when scaling down, as Marathon does: GROUP_BY
/// constraints pick from the largest groups so the groups stay even, and the rest follow
/// [`kill_order`]. Other operators do not influence the choice. Returns indices into
/// `candidates`, in kill order, `min(kill_count, candidates.len())` of them.
pub fn select_instances_to_kill(
    constraints: &[Constraint],
    candidates: &[KillCandidate],
    kill_count: usize,
    selection: KillSelection,
) -> Vec<usize> {
    assert!(
        candidates.len() <= limits::KILL_CANDIDATES_MAX,
        "more kill candidates than KILL_CANDIDATES_MAX"
    );
    let kill_count = kill_count.min(candidates.len());
    let order = kill_order(candidates, selection);
    let mut position = vec![0; candidates.len()];
    for (rank, &index) in order.iter().enumerate() {
        position[index] = rank;
    }
    let distributions: Vec<GroupByDistribution> = constraints
        .iter()
        .filter(|c| c.operator() == Operator::GroupBy)
        .map(|c| GroupByDistribution::new(c.field(), candidates, &order))
        .collect();

    let mut selected: Vec<usize> = Vec::with_capacity(kill_count);
    let mut selected_set: BTreeSet<usize> = BTreeSet::new();
    if kill_count < candidates.len() && !distributions.is_empty() {
        while selected.len() < kill_count {
            let mut ranked: Vec<&GroupByDistribution> = distributions.iter().collect();
            // Most uneven distribution first (stable for equal differences).
            ranked.sort_by_key(|d| std::cmp::Reverse(d.difference(&selected_set)));
            let tried = ranked
                .iter()
                .flat_map(|d| d.instances_to_kill(&selected_set, &position))
                .chain(order.iter().copied().filter(|i| !selected_set.contains(i)));
            let mut chosen = None;
            for candidate in tried {
                let mut with = selected_set.clone();
                with.insert(candidate);
                if distributions.iter().all(|d| d.is_more_even_without(&with)) {
                    chosen = Some(candidate);
                    break;
                }
            }
            match chosen {
                Some(index) => {
                    selected.push(index);
                    selected_set.insert(index);
                }
                None => break,
            }
        }
    }
    // Whatever the constraints did not choose comes from the kill order.
    for &index in &order {
        if selected.len() >= kill_count {
            break;
        }
        if selected_set.insert(index) {
            selected.push(index);
        }
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(field: &str, op: &str, value: Option<&str>) -> Constraint {
        Constraint::new(field, op, value).unwrap()
    }

    fn err(field: &str, op: &str, value: Option<&str>) -> String {
        match Constraint::new(field, op, value) {
            Err(Error::InvalidConstraint { message }) => message,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn host_rack(host: &str, rack: &str) -> Placement {
        Placement::on_host(host).with_attribute("rack", AttrValue::Text(rack.to_string()))
    }

    #[test]
    fn validation_messages_are_marathons() {
        assert_eq!(err("", "UNIQUE", None), messages::ILLEGAL_SPECIFICATION);
        assert_eq!(err("hostname", "NEAR", None), messages::OPERATOR_INVALID);
        assert_eq!(
            err("hostname", "UNIQUE", Some("x")),
            messages::UNIQUE_NO_VALUE
        );
        assert_eq!(
            err("rack", "GROUP_BY", Some("two")),
            messages::GROUP_BY_INT_OR_NOTHING
        );
        assert_eq!(err("rack", "MAX_PER", None), messages::MAX_PER_INT);
        assert_eq!(err("rack", "MAX_PER", Some("1.5")), messages::MAX_PER_INT);
        assert_eq!(err("rack", "LIKE", None), messages::LIKE_REQUIRES_REGEX);
        assert_eq!(
            err("rack", "UNLIKE", Some("")),
            messages::LIKE_REQUIRES_REGEX
        );
        assert_eq!(err("rack", "LIKE", Some("rack-[")), messages::INVALID_REGEX);
        assert_eq!(err("rack", "IS", Some("a b")), messages::IS_TEXT_OR_FLOAT);
        assert_eq!(
            format!("{:?}", Constraint::from_parts(&["a"])),
            format!(
                "{:?}",
                Err::<Constraint, _>(Error::InvalidConstraint {
                    message: messages::WRONG_LENGTH.into()
                })
            )
        );
        // Accepted forms.
        assert_eq!(c("hostname", "unique", None).operator(), Operator::Unique);
        assert_eq!(c("hostname", "Group_By", Some("3")).value(), Some("3"));
        assert_eq!(c("hostname", "UNIQUE", Some("")).value(), None);
        assert_eq!(c("rack", "CLUSTER", None).value(), None);
        assert_eq!(c("rack", "IS", Some("0.8")).value(), Some("0.8"));
    }

    #[test]
    fn json_form_round_trips_with_upper_case_operator() {
        let parsed: Vec<Constraint> =
            serde_json::from_str(r#"[["hostname","unique"],["rack_id","like","rack-[1-3]"]]"#)
                .unwrap();
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            r#"[["hostname","UNIQUE"],["rack_id","LIKE","rack-[1-3]"]]"#
        );
        assert!(serde_json::from_str::<Constraint>(r#"["a","UNIQUE","x","y"]"#).is_err());
        assert!(serde_json::from_str::<Constraint>(r#"["a","FOO"]"#).is_err());
    }

    #[test]
    fn attribute_formatting_matches_mesos() {
        assert_eq!(AttrValue::Scalar(0.8).to_constraint_string(), "0.8");
        assert_eq!(AttrValue::Scalar(1.0).to_constraint_string(), "1");
        assert_eq!(AttrValue::Scalar(0.0625).to_constraint_string(), "0.062");
        assert_eq!(AttrValue::Scalar(0.1875).to_constraint_string(), "0.188");
        // 0.0635 is stored as 0.06350000000000000099...: above the tie, so it rounds up.
        assert_eq!(AttrValue::Scalar(0.0635).to_constraint_string(), "0.064");
        assert_eq!(AttrValue::Scalar(2.5).to_constraint_string(), "2.5");
        assert_eq!(
            AttrValue::Scalar(1234.5678).to_constraint_string(),
            "1234.568"
        );
        assert_eq!(
            AttrValue::Ranges(vec![(10, 20), (1, 5)]).to_constraint_string(),
            "[1-5,10-20]"
        );
        assert_eq!(
            AttrValue::Set(vec!["b".into(), "a".into()]).to_constraint_string(),
            "{a,b}"
        );
    }

    #[test]
    fn like_is_a_full_match_and_unlike_accepts_missing_attributes() {
        let like = [c("rack", "LIKE", Some("rack-[1-3]"))];
        let unlike = [c("rack", "UNLIKE", Some("rack-[7-9]"))];
        assert!(agent_matches(&like, &host_rack("h", "rack-2"), &[]));
        assert!(!agent_matches(&like, &host_rack("h", "rack-22"), &[]));
        assert!(!agent_matches(&like, &host_rack("h", "xrack-2"), &[]));
        assert!(!agent_matches(&like, &Placement::on_host("h"), &[]));
        assert!(agent_matches(&unlike, &Placement::on_host("h"), &[]));
        assert!(!agent_matches(&unlike, &host_rack("h", "rack-8"), &[]));
        assert!(agent_matches(&unlike, &host_rack("h", "rack-80"), &[]));
        let host_like = [c("hostname", "LIKE", Some("srv2.*"))];
        assert!(agent_matches(
            &host_like,
            &Placement::on_host("srv2.example"),
            &[]
        ));
        assert!(!agent_matches(
            &host_like,
            &Placement::on_host("srv1.example"),
            &[]
        ));
    }

    #[test]
    fn missing_attribute_is_refused_by_everything_but_unlike() {
        let offer = Placement::on_host("h");
        for op in ["UNIQUE", "CLUSTER", "GROUP_BY", "IS"] {
            assert!(!agent_matches(&[c("rack", op, None)], &offer, &[]), "{op}");
        }
        assert!(!agent_matches(
            &[c("rack", "MAX_PER", Some("5"))],
            &offer,
            &[]
        ));
        assert!(!agent_matches(
            &[c("rack", "LIKE", Some(".*"))],
            &offer,
            &[]
        ));
    }

    #[test]
    fn unique_cluster_max_per_is() {
        let placed = [host_rack("a", "r1"), host_rack("b", "r1")];
        let unique_host = [c("hostname", "UNIQUE", None)];
        assert!(!agent_matches(&unique_host, &host_rack("a", "r2"), &placed));
        assert!(agent_matches(&unique_host, &host_rack("c", "r1"), &placed));
        let unique_rack = [c("rack", "UNIQUE", None)];
        assert!(!agent_matches(&unique_rack, &host_rack("c", "r1"), &placed));
        assert!(agent_matches(&unique_rack, &host_rack("c", "r2"), &placed));

        let cluster = [c("rack", "CLUSTER", None)];
        assert!(agent_matches(&cluster, &host_rack("c", "r9"), &[]));
        assert!(agent_matches(&cluster, &host_rack("c", "r1"), &placed));
        assert!(!agent_matches(&cluster, &host_rack("c", "r2"), &placed));
        let cluster_value = [c("hostname", "CLUSTER", Some("a"))];
        assert!(agent_matches(
            &cluster_value,
            &Placement::on_host("a"),
            &placed
        ));
        assert!(!agent_matches(
            &cluster_value,
            &Placement::on_host("b"),
            &[]
        ));

        let max_per = [c("rack", "MAX_PER", Some("2"))];
        assert!(!agent_matches(&max_per, &host_rack("c", "r1"), &placed));
        assert!(agent_matches(&max_per, &host_rack("c", "r2"), &placed));

        let is = [c("rack", "IS", Some("r1"))];
        assert!(agent_matches(&is, &host_rack("c", "r1"), &[]));
        assert!(!agent_matches(&is, &host_rack("c", "r10"), &[]));
        let is_scalar = [c("weight", "IS", Some("0.80"))];
        let heavy = Placement::on_host("c").with_attribute("weight", AttrValue::Scalar(0.8));
        assert!(agent_matches(&is_scalar, &heavy, &[]));
        let at_region = [c("@region", "IS", Some("eu"))];
        let mut regional = Placement::on_host("c");
        assert!(!agent_matches(&at_region, &regional, &[]));
        regional.region = Some("eu".into());
        assert!(agent_matches(&at_region, &regional, &[]));
    }

    #[test]
    fn group_by_without_count_balances_values_seen_so_far() {
        let group_by = [c("rack", "GROUP_BY", None)];
        // Nothing placed: anything goes.
        assert!(agent_matches(&group_by, &host_rack("a", "r1"), &[]));
        let placed = [host_rack("a", "r1")];
        // r1 is the only (so the smallest) group: stacking is allowed, as Marathon's docs warn.
        assert!(agent_matches(&group_by, &host_rack("b", "r1"), &placed));
        assert!(agent_matches(&group_by, &host_rack("b", "r2"), &placed));
        let placed = [
            host_rack("a", "r1"),
            host_rack("b", "r2"),
            host_rack("c", "r1"),
        ];
        assert!(!agent_matches(&group_by, &host_rack("d", "r1"), &placed));
        assert!(agent_matches(&group_by, &host_rack("d", "r2"), &placed));
        assert!(agent_matches(&group_by, &host_rack("d", "r3"), &placed));
    }

    #[test]
    fn group_by_with_count_waits_for_k_values() {
        let group_by = [c("rack", "GROUP_BY", Some("3"))];
        let placed = [host_rack("a", "r1"), host_rack("b", "r2")];
        // Two groups < 3: an existing value is refused even when it is the smallest.
        assert!(!agent_matches(&group_by, &host_rack("c", "r1"), &placed));
        assert!(agent_matches(&group_by, &host_rack("c", "r3"), &placed));
        let placed = [
            host_rack("a", "r1"),
            host_rack("b", "r2"),
            host_rack("c", "r3"),
        ];
        assert!(agent_matches(&group_by, &host_rack("d", "r1"), &placed));
    }

    fn candidate(host: &str, rack: &str, started: i64) -> KillCandidate {
        KillCandidate {
            placement: host_rack(host, rack),
            priority: KillPriority::Running,
            started_at_ms: Some(started),
        }
    }

    #[test]
    fn kill_order_prefers_unreachable_then_youngest() {
        let mut candidates = vec![
            candidate("a", "r1", 10),
            candidate("b", "r1", 30),
            candidate("c", "r1", 20),
            candidate("d", "r1", 5),
        ];
        candidates[3].priority = KillPriority::Unreachable;
        assert_eq!(
            kill_order(&candidates, KillSelection::YoungestFirst),
            vec![3, 1, 2, 0]
        );
        assert_eq!(
            kill_order(&candidates, KillSelection::OldestFirst),
            vec![3, 0, 2, 1]
        );
        assert_eq!(
            select_instances_to_kill(&[], &candidates, 2, KillSelection::YoungestFirst),
            vec![3, 1]
        );
    }

    #[test]
    fn group_by_keeps_groups_even_when_scaling_down() {
        // r1 holds three (the youngest among them is 2), r2 holds one.
        let candidates = vec![
            candidate("a", "r1", 1),
            candidate("b", "r1", 2),
            candidate("c", "r1", 3),
            candidate("d", "r2", 4),
        ];
        let group_by = [c("rack", "GROUP_BY", None)];
        // Without constraints the youngest (d, on r2) would go first.
        assert_eq!(
            select_instances_to_kill(&[], &candidates, 1, KillSelection::YoungestFirst),
            vec![3]
        );
        assert_eq!(
            select_instances_to_kill(&group_by, &candidates, 2, KillSelection::YoungestFirst),
            vec![2, 1]
        );
        // Other operators do not influence the choice.
        let unique = [c("hostname", "UNIQUE", None)];
        assert_eq!(
            select_instances_to_kill(&unique, &candidates, 1, KillSelection::YoungestFirst),
            vec![3]
        );
    }

    fn arb_rack() -> impl Strategy<Value = String> {
        (0u8..4).prop_map(|i| format!("r{i}"))
    }

    proptest! {
        #[test]
        fn unique_never_places_two_on_one_host(hosts in proptest::collection::vec(0u8..6, 0..40)) {
            let unique = [c("hostname", "UNIQUE", None)];
            let mut placed: Vec<Placement> = Vec::new();
            for h in hosts {
                let offer = Placement::on_host(&format!("h{h}"));
                if agent_matches(&unique, &offer, &placed) {
                    placed.push(offer);
                }
            }
            let distinct: BTreeSet<&str> = placed.iter().map(|p| p.hostname.as_str()).collect();
            prop_assert_eq!(distinct.len(), placed.len());
        }

        #[test]
        fn max_per_never_exceeds(racks in proptest::collection::vec(arb_rack(), 0..60), max in 1i64..5) {
            let max_per = [c("rack", "MAX_PER", Some(&max.to_string()))];
            let mut placed: Vec<Placement> = Vec::new();
            for (i, rack) in racks.iter().enumerate() {
                let offer = host_rack(&format!("h{i}"), rack);
                if agent_matches(&max_per, &offer, &placed) {
                    placed.push(offer);
                }
            }
            let counts = group_counts("rack", &placed);
            prop_assert!(counts.values().all(|&n| n as i64 <= max));
        }

        #[test]
        fn group_by_k_keeps_groups_within_one(racks in proptest::collection::vec(0u8..3, 0..60)) {
            let group_by = [c("rack", "GROUP_BY", Some("3"))];
            let mut placed: Vec<Placement> = Vec::new();
            for (i, rack) in racks.iter().enumerate() {
                let offer = host_rack(&format!("h{i}"), &format!("r{rack}"));
                if agent_matches(&group_by, &offer, &placed) {
                    placed.push(offer);
                }
            }
            let counts = group_counts("rack", &placed);
            let max = counts.values().max().copied().unwrap_or(0);
            let min = counts.values().min().copied().unwrap_or(0);
            prop_assert!(max - min <= 1, "{:?}", counts);
        }

        #[test]
        fn kill_selection_is_distinct_complete_and_evening(
            instances in proptest::collection::vec((arb_rack(), 0i64..1000), 1..30),
            kill_fraction in 0.0f64..=1.0,
            group in any::<bool>(),
        ) {
            let candidates: Vec<KillCandidate> = instances
                .iter()
                .enumerate()
                .map(|(i, (rack, started))| candidate(&format!("h{i}"), rack, *started))
                .collect();
            let kill_count = ((candidates.len() as f64) * kill_fraction) as usize;
            let constraints = if group { vec![c("rack", "GROUP_BY", None)] } else { vec![] };
            let chosen = select_instances_to_kill(&constraints, &candidates, kill_count, KillSelection::YoungestFirst);
            prop_assert_eq!(chosen.len(), kill_count);
            let set: BTreeSet<usize> = chosen.iter().copied().collect();
            prop_assert_eq!(set.len(), chosen.len());
            if group {
                // Marathon's greedy choice stalls on ties (then the kill order fills in), but a
                // single largest group that is 2+ ahead always loses an instance first.
                let counts = group_counts("rack", &candidates.iter().map(|k| k.placement.clone()).collect::<Vec<_>>());
                let max = counts.values().max().copied().unwrap_or(0);
                let min = counts.values().min().copied().unwrap_or(0);
                let largest: Vec<_> = counts.iter().filter(|(_, &n)| n == max).collect();
                if kill_count > 0 && kill_count < candidates.len() && largest.len() == 1 && max - min >= 2 {
                    prop_assert_eq!(&candidates[chosen[0]].placement.field_value("rack"), largest[0].0);
                }
            } else {
                let order = kill_order(&candidates, KillSelection::YoungestFirst);
                prop_assert_eq!(&chosen[..], &order[..kill_count]);
            }
        }
    }
}
