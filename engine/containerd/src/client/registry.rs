//! The OCI distribution protocol: what a registry serves and accepts, over HTTPS (or
//! plain HTTP, for registries on this machine or named as insecure).
//!
//! Everything is under `/v2/<repository>/`: `manifests/<tag or digest>` and
//! `blobs/<digest>` to read; `blobs/uploads/` (POST, PATCH…, PUT `?digest=`) and a
//! manifest PUT to write. A registry that wants credentials answers 401 with a
//! `WWW-Authenticate` challenge: `Basic` (send the user and password) or `Bearer`
//! (trade them, or nothing, at the named token service for a token scoped to this
//! repository). A manifest fetched by digest is checked against it here, and one
//! fetched by tag against the digest the registry states (a registry stating none
//! leaves the tag's manifest unchecked, as Docker does); blobs stream through the
//! caller, who checks them as they pass.

use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

use super::reference::{Reference, DOCKER_HUB};
use super::sha256;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and indexes are kilobytes; a registry sending more is broken or hostile.
pub const MAX_MANIFEST: usize = 4 << 20;

/// How long a connection may take to open, and a read to make progress.
const PATIENCE: Duration = Duration::from_secs(60);

/// Credentials for a registry, as `docker login` stores them.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// How to reach a registry.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    pub credentials: Option<Credentials>,
    /// Plain HTTP (`Some(true)`), HTTPS (`Some(false)`), or decide by host (`None`):
    /// plain HTTP for loopback registries only, as Docker treats `127.0.0.0/8` as an
    /// insecure registry by default.
    pub plain_http: Option<bool>,
    /// PEM files of certificate authorities to trust for HTTPS besides the system's:
    /// what Docker reads from `/etc/docker/certs.d/HOST/ca.crt`, and `ctr pull
    /// --tlscacert` names.
    pub ca_certificates: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "cannot read the certificate authority {path}: {reason}; give a PEM file with at \
         least one CERTIFICATE in it"
    )]
    CaCertificate { path: PathBuf, reason: String },
    #[error("cannot set up TLS for registries: {0}")]
    Tls(rustls::Error),
    #[error("cannot set up the HTTP client for registries: {0}")]
    Setup(reqwest::Error),
    /// `reason` is the whole chain of causes: for HTTPS the interesting part (an
    /// unknown certificate authority, a name mismatch) is at its end.
    #[error("{method} {url}: {reason}")]
    Http {
        method: Method,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: the registry answered {status}: {body}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{what} not found: {url} answered 404")]
    NotFound { what: String, url: String },
    #[error(
        "{url} needs credentials{}; pass a username and password (docker login)",
        if *.had_credentials { ", and refused the ones given" } else { "" }
    )]
    Unauthorized { url: String, had_credentials: bool },
    #[error("{url} asked for credentials with a challenge berth cannot answer: {challenge:?}")]
    Challenge { url: String, challenge: String },
    #[error("{url}: the token service answered without a token: {body}")]
    Token { url: String, body: String },
    #[error(
        "digest mismatch for {url}: expected {expected}, got {actual}; the registry served \
         different bytes than it named, so nothing was committed"
    )]
    Digest {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url} is over {limit} bytes, more than any manifest needs; refusing it")]
    TooBig { url: String, limit: usize },
    #[error(
        "{url} has media type {media_type:?}, which berth does not read (an OCI or Docker \
         schema 2 manifest or index is needed; Docker schema 1 images must be converted)"
    )]
    MediaType { url: String, media_type: String },
}

/// A manifest or index as fetched: its bytes, verified against `digest`.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

/// What the registry asked for, and what answering it takes.
#[derive(Clone, Debug)]
enum Auth {
    Basic(Credentials),
    Bearer(String),
}

/// One repository on one registry, with the authorization it has earned so far.
pub struct Registry {
    http: reqwest::Client,
    /// `http://127.0.0.1:5000`.
    base: String,
    repository: String,
    credentials: Option<Credentials>,
    /// `pull`, or `pull,push`: what a token must allow.
    actions: &'static str,
    auth: Mutex<Option<Auth>>,
}

