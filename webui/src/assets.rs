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

/// Every file of the console.
pub static ASSETS: &[Asset] = &[Asset {
    path: "index.html",
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("../assets/index.html"),
}];

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
