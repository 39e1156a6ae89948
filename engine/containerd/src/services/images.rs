//! `containerd.services.images.v1.Images`: names for content. An image is only a name
//! pointing at a descriptor (an index or a manifest) in the content store; everything
//! else an image "has" is reached from there.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::content::parse_digest;
use crate::filters::{self, Filters};
use crate::metadata::{self, Table};
use crate::proto::containerd::services::images::v1::{
    images_server, CreateImageRequest, CreateImageResponse, DeleteImageRequest, GetImageRequest,
    GetImageResponse, Image, ImageCreate, ImageDelete, ImageUpdate, ListImagesRequest,
    ListImagesResponse, UpdateImageRequest, UpdateImageResponse,
};
use crate::proto::containerd::types::Descriptor;
use crate::scope::Scope;
use crate::services::{labels, to_map, update_labels};
use crate::supervisor::Supervisor;

/// A descriptor as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Target {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    pub annotations: BTreeMap<String, String>,
}

impl Target {
    fn from_proto(d: Descriptor) -> Result<Target, Status> {
        parse_digest(&d.digest)?;
        if d.media_type.is_empty() {
            return Err(Status::invalid_argument(format!(
                "image target {} has no media type; set one",
                d.digest
            )));
        }
        Ok(Target {
            media_type: d.media_type,
            digest: d.digest,
            size: d.size,
            annotations: d.annotations.into_iter().collect(),
        })
    }

