//! The daemon's image store: `load` extracts a `docker save` tar into
//! `ROOT/images/<name>`, and `run` opens it again with [`berth_oci::layout`].
//!
//! The test image's tar is a `docker save` archive *and* an OCI image layout (it has
//! `oci-layout` and `index.json` beside `manifest.json`), so extracting it is all the
//! import there is. A real engine would also accept the older layout-less `docker save`
//! format and de-duplicate layers between images; this chapter doesn't, because the
//! lesson is the execution driver, not the image store.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use berth_oci::layout::{Image, Layout, LayoutError};

use crate::api::ImageInfo;

/// The annotation containerd (and `docker save`) put on each image in `index.json`.
const NAME_ANNOTATION: &str = "io.containerd.image.name";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read image tar {path:?}: {source}; pass the path of a `docker save` tar")]
    Tar { path: PathBuf, source: io::Error },
    #[error("{path:?} is not an OCI image layout once extracted: {source}; split-era loads only `docker save` tars that carry an oci-layout")]
    NotLayout {
        path: PathBuf,
        source: Box<LayoutError>,
    },
    #[error("no such image {name:?}: load it first with `split-era load TAR`")]
    Unknown { name: String },
    #[error("image {name:?} is unreadable: {source}; load it again")]
    Broken {
        name: String,
        source: Box<LayoutError>,
    },
    #[error("image store {path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// `ROOT/images`: one extracted layout per image name.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    pub fn new(dir: PathBuf) -> ImageStore {
        ImageStore { dir }
    }

    // ANCHOR: load
    /// Extracts `tar` beside the store, names it after the image it holds, and moves it
    /// into place: an interrupted load leaves only a `.loading-*` directory behind.
    pub fn load(&self, tar: &Path) -> Result<ImageInfo, ImageError> {
        let tar_err = |source| ImageError::Tar {
            path: tar.to_owned(),
            source,
        };
        let staging = self.dir.join(format!(".loading-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        self.io(fs::create_dir_all(&staging), &staging)?;
        // The tar crate refuses entries that climb out with `..` or absolute names.
        let file = fs::File::open(tar).map_err(tar_err)?;
        tar::Archive::new(file).unpack(&staging).map_err(tar_err)?;

        let layout = Layout::open(&staging).map_err(|source| ImageError::NotLayout {
            path: tar.to_owned(),
            source: Box::new(source),
        })?;
        let image = layout
            .resolve(None)
            .map_err(|source| ImageError::NotLayout {
                path: tar.to_owned(),
                source: Box::new(source),
            })?;
        let name = short_name(&layout);
        let dest = self.dir.join(&name);
        // Loading an image again replaces it, as `docker load` retags.
        let _ = fs::remove_dir_all(&dest);
        self.io(fs::rename(&staging, &dest), &dest)?;
        Ok(ImageInfo {
            name,
            id: image.config_digest().to_string(),
        })
    }
    // ANCHOR_END: load

    /// Opens the image called `name` (`busybox` or `busybox:latest`).
    pub fn open(&self, name: &str) -> Result<(Layout, Image), ImageError> {
        let bare = name.split(':').next().unwrap_or(name);
        let dir = self.dir.join(bare);
        if bare.is_empty() || bare.starts_with('.') || bare.contains('/') || !dir.is_dir() {
            return Err(ImageError::Unknown { name: name.into() });
        }
        let broken = |source| ImageError::Broken {
            name: name.into(),
            source: Box::new(source),
        };
        let layout = Layout::open(&dir).map_err(broken)?;
        let image = layout.resolve(None).map_err(broken)?;
        Ok((layout, image))
    }

    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let mut images = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(images),
            Err(source) => return Err(self.io_err(&self.dir, source)),
        };
        for entry in entries {
            let name = entry
                .map_err(|e| self.io_err(&self.dir, e))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.starts_with('.') {
                continue;
            }
            let (_, image) = self.open(&name)?;
            let id = image.config_digest().to_string();
            images.push(ImageInfo { name, id });
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    fn io<T>(&self, result: io::Result<T>, path: &Path) -> Result<T, ImageError> {
        result.map_err(|source| self.io_err(path, source))
    }

    fn io_err(&self, path: &Path, source: io::Error) -> ImageError {
        ImageError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// `docker.io/library/busybox:latest` → `busybox`. One tag per image name is a
/// simplification of this chapter: loading another tag of the same name replaces it.
fn short_name(layout: &Layout) -> String {
    let full = layout
        .index()
        .manifests()
        .iter()
        .find_map(|m| m.annotations().as_ref()?.get(NAME_ANNOTATION).cloned())
        .unwrap_or_else(|| "image".to_string());
    repository_name(&full)
}

fn repository_name(full: &str) -> String {
    let last = full.rsplit('/').next().unwrap_or(full);
    last.split([':', '@']).next().unwrap_or(last).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shortened_to_the_repository() {
        assert_eq!(
            repository_name("docker.io/library/busybox:latest"),
            "busybox"
        );
        assert_eq!(repository_name("busybox"), "busybox");
        assert_eq!(repository_name("registry:5000/a/b@sha256:00"), "b");
    }
}
