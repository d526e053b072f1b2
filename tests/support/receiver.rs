//! A real HTTP receiver on loopback for the outbound tests (webhooks, Kaizala callbacks):
//! an axum server on `127.0.0.1:0` that records every request (method, path and query,
//! headers, raw body) and answers as told ([`Reply`]), changeable while it runs. Test
//! binaries include this file with `#[path]`.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// How the receiver answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Every request gets this status, with the body `status <code>`.
    Status(u16),
    /// The n-th request gets the n-th status; once spent, the last one forever.
    Sequence(Vec<u16>),
    /// Never answers (the caller's timeout fires).
    Hang,
    /// 200 with the `validationToken` query parameter as the body (Kaizala handshake).
    EchoValidationToken,
    /// 302 to `/elsewhere` on the same receiver (a redirect must not be followed).
    Redirect,
}

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Captured {
    pub method: String,
    pub path_and_query: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Captured {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

struct Shared {
    reply: Reply,
    captured: Vec<Captured>,
}

#[derive(Clone)]
struct Inner(Arc<Mutex<Shared>>);

/// The running receiver; the server task ends with the test's runtime.
pub struct Receiver {
    inner: Inner,
    addr: std::net::SocketAddr,
}

impl Receiver {
    pub async fn start(reply: Reply) -> Receiver {
        let inner = Inner(Arc::new(Mutex::new(Shared { reply, captured: Vec::new() })));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let app = axum::Router::new().fallback(record).with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { inner, addr }
    }

    /// The base URL, e.g. `http://127.0.0.1:40123/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_reply(&self, reply: Reply) {
        self.inner.0.lock().expect("receiver state").reply = reply;
    }

    pub fn captured(&self) -> Vec<Captured> {
        self.inner.0.lock().expect("receiver state").captured.clone()
    }

    /// Waits until at least `n` requests arrived (or `within` passed) and returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Captured> {
        let until = Instant::now() + within;
        loop {
            let got = self.captured();
            if got.len() >= n || Instant::now() >= until {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn record(State(inner): State<Inner>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path_and_query = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let reply = {
        let mut shared = inner.0.lock().expect("receiver state");
        let index = shared.captured.len();
        shared.captured.push(Captured {
            method: method.to_string(),
            path_and_query: path_and_query.clone(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: body.to_vec(),
            at: Instant::now(),
        });
        match &shared.reply {
            Reply::Sequence(codes) => Reply::Status(codes.get(index).or(codes.last()).copied().unwrap_or(200)),
            other => other.clone(),
        }
    };
    match reply {
        Reply::Status(code) => status(code),
        // Resolved to its n-th status above.
        Reply::Sequence(_) => status(200),
        Reply::Hang => {
            std::future::pending::<()>().await;
            status(500)
        }
        Reply::EchoValidationToken => {
            let token = uri
                .query()
                .and_then(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "validationToken")
                        .map(|(_, v)| v.into_owned())
                })
                .unwrap_or_default();
            (StatusCode::OK, token).into_response()
        }
        Reply::Redirect => (StatusCode::FOUND, [("location", "/elsewhere")]).into_response(),
    }
}

fn status(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("status {code}")).into_response()
}
