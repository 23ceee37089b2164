//! A stand-in for Render's REST API on 127.0.0.1, behaving as the real one does for the calls of
//! `deploy` (§9): bearer key checked, 201 with the deploy object or 202 with no body, the list as
//! `[{"deploy": {…}, "cursor": "…"}]` newest first, statuses that advance one step per poll, the
//! previous live deploy turned `deactivated` when a new one goes live, `rollback`, and faults on
//! demand (429 with `Ratelimit-Reset`, a 500 answered after the work was done or before it).
//! Beside it, the service itself (the smoke test's target) answers a set status per path.
//! Every request is recorded, with the time it arrived, so tests count and time them.
//!
//! It runs on a thread of its own with its own runtime, so both blocking tests (the binary as a
//! child process) and async ones can use it; dropping it stops both servers and joins the thread.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The service id the stand-in knows.
pub const SERVICE: &str = "srv-test123";
/// The deploy that was live before: the rollback's expected target.
pub const PREVIOUS_LIVE: &str = "dep-prev-live";

/// The calls of §9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Create,
    List,
    Get,
    Service,
    Rollback,
}

/// A fault answered instead of (or after) the normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Ratelimit-Reset: secs`; nothing done.
    RateLimited(u64),
    /// 500, after doing the work (the deploy exists).
    ErrorAfter,
    /// 500, before doing anything.
    ErrorBefore,
}

/// How the stand-in behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The key it accepts as `Authorization: Bearer …`.
    pub key: String,
    /// The statuses a created deploy goes through: the first in the create answer, one step
    /// further on each GET of it; the last one stays.
    pub plan: Vec<&'static str>,
    /// The same for a rollback's deploy.
    pub rollback_plan: Vec<&'static str>,
    /// Answer a create with 202 and no body (queued) instead of 201.
    pub queued: bool,
    /// Faults: on the `n`th (1-based) request of a call.
    pub faults: Vec<(Call, usize, Fault)>,
    /// The smoke target's status per path (others: 404).
    pub smoke: Vec<(&'static str, u16)>,
    /// Answer the list with this many bytes of whitespace (a broken or hostile answer).
    pub oversized_list: Option<usize>,
}

impl Options {
    /// A deploy that builds, updates and goes live, with the canary key.
    pub fn new(key: &str) -> Self {
        Self {
            key: key.to_owned(),
            plan: vec!["build_in_progress", "update_in_progress", "live"],
            rollback_plan: vec!["update_in_progress", "live"],
            queued: false,
            faults: Vec::new(),
            smoke: vec![("/health", 200)],
            oversized_list: None,
        }
    }
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    pub authorization: Option<String>,
    pub body: String,
    pub call: Option<Call>,
    /// The status answered.
    pub status: u16,
}

#[derive(Debug, Clone)]
struct FakeDeploy {
    object: Value,
    plan: Vec<&'static str>,
    step: usize,
}

struct World {
    options: Options,
    /// Newest first.
    deploys: Vec<FakeDeploy>,
    counts: HashMap<Call, usize>,
    seen: Vec<Seen>,
    smoke_seen: Vec<(Instant, String)>,
    made: usize,
    service_url: String,
}

type Shared = Arc<Mutex<World>>;

