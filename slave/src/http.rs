//! The slave's HTTP API (actix-web), Mesos-shaped: `/state` (also `/state.json` and
//! `/slave(1)/state`), `/monitor/statistics`, `/files/read`, `/metrics` (Prometheus text) and
//! `/health`. Handlers reach the process through [`ProcessRef::call`].
//!
//! `/files/read?path=P&offset=N&length=L` follows Mesos: `P` is an absolute path inside a task's
//! sandbox, as `/state` shows it in `frameworks[].executors[].directory` (a command task's
//! executor has the task's id). The answer is `{"data": "...", "offset": N}`; `offset=-1`
//! asks for the file's size (`data` empty, `offset` the size). A path outside every sandbox
//! of a task in the books, or a file that does not exist, is 404; a malformed path (relative,
//! `..`, NUL) or a directory is 400; a symbolic link leading out of the sandbox is 404 (the
//! slave does not tell what lies outside); a file that does not belong to the task's user
//! (a hard link the task may have made to a file outside its sandbox: see [`crate::sandbox`])
//! is 403.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use plateau_runtime::ProcessRef;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::limits;
use crate::process::SlaveProcess;
use crate::sandbox::{self, SandboxError};

/// What each request needs ([`plateau_security::Access`]), from its method and path only:
/// `/health` is open; `/files/read`, `/files/browse` and `/files/download` are `access_sandboxes` (its object, the task's user, is not
/// in the request line: rules need `"users": {"type": "ANY"}` or `NONE`); the state, the
/// statistics and the metrics are `get_endpoints` on the path; anything else needs
/// credentials only.
pub fn classify(method: &str, path: &str) -> plateau_security::Access {
    use plateau_security::{Access, Action};
    match (method, path) {
        (_, "/health") => Access::Open,
        (
            _,
            "/files/read"
            | "/files/read.json"
            | "/files/browse"
            | "/files/browse.json"
            | "/files/download"
            | "/files/download.json",
        ) => Access::Action(Action::AccessSandboxes, None),
        (
            "GET" | "HEAD",
            "/state"
            | "/state.json"
            | "/slave(1)/state"
            | "/monitor/statistics"
            | "/monitor/statistics.json"
            | "/metrics",
        ) => Access::Action(Action::GetEndpoints, Some(path.to_string())),
        _ => Access::Authenticated,
    }
}

/// Installs the slave's routes.
pub fn configure(cfg: &mut web::ServiceConfig, slave: ProcessRef<SlaveProcess>) {
    cfg.app_data(web::Data::new(slave))
        .route("/state", web::get().to(state))
        .route("/state.json", web::get().to(state))
        .route("/slave(1)/state", web::get().to(state))
        .route("/monitor/statistics", web::get().to(statistics))
        .route("/monitor/statistics.json", web::get().to(statistics))
        .route("/files/read", web::get().to(files_read))
        .route("/files/read.json", web::get().to(files_read))
        .route("/files/browse", web::get().to(files_browse))
        .route("/files/browse.json", web::get().to(files_browse))
        .route("/files/download", web::get().to(files_download))
        .route("/files/download.json", web::get().to(files_download))
        .route("/metrics", web::get().to(metrics))
        .route("/health", web::get().to(health));
}

type Slave = web::Data<ProcessRef<SlaveProcess>>;

fn error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "message": message.into() }))
}

fn gone() -> HttpResponse {
    error(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "the slave process is not running",
    )
}

/// The `/state` JSON of a slave (Mesos-like).
pub fn state_json(p: &SlaveProcess) -> Value {
    let slave_id = p
        .slave_id()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    let frameworks: Vec<Value> = p
        .core()
        .frameworks()
        .iter()
        .map(|(fid, framework)| {
            let executors: Vec<Value> = p
                .core()
                .tasks()
                .iter()
                .filter(|(_, t)| &t.framework_id == fid)
                .map(|(tid, t)| {
                    let directory = t
                        .launch
                        .as_ref()
                        .map_or_else(|| t.sandbox.clone(), |l| l.sandbox.clone());
                    json!({
                        "id": tid.as_str(),
                        "name": format!("Command Executor (Task: {tid})"),
                        "source": tid.as_str(),
                        "framework_id": fid.as_str(),
                        "directory": directory.to_string_lossy(),
                        "resources": t.info.resources.to_json(),
                        "tasks": [{
                            "id": tid.as_str(),
                            "name": t.info.name,
                            "framework_id": fid.as_str(),
                            "executor_id": "",
                            "slave_id": slave_id,
                            "state": t.state.as_str(),
                            "resources": t.info.resources.to_json(),
                            "labels": t.info.labels,
                            "healthy": t.health.as_ref().and_then(|h| h.healthy()),
                        }],
                    })
                })
                .collect();
            json!({
                "id": fid.as_str(),
                "name": framework.info.name,
                "user": framework.info.user,
                "role": framework.info.role,
                "pid": framework.pid.to_string(),
                "executors": executors,
                "completed_executors": [],
            })
        })
        .collect();
    let info = p.info();
    json!({
        "id": slave_id,
        "pid": p.upid().map(|u| u.to_string()).unwrap_or_default(),
        "hostname": info.hostname,
        "port": info.port,
        "resources": info.resources.to_json(),
        "attributes": info.attributes.to_json(),
        "master_hostname": p.leader().map(|m| m.host.to_string()),
        "registered": p.is_registered(),
        "frameworks": frameworks,
        "completed_frameworks": [],
    })
}

