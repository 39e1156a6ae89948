//! `containerd.services.content.v1.Content`: blobs by digest, and the `Write` stream
//! that puts them there.
//!
//! The store ([`crate::content`]) keeps the bytes; this service keeps, per namespace,
//! the record that makes a blob visible (size, labels, times) and speaks the protocol.

use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::content::{parse_digest, ContentError, ContentRecord, IngestStatus};
use crate::filters::{self, Filters};
use crate::lease::{add_to_lease, CONTENT};
use crate::metadata::{self, Table};
use crate::proto::containerd::services::content::v1::{
    content_server, AbortRequest, DeleteContentRequest, Info, InfoRequest, InfoResponse,
    ListContentRequest, ListContentResponse, ListStatusesRequest, ListStatusesResponse,
    ReadContentRequest, ReadContentResponse, Status as IngestMessage, StatusRequest,
    StatusResponse, UpdateRequest, UpdateResponse, WriteAction, WriteContentRequest,
    WriteContentResponse,
};
use crate::scope::Scope;
use crate::services::{labels, to_map, update_labels};
use crate::supervisor::Supervisor;

/// How much one `Read` response carries.
const CHUNK: usize = 1 << 20;

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct Content {
    pub supervisor: Arc<Supervisor>,
}

fn info(digest: &str, record: &ContentRecord) -> Info {
    Info {
        digest: digest.to_owned(),
        size: record.size,
        created_at: Some(metadata::timestamp(record.created)),
        updated_at: Some(metadata::timestamp(record.updated)),
        labels: to_map(&record.labels),
    }
}

fn ingest_message(status: &IngestStatus) -> IngestMessage {
    IngestMessage {
        started_at: Some(metadata::timestamp(status.state.started)),
        updated_at: Some(metadata::timestamp(status.state.updated)),
        r#ref: status.state.reference.clone(),
        offset: status.offset,
        total: status.state.total,
        expected: status.state.expected.clone(),
    }
}

impl Content {
    fn record(&self, scope: &Scope, digest: &str) -> Result<ContentRecord, Status> {
        parse_digest(digest)?;
        self.supervisor
            .db
            .get(Table::Content, &scope.namespace, digest)?
            .ok_or_else(|| {
                ContentError::NotFound {
                    digest: digest.to_owned(),
                }
                .into()
            })
    }
}

// ANCHOR: write_session
/// One `Write` stream: STAT to learn where the ingest stands, WRITEs, then COMMIT.
async fn write_session(
    supervisor: &Supervisor,
    scope: &Scope,
    incoming: &mut Streaming<WriteContentRequest>,
    outgoing: &mpsc::Sender<Result<WriteContentResponse, Status>>,
) -> Result<(), Status> {
    let Some(mut request) = incoming.message().await? else {
        return Ok(());
    };
    if request.r#ref.is_empty() {
        return Err(Status::invalid_argument(
            "first message must have a reference",
        ));
    }
    let exists = |digest: &str| -> Result<bool, Status> {
        let record: Option<ContentRecord> =
            supervisor
                .db
                .get(Table::Content, &scope.namespace, digest)?;
        Ok(record.is_some())
    };
    // A client that names a blob this namespace already has need not send it at all.
    // The blob joins the client's lease all the same, as containerd does: the client
    // is about to reference it (from a manifest, say), and until then nothing else
    // may keep it from the collector.
    if !request.expected.is_empty() && exists(&request.expected)? {
        let expected = request.expected.clone();
        supervisor
            .db
            .update(|txn| Ok::<_, Status>(add_to_lease(txn, scope, CONTENT, &expected)?))?;
        return Err(Status::already_exists(format!(
            "content {} already exists",
            request.expected
        )));
    }
    let mut writer = supervisor.content.writer(
        &scope.namespace,
        &request.r#ref,
        request.total,
        &request.expected,
    )?;
    loop {
        writer.expect(request.total, &request.expected)?;
        let mut response = WriteContentResponse {
            action: request.action,
            ..WriteContentResponse::default()
        };
        match WriteAction::try_from(request.action) {
            Ok(WriteAction::Stat) => {
                let status = writer.status();
                response.offset = status.offset;
                response.total = status.state.total;
                response.started_at = Some(metadata::timestamp(status.state.started));
                response.updated_at = Some(metadata::timestamp(status.state.updated));
                response.digest = writer.digest();
            }
            Ok(WriteAction::Write) => {
                writer.write(request.offset, &request.data)?;
                response.offset = writer.status().offset;
                response.digest = writer.digest();
            }
            Ok(WriteAction::Commit) => {
                writer.write(request.offset, &request.data)?;
                response.offset = writer.status().offset;
                let labels = labels(request.labels);
                let (digest, size) = tokio::task::block_in_place(|| {
                    // The blob file and its record appear under one GC lock: a sweep
                    // in between would see a blob nothing records, and delete it.
                    let _gc = supervisor.gc_lock();
                    let (digest, size) = writer.commit(&supervisor.content)?;
                    supervisor.db.update(|txn| {
                        if txn
                            .get::<ContentRecord>(Table::Content, &scope.namespace, &digest)?
                            .is_some()
                        {
                            return Err(Status::already_exists(format!(
                                "content {digest} already exists"
                            )));
                        }
                        let now = metadata::now();
                        let record = ContentRecord {
                            size,
                            created: now,
                            updated: now,
                            labels,
                        };
                        txn.put(Table::Content, &scope.namespace, &digest, &record)?;
                        add_to_lease(txn, scope, CONTENT, &digest)?;
                        Ok((digest, size))
                    })
                })?;
                response.offset = size;
                response.total = size;
                response.digest = digest;
                let _ = outgoing.send(Ok(response)).await;
                return Ok(());
            }
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown write action {}",
                    request.action
                )))
            }
        }
        if outgoing.send(Ok(response)).await.is_err() {
            return Ok(());
        }
        request = match incoming.message().await? {
            Some(next) => next,
            None => return Ok(()),
        };
    }
}
// ANCHOR_END: write_session

