//! Bookkeeping for one kind's watch: which units the index holds, and what a
//! (re)list must replace or delete. Pure: watcher events in, source events out.
//!
//! A watch restarts with a full list after its resource version expires (410
//! Gone) or a list fails. Objects deleted while disconnected only show up as
//! missing from that list, so the list is collected until `InitDone` and then
//! compared with what the index was told before: vanished units are deleted,
//! and nothing is deleted on the strength of a list that did not finish.
//! Objects whose resourceVersion is what the index already holds are not sent
//! again (the API server bumps it on every write), so a relist of an unchanged
//! cluster sends nothing at all, and the index publishes nothing.

use std::collections::BTreeMap;

use kube::core::DynamicObject;
use kube::runtime::watcher::Event;

use super::convert;
use super::kinds::WatchedKind;
use crate::source::SourceEvent;

pub struct KindState {
    kind: WatchedKind,
    /// Units reported to the index and not deleted since, with the
    /// resourceVersion each was reported at.
    known: BTreeMap<String, Option<String>>,
    /// While a list is in progress.
    listing: Option<Listing>,
    /// A list has completed at least once.
    listed: bool,
}

#[derive(Default)]
struct Listing {
    /// Every unit listed so far, with its resourceVersion.
    seen: BTreeMap<String, Option<String>>,
    /// What to send when the list completes: objects new or changed since.
    replace: Vec<SourceEvent>,
}

impl KindState {
    pub fn new(kind: WatchedKind) -> Self {
        KindState {
            kind,
            known: BTreeMap::new(),
            listing: None,
            listed: false,
        }
    }

    pub fn kind(&self) -> &WatchedKind {
        &self.kind
    }

    /// Whether the first list of this kind has completed.
    pub fn listed(&self) -> bool {
        self.listed
    }

    /// Folds one watcher event in; returns what to tell the index.
    pub fn handle(&mut self, event: Event<DynamicObject>) -> Vec<SourceEvent> {
        match event {
            // Also when an earlier list broke off: its partial result is dropped.
            Event::Init => {
                self.listing = Some(Listing::default());
                Vec::new()
            }
            Event::InitApply(object) => {
                let (unit, version) = self.identify(&object);
                let changed = !self.holds(&unit, &version);
                let listing = self.listing.get_or_insert_with(Listing::default);
                if changed {
                    let items = convert::items(&self.kind, object);
                    listing.replace.push(SourceEvent::Replace {
                        unit: unit.clone(),
                        items,
                    });
                }
                listing.seen.insert(unit, version);
                Vec::new()
            }
            Event::InitDone => {
                let listing = self.listing.take().unwrap_or_default();
                let mut out = listing.replace;
                for unit in self.known.keys() {
                    if !listing.seen.contains_key(unit) {
                        out.push(SourceEvent::Replace {
                            unit: unit.clone(),
                            items: Vec::new(),
                        });
                    }
                }
                self.known = listing.seen;
                self.listed = true;
                out
            }
            Event::Apply(object) => {
                let (unit, version) = self.identify(&object);
                if self.holds(&unit, &version) {
                    return Vec::new();
                }
                self.known.insert(unit.clone(), version);
                let items = convert::items(&self.kind, object);
                vec![SourceEvent::Replace { unit, items }]
            }
            Event::Delete(object) => {
                let (unit, _) = self.identify(&object);
                match self.known.remove(&unit) {
                    Some(_) => vec![SourceEvent::Replace {
                        unit,
                        items: Vec::new(),
                    }],
                    None => Vec::new(),
                }
            }
        }
    }

    fn identify(&self, object: &DynamicObject) -> (String, Option<String>) {
        let unit = convert::unit(self.kind.kind, object);
        (unit, object.metadata.resource_version.clone())
    }

