//! Sources turn the outside world (a config directory, or Kubernetes watches)
//! into typed events for the index. They parse but never judge: validation
//! and "keep the last good version" belong to the index.

pub mod file;
pub mod kube;

use std::sync::Arc;

use crate::api::{DocumentError, Object, ObjectKey, Parsed};
use crate::model::ObjectRef;

/// One document of a source unit, as parsed.
#[derive(Debug, Clone)]
pub enum Item {
    Object {
        document: usize,
        key: ObjectKey,
        object: Arc<Object>,
    },
    Invalid {
        document: usize,
        error: DocumentError,
    },
    Ignored {
        document: usize,
        object: ObjectRef,
    },
}

impl Item {
    /// The item for one parsed document; `None` for an empty one. Every
    /// source goes through here, so a document means the same wherever it
    /// comes from.
    pub fn from_parsed(document: usize, parsed: Result<Parsed, DocumentError>) -> Option<Item> {
        match parsed {
            Ok(Parsed::Object(key, object)) => Some(Item::Object {
                document,
                key,
                object: Arc::from(object),
            }),
            Ok(Parsed::Ignored(object)) => Some(Item::Ignored { document, object }),
            Ok(Parsed::Empty) => None,
            Err(error) => Some(Item::Invalid { document, error }),
        }
    }
}

#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// The complete current content of one unit (a file). Objects the unit held
    /// before and no longer holds are deleted; an empty list removes the unit.
    Replace { unit: String, items: Vec<Item> },
    /// The source has reported everything it had at start-up.
    Synced,
    /// A new, valid mesh config (the kube source's mesh ConfigMap changed).
    Mesh(crate::model::MeshConfig),
}