impl Registry {
    /// The registry and repository `reference` names, for pulling.
    pub fn for_pull(
        reference: &Reference,
        options: &RegistryOptions,
    ) -> Result<Registry, RegistryError> {
        Registry::new(reference, options, "pull")
    }

    /// The same, for pushing: tokens must allow both.
    pub fn for_push(
        reference: &Reference,
        options: &RegistryOptions,
    ) -> Result<Registry, RegistryError> {
        Registry::new(reference, options, "pull,push")
    }

    fn new(
        reference: &Reference,
        options: &RegistryOptions,
        actions: &'static str,
    ) -> Result<Registry, RegistryError> {
        let plain_http = options
            .plain_http
            .unwrap_or_else(|| is_loopback(&reference.domain));
        // Docker Hub's API lives on another host than its name.
        let host = if reference.domain == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &reference.domain
        };
        let http = reqwest::Client::builder()
            .connect_timeout(PATIENCE)
            .read_timeout(PATIENCE)
            .user_agent(concat!("berth-containerd/", env!("CARGO_PKG_VERSION")))
            // Even a plain-HTTP client gets one: reqwest looks for a process-wide
            // default otherwise, and a library must not depend on its caller's.
            .tls_backend_preconfigured(tls_config(&options.ca_certificates)?)
            .build()
            .map_err(RegistryError::Setup)?;
        let scheme = if plain_http { "http" } else { "https" };
        Ok(Registry {
            http,
            base: format!("{scheme}://{host}"),
            repository: reference.repository.clone(),
            credentials: options.credentials.clone(),
            actions,
            auth: Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// The manifest or index a tag or digest names, verified: by the digest asked
    /// for, or (for a tag) by the one the registry states, which must match the bytes.
    pub async fn manifest(&self, object: &str) -> Result<Fetched, RegistryError> {
        let url = self.url(&format!("manifests/{object}"));
        let accept = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].join(", ");
        let mut response = self
            .call(
                Method::GET,
                &url,
                |r| r.header(ACCEPT, accept.as_str()),
                StatusCode::OK,
                "manifest",
            )
            .await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let media_type = header(CONTENT_TYPE.as_str())
            .map(|t| t.split(';').next().unwrap_or_default().trim().to_owned())
            .unwrap_or_default();
        let expected = match object.starts_with("sha256:") {
            true => Some(object.to_owned()),
            false => header("docker-content-digest"),
        };
        let bytes = read_bounded(&mut response, &url).await?;
        let actual = sha256(&bytes);
        if let Some(expected) = expected.filter(|e| *e != actual) {
            return Err(RegistryError::Digest {
                url,
                expected,
                actual,
            });
        }
        if ![OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].contains(&media_type.as_str()) {
            return Err(RegistryError::MediaType { url, media_type });
        }
        Ok(Fetched {
            media_type,
            digest: actual,
            bytes,
        })
    }

    /// The response carrying a blob's bytes, for the caller to stream and verify
    /// (with [`next_chunk`]).
    pub async fn blob(&self, digest: &str) -> Result<(String, Response), RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let what = format!("blob {digest}");
        let response = self
            .call(Method::GET, &url, |r| r, StatusCode::OK, &what)
            .await?;
        Ok((url, response))
    }

