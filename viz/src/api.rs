//! The page's server on 127.0.0.1:16686: the page itself (embedded files) and the JSON
//! API it reads, which tests and `curl` can read too.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /` | the page |
//! | `GET /assets/NAME` | its scripts and styles |
//! | `GET /api/health` | `{"service":"berth-viz"}`: who is listening here |
//! | `GET /api/traces?service=&root=&min_duration_us=&max_duration_us=&since_unix_ms=&until_unix_ms=&limit=` | the trace list ([`crate::list`]) |
//! | `GET /api/services` | every service seen, for the list's filter |
//! | `GET /api/traces/ID` | one trace, ready to draw ([`crate::view`]) |
//! | `GET /api/traces/ID/otlp` | one trace as OTLP/JSON (export) |
//! | `POST /api/traces` | import OTLP (JSON or protobuf), as the receiver would take it |
//! | `GET /api/compare?a=ID&b=ID` | two traces aligned ([`crate::compare`]) |
//!
//! Read next: [`crate::assets`], the page.

use std::sync::Arc;

use crate::http::{Handler, Request, Response};
use crate::list::Filter;
use crate::receiver::ingest;
use crate::store::Store;
use crate::{assets, compare, list, otlp, view};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no trace {0:?} is stored; list them with GET /api/traces")]
    NoTrace(String),
    #[error("query parameter {name}={value:?} is not a whole number; give e.g. {name}=1000")]
    NotANumber { name: &'static str, value: String },
    #[error("compare needs two trace ids: /api/compare?a=ID&b=ID")]
    CompareNeedsTwo,
    #[error(
        "no such page or API: {method} {path}; see GET / for the page and /api/traces for the API"
    )]
    NotFound { method: String, path: String },
}

impl ApiError {
    fn status(&self) -> u16 {
        match self {
            ApiError::NoTrace(_) | ApiError::NotFound { .. } => 404,
            ApiError::NotANumber { .. } | ApiError::CompareNeedsTwo => 400,
        }
    }
}

/// The page server's handler.
pub fn handler(store: Arc<Store>, max_body: usize) -> Handler {
    Arc::new(
        move |request: Request| match route(&store, &request, max_body) {
            Ok(response) => response,
            Err(error) => Response::error(error.status(), error),
        },
    )
}

fn route(store: &Store, request: &Request, max_body: usize) -> Result<Response, ApiError> {
    let path = request.path.as_str();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    Ok(match (request.method.as_str(), segments.as_slice()) {
        ("GET", [""]) | ("GET", ["index.html"]) => asset("index.html")?,
        ("GET", ["assets", name]) => asset(name)?,
        ("GET", ["api", "health"]) => {
            Response::json(200, &serde_json::json!({ "service": "berth-viz" }))
        }
        ("GET", ["api", "traces"]) => {
            Response::json(200, &list::list(&store.all(), &filter(request)?))
        }
        ("GET", ["api", "services"]) => {
            let mut services: Vec<String> = store
                .all()
                .iter()
                .flat_map(|t| t.processes.iter().map(|p| p.service().to_string()))
                .collect();
            services.sort();
            services.dedup();
            Response::json(200, &services)
        }
        ("GET", ["api", "traces", id]) => Response::json(200, &view::build(&get(store, id)?)),
        ("GET", ["api", "traces", id, "otlp"]) => {
            let trace = get(store, id)?;
            Response::new(200, "application/json", otlp::to_json(&trace)).with_header(
                "content-disposition",
                format!("attachment; filename=\"trace-{}.json\"", trace.trace_id),
            )
        }
        ("POST", ["api", "traces"]) => match ingest(store, request, max_body) {
            Ok(trace_ids) => Response::json(200, &serde_json::json!({ "trace_ids": trace_ids })),
            // The same reasons the receiver gives, with the same status codes.
            Err(error) => Response::error(error.status(), error),
        },
        ("GET", ["api", "compare"]) => {
            let (Some(a), Some(b)) = (request.query("a"), request.query("b")) else {
                return Err(ApiError::CompareNeedsTwo);
            };
            let a = view::build(&get(store, a)?);
            let b = view::build(&get(store, b)?);
            Response::json(200, &compare::compare(&a, &b))
        }
        _ => {
            return Err(ApiError::NotFound {
                method: request.method.clone(),
                path: path.to_string(),
            })
        }
    })
}

fn asset(name: &str) -> Result<Response, ApiError> {
    let (content_type, body) = assets::get(name).ok_or_else(|| ApiError::NotFound {
        method: "GET".into(),
        path: format!("/assets/{name}"),
    })?;
    // The page is embedded in this binary: a new build is a new page. `no-cache` makes
    // the browser ask again each load, so it never runs yesterday's script.
    Ok(Response::new(200, content_type, body).with_header("cache-control", "no-cache"))
}

fn get(store: &Store, id: &str) -> Result<crate::model::Trace, ApiError> {
    // Ids are stored lower-case; a pasted upper-case id still finds its trace.
    store
        .get(&id.to_ascii_lowercase())
        .ok_or_else(|| ApiError::NoTrace(id.to_string()))
}

fn filter(request: &Request) -> Result<Filter, ApiError> {
    let number = |name: &'static str| -> Result<Option<u64>, ApiError> {
        match request.query(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(value) => value.parse().map(Some).map_err(|_| ApiError::NotANumber {
                name,
                value: value.to_string(),
            }),
        }
    };
    let text = |name: &str| {
        request
            .query(name)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    Ok(Filter {
        service: text("service"),
        root: text("root"),
        min_duration_us: number("min_duration_us")?,
        max_duration_us: number("max_duration_us")?,
        since_unix_ms: number("since_unix_ms")?,
        until_unix_ms: number("until_unix_ms")?,
        limit: number("limit")?.map(|n| n as usize),
    })
}
