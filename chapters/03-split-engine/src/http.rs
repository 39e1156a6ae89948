//! Just enough HTTP/1.1 for one request and one response per connection, over a unix
//! socket. Both halves of the binary use it: the client writes a request and reads a
//! response, the daemon the other way round.
//!
//! A real engine would use a full HTTP library (berthd uses hyper) for keep-alive,
//! chunked bodies and streaming; this chapter doesn't, because every body here has a
//! `Content-Length` and the whole protocol fits on one screen.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Refuse bodies above this size: the API's bodies are a few hundred bytes, logs aside.
const MAX_BODY: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("reading or writing the socket: {0}")]
    Io(#[from] io::Error),
    #[error("malformed HTTP message: {0}; is the other end a split-era of the same version?")]
    Malformed(String),
}

/// One message as it travels: a start line, headers and a body.
#[derive(Debug, Default)]
pub struct Message {
    /// `GET /containers HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start_line: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

// ANCHOR: http_framing
/// Writes `message` with a `Content-Length`, so the reader knows where the body ends.
pub fn write_message(stream: &mut UnixStream, message: &Message) -> Result<(), HttpError> {
    let mut head = format!("{}\r\n", message.start_line);
    for (name, value) in &message.headers {
        let value = value.to_str().unwrap_or_default();
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", message.body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(&message.body)?;
    stream.flush()?;
    Ok(())
}

/// Reads one message: lines up to the empty one, then exactly `Content-Length` bytes.
pub fn read_message(stream: &mut UnixStream) -> Result<Message, HttpError> {
    let mut reader = BufReader::new(stream);
    let mut message = Message {
        start_line: read_line(&mut reader)?,
        ..Message::default()
    };
    let mut length = 0;
    loop {
        let line = read_line(&mut reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| HttpError::Malformed(format!("header line {line:?} has no ':'")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .parse()
                .map_err(|_| HttpError::Malformed(format!("content-length {value:?}")))?;
            continue;
        }
        // A header we cannot represent is dropped: none of ours are like that.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            message.headers.append(name, value);
        }
    }
    if length > MAX_BODY {
        return Err(HttpError::Malformed(format!("body of {length} bytes")));
    }
    message.body = vec![0; length];
    reader.read_exact(&mut message.body)?;
    Ok(message)
}
// ANCHOR_END: http_framing

fn read_line(reader: &mut impl BufRead) -> Result<String, HttpError> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(HttpError::Malformed("connection closed mid-message".into()));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_a_round_trip() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static("00-abc"));
        let sent = Message {
            start_line: "POST /containers HTTP/1.1".into(),
            headers,
            body: b"{\"x\":1}".to_vec(),
        };
        write_message(&mut a, &sent).unwrap();
        let got = read_message(&mut b).unwrap();
        assert_eq!(got.start_line, sent.start_line);
        assert_eq!(got.headers["traceparent"], "00-abc");
        assert_eq!(got.body, sent.body);
    }

    #[test]
    fn a_closed_connection_is_an_error_not_a_hang() {
        let (a, mut b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(matches!(read_message(&mut b), Err(HttpError::Malformed(_))));
    }
}
