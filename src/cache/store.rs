//! Durable cache storage: an append-only log of records plus periodic snapshots.
//!
//! Every record is framed as `len (u32 LE) | crc32 (u32 LE) | postcard payload`.
//! A snapshot is written to a temporary file, fsynced and renamed over the old one;
//! the log is rotated before the snapshot is taken and the old log is deleted only
//! after the snapshot is in place. Loading replays snapshot, old log, log, in that
//! order; records are idempotent (put by id, delete by id), so a crash between any
//! two steps loads the same state. A torn record at the end of the log (a kill -9
//! mid-write) is cut off.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a cached request answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub content: String,
    /// The configured model name that answered (`x-triage-model`).
    pub model: String,
    /// The model id the upstream's reply carried (its `model` field), which a hit
    /// carries too, so a hit looks like the answer it replays.
    pub response_model: String,
    pub finish_reason: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

/// A cached answer as the first store format wrote it (no `response_model`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedAnswerV1 {
    content: String,
    model: String,
    finish_reason: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EntryRecordV1 {
    id: u64,
    scope: [u8; 16],
    tenant: String,
    text: String,
    vector: Vec<f32>,
    answer: CachedAnswerV1,
    created: u64,
    expires: u64,
}

/// The records as framed on disk. Postcard is not self-describing, so a changed
/// entry is a new variant at the end; old variants stay readable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Disk {
    PutV1(EntryRecordV1),
    Delete(Vec<u64>),
    Put(EntryRecord),
}

impl From<Disk> for Record {
    fn from(d: Disk) -> Self {
        match d {
            Disk::PutV1(e) => Record::Put(EntryRecord {
                id: e.id,
                scope: e.scope,
                tenant: e.tenant,
                text: e.text,
                vector: e.vector,
                answer: CachedAnswer {
                    response_model: e.answer.model.clone(),
                    content: e.answer.content,
                    model: e.answer.model,
                    finish_reason: e.answer.finish_reason,
                    prompt_tokens: e.answer.prompt_tokens,
                    completion_tokens: e.answer.completion_tokens,
                    cached_tokens: e.answer.cached_tokens,
                },
                created: e.created,
                expires: e.expires,
            }),
            Disk::Delete(ids) => Record::Delete(ids),
            Disk::Put(e) => Record::Put(e),
        }
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryRecord {
    pub id: u64,
    pub scope: [u8; 16],
    pub tenant: String,
    pub text: String,
    pub vector: Vec<f32>,
    pub answer: CachedAnswer,
    /// Unix seconds.
    pub created: u64,
    pub expires: u64,
}

// Records are made and consumed one at a time; boxing the entry would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Put(EntryRecord),
    Delete(Vec<u64>),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cache store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cache store: cannot encode a record: {0}")]
    Encode(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn encode(record: &Record) -> Result<Vec<u8>, StoreError> {
    let disk = match record {
        Record::Put(e) => Disk::Put(e.clone()),
        Record::Delete(ids) => Disk::Delete(ids.clone()),
    };
    let payload = postcard::to_stdvec(&disk).map_err(|e| StoreError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Reads records until the end or the first damaged one. Returns the records and
/// the byte length of the intact prefix.
pub fn read_records(path: &Path) -> Result<(Vec<Record>, u64), StoreError> {
    let mut records = Vec::new();
    let good = each_record(path, |r| records.push(r))?;
    Ok((records, good))
}

/// Calls `f` on each record until the end or the first damaged one (one record in
/// memory at a time). Returns the byte length of the intact prefix.
pub fn each_record(path: &Path, mut f: impl FnMut(Record)) -> Result<u64, StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(path)(e)),
    };
    let mut r = BufReader::new(file);
    let mut good = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        match r.read_exact(&mut header) {
            Ok(()) => {}
            Err(_) => break,
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > 64 * 1024 * 1024 {
            break;
        }
        payload.resize(len, 0);
        if r.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        match postcard::from_bytes::<Disk>(&payload) {
            Ok(rec) => f(rec.into()),
            Err(_) => break,
        }
        good += 8 + len as u64;
    }
    Ok(good)
}

/// The files of one cache directory.
pub struct Store {
    dir: PathBuf,
    log: File,
}

impl Store {
    pub fn snapshot_path(dir: &Path) -> PathBuf {
        dir.join("cache.snapshot")
    }
    fn log_path(dir: &Path) -> PathBuf {
        dir.join("cache.log")
    }
    fn old_log_path(dir: &Path) -> PathBuf {
        dir.join("cache.log.old")
    }

    /// Opens the directory and replays everything in it.
    pub fn open(dir: &Path) -> Result<(Self, Vec<Record>), StoreError> {
        let mut all = Vec::new();
        let store = Self::open_with(dir, |r| all.push(r))?;
        Ok((store, all))
    }

    /// Opens the directory and hands each record in it to `f`, in replay order,
    /// one at a time.
    pub fn open_with(dir: &Path, mut f: impl FnMut(Record)) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for p in [Self::snapshot_path(dir), Self::old_log_path(dir)] {
            each_record(&p, &mut f)?;
        }
        let log_path = Self::log_path(dir);
        let good = each_record(&log_path, &mut f)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let len = log.metadata().map_err(io(&log_path))?.len();
        if len > good {
            tracing::warn!(path = %log_path.display(), cut = len - good, "cutting a torn record off the cache log");
            log.set_len(good).map_err(io(&log_path))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            log,
        })
    }

