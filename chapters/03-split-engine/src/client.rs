//! The client half: every verb but `daemon` is one request to the daemon's socket.
//!
//! Each request is a span, and its `traceparent` travels in the request's headers so
//! that the daemon's span for the request joins the same trace.
//!
//! Read next: [`crate::daemon`], the other end of each request.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::ErrorBody;
use crate::http::{self as wire, HttpError, Message};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the daemon at {socket:?}: {source}; start it with `split-era daemon --root DIR --socket {socket:?}`")]
    Connect { socket: PathBuf, source: io::Error },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the daemon answered {status}: {message}")]
    Daemon { status: u16, message: String },
    #[error("the daemon's answer is not what this client expects: {0}")]
    Decode(#[from] serde_json::Error),
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: PathBuf) -> Client {
        Client { socket }
    }

    /// Sends a request whose answer is JSON.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(body) => serde_json::to_vec(body)?,
            None => Vec::new(),
        };
        Ok(serde_json::from_slice(&self.raw(method, path, body)?)?)
    }

    // ANCHOR: request
    /// Sends one request and returns the body of a successful answer.
    pub fn raw(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let span = tracing::info_span!("request", %method, %path);
        let _entered = span.enter();
        let mut headers = HeaderMap::new();
        berth_trace::headers::inject(&mut headers);

        let mut stream =
            UnixStream::connect(&self.socket).map_err(|source| ClientError::Connect {
                socket: self.socket.clone(),
                source,
            })?;
        let request = Message {
            start_line: format!("{method} {path} HTTP/1.1"),
            headers,
            body,
        };
        wire::write_message(&mut stream, &request)?;
        let response = wire::read_message(&mut stream)?;
        let status = response
            .start_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<ErrorBody>(&response.body)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&response.body).into_owned());
            return Err(ClientError::Daemon { status, message });
        }
        Ok(response.body)
    }
    // ANCHOR_END: request
}
