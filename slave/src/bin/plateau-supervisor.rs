//! The per-task supervisor of the cgroups containerizer, as a standalone executable.
//!
//! The `plateau` binary offers the same entry point as a hidden subcommand; this executable
//! exists so that the crate's integration tests (and anyone embedding the crate) have one.
fn main() {
    plateau_slave::containerizer::supervisor_main(std::env::args_os().skip(1).collect())
}
