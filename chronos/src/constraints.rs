//! Chronos' placement constraints (`jobs/constraints/*.scala`) evaluated against an offer: pure.
//!
//! The slave's host name is offered as the attribute `hostname`.
//!
//! | operator | accepts when |
//! |---|---|
//! | `EQUALS` | the attribute has a **text** value equal to the value |
//! | `LIKE` | the attribute exists and the regex matches its **whole** value (a scalar in its decimal form) |
//! | `UNLIKE` | the attribute exists and the regex does not match its whole value; a missing attribute does **not** match (Marathon differs) |
//!
//! Regular expressions are compiled by the `regex` crate as `^(?:re)$` (Java's `String.matches`);
//! Java-only syntax is refused when the job is posted ([`validate`]).
use plateau_master::resources::{AttributeValue, Attributes};
use regex::{Regex, RegexBuilder};

use crate::job::{Constraint, ConstraintOperator, JobError};
use crate::limits;

fn compile(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > limits::CONSTRAINT_REGEX_LEN_MAX {
        return Err(format!(
            "longer than {} bytes",
            limits::CONSTRAINT_REGEX_LEN_MAX
        ));
    }
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

/// Checks that every LIKE/UNLIKE pattern compiles. The error names `constraints`.
pub fn validate(constraints: &[Constraint]) -> Result<(), JobError> {
    for c in constraints {
        if matches!(
            c.operator,
            ConstraintOperator::Like | ConstraintOperator::Unlike
        ) {
            compile(&c.value).map_err(|reason| JobError::Invalid {
                field: "constraints",
                message: format!(
                    "constraint on '{}': '{}' is not a valid regular expression: {reason}",
                    c.attribute, c.value
                ),
            })?;
        }
    }
    Ok(())
}

/// The offer's value of `attribute` as text (`hostname` is the slave's host name).
fn value_of(attribute: &str, hostname: &str, attributes: &Attributes) -> Option<(String, bool)> {
    if let Some(value) = attributes.get(attribute) {
        let is_text = matches!(value, AttributeValue::Text(_));
        return Some((value.to_string(), is_text));
    }
    (attribute == "hostname").then(|| (hostname.to_string(), true))
}

/// True when an offer from `hostname` with `attributes` satisfies every constraint.
pub fn matches_all(constraints: &[Constraint], hostname: &str, attributes: &Attributes) -> bool {
    constraints.iter().all(|c| {
        let Some((value, is_text)) = value_of(&c.attribute, hostname, attributes) else {
            return false;
        };
        match c.operator {
            ConstraintOperator::Equals => is_text && value == c.value,
            ConstraintOperator::Like => compile(&c.value).is_ok_and(|re| re.is_match(&value)),
            ConstraintOperator::Unlike => compile(&c.value).is_ok_and(|re| !re.is_match(&value)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraint(attribute: &str, operator: ConstraintOperator, value: &str) -> Constraint {
        Constraint {
            attribute: attribute.into(),
            operator,
            value: value.into(),
        }
    }

    #[test]
    fn operators_follow_chronos() {
        use ConstraintOperator::*;
        let attributes = Attributes::parse("rack:r1;level:3").unwrap();
        let ok = |c: Constraint| matches_all(&[c], "node-7.example", &attributes);
        assert!(ok(constraint("rack", Equals, "r1")));
        assert!(!ok(constraint("rack", Equals, "r2")));
        // EQUALS compares text values only.
        assert!(!ok(constraint("level", Equals, "3")));
        assert!(ok(constraint("hostname", Equals, "node-7.example")));
        assert!(ok(constraint("hostname", Like, "node-[0-9]+\\.example")));
        // LIKE matches the whole value.
        assert!(!ok(constraint("hostname", Like, "node")));
        assert!(ok(constraint("level", Like, "[0-9]")));
        assert!(ok(constraint("rack", Unlike, "r2")));
        assert!(!ok(constraint("rack", Unlike, "r.")));
        // A missing attribute matches nothing, UNLIKE included.
        assert!(!ok(constraint("zone", Unlike, "a")));
        assert!(!ok(constraint("zone", Equals, "a")));
        assert!(matches_all(&[], "h", &attributes));
    }

    #[test]
    fn invalid_patterns_are_refused_naming_the_field() {
        let bad = [constraint("rack", ConstraintOperator::Like, "(?=r)r1")];
        let err = validate(&bad).unwrap_err();
        assert_eq!(err.field(), Some("constraints"));
        assert!(validate(&[constraint("rack", ConstraintOperator::Equals, "(")]).is_ok());
    }
}
