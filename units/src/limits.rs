//! Every bound of the unit translation, in one place.

/// Longest unit file read, in bytes (systemd's own limit on a unit file is far above what a
/// hand-written unit needs; this keeps a hostile file from costing much).
pub const UNIT_FILE_BYTES_MAX: usize = 1024 * 1024;

/// Most `Key=Value` entries in one unit file.
pub const UNIT_ENTRIES_MAX: usize = 10_000;

/// Longest unit name, in bytes (systemd's `UNIT_NAME_MAX`).
pub const UNIT_NAME_LEN_MAX: usize = 256;

/// Most agents a `Global=true` unit is spread over (instances of one Marathon app).
pub const GLOBAL_INSTANCES_MAX: u32 = 100_000;