/// A running stand-in for Render's API and for the deployed service.
pub struct FakeRender {
    world: Shared,
    /// `http://127.0.0.1:PORT/v1`, for `RENDER_API_URL`.
    pub base: String,
    /// The deployed service's URL (its `serviceDetails.url`).
    pub service_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeRender {
    /// Starts both servers.
    pub fn start(options: Options) -> Self {
        let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let site = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        api.set_nonblocking(true).unwrap();
        site.set_nonblocking(true).unwrap();
        let base = format!("http://{}/v1", api.local_addr().unwrap());
        let service_url = format!("http://{}", site.local_addr().unwrap());
        let world = Arc::new(Mutex::new(World {
            options,
            deploys: seed(),
            counts: HashMap::new(),
            seen: Vec::new(),
            smoke_seen: Vec::new(),
            made: 0,
            service_url: service_url.clone(),
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = world.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let api = tokio::net::TcpListener::from_std(api).unwrap();
                let site = tokio::net::TcpListener::from_std(site).unwrap();
                let api_app = Router::new().fallback(answer).with_state(shared.clone());
                let site_app = Router::new().fallback(answer_smoke).with_state(shared);
                let api_server = axum::serve(api, api_app);
                let site_server = axum::serve(site, site_app);
                tokio::select! {
                    _ = api_server => {}
                    _ = site_server => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            world,
            base,
            service_url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Every request to the API so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.world.lock().unwrap().seen.clone()
    }

    /// The requests of one call.
    pub fn calls(&self, call: Call) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.call == Some(call))
            .collect()
    }

    /// How many deploys were created (rollbacks included).
    pub fn deploys_made(&self) -> usize {
        self.world.lock().unwrap().made
    }

    /// The requests to the deployed service (smoke test), with their times.
    pub fn smoke_seen(&self) -> Vec<(Instant, String)> {
        self.world.lock().unwrap().smoke_seen.clone()
    }

    /// The current status of a deploy.
    pub fn status_of(&self, id: &str) -> Option<String> {
        let w = self.world.lock().unwrap();
        w.deploys
            .iter()
            .find(|d| d.object["id"] == id)
            .map(|d| d.object["status"].as_str().unwrap().to_owned())
    }
}

impl Drop for FakeRender {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn deploy_object(id: &str, status: &str, trigger: &str, age: Duration, commit: &str) -> Value {
    let created = OffsetDateTime::now_utc() - age;
    json!({
        "id": id,
        "commit": {"id": commit, "message": "a commit", "createdAt": rfc3339(created - Duration::from_secs(60))},
        "status": status,
        "trigger": trigger,
        "createdAt": rfc3339(created),
        "updatedAt": rfc3339(created),
        "finishedAt": rfc3339(created + Duration::from_secs(90)),
    })
}

/// The service's history before the test: a deploy that failed after the live one (never a
/// rollback target), the live one, and an older replaced one.
fn seed() -> Vec<FakeDeploy> {
    let done = |object: Value| FakeDeploy {
        object,
        plan: Vec::new(),
        step: 0,
    };
    vec![
        done(deploy_object(
            "dep-failed-earlier",
            "build_failed",
            "new_commit",
            Duration::from_secs(1800),
            "bbbbbbb",
        )),
        done(deploy_object(
            PREVIOUS_LIVE,
            "live",
            "new_commit",
            Duration::from_secs(3600),
            "aaaaaaa",
        )),
        done(deploy_object(
            "dep-older",
            "deactivated",
            "new_commit",
            Duration::from_secs(7200),
            "9999999",
        )),
    ]
}

fn reply(status: u16, body: Value) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    r.headers_mut()
        .insert("ratelimit-limit", "100".parse().unwrap());
    r
}

fn classify(method: &str, parts: &[&str]) -> Option<(Call, Option<String>)> {
    match (method, parts) {
        ("POST", ["v1", "services", _, "deploys"]) => Some((Call::Create, None)),
        ("GET", ["v1", "services", _, "deploys"]) => Some((Call::List, None)),
        ("GET", ["v1", "services", _, "deploys", id]) => Some((Call::Get, Some((*id).to_owned()))),
        ("GET", ["v1", "services", _]) => Some((Call::Service, None)),
        ("POST", ["v1", "services", _, "rollback"]) => Some((Call::Rollback, None)),
        _ => None,
    }
}

async fn answer(State(world): State<Shared>, request: Request) -> Response {
    let method = request.method().to_string();
    let uri = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let path = request.uri().path().to_owned();
    let authorization = header(request.headers(), "authorization");
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let call = classify(&method, &parts);
    let mut w = world.lock().unwrap();
    let response = respond(
        &mut w,
        call.clone(),
        &parts,
        authorization.as_deref(),
        &body,
    );
    w.seen.push(Seen {
        at: Instant::now(),
        method,
        uri,
        authorization,
        body,
        call: call.map(|c| c.0),
        status: response.status().as_u16(),
    });
    response
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn respond(
    w: &mut World,
    call: Option<(Call, Option<String>)>,
    parts: &[&str],
    authorization: Option<&str>,
    body: &str,
) -> Response {
    if authorization != Some(format!("Bearer {}", w.options.key).as_str()) {
        return reply(
            401,
            json!({"id": "unauthorized", "message": "unauthorized"}),
        );
    }
    let Some((call, deploy_id)) = call else {
        return reply(404, json!({"id": "not_found", "message": "not found"}));
    };
    if parts.get(2) != Some(&SERVICE) {
        return reply(
            404,
            json!({"id": "not_found", "message": "service not found"}),
        );
    }
    let n = {
        let c = w.counts.entry(call).or_default();
        *c += 1;
        *c
    };
    let fault = w
        .options
        .faults
        .iter()
        .find(|(c, at, _)| *c == call && *at == n)
        .map(|f| f.2);
    match fault {
        Some(Fault::RateLimited(secs)) => {
            let mut r = reply(429, json!({"message": "rate limit exceeded"}));
            r.headers_mut()
                .insert("ratelimit-remaining", "0".parse().unwrap());
            r.headers_mut()
                .insert("ratelimit-reset", secs.to_string().parse().unwrap());
            return r;
        }
        Some(Fault::ErrorBefore) => return reply(500, json!({"message": "internal error"})),
        _ => {}
    }
    let normal = match call {
        Call::Create => create(w, body),
        Call::Rollback => rollback(w, body),
        Call::List if w.options.oversized_list.is_some() => {
            let n = w.options.oversized_list.unwrap_or_default();
            (StatusCode::OK, " ".repeat(n)).into_response()
        }
        Call::List => {
            let list: Vec<Value> = w
                .deploys
                .iter()
                .take(20)
                .map(|d| json!({"deploy": d.object, "cursor": format!("cursor-{}", d.object["id"].as_str().unwrap())}))
                .collect();
            reply(200, Value::Array(list))
        }
        Call::Get => get(w, deploy_id.as_deref().unwrap_or_default()),
        Call::Service => reply(
            200,
            json!({"id": SERVICE, "name": "app", "type": "web_service",
                   "serviceDetails": {"url": w.service_url, "region": "oregon"}}),
        ),
    };
    if fault == Some(Fault::ErrorAfter) {
        return reply(500, json!({"message": "internal error"}));
    }
    normal
}

fn create(w: &mut World, body: &str) -> Response {
    let Ok(body) = serde_json::from_str::<Value>(body) else {
        return reply(400, json!({"message": "invalid JSON"}));
    };
    if !matches!(body["clearCache"].as_str(), Some("clear" | "do_not_clear")) {
        return reply(
            400,
            json!({"message": "clearCache must be clear or do_not_clear"}),
        );
    }
    w.made += 1;
    let id = format!("dep-new-{}", w.made);
    let commit = body["commitId"].as_str().unwrap_or("ccccccc").to_owned();
    let plan = w.options.plan.clone();
    let object = deploy_object(&id, plan[0], "api", Duration::ZERO, &commit);
    w.deploys.insert(
        0,
        FakeDeploy {
            object: object.clone(),
            plan,
            step: 0,
        },
    );
    if w.options.queued {
        return (StatusCode::ACCEPTED, Body::empty()).into_response();
    }
    reply(201, object)
}

fn rollback(w: &mut World, body: &str) -> Response {
    let target = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|b| b["deployId"].as_str().map(str::to_owned));
    let Some(target) = target.filter(|t| w.deploys.iter().any(|d| d.object["id"] == t.as_str()))
    else {
        return reply(
            400,
            json!({"message": "deployId must name a deploy of this service"}),
        );
    };
    w.made += 1;
    let id = format!("dep-rollback-{}", w.made);
    let plan = w.options.rollback_plan.clone();
    let commit = w
        .deploys
        .iter()
        .find(|d| d.object["id"] == target.as_str())
        .and_then(|d| d.object["commit"]["id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let object = deploy_object(&id, plan[0], "rollback", Duration::ZERO, &commit);
    w.deploys.insert(
        0,
        FakeDeploy {
            object: object.clone(),
            plan,
            step: 0,
        },
    );
    reply(201, object)
}

/// A poll moves the deploy one step along its plan; going live deactivates the one live before.
fn get(w: &mut World, id: &str) -> Response {
    let Some(i) = w.deploys.iter().position(|d| d.object["id"] == id) else {
        return reply(404, json!({"message": "deploy not found"}));
    };
    let d = &mut w.deploys[i];
    if d.step + 1 < d.plan.len() {
        d.step += 1;
        d.object["status"] = d.plan[d.step].into();
        if d.plan[d.step] == "live" {
            for (j, other) in w.deploys.iter_mut().enumerate() {
                if j != i && other.object["status"] == "live" {
                    other.object["status"] = "deactivated".into();
                }
            }
        }
    }
    reply(200, w.deploys[i].object.clone())
}

async fn answer_smoke(State(world): State<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let mut w = world.lock().unwrap();
    w.smoke_seen.push((Instant::now(), path.clone()));
    let status = w
        .options
        .smoke
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, s)| *s)
        .unwrap_or(404);
    (StatusCode::from_u16(status).unwrap(), "smoke").into_response()
}
