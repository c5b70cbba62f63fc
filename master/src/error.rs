//! The master's error type: operating errors (bad input from a user, a slave or a framework)
//! returned as values with a message naming the bad part.

use crate::ids::{FrameworkId, SlaveId};

/// Everything that can go wrong in the master's pure cores, as a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MasterError {
    /// A resource name other than `cpus`, `mem`, `disk` or `ports`.
    #[error("unknown resource '{name}' (expected cpus, mem, disk or ports)")]
    UnknownResource {
        /// The name as given.
        name: String,
    },
    /// A `name:value` part without the `:value`.
    #[error("'{part}' has no value (expected name:value)")]
    MissingValue {
        /// The part as given.
        part: String,
    },
    /// A scalar that is not a finite decimal number.
    #[error("bad number '{value}' for {name}")]
    BadNumber {
        /// Resource or attribute name.
        name: String,
        /// The value as given.
        value: String,
    },
    /// A negative scalar resource.
    #[error("negative value '{value}' for {name}")]
    Negative {
        /// Resource name.
        name: String,
        /// The value as given.
        value: String,
    },
    /// A scalar above [`crate::limits::SCALAR_MAX`].
    #[error("value '{value}' for {name} is above the maximum {max}")]
    TooLarge {
        /// Resource name.
        name: String,
        /// The value as given.
        value: String,
        /// The maximum accepted.
        max: u64,
    },
    /// The same resource named twice in one resource text.
    #[error("resource '{name}' given twice")]
    DuplicateResource {
        /// Resource name.
        name: String,
    },
    /// A malformed range or range list.
    #[error("bad range '{range}': {reason}")]
    BadRange {
        /// The range (or list) as given.
        range: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two ranges of one list share values.
    #[error("overlapping ranges '{first}' and '{second}'")]
    OverlappingRanges {
        /// The lower range.
        first: String,
        /// The range overlapping it.
        second: String,
    },
    /// A collection is above its named maximum in [`crate::limits`].
    #[error("too many {what}: {len} (maximum {max})")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// How many were given (or would be).
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A malformed `name:value` slave attribute.
    #[error("bad attribute '{part}': {reason}")]
    BadAttribute {
        /// The attribute part as given.
        part: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same attribute named twice.
    #[error("attribute '{name}' given twice")]
    DuplicateAttribute {
        /// Attribute name.
        name: String,
    },
    /// A slave id the allocator does not know.
    #[error("unknown slave {slave}")]
    UnknownSlave {
        /// The slave.
        slave: SlaveId,
    },
    /// A slave added twice.
    #[error("slave {slave} is already registered")]
    DuplicateSlave {
        /// The slave.
        slave: SlaveId,
    },
    /// A framework id the allocator does not know.
    #[error("unknown framework {framework}")]
    UnknownFramework {
        /// The framework.
        framework: FrameworkId,
    },
    /// A framework added twice.
    #[error("framework {framework} is already registered")]
    DuplicateFramework {
        /// The framework.
        framework: FrameworkId,
    },
    /// A role name Mesos would not accept.
    #[error("invalid role '{role}': {reason}")]
    InvalidRole {
        /// The role as given.
        role: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A role weight that is not a finite number above zero.
    #[error("invalid weight {weight} for role '{role}' (must be finite and above 0)")]
    InvalidWeight {
        /// The role.
        role: String,
        /// The weight as given.
        weight: f64,
    },
    /// Resources recovered that are not allocated to that framework on that slave.
    #[error("resources {resources} are not allocated to framework {framework} on slave {slave}")]
    NotAllocated {
        /// The framework.
        framework: FrameworkId,
        /// The slave.
        slave: SlaveId,
        /// The resources that were to be recovered.
        resources: String,
    },
    /// A new slave total that would not cover what is already allocated on it.
    #[error(
        "new total {total} of slave {slave} does not cover its allocated resources {allocated}"
    )]
    TotalBelowAllocated {
        /// The slave.
        slave: SlaveId,
        /// The proposed total.
        total: String,
        /// What is allocated on the slave.
        allocated: String,
    },
    /// The durable registry could not be read or written.
    #[error("registry: {message}")]
    Registry {
        /// What failed, naming the file.
        message: String,
    },
    /// A list of masters to follow (`--master A,B,C`) that is empty or names a bad address.
    #[error("bad master list '{list}': {reason}")]
    BadMasters {
        /// The list (or the entry) as given.
        list: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The master process could not be started on its node.
    #[error("cannot start the master process: {message}")]
    Start {
        /// Why.
        message: String,
    },
    /// A coordination store snapshot that does not decode or breaks an invariant.
    #[error("bad coordination store snapshot: {message}")]
    CoordSnapshot {
        /// What is wrong with it.
        message: String,
    },
}
