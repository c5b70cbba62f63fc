//! The console's files, built into the binary.

use actix_web::{web, HttpRequest, HttpResponse};

/// One file of the console.
pub struct Asset {
    /// Its path under `/ui/`.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// One table row: the path under `webui/assets/` is the path under `/ui/`.
macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../assets/", $path)),
        }
    };
}

/// Every file of the console: the page, its ES modules (`js/`), its stylesheet, and the
/// vendored libraries (`vendor/`, listed with their sums in `vendor/MANIFEST`).
pub static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("style.css", CSS),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/ui.js", JS),
    asset!("js/cluster.js", JS),
    asset!("js/agents.js", JS),
    asset!("js/task.js", JS),
    asset!("js/marathon.js", JS),
    asset!("js/chronos.js", JS),
    asset!("js/balancer.js", JS),
    asset!("vendor/MANIFEST", TEXT),
    asset!("vendor/preact-htm.module.js", JS),
    asset!("vendor/uPlot.iife.min.js", JS),
    asset!("vendor/uPlot.min.css", CSS),
    asset!("vendor/dagre.min.js", JS),
];

/// The asset at `path` (under `/ui/`).
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

fn serve(asset: &Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header(("Cache-Control", "no-cache"))
        .body(asset.bytes)
}

async fn index() -> HttpResponse {
    match asset("index.html") {
        Some(a) => serve(a),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn file(request: HttpRequest) -> HttpResponse {
    let path = request.match_info().query("path");
    match asset(path) {
        Some(a) => serve(a),
        None => HttpResponse::NotFound()
            .json(serde_json::json!({ "message": format!("no console file {path}") })),
    }
}

/// Mounts `GET /` (the console) and `GET /ui/{path}` (its files).
pub fn configure_assets(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/ui/{path:.*}", web::get().to(file));
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// MANIFEST rows: (file under vendor/, package@version, path in the tarball, sha256).
    fn manifest() -> Vec<(String, String, String, String)> {
        let text = std::str::from_utf8(asset("vendor/MANIFEST").expect("MANIFEST served").bytes)
            .expect("MANIFEST is UTF-8");
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(
                    fields.len(),
                    4,
                    "MANIFEST row {l:?}: file package@version path sha256"
                );
                (
                    fields[0].to_string(),
                    fields[1].to_string(),
                    fields[2].to_string(),
                    fields[3].to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn vendored_files_match_their_manifest_sums() {
        let rows = manifest();
        assert!(rows.len() >= 4, "preact+htm, uPlot (js, css), dagre");
        for (file, package, _, sum) in &rows {
            let path = format!("vendor/{file}");
            let served =
                asset(&path).unwrap_or_else(|| panic!("{path} ({package}) is not in ASSETS"));
            let on_disk = std::fs::read(format!("{}/assets/{path}", env!("CARGO_MANIFEST_DIR")))
                .unwrap_or_else(|e| panic!("read {path}: {e}"));
            assert_eq!(
                served.bytes,
                &on_disk[..],
                "{path}: the binary holds the file on disk"
            );
            assert_eq!(
                &hex(&Sha256::digest(served.bytes)),
                sum,
                "{path} ({package}) differs from MANIFEST: run webui/vendor.sh"
            );
        }
        // Every vendored file in the table is in the MANIFEST.
        for a in ASSETS
            .iter()
            .filter(|a| a.path.starts_with("vendor/") && a.path != "vendor/MANIFEST")
        {
            assert!(
                rows.iter()
                    .any(|(file, ..)| format!("vendor/{file}") == a.path),
                "{} is served but not in MANIFEST",
                a.path
            );
        }
    }

    /// Every `/ui/...` reference of `text` between quotes.
    fn ui_references(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for quote in ['"', '\'', '`'] {
            for part in text.split(quote).skip(1).step_by(2) {
                if let Some(path) = part.strip_prefix("/ui/") {
                    if !path.starts_with("api/") && !path.starts_with("proxy/") {
                        found.push(path.to_string());
                    }
                }
            }
        }
        found
    }

    #[test]
    fn index_references_only_files_in_the_table() {
        let index =
            std::str::from_utf8(asset("index.html").expect("index.html").bytes).expect("UTF-8");
        let references = ui_references(index);
        assert!(
            references.iter().any(|r| r == "js/app.js"),
            "index.html loads the app: {references:?}"
        );
        for r in &references {
            assert!(
                asset(r).is_some(),
                "index.html references /ui/{r}, which is not in ASSETS"
            );
        }
    }

    #[test]
    fn modules_import_only_files_in_the_table() {
        for a in ASSETS.iter().filter(|a| a.path.starts_with("js/")) {
            let text = std::str::from_utf8(a.bytes).expect("UTF-8");
            for line in text
                .lines()
                .filter(|l| l.trim_start().starts_with("import ") || l.starts_with("} from "))
            {
                let Some(from) = line
                    .split(" from ")
                    .nth(1)
                    .or_else(|| line.strip_prefix("import "))
                else {
                    continue;
                };
                let target = from
                    .trim()
                    .trim_end_matches(';')
                    .trim_matches(|c| c == '\'' || c == '"');
                let resolved = match target.strip_prefix("./") {
                    Some(rest) => format!("js/{rest}"),
                    None => match target.strip_prefix("../") {
                        Some(rest) => rest.to_string(),
                        None => panic!("{}: import of {target:?} is not relative", a.path),
                    },
                };
                assert!(
                    asset(&resolved).is_some(),
                    "{} imports {target}, which is not in ASSETS",
                    a.path
                );
            }
        }
    }

    #[test]
    fn every_file_of_the_folder_is_served_with_a_content_type() {
        let root = format!("{}/assets", env!("CARGO_MANIFEST_DIR"));
        let mut stack = vec![std::path::PathBuf::from(&root)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read assets") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(&root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                let served = asset(&relative)
                    .unwrap_or_else(|| panic!("{relative} is in webui/assets but not in ASSETS"));
                let expected = match relative.rsplit('.').next() {
                    Some("js") => JS,
                    Some("css") => CSS,
                    Some("html") => HTML,
                    _ => TEXT,
                };
                assert_eq!(served.content_type, expected, "{relative}");
            }
        }
    }
}