    /// The index already holds this version of the unit.
    fn holds(&self, unit: &str, version: &Option<String>) -> bool {
        matches!(
            (self.known.get(unit), version),
            (Some(Some(known)), Some(version)) if known == version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::convert::tests::{listed, watched};
    use super::*;
    use crate::api::Kind;
    use crate::source::Item;
    use serde_json::json;

    fn svc(name: &str, version: &str) -> DynamicObject {
        let mut obj = listed(
            Kind::Service,
            "shop",
            name,
            json!({"spec": {"ports": [{"port": 80}]}}),
        );
        obj.metadata.resource_version = Some(version.into());
        obj
    }

    /// Each event as `unit` (replaced with one object) or `-unit` (deleted).
    fn summary(events: &[SourceEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                SourceEvent::Replace { unit, items } if items.is_empty() => format!("-{unit}"),
                SourceEvent::Replace { unit, items } => {
                    assert!(
                        matches!(items.as_slice(), [Item::Object { .. }]),
                        "{items:?}"
                    );
                    unit.clone()
                }
                SourceEvent::Synced => "synced".into(),
                SourceEvent::Mesh(_) => "mesh".into(),
            })
            .collect()
    }

    fn list(state: &mut KindState, objects: Vec<DynamicObject>) -> Vec<String> {
        let mut out = state.handle(Event::Init);
        for o in objects {
            out.extend(state.handle(Event::InitApply(o)));
        }
        assert!(out.is_empty(), "nothing is sent before the list completes");
        summary(&state.handle(Event::InitDone))
    }

    #[test]
    fn the_first_list_is_sent_when_complete() {
        let mut state = KindState::new(watched(Kind::Service));
        assert!(!state.listed());
        let out = list(&mut state, vec![svc("a", "1"), svc("b", "2")]);
        assert_eq!(out, ["kube:Service/shop/a", "kube:Service/shop/b"]);
        assert!(state.listed());
    }

    #[test]
    fn a_relist_sends_only_changes_and_deletes_what_vanished() {
        let mut state = KindState::new(watched(Kind::Service));
        list(
            &mut state,
            vec![svc("a", "1"), svc("b", "2"), svc("d", "3")],
        );
        // While disconnected: b changed, c appeared, d was deleted; a is as it was.
        let out = list(
            &mut state,
            vec![svc("a", "1"), svc("b", "5"), svc("c", "6")],
        );
        assert_eq!(
            out,
            [
                "kube:Service/shop/b",
                "kube:Service/shop/c",
                "-kube:Service/shop/d"
            ]
        );
        // Watching resumes from the relisted state.
        let out = state.handle(Event::Delete(svc("c", "7")));
        assert_eq!(summary(&out), ["-kube:Service/shop/c"]);
    }

    #[test]
    fn an_unchanged_relist_sends_nothing() {
        let mut state = KindState::new(watched(Kind::Service));
        list(&mut state, vec![svc("a", "1"), svc("b", "2")]);
        assert!(list(&mut state, vec![svc("a", "1"), svc("b", "2")]).is_empty());
    }

    #[test]
    fn a_list_that_breaks_off_deletes_nothing() {
        let mut state = KindState::new(watched(Kind::Service));
        list(&mut state, vec![svc("a", "1"), svc("b", "2")]);
        // A relist fails after its first page and starts over.
        assert!(state.handle(Event::Init).is_empty());
        assert!(state.handle(Event::InitApply(svc("a", "4"))).is_empty());
        let out = list(&mut state, vec![svc("a", "4"), svc("b", "2")]);
        assert_eq!(out, ["kube:Service/shop/a"]);
    }

    #[test]
    fn a_name_deleted_and_recreated_while_disconnected_is_replaced() {
        let mut state = KindState::new(watched(Kind::Service));
        list(&mut state, vec![svc("a", "1")]);
        assert_eq!(
            list(&mut state, vec![svc("a", "9")]),
            ["kube:Service/shop/a"]
        );
    }

    #[test]
    fn watch_events_replace_and_delete_single_units() {
        let mut state = KindState::new(watched(Kind::Service));
        list(&mut state, vec![]);
        let out = state.handle(Event::Apply(svc("a", "1")));
        assert_eq!(summary(&out), ["kube:Service/shop/a"]);
        // A version the index already holds (a watch resumed just before it).
        assert!(state.handle(Event::Apply(svc("a", "1"))).is_empty());
        let out = state.handle(Event::Apply(svc("a", "2")));
        assert_eq!(summary(&out), ["kube:Service/shop/a"]);
        let out = state.handle(Event::Delete(svc("a", "3")));
        assert_eq!(summary(&out), ["-kube:Service/shop/a"]);
        // Never reported, so nothing to delete.
        assert!(state.handle(Event::Delete(svc("z", "4"))).is_empty());
    }

    #[test]
    fn an_invalid_object_is_reported_and_its_deletion_too() {
        let mut state = KindState::new(watched(Kind::Service));
        let mut bad = listed(
            Kind::Service,
            "shop",
            "bad",
            json!({"spec": {"ports": "x"}}),
        );
        bad.metadata.resource_version = Some("1".into());
        state.handle(Event::Init);
        state.handle(Event::InitApply(bad.clone()));
        let out = state.handle(Event::InitDone);
        assert!(
            matches!(out.as_slice(), [SourceEvent::Replace { items, .. }] if matches!(items.as_slice(), [Item::Invalid { .. }])),
            "{out:?}"
        );
        // Gone from the next list: the index must drop its rejection.
        assert_eq!(list(&mut state, vec![]), ["-kube:Service/shop/bad"]);
    }
}
