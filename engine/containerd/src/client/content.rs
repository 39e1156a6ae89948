//! Blobs in and out of the content store, through `Content.Write` and `Content.Read`.
//!
//! A write is one bidirectional stream: STAT (where does the ingest under this
//! reference stand?), WRITEs at increasing offsets, then COMMIT with the expected
//! digest and size. The bytes are hashed here as they pass too, so a registry that
//! serves the wrong bytes is caught before COMMIT is ever sent: the ingest is
//! aborted, and nothing with that digest appears in the store.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

use super::{Client, ClientError};
use crate::proto::containerd::services::content::v1::Info;
use crate::proto::containerd::services::content::v1::{
    AbortRequest, InfoRequest, ReadContentRequest, UpdateRequest, WriteAction, WriteContentRequest,
    WriteContentResponse,
};

/// How often, and how long apart, opening a locked ingest is tried again.
const LOCKED_RETRIES: u32 = 40;
const LOCKED_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// How many bytes go in one WRITE message: large enough that the round trip per
/// message costs little, small enough to stay far below gRPC's message limit.
pub const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(
        "digest mismatch for {source_name}: expected {expected} ({expected_size} bytes), got \
         {actual} ({actual_size} bytes); nothing was committed"
    )]
    Digest {
        source_name: String,
        expected: String,
        expected_size: u64,
        actual: String,
        actual_size: u64,
    },
    #[error("{digest} is over the {limit} bytes berth reads into memory for {what}")]
    TooBig {
        digest: String,
        limit: usize,
        what: &'static str,
    },
    #[error("the content store's {what} {expected} hashes to {actual}: the store is damaged")]
    Damaged {
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("the content store closed the write of {reference} before it was committed")]
    Closed { reference: String },
}

/// One blob being written. Dropping it without [`commit`](Self::commit) leaves the
/// ingest for [`abort`](Self::abort) or a later resume.
pub struct BlobWriter {
    client: Client,
    reference: String,
    requests: mpsc::Sender<WriteContentRequest>,
    responses: Streaming<WriteContentResponse>,
    hasher: Sha256,
    /// Bytes the caller has given, all hashed here.
    received: u64,
    /// Bytes the ingest holds: where the buffer's first byte goes.
    offset: u64,
    /// Bytes the ingest held when this writer opened it, not sent again.
    resumed: u64,
    buffer: Vec<u8>,
}

/// What [`BlobWriter::open`] found.
pub enum Opened {
    Writer(Box<BlobWriter>),
    /// The namespace already has the blob: nothing to write.
    Exists,
}