#[tonic::async_trait]
impl content_server::Content for Content {
    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let scope = Scope::of(&request)?;
        let digest = request.into_inner().digest;
        let record = self.record(&scope, &digest)?;
        Ok(Response::new(InfoResponse {
            info: Some(info(&digest, &record)),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        let scope = Scope::of(&request)?;
        let request = request.into_inner();
        let new = request.info.unwrap_or_default();
        parse_digest(&new.digest)?;
        let record = self.supervisor.db.update(|txn| {
            let mut record: ContentRecord = txn
                .get(Table::Content, &scope.namespace, &new.digest)?
                .ok_or_else(|| ContentError::NotFound {
                    digest: new.digest.clone(),
                })?;
            update_labels(&mut record.labels, new.labels, request.update_mask, |_| {
                false
            })?;
            record.updated = metadata::now();
            txn.put(Table::Content, &scope.namespace, &new.digest, &record)?;
            Ok::<_, Status>(record)
        })?;
        Ok(Response::new(UpdateResponse {
            info: Some(info(&new.digest, &record)),
        }))
    }

    type ListStream = Stream_<ListContentResponse>;

    async fn list(
        &self,
        request: Request<ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let scope = Scope::of(&request)?;
        let filters = Filters::parse(&request.into_inner().filters)?;
        let all: Vec<(String, ContentRecord)> =
            self.supervisor.db.list(Table::Content, &scope.namespace)?;
        let infos: Vec<Info> = all
            .iter()
            .filter(|(digest, record)| {
                filters.matches(|path| match path {
                    [f] if f == "digest" => Some(digest.clone()),
                    [f] if f == "size" => Some(record.size.to_string()),
                    [f, rest @ ..] if f == "labels" => filters::label(&record.labels, rest),
                    _ => None,
                })
            })
            .map(|(digest, record)| info(digest, record))
            .collect();
        let batches: Vec<Result<ListContentResponse, Status>> = infos
            .chunks(100)
            .map(|chunk| {
                Ok(ListContentResponse {
                    info: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn delete(&self, request: Request<DeleteContentRequest>) -> Result<Response<()>, Status> {
        let scope = Scope::of(&request)?;
        let digest = request.into_inner().digest;
        parse_digest(&digest)?;
        let deleted = self
            .supervisor
            .db
            .update(|txn| txn.delete(Table::Content, &scope.namespace, &digest))?;
        if !deleted {
            return Err(ContentError::NotFound { digest }.into());
        }
        // The file goes with the next collection, once no other namespace has it.
        crate::gc::after_delete(&self.supervisor, false).await?;
        Ok(Response::new(()))
    }

    type ReadStream = Stream_<ReadContentResponse>;

    async fn read(
        &self,
        request: Request<ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let scope = Scope::of(&request)?;
        let request = request.into_inner();
        let record = self.record(&scope, &request.digest)?;
        let mut file = self.supervisor.content.open_blob(&request.digest)?;
        let offset = request.offset.clamp(0, record.size);
        let end = if request.size > 0 {
            (offset + request.size).min(record.size)
        } else {
            record.size
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let result = file.seek(SeekFrom::Start(offset as u64)).map(|_| ());
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                return;
            }
            let mut at = offset;
            while at < end {
                let mut data = vec![0; CHUNK.min((end - at) as usize)];
                match file.read(&mut data) {
                    Ok(0) => break,
                    Ok(n) => {
                        data.truncate(n);
                        let response = ReadContentResponse { offset: at, data };
                        at += n as i64;
                        if tx.blocking_send(Ok(response)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let scope = Scope::of(&request)?;
        let reference = request.into_inner().r#ref;
        let status = self
            .supervisor
            .content
            .status(&scope.namespace, &reference)?;
        Ok(Response::new(StatusResponse {
            status: Some(ingest_message(&status)),
        }))
    }

    async fn list_statuses(
        &self,
        request: Request<ListStatusesRequest>,
    ) -> Result<Response<ListStatusesResponse>, Status> {
        let scope = Scope::of(&request)?;
        let filters = Filters::parse(&request.into_inner().filters)?;
        let statuses = self
            .supervisor
            .content
            .statuses(&scope.namespace)?
            .iter()
            .filter(|s| {
                filters.matches(|path| match path {
                    [f] if f == "ref" => Some(s.state.reference.clone()),
                    _ => None,
                })
            })
            .map(ingest_message)
            .collect();
        Ok(Response::new(ListStatusesResponse { statuses }))
    }

    type WriteStream = Stream_<WriteContentResponse>;

    async fn write(
        &self,
        request: Request<Streaming<WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let scope = Scope::of(&request)?;
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let supervisor = self.supervisor.clone();
        tokio::spawn(async move {
            if let Err(status) = write_session(&supervisor, &scope, &mut incoming, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn abort(&self, request: Request<AbortRequest>) -> Result<Response<()>, Status> {
        let scope = Scope::of(&request)?;
        let reference = request.into_inner().r#ref;
        self.supervisor
            .content
            .abort(&scope.namespace, &reference)?;
        Ok(Response::new(()))
    }
}