    pub fn to_proto(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageRecord {
    pub labels: BTreeMap<String, String>,
    pub target: Target,
    pub created: i64,
    pub updated: i64,
}

pub struct Images {
    pub supervisor: Arc<Supervisor>,
}

fn image(name: &str, record: &ImageRecord) -> Image {
    Image {
        name: name.to_owned(),
        labels: to_map(&record.labels),
        target: Some(record.target.to_proto()),
        created_at: Some(metadata::timestamp(record.created)),
        updated_at: Some(metadata::timestamp(record.updated)),
    }
}

fn not_found(name: &str) -> Status {
    Status::not_found(format!("image {name:?} not found"))
}

fn checked(image: Option<Image>) -> Result<(Image, Target), Status> {
    let mut image = image.ok_or_else(|| Status::invalid_argument("an image is required"))?;
    if image.name.is_empty() {
        return Err(Status::invalid_argument("an image needs a name"));
    }
    let target = image.target.take().ok_or_else(|| {
        Status::invalid_argument(format!("image {:?} needs a target", image.name))
    })?;
    Ok((image, Target::from_proto(target)?))
}

#[tonic::async_trait]
impl images_server::Images for Images {
    async fn get(
        &self,
        request: Request<GetImageRequest>,
    ) -> Result<Response<GetImageResponse>, Status> {
        let scope = Scope::of(&request)?;
        let name = request.into_inner().name;
        let record: ImageRecord = self
            .supervisor
            .db
            .get(Table::Images, &scope.namespace, &name)?
            .ok_or_else(|| not_found(&name))?;
        Ok(Response::new(GetImageResponse {
            image: Some(image(&name, &record)),
        }))
    }

    async fn list(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let scope = Scope::of(&request)?;
        let filters = Filters::parse(&request.into_inner().filters)?;
        let all: Vec<(String, ImageRecord)> =
            self.supervisor.db.list(Table::Images, &scope.namespace)?;
        let images = all
            .iter()
            .filter(|(name, record)| {
                filters.matches(|path| match path {
                    [f] if f == "name" => Some(name.clone()),
                    [f, g] if f == "target" && g == "digest" => Some(record.target.digest.clone()),
                    [f, g] if f == "target" && g == "mediatype" => {
                        Some(record.target.media_type.clone())
                    }
                    [f, rest @ ..] if f == "labels" => filters::label(&record.labels, rest),
                    _ => None,
                })
            })
            .map(|(name, record)| image(name, record))
            .collect();
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn create(
        &self,
        request: Request<CreateImageRequest>,
    ) -> Result<Response<CreateImageResponse>, Status> {
        let scope = Scope::of(&request)?;
        let (new, target) = checked(request.into_inner().image)?;
        let now = metadata::now();
        let record = ImageRecord {
            labels: labels(new.labels),
            target,
            created: now,
            updated: now,
        };
        self.supervisor.db.update(|txn| {
            if txn
                .get::<ImageRecord>(Table::Images, &scope.namespace, &new.name)?
                .is_some()
            {
                return Err(Status::already_exists(format!(
                    "image {:?} already exists",
                    new.name
                )));
            }
            txn.put(Table::Images, &scope.namespace, &new.name, &record)?;
            Ok(())
        })?;
        let event = ImageCreate {
            name: new.name.clone(),
            labels: to_map(&record.labels),
        };
        self.supervisor
            .events
            .publish(&scope.namespace, "/images/create", &event);
        Ok(Response::new(CreateImageResponse {
            image: Some(image(&new.name, &record)),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateImageRequest>,
    ) -> Result<Response<UpdateImageResponse>, Status> {
        let scope = Scope::of(&request)?;
        let request = request.into_inner();
        let (new, target) = checked(request.image)?;
        let record = self.supervisor.db.update(|txn| {
            let mut record: ImageRecord = txn
                .get(Table::Images, &scope.namespace, &new.name)?
                .ok_or_else(|| not_found(&new.name))?;
            let no_mask = request
                .update_mask
                .as_ref()
                .is_none_or(|m| m.paths.is_empty());
            let mut new_target = no_mask;
            let labels_update: HashMap<String, String> = new.labels;
            update_labels(
                &mut record.labels,
                labels_update,
                request.update_mask,
                |path| {
                    if path == "target" {
                        new_target = true;
                    }
                    path == "target" || path == "annotations"
                },
            )?;
            if new_target {
                record.target = target;
            }
            record.updated = metadata::now();
            txn.put(Table::Images, &scope.namespace, &new.name, &record)?;
            Ok::<_, Status>(record)
        })?;
        let event = ImageUpdate {
            name: new.name.clone(),
            labels: to_map(&record.labels),
        };
        self.supervisor
            .events
            .publish(&scope.namespace, "/images/update", &event);
        Ok(Response::new(UpdateImageResponse {
            image: Some(image(&new.name, &record)),
        }))
    }

    async fn delete(&self, request: Request<DeleteImageRequest>) -> Result<Response<()>, Status> {
        let scope = Scope::of(&request)?;
        let request = request.into_inner();
        let deleted = self
            .supervisor
            .db
            .update(|txn| txn.delete(Table::Images, &scope.namespace, &request.name))?;
        if !deleted {
            return Err(not_found(&request.name));
        }
        let event = ImageDelete {
            name: request.name.clone(),
        };
        self.supervisor
            .events
            .publish(&scope.namespace, "/images/delete", &event);
        crate::gc::after_delete(&self.supervisor, request.sync).await?;
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::images_server::Images as _;
    use super::*;

    fn request<T>(message: T) -> Request<T> {
        let mut request = Request::new(message);
        let ns = crate::scope::NAMESPACE_HEADER;
        request.metadata_mut().insert(ns, "test".parse().unwrap());
        request
    }

    fn busybox(digest: &str) -> Option<Image> {
        Some(Image {
            name: "busybox".into(),
            target: Some(Descriptor {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: digest.into(),
                size: 1,
                annotations: HashMap::new(),
            }),
            ..Image::default()
        })
    }

    #[tokio::test]
    async fn update_then_create_as_ctr_import_does() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let supervisor = Arc::new(Supervisor::open(&root, &dir.path().join("state")).unwrap());
        let images = Images { supervisor };
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let update = |digest: &str| UpdateImageRequest {
            image: busybox(digest),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["target".into()],
            }),
            ..UpdateImageRequest::default()
        };
        let missing = images.update(request(update(&a))).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
        let create = CreateImageRequest {
            image: busybox(&a),
            ..CreateImageRequest::default()
        };
        images.create(request(create.clone())).await.unwrap();
        let again = images.create(request(create)).await.unwrap_err();
        assert_eq!(again.code(), tonic::Code::AlreadyExists);
        images.update(request(update(&b))).await.unwrap();
        let get = GetImageRequest {
            name: "busybox".into(),
        };
        let got = images.get(request(get)).await.unwrap().into_inner();
        assert_eq!(got.image.unwrap().target.unwrap().digest, b);

        let filtered = ListImagesRequest {
            filters: vec![format!("target.digest=={a}")],
        };
        let none = images.list(request(filtered)).await.unwrap().into_inner();
        assert!(none.images.is_empty());
        let unscoped = images
            .list(Request::new(ListImagesRequest::default()))
            .await;
        assert_eq!(
            unscoped.unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
    }
}
