//! `--config-dir`: Kubernetes YAML from files, watched for edits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Item, SourceEvent};
use crate::api::{self, DocumentError};

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("config directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("cannot watch config directory {0}: {1}")]
    Watch(PathBuf, notify::Error),
}

/// Parses one file's text into items. Pure, so it is tested without a disk.
pub fn parse_text(text: &str) -> Vec<Item> {
    let mut items = Vec::new();
    for (document, doc) in api::split_documents(text).into_iter().enumerate() {
        let parsed = doc
            .map_err(|error| DocumentError {
                object: None,
                error,
            })
            .and_then(api::parse);
        items.extend(Item::from_parsed(document, parsed));
    }
    items
}

fn is_config_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    )
}

/// Hidden entries are skipped: editors' temporary files, and kubelet's
/// `..data` / `..2026_...` directories behind a mounted ConfigMap, whose
/// files are also reachable through the visible `name.yaml` symlinks.
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Every config file under `dir`, recursively, in a stable order. File
/// symlinks are followed (a ConfigMap mount is all symlinks); directory
/// symlinks are not, so a link cycle cannot loop.
fn list_files(dir: &Path) -> std::io::Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if is_hidden(&path) {
                continue;
            }
            let real_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if real_dir {
                stack.push(path);
            } else if is_config_file(&path) && path.is_file() {
                out.insert(path);
            }
        }
    }
    Ok(out)
}

/// Reads every config file under `dir` once, for offline commands.
pub fn read_dir_once(dir: &Path) -> Result<Vec<(String, Vec<Item>)>, FileSourceError> {
    let files = list_files(dir).map_err(|e| FileSourceError::Dir(dir.to_path_buf(), e))?;
    let mut units = Vec::new();
    for path in files {
        let text =
            std::fs::read_to_string(&path).map_err(|e| FileSourceError::Dir(path.clone(), e))?;
        units.push((path.display().to_string(), parse_text(&text)));
    }
    Ok(units)
}

/// What the watcher reported, merged until the files are read.
struct Change {
    /// These files changed; `None`: look at everything (a watcher error, or
    /// an event that asks for a rescan).
    paths: Option<Vec<PathBuf>>,
    /// Every file was renamed into place: written completely, so there is
    /// nothing to wait for (kubelet's ConfigMap updates, `rudder-loadgen
    /// churn`, editors that save through a temporary file).
    complete: bool,
}

impl Change {
    fn of(res: notify::Result<notify::Event>) -> Option<Change> {
        use notify::event::{EventKind, ModifyKind, RenameMode};
        let e = match res {
            Ok(e) if e.need_rescan() => return Some(Change::everything()),
            Ok(e) => e,
            Err(_) => return Some(Change::everything()),
        };
        // Reading a file is an event too (inotify reports opens): ignoring
        // those keeps our own reads from causing more reads. Files never
        // read (an editor's hidden temporary copy, a log next to the YAML)
        // are nothing to wait for. A path that no longer exists may have
        // been a directory, so it counts.
        let unread =
            |p: &PathBuf| !p.is_dir() && (is_hidden(p) || (!is_config_file(p) && p.is_file()));
        if matches!(e.kind, EventKind::Access(_))
            || (!e.paths.is_empty() && e.paths.iter().all(unread))
        {
            return None;
        }
        let complete = matches!(
            e.kind,
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
        );
        Some(Change {
            paths: Some(e.paths),
            complete,
        })
    }

    fn everything() -> Change {
        Change {
            paths: None,
            complete: false,
        }
    }

    /// Merges what else has arrived.
    fn absorb(&mut self, rx: &mut mpsc::UnboundedReceiver<Change>) {
        while let Ok(more) = rx.try_recv() {
            self.complete &= more.complete;
            self.paths = match (self.paths.take(), more.paths) {
                (Some(mut a), Some(b)) => {
                    a.extend(b);
                    Some(a)
                }
                _ => None,
            };
        }
    }
}

/// Watches a directory and reports each file's documents whenever it changes.
pub struct FileSource {
    dir: PathBuf,
    /// Content hash per file last reported, so touching a file is not a change.
    seen: BTreeMap<PathBuf, [u8; 32]>,
    tx: mpsc::Sender<SourceEvent>,
}

impl FileSource {
    pub fn new(dir: PathBuf, tx: mpsc::Sender<SourceEvent>) -> Result<Self, FileSourceError> {
        if !dir.is_dir() {
            let err = std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory");
            return Err(FileSourceError::Dir(dir, err));
        }
        Ok(Self {
            dir,
            seen: BTreeMap::new(),
            tx,
        })
    }

