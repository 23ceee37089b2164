//! A local stand-in for Render's deploy hook: answers a scripted sequence of replies on
//! 127.0.0.1 and records each request, so retries can be counted and timed.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub use super::canary::HOOK_URL_KEY;

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status, optional `Retry-After`, and a body.
    Status(u16, Option<&'static str>, &'static str),
    /// Accept the request and never answer.
    Hang,
}

/// Render's success answer.
pub fn accepted(id: &'static str) -> Reply {
    Reply::Status(200, None, id)
}

#[derive(Default)]
struct Script {
    replies: Vec<Reply>,
    requests: Vec<(Instant, String, String)>,
}

/// A running fake hook.
pub struct FakeHook {
    script: Arc<Mutex<Script>>,
    /// Its URL, `key` included.
    pub url: String,
}

impl FakeHook {
    /// Starts a server that answers `replies` in order, then repeats the last one.
    pub async fn start(replies: Vec<Reply>) -> Self {
        let script = Arc::new(Mutex::new(Script {
            replies,
            requests: Vec::new(),
        }));
        let app = Router::new().fallback(answer).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            script,
            url: format!("http://{addr}/deploy/srv-test123?key={HOOK_URL_KEY}"),
        }
    }

    /// How many requests arrived.
    pub fn requests(&self) -> usize {
        self.script.lock().unwrap().requests.len()
    }

    /// When each request arrived.
    pub fn times(&self) -> Vec<Instant> {
        self.script
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|r| r.0)
            .collect()
    }

    /// Method and path+query of each request.
    pub fn seen(&self) -> Vec<(String, String)> {
        self.script
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|r| (r.1.clone(), r.2.clone()))
            .collect()
    }
}

async fn answer(State(script): State<Arc<Mutex<Script>>>, request: Request) -> Response {
    let reply = {
        let mut s = script.lock().unwrap();
        let n = s.requests.len();
        s.requests.push((
            Instant::now(),
            request.method().to_string(),
            request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        ));
        s.replies
            .get(n)
            .or(s.replies.last())
            .cloned()
            .unwrap_or(Reply::Status(500, None, ""))
    };
    match reply {
        Reply::Hang => std::future::pending().await,
        Reply::Status(code, retry_after, body) => {
            let status = StatusCode::from_u16(code).unwrap();
            let body = if code == 200 && body.starts_with("dep-") {
                format!(r#"{{"deploy":{{"id":"{body}"}}}}"#)
            } else {
                body.to_owned()
            };
            let mut response = (status, body).into_response();
            if let Some(ra) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", ra.parse().unwrap());
            }
            response
        }
    }
}