    /// A small blob (an image config) read whole and verified against `digest`.
    pub async fn small_blob(&self, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let (url, mut response) = self.blob(digest).await?;
        let bytes = read_bounded(&mut response, &url).await?;
        let actual = sha256(&bytes);
        if actual != digest {
            let expected = digest.to_owned();
            return Err(RegistryError::Digest {
                url,
                expected,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Whether the repository already has a blob, so a push can skip it.
    pub async fn has_blob(&self, digest: &str) -> Result<bool, RegistryError> {
        self.has(&format!("blobs/{digest}")).await
    }

    /// Whether the repository has a manifest, by digest.
    pub async fn has_manifest(&self, digest: &str) -> Result<bool, RegistryError> {
        self.has(&format!("manifests/{digest}")).await
    }

    async fn has(&self, path: &str) -> Result<bool, RegistryError> {
        let url = self.url(path);
        let accept = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].join(", ");
        let build = |r: RequestBuilder| r.header(ACCEPT, accept.as_str());
        let mut response = self.send(Method::HEAD, &url, build).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        expect(&Method::HEAD, &url, &mut response, StatusCode::OK, path).await?;
        Ok(true)
    }

    /// Starts an upload session; returns where to send the bytes.
    pub async fn start_upload(&self) -> Result<String, RegistryError> {
        let url = self.url("blobs/uploads/");
        let response = self
            .call(
                Method::POST,
                &url,
                |r| r.header(CONTENT_LENGTH, 0),
                StatusCode::ACCEPTED,
                "upload",
            )
            .await?;
        self.location(Method::POST, &url, &response)
    }

    /// Sends the bytes from `offset` on; returns where the next chunk goes.
    pub async fn upload_chunk(
        &self,
        location: &str,
        offset: u64,
        chunk: Vec<u8>,
    ) -> Result<String, RegistryError> {
        if chunk.is_empty() {
            return Ok(location.to_owned());
        }
        let range = format!("{offset}-{}", offset + chunk.len() as u64 - 1);
        let build = |r: RequestBuilder| {
            r.header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, range.as_str())
                .body(chunk.clone())
        };
        let response = self
            .call(
                Method::PATCH,
                location,
                build,
                StatusCode::ACCEPTED,
                "upload",
            )
            .await?;
        self.location(Method::PATCH, location, &response)
    }

    /// Ends an upload: the registry checks the bytes against `digest` and keeps them.
    pub async fn finish_upload(&self, location: &str, digest: &str) -> Result<(), RegistryError> {
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        self.call(
            Method::PUT,
            &url,
            |r| r.header(CONTENT_LENGTH, 0),
            StatusCode::CREATED,
            "upload",
        )
        .await?;
        Ok(())
    }

    /// Stores a manifest or index under a tag or its digest.
    pub async fn put_manifest(
        &self,
        object: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), RegistryError> {
        let url = self.url(&format!("manifests/{object}"));
        let build = |r: RequestBuilder| r.header(CONTENT_TYPE, media_type).body(bytes.clone());
        self.call(Method::PUT, &url, build, StatusCode::CREATED, "manifest")
            .await?;
        Ok(())
    }

    /// Where the upload goes next: the response's `Location`, which may be relative
    /// to the URL just used.
    fn location(
        &self,
        method: Method,
        url: &str,
        response: &Response,
    ) -> Result<String, RegistryError> {
        let bad = |body: &str| RegistryError::Status {
            method: method.clone(),
            url: url.to_owned(),
            status: response.status(),
            body: body.to_owned(),
        };
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| bad("no Location header for the upload"))?;
        reqwest::Url::parse(url)
            .and_then(|base| base.join(location))
            .map(String::from)
            .map_err(|_| bad(&format!("an upload Location that is no URL: {location:?}")))
    }

    /// Whether `url` is on this registry (same scheme, host and port).
    fn is_ours(&self, url: &str) -> bool {
        let origin = |u: &str| reqwest::Url::parse(u).ok().map(|u| u.origin());
        origin(url).is_some() && origin(url) == origin(&self.base)
    }

    /// Sends a request and turns any answer but `wanted` into an error.
    async fn call(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
        wanted: StatusCode,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let mut response = self.send(method.clone(), url, build).await?;
        expect(&method, url, &mut response, wanted, what).await?;
        Ok(response)
    }

    // ANCHOR: auth
    /// Sends a request with the authorization earned so far; on a 401, answers the
    /// challenge once and sends it again.
    async fn send(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        // Credentials and tokens go to the registry itself only: an upload Location
        // or a redirect may name another host, which must not receive them.
        let ours = self.is_ours(url);
        let attempt = |auth: Option<Auth>| {
            let auth = auth.filter(|_| ours);
            let request = build(self.http.request(method.clone(), url));
            let request = match auth {
                Some(Auth::Basic(c)) => request.basic_auth(c.username, Some(c.password)),
                Some(Auth::Bearer(token)) => request.bearer_auth(token),
                None => request,
            };
            request.send()
        };
        let known = self.auth.lock().await.clone();
        let response = attempt(known).await.map_err(http(&method, url))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let auth = self.answer(url, &challenge).await?;
        *self.auth.lock().await = Some(auth.clone());
        let response = attempt(Some(auth)).await.map_err(http(&method, url))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized {
                url: url.to_owned(),
                had_credentials: self.credentials.is_some(),
            });
        }
        Ok(response)
    }

    /// What answers `challenge`: the credentials themselves for `Basic`; for
    /// `Bearer`, a token from the realm it names, asked for with them (or anonymously).
    async fn answer(&self, url: &str, challenge: &str) -> Result<Auth, RegistryError> {
        let unanswerable = || RegistryError::Challenge {
            url: url.to_owned(),
            challenge: challenge.to_owned(),
        };
        let (scheme, params) = parse_challenge(challenge).ok_or_else(unanswerable)?;
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if scheme.eq_ignore_ascii_case("basic") {
            return match &self.credentials {
                Some(credentials) => Ok(Auth::Basic(credentials.clone())),
                None => Err(RegistryError::Unauthorized {
                    url: url.to_owned(),
                    had_credentials: false,
                }),
            };
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unanswerable());
        }
        let realm = param("realm").ok_or_else(unanswerable)?;
        let scope = format!("repository:{}:{}", self.repository, self.actions);
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = param("service") {
            query.push(("service", service));
        }
        let token_url =
            reqwest::Url::parse_with_params(realm, &query).map_err(|_| unanswerable())?;
        let mut request = self.http.get(token_url);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let mut response = request.send().await.map_err(http(&Method::GET, realm))?;
        let status = response.status();
        let body = read_bounded(&mut response, realm).await?;
        let body = String::from_utf8_lossy(&body).into_owned();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                url: realm.to_owned(),
                had_credentials: self.credentials.is_some(),
            });
        }
        let token = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                ["token", "access_token"]
                    .iter()
                    .find_map(|k| v.get(k)?.as_str().map(str::to_owned))
            })
            .filter(|t| !t.is_empty());
        match token {
            Some(token) if status.is_success() => Ok(Auth::Bearer(token)),
            _ => Err(RegistryError::Token {
                url: realm.to_owned(),
                body: truncate(body),
            }),
        }
    }
    // ANCHOR_END: auth
}

