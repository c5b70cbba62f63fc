//! End-to-end tests: the `plateau` binary run as separate processes (master, slaves,
//! frameworks), driven through their public interfaces. One test binary; one module per area.

/// The binary under test.
pub const PLATEAU: &str = env!("CARGO_BIN_EXE_plateau");

mod e2e {
    pub use super::PLATEAU;
    mod balancer;
    mod chronos;
    mod cli;
    mod cluster;
    mod dev;
    mod ha;
    mod maintenance;
    mod marathon;
    mod netns;
    mod racks;
    mod security;
    pub mod signals;
    pub mod support;
    mod tasks_user;
    mod ui;
}
