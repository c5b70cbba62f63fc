//! What the web console (`plateau_webui`) asks of the master: one-screen summaries, pages of
//! large lists, the recent history of the cluster's use, a stream of changes, and a proxy to
//! the agents and frameworks the master knows.

use actix_web::web;

/// Whether `path` is one of the console's files (`/` or `/ui/...` but not its API or proxy).
pub fn is_console_file(path: &str) -> bool {
    path == "/"
        || (path.starts_with("/ui/")
            && !path.starts_with("/ui/api/")
            && !path.starts_with("/ui/proxy/"))
}

/// Mounts the console's API and proxy routes.
pub fn configure(_cfg: &mut web::ServiceConfig) {}