/// Loopback hosts, where plain HTTP is what Docker expects too.
fn is_loopback(domain: &str) -> bool {
    let host = match domain.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => domain,
    };
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn http(method: &Method, url: &str) -> impl FnOnce(reqwest::Error) -> RegistryError {
    let (method, url) = (method.clone(), url.to_owned());
    move |error| {
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        RegistryError::Http {
            method,
            url,
            reason,
        }
    }
}

// ANCHOR: tls
/// TLS as a registry client needs it: rustls with ring, verifying the registry's
/// certificate against the system's authorities and any in `ca_files`.
fn tls_config(ca_files: &[PathBuf]) -> Result<rustls::ClientConfig, RegistryError> {
    let mut extra = Vec::new();
    for path in ca_files {
        let ca_error = |reason: String| RegistryError::CaCertificate {
            path: path.clone(),
            reason,
        };
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_error(e.to_string()))?;
        if certificates.is_empty() {
            return Err(ca_error("no certificate in it".to_owned()));
        }
        extra.extend(certificates);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(RegistryError::Tls)?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(RegistryError::Tls)?
        .dangerous() // only in name: the verifier is the platform's, with its roots
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}
// ANCHOR_END: tls

/// Turns an unexpected status into an error carrying the registry's own message.
async fn expect(
    method: &Method,
    url: &str,
    response: &mut Response,
    wanted: StatusCode,
    what: &str,
) -> Result<(), RegistryError> {
    let status = response.status();
    if status == wanted {
        return Ok(());
    }
    if status == StatusCode::NOT_FOUND {
        return Err(RegistryError::NotFound {
            what: what.to_owned(),
            url: url.to_owned(),
        });
    }
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > 4096 {
            break;
        }
    }
    Err(RegistryError::Status {
        method: method.clone(),
        url: url.to_owned(),
        status,
        body: truncate(String::from_utf8_lossy(&body).into_owned()),
    })
}