    /// Appends records and makes them durable.
    pub fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let path = Self::log_path(&self.dir);
        let mut buf = Vec::new();
        for r in records {
            buf.extend(encode(r)?);
        }
        self.log.write_all(&buf).map_err(io(&path))?;
        self.log.sync_data().map_err(io(&path))?;
        Ok(())
    }

    /// Starts a new log; the caller then writes the snapshot of the state as of now
    /// with [`Store::write_snapshot`].
    pub fn rotate(&mut self) -> Result<(), StoreError> {
        let log = Self::log_path(&self.dir);
        let old = Self::old_log_path(&self.dir);
        if old.exists() {
            // A previous snapshot did not finish. Its old log stays (loading replays
            // it) and the snapshot about to be written covers it too.
            return Ok(());
        }
        std::fs::rename(&log, &old).map_err(io(&log))?;
        self.log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(&log))?;
        Ok(())
    }

    /// Writes `entries` as the new snapshot (atomically) and drops the old log.
    pub fn write_snapshot(
        dir: &Path,
        entries: impl Iterator<Item = EntryRecord>,
    ) -> Result<(), StoreError> {
        let tmp = dir.join("cache.snapshot.tmp");
        {
            let f = File::create(&tmp).map_err(io(&tmp))?;
            let mut w = BufWriter::new(f);
            for e in entries {
                w.write_all(&encode(&Record::Put(e))?).map_err(io(&tmp))?;
            }
            let f = w.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        let snap = Self::snapshot_path(dir);
        std::fs::rename(&tmp, &snap).map_err(io(&snap))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        let old = Self::old_log_path(dir);
        if old.exists() {
            std::fs::remove_file(&old).map_err(io(&old))?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_bytes(&self) -> u64 {
        self.log.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> EntryRecord {
        EntryRecord {
            id,
            scope: [id as u8; 16],
            tenant: "t".into(),
            text: format!("question {id}"),
            vector: vec![0.5; 4],
            answer: CachedAnswer {
                content: format!("answer {id}"),
                model: "m".into(),
                response_model: "m-2026".into(),
                finish_reason: "stop".into(),
                prompt_tokens: 1,
                completion_tokens: 2,
                cached_tokens: 0,
            },
            created: 1,
            expires: 2,
        }
    }

    #[test]
    fn append_reload_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, recs) = Store::open(dir.path()).unwrap();
            assert!(recs.is_empty());
            s.append(&[Record::Put(entry(1)), Record::Put(entry(2))])
                .unwrap();
            s.append(&[Record::Delete(vec![1])]).unwrap();
        }
        // A torn write at the end.
        let log = dir.path().join("cache.log");
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (_, recs) = Store::open(dir.path()).unwrap();
        assert_eq!(
            recs,
            vec![
                Record::Put(entry(1)),
                Record::Put(entry(2)),
                Record::Delete(vec![1])
            ]
        );
        // The torn bytes were cut off, so new records land after good ones.
        let (mut s, _) = Store::open(dir.path()).unwrap();
        s.append(&[Record::Put(entry(3))]).unwrap();
        let (_, recs) = Store::open(dir.path()).unwrap();
        assert_eq!(recs.len(), 4);
    }

    #[test]
    fn snapshot_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path()).unwrap();
        s.append(&[Record::Put(entry(1)), Record::Put(entry(2))])
            .unwrap();
        s.rotate().unwrap();
        s.append(&[Record::Put(entry(3))]).unwrap();
        Store::write_snapshot(dir.path(), [entry(1), entry(2)].into_iter()).unwrap();
        let (_, recs) = Store::open(dir.path()).unwrap();
        assert_eq!(
            recs,
            vec![
                Record::Put(entry(1)),
                Record::Put(entry(2)),
                Record::Put(entry(3))
            ]
        );
        assert!(!dir.path().join("cache.log.old").exists());
    }

    #[test]
    fn records_of_the_first_format_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.log");
        let v1 = Disk::PutV1(EntryRecordV1 {
            id: 7,
            scope: [1; 16],
            tenant: "t".into(),
            text: "q".into(),
            vector: vec![0.5; 4],
            answer: CachedAnswerV1 {
                content: "a".into(),
                model: "gpt-4o-mini".into(),
                finish_reason: "stop".into(),
                prompt_tokens: 1,
                completion_tokens: 2,
                cached_tokens: 0,
            },
            created: 1,
            expires: 2,
        });
        let payload = postcard::to_stdvec(&v1).unwrap();
        let mut framed = (payload.len() as u32).to_le_bytes().to_vec();
        framed.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        framed.extend_from_slice(&payload);
        std::fs::write(&path, &framed).unwrap();
        let (records, good) = read_records(&path).unwrap();
        assert_eq!(good, framed.len() as u64);
        match &records[..] {
            [Record::Put(e)] => {
                assert_eq!((e.id, e.answer.content.as_str()), (7, "a"));
                assert_eq!(e.answer.response_model, "gpt-4o-mini");
            }
            other => panic!("{other:?}"),
        }
    }
}
