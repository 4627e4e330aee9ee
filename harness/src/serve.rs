//! `schism serve`: a small web view of the results store. The list of runs with their
//! verdicts, and each run's report and files. Read-only; binds 127.0.0.1 unless told
//! otherwise.

use crate::report::escape;
use crate::store::{REPORT_FILE, list_runs};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use std::fmt::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Largest file the view sends; bigger ones (a huge history) are refused with a note to read
/// them from disk.
pub const MAX_SERVED_FILE_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Clone)]
struct Shared {
    root: Arc<PathBuf>,
}

pub fn router(root: PathBuf) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/runs/{workload}/{run}", get(run_redirect))
        .route("/runs/{workload}/{run}/", get(run_page))
        .route("/runs/{workload}/{run}/{*file}", get(run_file))
        .with_state(Shared {
            root: Arc::new(root),
        })
}

/// Serves until `cancel` fires.
pub async fn serve(
    root: PathBuf,
    listener: tokio::net::TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router(root))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await?;
    Ok(())
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px}table{border-collapse:collapse;font-size:14px}\
td,th{border:1px solid #d0d7de;padding:4px 10px;text-align:left}th{background:#f6f8fa}\
.valid{color:#1a7f37;font-weight:600}.invalid{color:#cf222e;font-weight:600}.unknown,.none{color:#9a6700;font-weight:600}";

async fn index(State(s): State<Shared>) -> Response {
    let runs = match list_runs(&s.root) {
        Ok(runs) => runs,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot list runs: {e:#}"),
            )
                .into_response();
        }
    };
    let mut h = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>schism results</title><style>{STYLE}</style></head><body>\
         <h1>schism results</h1><p>{} runs in <code>{}</code></p><table><tr><th>started</th><th>workload</th><th>run</th><th>verdict</th><th>nemesis</th><th>backend</th><th>report</th></tr>",
        runs.len(),
        escape(&s.root.display().to_string())
    );
    for r in &runs {
        let verdict = r.verdict.map(|v| v.as_str()).unwrap_or("none");
        let (nemesis, backend) = r
            .config
            .as_ref()
            .map(|c| (c.nemesis.join(","), c.backend.name()))
            .unwrap_or_default();
        let base = format!("/runs/{}/{}/", escape(&r.workload), escape(&r.name));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td><a href=\"{base}\">{}</a></td><td class=\"{verdict}\">{}</td><td>{}</td><td>{}</td><td><a href=\"{base}{REPORT_FILE}\">report</a></td></tr>",
            escape(r.started_at.as_deref().unwrap_or("")),
            escape(&r.workload),
            escape(&r.name),
            if r.verdict.is_some() {
                verdict
            } else {
                "not checked"
            },
            escape(&nemesis),
            backend
        );
    }
    h.push_str("</table></body></html>");
    Html(h).into_response()
}

async fn run_redirect(UrlPath((workload, run)): UrlPath<(String, String)>) -> Response {
    if !safe_name(&workload) || !safe_name(&run) {
        return StatusCode::NOT_FOUND.into_response();
    }
    Redirect::permanent(&format!("/runs/{workload}/{run}/")).into_response()
}

async fn run_page(
    State(s): State<Shared>,
    UrlPath((workload, run)): UrlPath<(String, String)>,
) -> Response {
    let Some(dir) = resolve(&s.root, &workload, &run, "") else {
        return (StatusCode::NOT_FOUND, "no such run").into_response();
    };
    let mut files = Vec::new();
    collect_files(&dir, &dir, &mut files, 0);
    files.sort();
    let mut h = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}/{1}</title><style>{STYLE}</style></head><body>\
         <p><a href=\"/\">all runs</a></p><h1>{0}/{1}</h1><p><a href=\"{REPORT_FILE}\">report</a></p><ul>",
        escape(&workload),
        escape(&run)
    );
    for f in files {
        let _ = write!(h, "<li><a href=\"{0}\">{0}</a></li>", escape(&f));
    }
    h.push_str("</ul></body></html>");
    Html(h).into_response()
}

/// Most directory levels the file list descends (nodes/<node>/...).
const MAX_LIST_DEPTH: usize = 4;

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<String>, depth: usize) {
    if depth > MAX_LIST_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(base, &p, out, depth + 1);
        } else if let Ok(rel) = p.strip_prefix(base) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

async fn run_file(
    State(s): State<Shared>,
    UrlPath((workload, run, file)): UrlPath<(String, String, String)>,
) -> Response {
    let Some(path) = resolve(&s.root, &workload, &run, &file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    if !meta.is_file() {
        return (StatusCode::NOT_FOUND, "not a file").into_response();
    }
    if meta.len() > MAX_SERVED_FILE_BYTES {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} is larger than {MAX_SERVED_FILE_BYTES} bytes: read it from disk",
                path.display()
            ),
        )
            .into_response();
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&path))], bytes).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the file: {e}"),
        )
            .into_response(),
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    }
}

fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// The file a URL names, only if it is inside the results root: no `..`, no absolute paths,
/// and no symlink that leads out.
fn resolve(root: &Path, workload: &str, run: &str, file: &str) -> Option<PathBuf> {
    if !safe_name(workload) || !safe_name(run) {
        return None;
    }
    let rel = Path::new(file);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let path = root.join(workload).join(run).join(rel);
    let canonical = path.canonicalize().ok()?;
    let root = root.canonicalize().ok()?;
    canonical.starts_with(&root).then_some(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("register/20260101T000000Z-1");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("report.html"), "x").unwrap();
        std::fs::write(dir.path().join("secret"), "x").unwrap();
        assert!(resolve(dir.path(), "register", "20260101T000000Z-1", "report.html").is_some());
        assert!(resolve(dir.path(), "register", "20260101T000000Z-1", "../../secret").is_none());
        assert!(resolve(dir.path(), "..", "x", "secret").is_none());
        assert!(resolve(dir.path(), "register", "20260101T000000Z-1", "/etc/passwd").is_none());
        std::os::unix::fs::symlink("/etc", run.join("out")).unwrap();
        assert!(resolve(dir.path(), "register", "20260101T000000Z-1", "out/passwd").is_none());
    }
}
