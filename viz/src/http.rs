//! A small HTTP/1.1 server on plain threads: the transport under both of berth-viz's
//! listeners (the OTLP receiver and the page).
//!
//! Why by hand, and not hyper on tokio: berth-viz answers a handful of local clients
//! (an exporter or two, one browser) with small request/response exchanges and no
//! streaming. A thread per connection and about two hundred lines cover that, and a
//! reader sees every piece of HTTP berth-viz relies on: the request head, a body by
//! `Content-Length` or `chunked`, `Expect: 100-continue` (curl sends it), keep-alive.
//! A real server would cap its threads and speak HTTP/2; berth-viz doesn't because it
//! only listens on 127.0.0.1.
//!
//! Every read has a timeout and every size a limit, so a stuck or hostile client costs
//! one thread for [`IDLE`] at most, and memory for `max_body` bytes at most.
//!
//! Read next: [`crate::receiver`], the OTLP endpoint built on this.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How long a connection may stay silent (between requests, or inside one).
pub const IDLE: Duration = Duration::from_secs(30);
/// The most a request line plus headers may take.
const MAX_HEAD: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the request head is not HTTP/1.x: {0:?}")]
    BadRequestLine(String),
    #[error("the request head is larger than {MAX_HEAD} bytes; send fewer or shorter headers")]
    HeadTooLarge,
    #[error("header line {0:?} has no colon")]
    BadHeader(String),
    #[error("content-length {0:?} is not a number")]
    BadLength(String),
    #[error(
        "the body is larger than {limit} bytes; send smaller batches or raise --max-body-bytes"
    )]
    TooLarge { limit: usize },
    #[error("the chunked body is malformed: {0}")]
    BadChunk(String),
    #[error("transfer-encoding {0:?} is not supported; send a content-length or chunked body")]
    TransferEncoding(String),
    #[error("the connection failed: {0}")]
    Io(#[from] io::Error),
}

/// One request, body read in full.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without the query string, percent-decoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON body.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        let body = serde_json::to_vec(value).expect("API types always serialize");
        Response::new(status, "application/json", body)
    }

    /// An error with its reason, as JSON `{"error": "..."}`: what the page and curl show.
    pub fn error(status: u16, reason: impl std::fmt::Display) -> Response {
        Response::json(status, &serde_json::json!({ "error": reason.to_string() }))
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// The function that answers requests; shared by every connection's thread.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Accepts connections on `listener` forever, one thread each. Returns only if the
/// listener fails.
pub fn serve(listener: TcpListener, max_body: usize, handler: Handler) -> io::Error {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            // Out of file descriptors, a connection reset before accept: the next one
            // may well work. Anything else is as likely, so keep accepting.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => return e,
            Err(_) => continue,
        };
        let handler = handler.clone();
        thread::spawn(move || {
            // A failure on one connection concerns that client only.
            let _ = connection(stream, max_body, &handler);
        });
    }
}

/// Serves requests on one connection until the client closes it, asks to, or errs.
fn connection(stream: TcpStream, max_body: usize, handler: &Handler) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IDLE))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let (response, keep_alive) = match read_request(&mut reader, &mut writer, max_body) {
            Ok(None) => return Ok(()), // closed between requests
            Ok(Some((request, keep_alive))) => (handler(request), keep_alive),
            Err(HttpError::Io(e)) => return Err(e),
            // The request could not be read to its end, so the connection is out of
            // step: answer, then close.
            Err(error) => {
                write_response(&mut writer, &Response::error(400, error), false)?;
                return lingering_close(reader, writer);
            }
        };
        write_response(&mut writer, &response, keep_alive)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Closes a connection whose client may still be sending (a body too large to read).
/// Closing a socket with unread data makes the kernel reset the connection, and the
/// client then loses the answer it was about to read; so: stop writing, then read and
/// drop what is still coming, for at most a second and 64 MiB.
fn lingering_close(reader: BufReader<TcpStream>, writer: TcpStream) -> io::Result<()> {
    writer.shutdown(std::net::Shutdown::Write)?;
    writer.set_read_timeout(Some(Duration::from_secs(1)))?;
    let _ = io::copy(&mut reader.take(64 * 1024 * 1024), &mut io::sink());
    Ok(())
}

fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    max_body: usize,
) -> Result<Option<(Request, bool)>, HttpError> {
    let mut head = reader.by_ref().take(MAX_HEAD);
    let mut line = String::new();
    if head.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequestLine(line.trim_end().to_string()));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::BadRequestLine(line.trim_end().to_string()));
    }
    let (method, version) = (method.to_string(), version.to_string());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (percent_decode(path), parse_query(query));

    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if head.read_line(&mut line)? == 0 {
            return Err(HttpError::HeadTooLarge);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| HttpError::BadHeader(line.to_string()))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let keep_alive = match header("connection").map(str::to_ascii_lowercase) {
        Some(c) if c == "close" => false,
        Some(c) if c == "keep-alive" => true,
        _ => version == "HTTP/1.1",
    };
    let chunked = match header("transfer-encoding") {
        None => false,
        Some(te) if te.eq_ignore_ascii_case("chunked") => true,
        Some(te) => return Err(HttpError::TransferEncoding(te.to_string())),
    };
    let length = match header("content-length") {
        None => 0,
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| HttpError::BadLength(n.to_string()))?,
    };
    if length > max_body {
        return Err(HttpError::TooLarge { limit: max_body });
    }
    if header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = if chunked {
        read_chunked(reader, max_body)?
    } else {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    let request = Request {
        method,
        path,
        query,
        headers,
        body,
    };
    Ok(Some((request, keep_alive)))
}

/// A `Transfer-Encoding: chunked` body: hex size lines, each followed by that many
/// bytes, until a zero size; then optional trailers, which are read and dropped.
fn read_chunked(reader: &mut BufReader<TcpStream>, max_body: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.by_ref().take(1024).read_line(&mut line)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| HttpError::BadChunk(format!("size line {:?}", line.trim_end())))?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                if reader.by_ref().take(MAX_HEAD).read_line(&mut trailer)? == 0
                    || trailer.trim_end().is_empty()
                {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > max_body {
            return Err(HttpError::TooLarge { limit: max_body });
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(HttpError::BadChunk("a chunk does not end with CRLF".into()));
        }
    }
}

fn write_response(writer: &mut TcpStream, response: &Response, keep_alive: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !keep_alive {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(&response.body)?;
    writer.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        507 => "Insufficient Storage",
        _ => "",
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

/// `%41` → `A` and `+` → space; a malformed escape is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match text
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded() {
        assert_eq!(
            parse_query("service=berth-runc&root=POST+%2Fcontainers&x"),
            [
                ("service".to_string(), "berth-runc".to_string()),
                ("root".to_string(), "POST /containers".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