    /// Loads everything, reports `Synced`, then follows edits until the index goes away.
    pub async fn run(mut self) -> Result<(), FileSourceError> {
        let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<Change>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Some(change) = Change::of(res) {
                let _ = raw_tx.send(change);
            }
        })
        .map_err(|e| FileSourceError::Watch(self.dir.clone(), e))?;
        watcher
            .watch(&self.dir, RecursiveMode::Recursive)
            .map_err(|e| FileSourceError::Watch(self.dir.clone(), e))?;

        self.rescan().await;
        if self.tx.send(SourceEvent::Synced).await.is_err() {
            return Ok(());
        }
        while let Some(mut change) = raw_rx.recv().await {
            change.absorb(&mut raw_rx);
            if !change.complete {
                // Editors write in several steps (truncate, write, rename): let them finish.
                tokio::time::sleep(Duration::from_millis(20)).await;
                change.absorb(&mut raw_rx);
            }
            // Re-reading only the files an event names keeps a one-file edit
            // cheap in a directory of thousands.
            let stop = match change.paths.and_then(|p| self.files_to_reload(p)) {
                Some(files) => self.reload(files).await,
                None => self.rescan().await,
            };
            if stop {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reports files that appeared, changed or vanished. Returns true when the
    /// receiver is gone and the source should stop.
    async fn rescan(&mut self) -> bool {
        let files = match list_files(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                // A transiently unreadable directory must not delete the mesh.
                tracing::error!(dir = %self.dir.display(), "cannot list config directory: {e}");
                return false;
            }
        };
        let gone: Vec<PathBuf> = self
            .seen
            .keys()
            .filter(|p| !files.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            self.seen.remove(&path);
            tracing::info!(file = %path.display(), "config file removed");
            if self.send(&path, Vec::new()).await {
                return true;
            }
        }
        for path in files {
            if self.load(&path).await {
                return true;
            }
        }
        false
    }

    /// Reads one file and reports it if its content changed.
    async fn load(&mut self, path: &Path) -> bool {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(file = %path.display(), "cannot read config file: {e}");
                return false;
            }
        };
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        if self.seen.get(path) == Some(&hash) {
            return false;
        }
        self.seen.insert(path.to_path_buf(), hash);
        let items = match std::str::from_utf8(&bytes) {
            Ok(text) => parse_text(text),
            Err(e) => vec![Item::Invalid {
                document: 0,
                error: DocumentError {
                    object: None,
                    error: api::FieldError::new("", format!("file is not UTF-8: {e}")),
                },
            }],
        };
        self.send(path, items).await
    }

    /// The config files an event touched, or `None` when only a full rescan
    /// can tell (a directory appeared or vanished). Other files, such as an
    /// editor's temporary copy, are ignored.
    fn files_to_reload(&self, paths: Vec<PathBuf>) -> Option<BTreeSet<PathBuf>> {
        let mut files = BTreeSet::new();
        for path in paths {
            if is_hidden(&path) && !path.is_dir() {
                continue;
            } else if is_config_file(&path) && !path.is_dir() {
                files.insert(path);
            } else if path.is_dir() || self.knows_files_under(&path) {
                return None;
            }
        }
        Some(files)
    }

    /// Some file reported is under `dir` (a directory that went away). Paths
    /// order component by component, so files under `dir` directly follow
    /// it: one lookup, not a scan of every file per event.
    fn knows_files_under(&self, dir: &Path) -> bool {
        use std::ops::Bound;
        self.seen
            .range::<Path, _>((Bound::Included(dir), Bound::Unbounded))
            .next()
            .is_some_and(|(known, _)| known.starts_with(dir))
    }

    /// Reloads some files: changed ones are re-read, vanished ones removed.
    async fn reload(&mut self, paths: BTreeSet<PathBuf>) -> bool {
        for path in paths {
            if path.is_file() {
                if self.load(&path).await {
                    return true;
                }
            } else if self.seen.remove(&path).is_some() {
                tracing::info!(file = %path.display(), "config file removed");
                if self.send(&path, Vec::new()).await {
                    return true;
                }
            }
        }
        false
    }

    async fn send(&self, path: &Path, items: Vec<Item>) -> bool {
        let unit = path.display().to_string();
        self.tx
            .send(SourceEvent::Replace { unit, items })
            .await
            .is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_document_with_its_index() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\nkind: Service\n";
        let items = parse_text(text);
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[0], Item::Object { document: 0, .. }));
        // The empty document at index 1 is skipped but still counted.
        assert!(matches!(&items[1], Item::Ignored { document: 2, .. }));
        assert!(matches!(&items[2], Item::Invalid { document: 3, .. }));
    }

    #[tokio::test]
    async fn reports_initial_files_then_edits_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ns.yaml");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not config").unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let source = FileSource::new(dir.path().to_path_buf(), tx).unwrap();
        tokio::spawn(source.run());

        let first = rx.recv().await.unwrap();
        assert!(matches!(&first, SourceEvent::Replace { items, .. } if items.len() == 1));
        assert!(matches!(rx.recv().await.unwrap(), SourceEvent::Synced));

        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n",
        )
        .unwrap();
        let edit = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let SourceEvent::Replace { items, .. } = edit else {
            panic!("expected Replace")
        };
        assert!(matches!(&items[0], Item::Object { key, .. } if key.name == "b"));

        std::fs::remove_file(&file).unwrap();
        let removal = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(removal, SourceEvent::Replace { items, .. } if items.is_empty()));
    }

    async fn next_replace(rx: &mut mpsc::Receiver<SourceEvent>) -> (String, Vec<Item>) {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(SourceEvent::Replace { unit, items })) => (unit, items),
            other => panic!("expected a Replace event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn follows_renames_new_directories_and_their_removal() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(FileSource::new(dir.path().to_path_buf(), tx).unwrap().run());
        assert!(matches!(rx.recv().await.unwrap(), SourceEvent::Synced));

        // An editor-style save: write a temporary file, rename it into place.
        let tmp = dir.path().join(".ns.yaml.tmp");
        std::fs::write(
            &tmp,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        )
        .unwrap();
        std::fs::rename(&tmp, dir.path().join("ns.yaml")).unwrap();
        let (unit, items) = next_replace(&mut rx).await;
        assert!(unit.ends_with("ns.yaml") && items.len() == 1, "{unit}");

        // A new directory holding a file is found by a rescan.
        let sub = dir.path().join("team");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(
            sub.join("svc.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n",
        )
        .unwrap();
        let (unit, _) = next_replace(&mut rx).await;
        assert!(unit.ends_with("team/svc.yaml"), "{unit}");

        // Removing the directory removes what its files held.
        std::fs::remove_dir_all(&sub).unwrap();
        let (unit, items) = next_replace(&mut rx).await;
        assert!(
            unit.ends_with("team/svc.yaml") && items.is_empty(),
            "{unit}"
        );
    }

    #[tokio::test]
    async fn reads_a_configmap_mount_once() {
        // What kubelet makes of a ConfigMap with key mesh.yaml.
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..2026_11_21_00_00_00.123");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(
            data.join("mesh.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(&data, dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/mesh.yaml", dir.path().join("mesh.yaml")).unwrap();
        // A directory symlink cycle must not loop.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        let files = list_files(dir.path()).unwrap();
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            [dir.path().join("mesh.yaml")]
        );
    }

    #[test]
    fn only_a_rename_into_place_needs_no_wait_and_temporary_files_are_ignored() {
        use notify::event::{
            AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind, RenameMode,
        };
        let event = |kind, paths: &[&str]| {
            let mut e = notify::Event::new(kind);
            e.paths = paths.iter().map(PathBuf::from).collect();
            Ok(e)
        };
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let change = Change::of(event(renamed, &["/m/.web.yaml.tmp", "/m/web.yaml"])).unwrap();
        assert!(change.complete);
        let written = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let mut change = Change::of(event(written, &["/m/web.yaml"])).unwrap();
        assert!(!change.complete, "written in place: wait for the writer");
        // The temporary file's own events, and reads, are not changes.
        let created = EventKind::Create(CreateKind::File);
        assert!(Change::of(event(created, &["/m/.web.yaml.tmp"])).is_none());
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("changes.jsonl");
        std::fs::write(&log, "{}").unwrap();
        let appended = Ok(notify::Event::new(written).add_path(log));
        assert!(Change::of(appended).is_none(), "not a config file");
        let gone = event(written, &["/m/ns-3"]);
        assert!(Change::of(gone).is_some(), "may have been a directory");
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(Change::of(event(closed, &["/m/web.yaml"])).is_none());
        // A batch is complete only if all of it is.
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(Change::of(event(renamed, &["/m/api.yaml"])).unwrap())
            .unwrap();
        change.absorb(&mut rx);
        assert!(!change.complete);
        assert_eq!(change.paths.unwrap().len(), 2);
        let error = Change::of(Err(notify::Error::generic("lost events"))).unwrap();
        assert!(error.paths.is_none(), "an error rescans");
    }
}