async fn state(slave: Slave) -> HttpResponse {
    match slave.call(|p, _ctx| state_json(p)).await {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(_) => gone(),
    }
}

/// The `/monitor/statistics` JSON: one entry per running task with a launch.
pub fn statistics_json(p: &SlaveProcess, timestamp: f64) -> Value {
    let entries: Vec<Value> = p
        .core()
        .tasks()
        .iter()
        .filter(|(_, t)| t.is_live() && t.launch.is_some())
        .filter_map(|(tid, t)| {
            let usage = p.containerizer().usage(tid.as_str()).ok()?;
            Some(json!({
                "executor_id": tid.as_str(),
                "executor_name": format!("Command Executor (Task: {tid})"),
                "framework_id": t.framework_id.as_str(),
                "source": tid.as_str(),
                "statistics": {
                    "cpus_user_time_secs": usage.cpus_user_time_secs,
                    "cpus_system_time_secs": usage.cpus_system_time_secs,
                    "cpus_limit": usage.cpus_limit,
                    "cpus_nr_periods": usage.cpus_nr_periods,
                    "cpus_nr_throttled": usage.cpus_nr_throttled,
                    "cpus_throttled_time_secs": usage.cpus_throttled_time_secs,
                    "mem_rss_bytes": usage.mem_rss_bytes,
                    "mem_total_bytes": usage.mem_total_bytes,
                    "mem_limit_bytes": usage.mem_limit_bytes,
                    "processes": usage.processes,
                    "timestamp": timestamp,
                },
            }))
        })
        .collect();
    Value::Array(entries)
}

async fn statistics(slave: Slave) -> HttpResponse {
    let result = slave
        .call(|p, ctx| {
            let timestamp = ctx
                .wall_clock()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            statistics_json(p, timestamp)
        })
        .await;
    match result {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(_) => gone(),
    }
}

/// Query of `/files/read`.
#[derive(Debug, Deserialize)]
pub struct ReadQuery {
    /// Absolute path inside a task's sandbox.
    pub path: String,
    /// Offset; -1 asks for the size.
    pub offset: Option<i64>,
    /// Most bytes to return.
    pub length: Option<i64>,
}

/// The sandbox `path` is in, and the path relative to it.
fn locate(sandboxes: &[Arc<Path>], path: &Path) -> Option<(PathBuf, String)> {
    sandboxes.iter().find_map(|root| {
        let relative = path.strip_prefix(root).ok()?;
        Some((root.to_path_buf(), relative.to_string_lossy().into_owned()))
    })
}

/// The sandbox root and relative path of an absolute sandbox `path`, or the answer refusing it.
async fn sandbox_path(slave: &Slave, path: &str) -> Result<(PathBuf, String), HttpResponse> {
    use actix_web::http::StatusCode;
    if path.len() > limits::SANDBOX_PATH_LEN_MAX || !path.starts_with('/') {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "path must be an absolute sandbox path",
        ));
    }
    let sandboxes = slave
        .call(|p, _ctx| {
            p.sandboxes()
                .into_iter()
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|_| gone())?;
    locate(&sandboxes, Path::new(path))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no task sandbox holds this path"))
}

