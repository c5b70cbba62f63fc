//! Plateau's web console: one page application served by every master at `/`.
//!
//! - [`assets`]: the files of the console (HTML, script, styles and the vendored libraries in
//!   `webui/assets/`), built into the binary by `include_bytes!`, so `cargo build` is the only
//!   build step and the console needs no network beyond the cluster.
//! - [`proxy`]: the reverse proxy through which the master reaches the agents, the frameworks'
//!   web UIs, the balancer and the leading master for the console.
//!
//! The master mounts [`configure_assets`] next to its API (`plateau_master::http::configure`).

pub mod assets;
pub mod proxy;

pub use assets::configure_assets;
