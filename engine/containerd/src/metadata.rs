//! The metadata database: every record berth-containerd keeps about namespaces,
//! images, content, leases, snapshots and containers, in one embedded transactional database
//! (redb) at `ROOT/metadata.redb`.
//!
//! containerd keeps the same split: blobs and snapshot directories are files, and
//! what they *mean* (which namespace has them, their labels, which image points where)
//! is in a database (bolt for containerd). A crash can leave a file the database does
//! not know about, never a record naming a half-written file: files are written first,
//! records second, and garbage collection sweeps the orphans.
//!
//! Every table is keyed by `NAMESPACE \0 NAME` and holds JSON values, so one namespace's
//! records are one key range, and a record can be read with `redb`'s own tools.
//!
//! Read next: [`crate::content`], the files the `content` records describe.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The tables; each holds JSON records keyed by `namespace \0 name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Namespace name → its labels (key: `name \0`).
    Namespaces,
    /// Digest → [`crate::content::ContentRecord`].
    Content,
    /// Image name → [`crate::services::images::ImageRecord`].
    Images,
    /// Lease id → [`crate::services::leases::LeaseRecord`].
    Leases,
    /// Snapshot key or name → [`crate::snapshot::SnapshotRecord`].
    Snapshots,
    /// Container id → [`crate::services::containers::ContainerRecord`].
    Containers,
}

impl Table {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static str> {
        match self {
            Table::Namespaces => TableDefinition::new("namespaces"),
            Table::Content => TableDefinition::new("content"),
            Table::Images => TableDefinition::new("images"),
            Table::Leases => TableDefinition::new("leases"),
            Table::Snapshots => TableDefinition::new("snapshots"),
            Table::Containers => TableDefinition::new("containers"),
        }
    }

    const ALL: [Table; 6] = [
        Table::Namespaces,
        Table::Content,
        Table::Images,
        Table::Leases,
        Table::Snapshots,
        Table::Containers,
    ];
}

/// Counters that only grow (snapshot directory ids).
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("the metadata database {path} cannot be opened: {source}; is another berth-containerd using this --root?")]
    Open {
        path: String,
        source: Box<redb::Error>,
    },
    // Boxed: redb's error is large, and this one travels up every call.
    #[error("metadata database error: {0}")]
    Db(Box<redb::Error>),
    #[error("metadata record {key:?} in table {table:?} is not valid JSON ({source}); the database is corrupt")]
    Corrupt {
        table: Table,
        key: String,
        source: serde_json::Error,
    },
}

impl From<MetadataError> for tonic::Status {
    fn from(err: MetadataError) -> Self {
        tonic::Status::internal(err.to_string())
    }
}

fn db_err(err: impl Into<redb::Error>) -> MetadataError {
    MetadataError::Db(Box::new(err.into()))
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}\0{name}")
}

/// The key range of one namespace: from `ns\0` up to (not including) `ns\x01`.
fn range(namespace: &str) -> (String, String) {
    (format!("{namespace}\0"), format!("{namespace}\u{1}"))
}

fn decode<T: DeserializeOwned>(table: Table, key: &str, json: &str) -> Result<T, MetadataError> {
    serde_json::from_str(json).map_err(|source| MetadataError::Corrupt {
        table,
        key: key.to_owned(),
        source,
    })
}

fn encode<T: Serialize>(value: &T) -> String {
    // Records are plain structs of strings, numbers and maps: they always serialize.
    serde_json::to_string(value).expect("metadata records serialize to JSON")
}

/// The database handle, shared by every service.
pub struct Db {
    db: Database,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, MetadataError> {
        let db = Database::create(path).map_err(|source| MetadataError::Open {
            path: path.display().to_string(),
            source: Box::new(source.into()),
        })?;
        // Create every table up front, so a read never meets a missing one.
        let txn = db.begin_write().map_err(db_err)?;
        for table in Table::ALL {
            txn.open_table(table.definition()).map_err(db_err)?;
        }
        txn.open_table(COUNTERS).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(Db { db })
    }

    /// One record, read outside any write transaction.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        namespace: &str,
        name: &str,
    ) -> Result<Option<T>, MetadataError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table.definition()).map_err(db_err)?;
        let key = key(namespace, name);
        match t.get(key.as_str()).map_err(db_err)? {
            Some(json) => decode(table, &key, json.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Every record of one namespace, by name.
    pub fn list<T: DeserializeOwned>(
        &self,
        table: Table,
        namespace: &str,
    ) -> Result<Vec<(String, T)>, MetadataError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table.definition()).map_err(db_err)?;
        list_in(&t, table, namespace)
    }

    /// The namespaces that have a record of their own.
    pub fn namespaces(&self) -> Result<Vec<String>, MetadataError> {
        Ok(self
            .list::<serde_json::Value>(Table::Namespaces, "")?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Runs `work` in one write transaction, committed if it returns `Ok`, rolled back
    /// (nothing of it written) if it returns `Err`.
    pub fn update<R, E: From<MetadataError>>(
        &self,
        work: impl FnOnce(&Txn) -> Result<R, E>,
    ) -> Result<R, E> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let result = work(&Txn { txn: &txn })?;
        txn.commit().map_err(db_err)?;
        Ok(result)
    }
}

