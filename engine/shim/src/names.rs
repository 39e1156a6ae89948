//! The protobuf names of the messages the shim packs into an `Any`.
//!
//! containerd finds out what an `Any` holds from its `type_url`, the message's full
//! protobuf name (`containerd.events.TaskExit`). The generated code can say it
//! (`M::descriptor().full_name()`), but only by building protobuf's reflection tables
//! for the whole `.proto` file first: a few hundred kilobytes of heap, in every shim,
//! to learn a constant. So the names are written out here, and a test checks them
//! against the descriptors.

use protobuf::well_known_types::any::Any;
use protobuf::Message;

use crate::protos::cgroups::metrics as v1;
use crate::protos::cgroups_v2::metrics as v2;
use crate::protos::events::task as ev;
use crate::protos::shim::oci::ProcessDetails;

/// A message with its full protobuf name.
pub trait TypeName: Message {
    const NAME: &'static str;
}

macro_rules! type_names {
    ($($message:ty => $name:literal,)*) => {
        $(impl TypeName for $message {
            const NAME: &'static str = $name;
        })*
        #[cfg(test)]
        fn checks() -> Vec<(&'static str, String)> {
            use protobuf::MessageFull;
            vec![$(($name, <$message>::descriptor().full_name().to_owned()),)*]
        }
    };
}

type_names! {
    ev::TaskCreate => "containerd.events.TaskCreate",
    ev::TaskStart => "containerd.events.TaskStart",
    ev::TaskExit => "containerd.events.TaskExit",
    ev::TaskDelete => "containerd.events.TaskDelete",
    ev::TaskExecAdded => "containerd.events.TaskExecAdded",
    ev::TaskExecStarted => "containerd.events.TaskExecStarted",
    ev::TaskPaused => "containerd.events.TaskPaused",
    ev::TaskResumed => "containerd.events.TaskResumed",
    ev::TaskOOM => "containerd.events.TaskOOM",
    v1::Metrics => "io.containerd.cgroups.v1.Metrics",
    v2::Metrics => "io.containerd.cgroups.v2.Metrics",
    ProcessDetails => "containerd.runc.v1.ProcessDetails",
}

/// Packs a message into an `Any` named by its protobuf name.
pub fn pack<M: TypeName>(message: &M) -> Result<Any, protobuf::Error> {
    let mut any = Any::new();
    any.type_url = <M as TypeName>::NAME.to_owned();
    any.value = message.write_to_bytes()?;
    Ok(any)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_names_are_the_descriptors_names() {
        for (written, generated) in super::checks() {
            assert_eq!(written, generated);
        }
    }
}