/// The answer to a sandbox access that failed.
fn sandbox_error(e: SandboxError) -> HttpResponse {
    use actix_web::http::StatusCode;
    let status = match e {
        SandboxError::InvalidPath { .. } | SandboxError::NotAFile(_) => StatusCode::BAD_REQUEST,
        SandboxError::Escapes(_) | SandboxError::NotFound(_) => StatusCode::NOT_FOUND,
        SandboxError::NotOwned(_) => StatusCode::FORBIDDEN,
        SandboxError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

async fn files_read(slave: Slave, query: web::Query<ReadQuery>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let query = query.into_inner();
    let offset = match query.offset {
        None => Some(0),
        Some(-1) => None,
        Some(n) if n >= 0 => Some(n as u64),
        Some(n) => return error(StatusCode::BAD_REQUEST, format!("bad offset {n}")),
    };
    let length = match query.length {
        None | Some(-1) => None,
        Some(n) if n >= 0 => Some(n as u64),
        Some(n) => return error(StatusCode::BAD_REQUEST, format!("bad length {n}")),
    };
    let (root, relative) = match sandbox_path(&slave, &query.path).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let read = web::block(move || sandbox::read(&root, &relative, offset, length)).await;
    match read {
        Ok(Ok(chunk)) => HttpResponse::Ok().json(json!({
            "data": String::from_utf8_lossy(&chunk.data),
            "offset": chunk.offset,
        })),
        Ok(Err(e)) => sandbox_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Query of `/files/browse` and `/files/download`.
#[derive(Debug, Deserialize)]
pub struct PathQuery {
    /// Absolute path inside a task's sandbox.
    pub path: String,
}

/// `/files/browse?path=DIR`: the entries of a sandbox directory, as Mesos lists them
/// (`path` absolute, `mode` as `ls -l` shows it, `mtime` in seconds).
async fn files_browse(slave: Slave, query: web::Query<PathQuery>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let dir = query.into_inner().path;
    let (root, relative) = match sandbox_path(&slave, &dir).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    match web::block(move || sandbox::browse(&root, &relative)).await {
        Ok(Ok(entries)) => {
            let dir = dir.trim_end_matches('/');
            let list: Vec<Value> = entries
                .into_iter()
                .map(|e| {
                    json!({
                        "path": format!("{dir}/{}", e.name),
                        "size": e.size,
                        "mtime": e.mtime,
                        "mode": e.mode,
                        "nlink": e.nlink,
                        "uid": e.uid.to_string(),
                        "gid": e.gid.to_string(),
                    })
                })
                .collect();
            HttpResponse::Ok().json(list)
        }
        Ok(Err(e)) => sandbox_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `/files/download?path=FILE`: the whole file, as an attachment, streamed.
async fn files_download(slave: Slave, query: web::Query<PathQuery>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let path = query.into_inner().path;
    let (root, relative) = match sandbox_path(&slave, &path).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let (file, metadata) = match web::block(move || sandbox::open(&root, &relative)).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return sandbox_error(e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let name = Path::new(&path)
        .file_name()
        .map(|n| n.to_string_lossy().replace(['"', '\\', '\r', '\n'], "_"))
        .unwrap_or_else(|| "file".to_string());
    // Read in chunks up to the size seen at the open (a file that grows meanwhile is cut
    // there, so the length announced holds).
    let size = metadata.len();
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::unfold((file, 0u64), move |(mut file, sent)| async move {
        use tokio::io::AsyncReadExt;
        if sent >= size {
            return None;
        }
        let want = (size - sent).min(64 * 1024) as usize;
        let mut buf = vec![0u8; want];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(web::Bytes::from(buf)),
                    (file, sent + n as u64),
                ))
            }
            Err(e) => Some((Err(e), (file, size))),
        }
    });
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        ))
        .no_chunking(size)
        .streaming(stream)
}

async fn metrics(slave: Slave) -> HttpResponse {
    match slave.call(|p, _ctx| p.metrics_text()).await {
        Ok(text) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        Err(_) => gone(),
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_located_in_their_sandbox() {
        let roots: Vec<Arc<Path>> = vec![
            Path::new("/w/a/runs/latest").into(),
            Path::new("/w/b").into(),
        ];
        assert_eq!(
            locate(&roots, Path::new("/w/a/runs/latest/stdout")),
            Some((roots[0].to_path_buf(), "stdout".into()))
        );
        assert_eq!(
            locate(&roots, Path::new("/w/b/sub/file")),
            Some((roots[1].to_path_buf(), "sub/file".into()))
        );
        assert_eq!(locate(&roots, Path::new("/w/c/stdout")), None);
        // `..` passes the prefix test but sandbox::read refuses it.
        assert_eq!(
            locate(&roots, Path::new("/w/b/../secret")).map(|(_, r)| r),
            Some("../secret".into())
        );
    }
}
