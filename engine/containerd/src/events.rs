//! The event exchange: one in-process fan-out that every event passes through, and
//! every `Subscribe` (`ctr events`, dockerd) listens to.
//!
//! Events come from three places: berth-containerd itself, for what its services do
//! (`/namespaces/create`, `/images/delete`, `/containers/create`, `/snapshot/prepare`,
//! …); the shims, which forward their task events (`/tasks/start`, `/tasks/exit`) over
//! ttrpc (see [`crate::shim_events`]); and clients, through `Events.Publish` and
//! `Events.Forward`. Each is an `Envelope`: when, which namespace, which topic, and
//! the event itself as an `Any` whose type URL is its protobuf name
//! (`containerd.events.TaskStart`: containerd's type registry uses no URL prefix,
//! and `ctr events` decodes only names it knows).
//!
//! A real containerd keeps no history either: a subscriber sees what happens after it
//! subscribed. A subscriber too slow to keep up with [`CAPACITY`] events loses the
//! oldest ones (with a warning) rather than slowing every publisher down.
//!
//! Read next: [`crate::services::events`], the gRPC face of the exchange.

use tokio::sync::broadcast;

use crate::metadata;
use crate::proto::containerd::events as ev;
use crate::proto::containerd::services::images::v1 as images;
use crate::proto::containerd::types::Envelope;

/// How many events a subscriber may fall behind before it loses some.
pub const CAPACITY: usize = 1024;

/// An event message and the name containerd registers it under.
pub trait Event: prost::Message + Sized {
    const NAME: &'static str;
}

macro_rules! events {
    ($package:literal, $module:ident: $($ty:ident),* $(,)?) => {
        $(impl Event for $module::$ty {
            const NAME: &'static str = concat!($package, ".", stringify!($ty));
        })*
    };
}

// The image events live in the images service's package (as in containerd's
// `events/image.proto`), so their names say so.
events!(
    "containerd.services.images.v1", images:
    ImageCreate,
    ImageUpdate,
    ImageDelete,
);

events!(
    "containerd.events", ev:
    NamespaceCreate,
    NamespaceUpdate,
    NamespaceDelete,
    ContainerCreate,
    ContainerUpdate,
    ContainerDelete,
    SnapshotPrepare,
    SnapshotCommit,
    SnapshotRemove,
    ContentDelete,
    TaskExit,
    TaskDelete,
);

/// The fan-out. Cheap to share (a clone publishes to the same subscribers), and
/// publishing never waits for a subscriber.
#[derive(Clone)]
pub struct Exchange {
    sender: broadcast::Sender<Envelope>,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Exchange {
    /// Publishes one of containerd's own events, stamped now.
    pub fn publish<E: Event>(&self, namespace: &str, topic: &str, event: &E) {
        self.forward(Envelope {
            timestamp: Some(metadata::timestamp(metadata::now())),
            namespace: namespace.to_owned(),
            topic: topic.to_owned(),
            event: Some(prost_types::Any {
                type_url: E::NAME.to_owned(),
                value: event.encode_to_vec(),
            }),
        });
    }

    /// Passes on an envelope made elsewhere (a shim, a client), as it is.
    pub fn forward(&self, envelope: Envelope) {
        tracing::debug!(topic = %envelope.topic, namespace = %envelope.namespace, "event");
        // An error only means nobody is subscribed: the event is simply not seen.
        let _ = self.sender.send(envelope);
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Envelope> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::containerd::services::images::v1::{ImageCreate, ImageDelete};

    #[test]
    fn subscribers_see_events_published_after_they_subscribed() {
        let exchange = Exchange::default();
        exchange.publish("ns", "/images/create", &ImageCreate::default());
        let mut rx = exchange.subscribe();
        let delete = ImageDelete {
            name: "busybox".into(),
        };
        exchange.publish("ns", "/images/delete", &delete);
        let got = rx.try_recv().unwrap();
        assert_eq!(
            (got.namespace.as_str(), got.topic.as_str()),
            ("ns", "/images/delete")
        );
        let any = got.event.unwrap();
        assert_eq!(any.type_url, "containerd.services.images.v1.ImageDelete");
        let decoded: ImageDelete = prost::Message::decode(any.value.as_slice()).unwrap();
        assert_eq!(decoded, delete);
        assert!(rx.try_recv().is_err());
    }
}
