//! The HTTPS front: accepts connections on loopback (TLS with rustls), checks the bearer
//! token, applies injected faults (failures, stalls), routes to discovery or to a verb on a
//! resource, and enforces RBAC before any resource is read or written.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::request::{query, route, verb, Route, Target};
use crate::status::{error, json, reason_of, Body};
use crate::{discovery, objects, watch, Shared};

/// Accepts connections until the task is aborted; aborting it drops every connection too.
pub async fn accept(shared: Arc<Shared>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut connections = JoinSet::new();
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("fakeapi: accept failed: {e}");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        connections.spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
        while connections.try_join_next().is_some() {}
    }
}

/// One request, as the log records it (for tests of request shapes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let q = query(parts.uri.query());
    let path = parts.uri.path().to_string();
    shared.log.lock().expect("log lock").push(Logged {
        method: parts.method.to_string(),
        path: path.clone(),
        query: q.clone(),
    });

    let token =
        parts.headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let admin = token == Some(shared.admin_token.as_str());
    if !admin && token != Some(shared.token.as_str()) {
        return error(401, "Unauthorized", "Unauthorized");
    }
    if let Some(code) = shared.failing() {
        return error(code, reason_of(code), "injected failure (palisade-fakeapi)");
    }
    let Some(r) = route(&path) else {
        return error(404, "NotFound", "the server could not find the requested resource");
    };
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    match r {
        Route::Resource(target) => resource(shared, parts.method.as_str(), &target, &q, &body, admin).await,
        other => discover(&shared, other),
    }
}

fn discover(shared: &Shared, r: Route) -> Response<Body> {
    let found = match r {
        Route::Version => {
            Some(serde_json::json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-palisade-fakeapi"}))
        }
        Route::CoreVersions => Some(discovery::core_versions(&shared.addr.to_string())),
        Route::Groups => Some(discovery::group_list(&shared.groups)),
        Route::Group(g) => discovery::group(&shared.groups, &g),
        Route::Resources(gv) => discovery::resource_list(&shared.catalog, &shared.groups, &gv),
        Route::Resource(_) => None,
    };
    match found {
        Some(v) => json(StatusCode::OK, &v),
        None => error(404, "NotFound", "the server could not find the requested resource"),
    }
}

async fn resource(
    shared: Arc<Shared>,
    method: &str,
    target: &Target,
    q: &BTreeMap<String, String>,
    body: &[u8],
    admin: bool,
) -> Response<Body> {
    let Some(idx) = shared.find(&target.group, &target.version, &target.plural) else {
        return error(404, "NotFound", "the server could not find the requested resource");
    };
    let verb = verb(&method.parse().unwrap_or_default(), target, q);
    let allowed =
        shared.rbac.lock().expect("rbac lock").as_ref().is_none_or(|r| r.allows(verb, &target.group, &target.plural));
    if !admin && !allowed {
        let scope = match &target.namespace {
            Some(ns) => format!("in the namespace {ns:?}"),
            None => "at the cluster scope".into(),
        };
        let msg = format!(
            "{}{} is forbidden: User \"{}\" cannot {verb} resource {:?} in API group {:?} {scope}",
            target.plural,
            if target.group.is_empty() { String::new() } else { format!(".{}", target.group) },
            shared.user,
            target.plural,
            target.group,
        );
        return error(403, "Forbidden", &msg);
    }
    shared.wait_unstalled(&target.plural).await;
    match verb {
        "watch" => watch::watch(&shared, idx, target, q),
        "list" => objects::list(&shared, idx, target, q),
        "get" => objects::get(&shared, idx, target, target.name.as_deref().unwrap_or_default()),
        _ => objects::write(&shared, idx, target, method, body),
    }
}