fn list_in<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static str>,
    table: Table,
    namespace: &str,
) -> Result<Vec<(String, T)>, MetadataError> {
    let (start, end) = range(namespace);
    let mut records = Vec::new();
    for entry in t.range(start.as_str()..end.as_str()).map_err(db_err)? {
        let (key, json) = entry.map_err(db_err)?;
        let key = key.value();
        let name = key[start.len()..].to_owned();
        records.push((name, decode(table, key, json.value())?));
    }
    Ok(records)
}

/// A write transaction in progress (see [`Db::update`]).
pub struct Txn<'a> {
    txn: &'a redb::WriteTransaction,
}

impl Txn<'_> {
    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        namespace: &str,
        name: &str,
    ) -> Result<Option<T>, MetadataError> {
        let t = self.txn.open_table(table.definition()).map_err(db_err)?;
        let key = key(namespace, name);
        let json = t.get(key.as_str()).map_err(db_err)?;
        match json {
            Some(json) => decode(table, &key, json.value()).map(Some),
            None => Ok(None),
        }
    }

    pub fn list<T: DeserializeOwned>(
        &self,
        table: Table,
        namespace: &str,
    ) -> Result<Vec<(String, T)>, MetadataError> {
        let t = self.txn.open_table(table.definition()).map_err(db_err)?;
        list_in(&t, table, namespace)
    }

    /// Writes a record, and the namespace's own record if it has none yet: as in
    /// containerd, a namespace comes into being with the first thing stored in it.
    pub fn put<T: Serialize>(
        &self,
        table: Table,
        namespace: &str,
        name: &str,
        value: &T,
    ) -> Result<(), MetadataError> {
        let mut t = self.txn.open_table(table.definition()).map_err(db_err)?;
        t.insert(key(namespace, name).as_str(), encode(value).as_str())
            .map_err(db_err)?;
        drop(t);
        if table != Table::Namespaces
            && self
                .get::<serde_json::Value>(Table::Namespaces, "", namespace)?
                .is_none()
        {
            let labels = std::collections::BTreeMap::<String, String>::new();
            self.put(Table::Namespaces, "", namespace, &labels)?;
        }
        Ok(())
    }

    /// Removes a record; `true` if there was one.
    pub fn delete(&self, table: Table, namespace: &str, name: &str) -> Result<bool, MetadataError> {
        let mut t = self.txn.open_table(table.definition()).map_err(db_err)?;
        let removed = t.remove(key(namespace, name).as_str()).map_err(db_err)?;
        Ok(removed.is_some())
    }

    /// The next value of counter `name`, starting at 1.
    pub fn next_id(&self, name: &str) -> Result<u64, MetadataError> {
        let mut t = self.txn.open_table(COUNTERS).map_err(db_err)?;
        let next = t.get(name).map_err(db_err)?.map_or(0, |v| v.value()) + 1;
        t.insert(name, next).map_err(db_err)?;
        Ok(next)
    }
}

/// Nanoseconds since the Unix epoch: how every record stores its times.
pub fn now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

/// A stored time as the protobuf `Timestamp` the API sends.
pub fn timestamp(nanos: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_kept_per_namespace_and_rolled_back_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.redb")).unwrap();
        db.update(|txn| {
            txn.put(Table::Images, "a", "busybox", &1)?;
            txn.put(Table::Images, "ab", "other", &2)?;
            Ok::<_, MetadataError>(())
        })
        .unwrap();
        let a: Vec<(String, i32)> = db.list(Table::Images, "a").unwrap();
        assert_eq!(a, vec![("busybox".to_string(), 1)]);
        assert_eq!(db.namespaces().unwrap(), vec!["a", "ab"]);

        let failed: Result<(), MetadataError> = db.update(|txn| {
            txn.put(Table::Images, "a", "half", &3)?;
            Err(db_err(redb::Error::Corrupted("test".into())))
        });
        assert!(failed.is_err());
        assert_eq!(db.get::<i32>(Table::Images, "a", "half").unwrap(), None);
    }

    #[test]
    fn timestamps_split_seconds_and_nanos() {
        let t = timestamp(1_500_000_001);
        assert_eq!((t.seconds, t.nanos), (1, 500_000_001));
    }
}