impl BlobWriter {
    /// Opens the ingest `reference` for a blob expected to be `expected` (a digest,
    /// or empty when only the bytes will tell) of `size` bytes (0 if unknown).
    ///
    /// An ingest may already hold bytes: left by an earlier attempt, or (in a real
    /// containerd, whose store is shared by all namespaces) the whole blob, which
    /// another namespace has. The caller still gives every byte, and every byte is
    /// hashed here, but only those past the ingest's offset are sent. One holding
    /// more than `size` is stale, and aborted first.
    pub async fn open(
        client: &Client,
        reference: &str,
        expected: &str,
        size: u64,
    ) -> Result<Opened, ClientError> {
        let mut aborted = false;
        let mut unavailable = None;
        for attempt in 0..LOCKED_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(LOCKED_PAUSE).await;
            }
            let (requests, receiver) = mpsc::channel(4);
            let stat = WriteContentRequest {
                action: WriteAction::Stat as i32,
                r#ref: reference.to_owned(),
                total: size as i64,
                expected: expected.to_owned(),
                ..WriteContentRequest::default()
            };
            // The first message must be queued before the call: a server answers
            // (and sends its headers) only once it has read it.
            let _ = requests.send(stat).await;
            let call = client
                .content()
                .write(client.request(ReceiverStream::new(receiver)))
                .await;
            let mut responses = match call {
                Ok(response) => response.into_inner(),
                Err(status) if status.code() == Code::AlreadyExists => return Ok(Opened::Exists),
                // Another writer holds the ref (or the one just dropped, until the
                // server notices): wait for it, as containerd's client does.
                Err(status) if status.code() == Code::Unavailable => {
                    unavailable = Some(status);
                    continue;
                }
                Err(status) => return Err(ClientError::call("Content.Write")(status)),
            };
            let status = match responses.message().await {
                Ok(Some(status)) => status,
                Ok(None) => {
                    return Err(ClientError::call("Content.Write")(
                        tonic::Status::unavailable("the stream ended before answering STAT"),
                    ))
                }
                Err(status) if status.code() == Code::AlreadyExists => return Ok(Opened::Exists),
                Err(status) if status.code() == Code::Unavailable => {
                    unavailable = Some(status);
                    continue;
                }
                Err(status) => return Err(ClientError::call("Content.Write")(status)),
            };
            let offset = u64::try_from(status.offset).unwrap_or_default();
            if size == 0 || offset <= size {
                return Ok(Opened::Writer(Box::new(BlobWriter {
                    client: client.clone(),
                    reference: reference.to_owned(),
                    requests,
                    responses,
                    hasher: Sha256::new(),
                    received: 0,
                    offset,
                    resumed: offset,
                    buffer: Vec::with_capacity(CHUNK),
                })));
            }
            // Close the stream, and let the server end it (releasing the ingest's
            // lock), before asking it to drop the stale bytes.
            drop(requests);
            while let Ok(Some(_)) = responses.message().await {}
            if aborted {
                break;
            }
            abort(client, reference).await?;
            aborted = true;
        }
        // Still unavailable after the retries (the server's own message says why),
        // or an ingest that kept its stale bytes through an abort.
        let status = unavailable.unwrap_or_else(|| {
            tonic::Status::aborted(format!(
                "ingest {reference} kept its stale bytes after an abort"
            ))
        });
        Err(ClientError::call("Content.Write")(status))
    }

    /// Adds bytes, sending a WRITE whenever a chunk's worth is buffered.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ContentError> {
        self.hasher.update(bytes);
        let start = self.received;
        self.received += bytes.len() as u64;
        // What the ingest already holds is not sent again.
        let held = (self.offset + self.buffer.len() as u64).saturating_sub(start);
        let mut bytes = &bytes[(held as usize).min(bytes.len())..];
        while !bytes.is_empty() {
            let room = CHUNK - self.buffer.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.buffer.extend_from_slice(now);
            bytes = later;
            if self.buffer.len() == CHUNK {
                self.flush(WriteAction::Write, HashMap::new(), "").await?;
            }
        }
        Ok(())
    }

    /// How many bytes the ingest already held when this writer opened it.
    pub fn resumed(&self) -> u64 {
        self.resumed
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.received
    }

    /// Checks the bytes against `expected` (when given: otherwise they name
    /// themselves) and commits them with `labels`. Returns the digest and size.
    /// On a mismatch the ingest is aborted and nothing is committed.
    pub async fn commit(
        mut self,
        source_name: &str,
        expected: Option<(&str, u64)>,
        labels: HashMap<String, String>,
    ) -> Result<(String, u64), ContentError> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        let size = self.written();
        if let Some((digest, expected_size)) = expected {
            if digest != actual || expected_size != size {
                // Best effort: the bytes are refused either way, since COMMIT is
                // never sent; an ingest left behind is only an unfinished write.
                if let Err(err) = self.abort().await {
                    tracing::warn!("cannot abort the refused ingest: {err}");
                }
                return Err(ContentError::Digest {
                    source_name: source_name.to_owned(),
                    expected: digest.to_owned(),
                    expected_size,
                    actual,
                    actual_size: size,
                });
            }
        }
        let (client, reference) = (self.client.clone(), self.reference.clone());
        match self
            .flush(WriteAction::Commit, labels.clone(), &actual)
            .await
        {
            Ok(()) => Ok((actual, size)),
            // Someone else committed the same bytes meanwhile: the blob is there,
            // but without this writer's labels (a manifest's references to its
            // children, say), which it must still get.
            Err(ContentError::Client(err)) if err.code() == Some(Code::AlreadyExists) => {
                if !labels.is_empty() {
                    label(&client, &actual, labels).await?;
                }
                Ok((actual, size))
            }
            // The store disagrees with bytes that hashed right here: the ingest
            // held stale bytes before this writer resumed it. Drop them, so that
            // the next attempt starts clean.
            Err(err) => {
                if let Err(abort_err) = abort(&client, &reference).await {
                    tracing::warn!("cannot abort the refused ingest {reference}: {abort_err}");
                }
                Err(err)
            }
        }
    }

    /// Gives up: the ingest and its bytes are removed.
    pub async fn abort(mut self) -> Result<(), ClientError> {
        // The server holds the ingest's lock for as long as the stream is open:
        // close it and wait for the server to end its side before aborting.
        drop(std::mem::replace(&mut self.requests, mpsc::channel(1).0));
        while let Ok(Some(_)) = self.responses.message().await {}
        abort(&self.client, &self.reference).await
    }

    async fn flush(
        &mut self,
        action: WriteAction,
        labels: HashMap<String, String>,
        expected: &str,
    ) -> Result<(), ContentError> {
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        let sent = data.len() as u64;
        let request = WriteContentRequest {
            action: action as i32,
            r#ref: self.reference.clone(),
            offset: self.offset as i64,
            data,
            total: if action == WriteAction::Commit {
                self.received as i64
            } else {
                0
            },
            expected: expected.to_owned(),
            labels,
        };
        let reference = self.reference.clone();
        let closed = move || ContentError::Closed { reference };
        if self.requests.send(request).await.is_err() {
            return Err(self.failure().await.unwrap_or_else(closed));
        }
        match self.responses.message().await {
            Ok(Some(_)) => {
                self.offset += sent;
                Ok(())
            }
            Ok(None) => Err(closed()),
            Err(status) => Err(ClientError::call("Content.Write")(status).into()),
        }
    }

    /// Why the server hung up, if it said.
    async fn failure(&mut self) -> Option<ContentError> {
        match self.responses.message().await {
            Err(status) => Some(ClientError::call("Content.Write")(status).into()),
            Ok(_) => None,
        }
    }
}

