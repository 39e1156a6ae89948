//! Token authentication in front of a real registry, the way Docker Hub does it.
//!
//! Debian's `docker-registry` can require tokens, but only ones signed by a token
//! service it trusts; Docker Hub's token service is not something a test can run. So
//! this is that service and the registry's gate in one small [`Relay`]: requests
//! without a token get `401` with a `Bearer realm=…,service=…,scope=…` challenge;
//! `GET /token` hands out a token for the scope asked (pull to anyone, push only with
//! the right basic credentials); requests with a valid token are passed to the real
//! registry behind it.

use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use crate::relay::{respond, Relay, Request};

/// The user the gate knows, and its password.
pub const USER: &str = "student";
pub const PASSWORD: &str = "s3cret";
/// `Basic base64("student:s3cret")`.
const BASIC: &str = "Basic c3R1ZGVudDpzM2NyZXQ=";

pub struct TokenGate {
    relay: Relay,
    /// Every token request's query, in order: what clients asked for.
    pub token_requests: Arc<Mutex<Vec<String>>>,
}

impl TokenGate {
    /// Guards the registry at `registry` (`127.0.0.1:PORT`).
    pub fn start(registry: &str) -> TokenGate {
        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let (registry, requests) = (registry.to_owned(), token_requests.clone());
        let relay = Relay::start(move |client, gate| {
            let _ = serve(client, &registry, gate, &requests);
        });
        TokenGate {
            relay,
            token_requests,
        }
    }

    /// `127.0.0.1:PORT`: use it as the registry in image references.
    pub fn addr(&self) -> String {
        self.relay.addr()
    }
}

/// One request: a token, a challenge, or a pass to the registry.
fn serve(
    mut client: TcpStream,
    registry: &str,
    gate: &str,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let Some(request) = Request::read(&client)? else {
        return Ok(());
    };
    let (method, target) = (request.method(), request.target());
    let header = |name: &str| request.header(name);

    if let Some(query) = target.strip_prefix("/token?") {
        requests.lock().unwrap().push(query.to_owned());
        let wants_push = query.contains("push");
        let authorised = header("authorization").as_deref() == Some(BASIC);
        if wants_push && !authorised {
            return respond(
                &mut client,
                "401 Unauthorized",
                &[],
                b"{\"details\":\"push needs credentials\"}",
            );
        }
        let token = if wants_push {
            "push-token"
        } else {
            "pull-token"
        };
        let body = format!("{{\"token\":\"{token}\"}}");
        return respond(
            &mut client,
            "200 OK",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
    }
    let token = header("authorization");
    let allowed = match method {
        "GET" | "HEAD" => matches!(
            token.as_deref(),
            Some("Bearer pull-token" | "Bearer push-token")
        ),
        _ => token.as_deref() == Some("Bearer push-token"),
    };
    if !allowed {
        let repository = target
            .strip_prefix("/v2/")
            .and_then(|rest| rest.split("/manifests/").next())
            .and_then(|rest| rest.split("/blobs/").next())
            .unwrap_or("");
        let action = if matches!(method, "GET" | "HEAD") {
            "pull"
        } else {
            "pull,push"
        };
        let challenge = format!(
            "Bearer realm=\"http://{gate}/token\",service=\"berth-test\",scope=\"repository:{repository}:{action}\""
        );
        return respond(
            &mut client,
            "401 Unauthorized",
            &[("WWW-Authenticate", &challenge)],
            b"",
        );
    }
    // Pass it on, unchanged but for the authorization and a fresh connection each time;
    // Locations the registry hands out must lead back through the gate.
    request.forward(&mut client, registry, gate)
}
