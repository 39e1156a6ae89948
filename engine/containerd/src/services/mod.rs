//! The gRPC services, one file each, named after containerd's
//! (`containerd.services.NAME.v1.NAME`). Each is a thin adapter: it reads the
//! namespace from the request ([`crate::scope`]), calls the store that does the work,
//! and turns the result into the API's messages and status codes.

use std::collections::{BTreeMap, HashMap};

use tonic::Status;

pub mod containers;
pub mod content;
pub mod diff;
pub mod events;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod snapshots;
pub mod tasks;
pub mod version;

/// Labels as the API sends them, in the order records keep them.
pub fn labels(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

/// Labels as the API sends them.
pub fn to_map(labels: &BTreeMap<String, String>) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Applies an update's labels to `current`, following its field mask the way
/// containerd does: no mask replaces all labels, `labels` does too, `labels.KEY` sets
/// (or, absent from the update, removes) one label. Other paths go to `other`, which
/// answers whether it knows them.
pub fn update_labels(
    current: &mut BTreeMap<String, String>,
    update: HashMap<String, String>,
    mask: Option<prost_types::FieldMask>,
    mut other: impl FnMut(&str) -> bool,
) -> Result<(), Status> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        *current = labels(update);
        return Ok(());
    }
    for path in paths {
        if path == "labels" {
            *current = labels(update.clone());
        } else if let Some(key) = path.strip_prefix("labels.") {
            match update.get(key) {
                Some(value) => current.insert(key.to_owned(), value.clone()),
                None => current.remove(key),
            };
        } else if !other(&path) {
            return Err(Status::invalid_argument(format!(
                "cannot update field {path:?}: it is unknown or read-only"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_mask_updates_only_the_labels_it_names() {
        let mut current: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let update: HashMap<String, String> = [("a".into(), "9".into())].into();
        let mask = |paths: &[&str]| {
            Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            })
        };
        update_labels(
            &mut current,
            update.clone(),
            mask(&["labels.a", "labels.b"]),
            |_| false,
        )
        .unwrap();
        assert_eq!(current, [("a".to_string(), "9".to_string())].into());
        assert!(update_labels(&mut current, update, mask(&["size"]), |_| false).is_err());
    }
}
