//! `containerd.services.events.v1.Events`: the event exchange ([`crate::events`]) over
//! gRPC. `Subscribe` streams every event from now on that passes the filters
//! (`ctr events`, `topic~=/tasks/`, `namespace==moby`); `Publish` adds an event in
//! the caller's namespace; `Forward` passes on a whole envelope, as a shim would.
//!
//! Subscribe is not scoped to the caller's namespace, as in containerd: a subscriber
//! that wants one namespace filters on `namespace==NAME`.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::filters::Filters;
use crate::metadata;
use crate::proto::containerd::services::events::v1::{
    events_server, ForwardRequest, PublishRequest, SubscribeRequest,
};
use crate::proto::containerd::types::Envelope;
use crate::scope::Scope;
use crate::supervisor::Supervisor;

pub struct Events {
    pub supervisor: Arc<Supervisor>,
}

/// The fields an event filter can name.
fn field(envelope: &Envelope, path: &[String]) -> Option<String> {
    match path {
        [f] if f == "topic" => Some(envelope.topic.clone()),
        [f] if f == "namespace" => Some(envelope.namespace.clone()),
        _ => None,
    }
}

/// A real containerd also decodes each event to filter on its own fields
/// (`event.container_id==web`); berth does not, so a filter naming one is refused
/// rather than left to match nothing, silently.
fn check_fields(filters: &Filters) -> Result<(), Status> {
    let unknown = filters
        .any
        .iter()
        .flatten()
        .map(|selector| &selector.path)
        .find(|path| !matches!(path.as_slice(), [f] if f == "topic" || f == "namespace"));
    match unknown {
        Some(path) => Err(Status::invalid_argument(format!(
            "event filter field {:?} is not supported: berth-containerd filters events by \
             topic and namespace; filter on the event's own fields in the client",
            path.join(".")
        ))),
        None => Ok(()),
    }
}

fn checked_topic(topic: &str) -> Result<(), Status> {
    if !topic.starts_with('/') || topic.len() < 2 {
        return Err(Status::invalid_argument(format!(
            "event topic {topic:?} must be a path like /tasks/start"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl events_server::Events for Events {
    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<()>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        checked_topic(&r.topic)?;
        let event = r
            .event
            .ok_or_else(|| Status::invalid_argument("an event to publish is required"))?;
        self.supervisor.events.forward(Envelope {
            timestamp: Some(metadata::timestamp(metadata::now())),
            namespace: scope.namespace,
            topic: r.topic,
            event: Some(event),
        });
        Ok(Response::new(()))
    }

    async fn forward(&self, request: Request<ForwardRequest>) -> Result<Response<()>, Status> {
        let envelope = request
            .into_inner()
            .envelope
            .ok_or_else(|| Status::invalid_argument("an envelope to forward is required"))?;
        checked_topic(&envelope.topic)?;
        crate::scope::validate(&envelope.namespace)?;
        self.supervisor.events.forward(envelope);
        Ok(Response::new(()))
    }

    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let filters = Filters::parse(&request.into_inner().filters)?;
        check_fields(&filters)?;
        let stream =
            BroadcastStream::new(self.supervisor.events.subscribe()).filter_map(move |received| {
                match received {
                    Ok(envelope) if filters.matches(|path| field(&envelope, path)) => {
                        Some(Ok(envelope))
                    }
                    Ok(_) => None,
                    Err(BroadcastStreamRecvError::Lagged(lost)) => {
                        tracing::warn!("a slow event subscriber lost {lost} events");
                        None
                    }
                }
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::events_server::Events as _;
    use super::*;
    use crate::proto::containerd::events::NamespaceCreate;

    #[tokio::test]
    async fn a_filter_on_the_events_own_fields_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let supervisor = Arc::new(Supervisor::open(&root, &dir.path().join("state")).unwrap());
        let events = Events { supervisor };
        let request = Request::new(SubscribeRequest {
            filters: vec!["topic~=/tasks/".into(), "event.container_id==web".into()],
        });
        let err = events.subscribe(request).await.err().unwrap();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("\"event.container_id\""),
            "{}",
            err.message()
        );
    }

    #[tokio::test]
    async fn subscribe_sees_only_what_its_filters_match() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let supervisor = Arc::new(Supervisor::open(&root, &dir.path().join("state")).unwrap());
        let service = Events {
            supervisor: supervisor.clone(),
        };
        let request = Request::new(SubscribeRequest {
            filters: vec!["topic~=/namespaces/,namespace==b".into()],
        });
        let mut stream = service.subscribe(request).await.unwrap().into_inner();
        let event = NamespaceCreate::default();
        supervisor.events.publish("a", "/namespaces/create", &event);
        supervisor.events.publish("b", "/images/create", &event);
        supervisor.events.publish("b", "/namespaces/create", &event);
        let got = stream.next().await.unwrap().unwrap();
        assert_eq!(
            (got.namespace.as_str(), got.topic.as_str()),
            ("b", "/namespaces/create")
        );
    }
}
