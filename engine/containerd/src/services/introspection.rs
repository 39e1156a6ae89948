//! `containerd.services.introspection.v1.Introspection`: which plugins this server has
//! (clients check, for example, that the snapshotter they want is there) and who it is.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::filters::{self, Filters};
use crate::proto::containerd::services::introspection::v1::{
    introspection_server, Plugin, PluginInfoRequest, PluginInfoResponse, PluginsRequest,
    PluginsResponse, ServerResponse,
};
use crate::proto::containerd::types::Platform;
use crate::supervisor::Supervisor;

/// What berth-containerd has, named as containerd's plugins are (`TYPE` + `ID`).
/// containerd's plugins register themselves at startup; berth lists its parts here.
const PLUGINS: &[(&str, &str)] = &[
    ("io.containerd.content.v1", "content"),
    ("io.containerd.snapshotter.v1", "overlayfs"),
    ("io.containerd.metadata.v1", "bolt"),
    ("io.containerd.differ.v1", "walking"),
    ("io.containerd.lease.v1", "manager"),
    ("io.containerd.gc.v1", "scheduler"),
    ("io.containerd.grpc.v1", "version"),
    ("io.containerd.grpc.v1", "namespaces"),
    ("io.containerd.grpc.v1", "introspection"),
    ("io.containerd.grpc.v1", "content"),
    ("io.containerd.grpc.v1", "images"),
    ("io.containerd.grpc.v1", "leases"),
    ("io.containerd.grpc.v1", "snapshots"),
    ("io.containerd.grpc.v1", "diff"),
    ("io.containerd.grpc.v1", "healthcheck"),
];

pub struct Introspection {
    pub supervisor: Arc<Supervisor>,
}

fn plugin(kind: &str, id: &str) -> Plugin {
    let mut plugin = Plugin {
        r#type: kind.to_owned(),
        id: id.to_owned(),
        ..Plugin::default()
    };
    if kind == "io.containerd.snapshotter.v1" {
        plugin.platforms = vec![Platform {
            os: "linux".into(),
            architecture: std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
            ..Platform::default()
        }];
    }
    plugin
}

#[tonic::async_trait]
impl introspection_server::Introspection for Introspection {
    async fn plugins(
        &self,
        request: Request<PluginsRequest>,
    ) -> Result<Response<PluginsResponse>, Status> {
        let filters = Filters::parse(&request.into_inner().filters)?;
        let plugins = PLUGINS
            .iter()
            .map(|(kind, id)| plugin(kind, id))
            .filter(|p| {
                filters.matches(|path| match path {
                    [f] if f == "type" => Some(p.r#type.clone()),
                    [f] if f == "id" => Some(p.id.clone()),
                    [f, rest @ ..] if f == "exports" => filters::label(&p.exports, rest),
                    _ => None,
                })
            })
            .collect();
        Ok(Response::new(PluginsResponse { plugins }))
    }

    async fn server(&self, _: Request<()>) -> Result<Response<ServerResponse>, Status> {
        Ok(Response::new(ServerResponse {
            uuid: self.supervisor.uuid.clone(),
            pid: u64::from(std::process::id()),
            ..ServerResponse::default()
        }))
    }

    async fn plugin_info(
        &self,
        _: Request<PluginInfoRequest>,
    ) -> Result<Response<PluginInfoResponse>, Status> {
        Err(Status::unimplemented(
            "containerd.services.introspection.v1.Introspection/PluginInfo is not implemented by berth-containerd (containerd 2.x only)",
        ))
    }
}