/// The next piece of a response's body, `None` at its end.
pub async fn next_chunk(
    response: &mut Response,
    url: &str,
) -> Result<Option<bytes::Bytes>, RegistryError> {
    response.chunk().await.map_err(http(&Method::GET, url))
}

/// A whole body that must be small (a manifest, a config), refused past [`MAX_MANIFEST`].
async fn read_bounded(response: &mut Response, url: &str) -> Result<Vec<u8>, RegistryError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = next_chunk(response, url).await? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_MANIFEST {
            let url = url.to_owned();
            return Err(RegistryError::TooBig {
                url,
                limit: MAX_MANIFEST,
            });
        }
    }
    Ok(bytes)
}

fn truncate(mut text: String) -> String {
    if text.len() > 512 {
        let mut end = 512;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text.trim().to_owned()
}

/// `Bearer realm="https://auth",service="registry",scope="repository:a:pull,push"`
/// into its scheme and parameters. Values may be quoted, and quoted values may hold
/// commas.
fn parse_challenge(header: &str) -> Option<(String, Vec<(String, String)>)> {
    let header = header.trim();
    let (scheme, mut rest) = match header.split_once(char::is_whitespace) {
        Some((scheme, rest)) => (scheme, rest.trim_start()),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_owned();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => value.push(chars.next()?.1),
                    (_, c) => value.push(c),
                }
            };
            (value, &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.push((key, value));
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    Some((scheme.to_owned(), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(scheme, "Bearer");
        assert_eq!(
            params,
            [
                ("realm".into(), "http://127.0.0.1:1/token".into()),
                ("service".into(), "reg".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
            ]
        );
        let (scheme, params) = parse_challenge(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!((scheme.as_str(), params.len()), ("Basic", 1));
        assert_eq!(parse_challenge("Basic").unwrap().1, []);
        assert_eq!(parse_challenge(r#"Bearer realm="unterminated"#), None);
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn credentials_go_to_the_registry_only() {
        let reference = Reference::parse("127.0.0.1:5000/busybox").unwrap();
        let registry = Registry::for_pull(&reference, &RegistryOptions::default()).unwrap();
        assert!(registry.is_ours("http://127.0.0.1:5000/v2/busybox/blobs/uploads/1"));
        assert!(!registry.is_ours("http://127.0.0.1:5001/v2/busybox/blobs/uploads/1"));
        assert!(!registry.is_ours("http://storage.example/blob?sig=1"));
        assert!(!registry.is_ours("not a url"));
    }

    #[test]
    fn only_loopback_registries_default_to_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example:5000"));
        assert!(!is_loopback("docker.io"));
        assert!(!is_loopback("127.attacker.example:5000"));
        assert!(is_loopback("127.1.2.3"));
        let base = |name: &str, plain_http: Option<bool>| {
            let reference = Reference::parse(name).unwrap();
            let options = RegistryOptions {
                plain_http,
                ..RegistryOptions::default()
            };
            Registry::for_pull(&reference, &options).unwrap().base
        };
        assert_eq!(base("busybox", None), "https://registry-1.docker.io");
        assert_eq!(
            base("127.0.0.1:5000/busybox", None),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            base("registry.example/app", Some(true)),
            "http://registry.example"
        );
        assert_eq!(
            base("localhost:5000/app", Some(false)),
            "https://localhost:5000"
        );
    }

    #[test]
    fn a_certificate_authority_file_is_named_when_it_cannot_be_used() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for path in [empty, missing] {
            let options = RegistryOptions {
                ca_certificates: vec![path.clone()],
                ..RegistryOptions::default()
            };
            let reference = Reference::parse("registry.example/app").unwrap();
            let err = Registry::for_pull(&reference, &options).err().unwrap();
            assert!(
                matches!(&err, RegistryError::CaCertificate { path: p, .. } if *p == path),
                "{err}"
            );
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
    }
}