async fn abort(client: &Client, reference: &str) -> Result<(), ClientError> {
    let request = client.request(AbortRequest {
        r#ref: reference.to_owned(),
    });
    match client.content().abort(request).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::NotFound => Ok(()),
        Err(status) => Err(ClientError::call("Content.Abort")(status)),
    }
}

/// The store's record of a blob, or `None` if this namespace does not have it.
pub async fn info(client: &Client, digest: &str) -> Result<Option<Info>, ClientError> {
    let request = client.request(InfoRequest {
        digest: digest.to_owned(),
    });
    match client.content().info(request).await {
        Ok(response) => Ok(response.into_inner().info),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(ClientError::call("Content.Info")(status)),
    }
}

/// The labels by which a manifest keeps its config and layers alive: the garbage
/// collector follows `containerd.io/gc.ref.content.*` from anything referenced.
pub fn manifest_gc_labels<'a>(
    config: &str,
    layers: impl IntoIterator<Item = &'a str>,
) -> HashMap<String, String> {
    let mut labels = HashMap::from([(
        "containerd.io/gc.ref.content.config".to_owned(),
        config.to_owned(),
    )]);
    for (i, layer) in layers.into_iter().enumerate() {
        labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            layer.to_owned(),
        );
    }
    labels
}

/// The label by which an index keeps its manifest at `position` alive.
pub fn index_gc_label(position: usize) -> String {
    format!("containerd.io/gc.ref.content.m.{position}")
}

/// Sets labels on a blob (an empty value removes one), leaving the others.
pub async fn label(
    client: &Client,
    digest: &str,
    labels: HashMap<String, String>,
) -> Result<(), ClientError> {
    let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
    let request = client.request(UpdateRequest {
        info: Some(Info {
            digest: digest.to_owned(),
            labels,
            ..Info::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths }),
    });
    client
        .content()
        .update(request)
        .await
        .map_err(ClientError::call("Content.Update"))?;
    Ok(())
}

/// A blob's bytes as a stream of chunks.
pub async fn read(
    client: &Client,
    digest: &str,
) -> Result<
    Streaming<crate::proto::containerd::services::content::v1::ReadContentResponse>,
    ClientError,
> {
    let request = client.request(ReadContentRequest {
        digest: digest.to_owned(),
        offset: 0,
        size: 0,
    });
    Ok(client
        .content()
        .read(request)
        .await
        .map_err(ClientError::call("Content.Read"))?
        .into_inner())
}

/// A small blob (a manifest, an index, a config) read whole, and checked against
/// its digest: the store verified it once, but a reader trusts only what it checks.
pub async fn read_small(
    client: &Client,
    digest: &str,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u8>, ContentError> {
    let mut stream = read(client, digest).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(ClientError::call("Content.Read"))?
    {
        bytes.extend_from_slice(&chunk.data);
        if bytes.len() > limit {
            return Err(ContentError::TooBig {
                digest: digest.to_owned(),
                limit,
                what,
            });
        }
    }
    let actual = super::sha256(&bytes);
    if actual != digest {
        return Err(ContentError::Damaged {
            what,
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(bytes)
}

/// Writes a small blob held in memory, with `labels`; an existing blob gets the
/// labels added instead.
pub async fn write_small(
    client: &Client,
    reference: &str,
    bytes: &[u8],
    labels: HashMap<String, String>,
) -> Result<String, ContentError> {
    let digest = super::sha256(bytes);
    match BlobWriter::open(client, reference, &digest, bytes.len() as u64).await? {
        Opened::Writer(mut writer) => {
            writer.write(bytes).await?;
            writer
                .commit(reference, Some((&digest, bytes.len() as u64)), labels)
                .await?;
        }
        Opened::Exists if !labels.is_empty() => label(client, &digest, labels).await?,
        Opened::Exists => {}
    }
    Ok(digest)
}
