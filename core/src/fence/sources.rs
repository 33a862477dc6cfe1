//! The token sources one fence knows, each given a small number for the hot path.
//!
//! A [`SourceId`] is to a [`Source`] what a `ResourceId` is to a key: valid with the fence that
//! gave it, not across reopening (the log stores names). Numbers are handed out in order, so
//! the first 128 sources fit the packed mark (`slot.rs`); the unnamed source is 0.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{FenceError, FenceFault};
use crate::limits::SOURCES_MAX;
use crate::source::Source;

/// A token source known to one [`super::Fence`], from [`super::Fence::source_id`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(u32);

impl SourceId {
    /// The source of tokens checked without naming one ([`Source::UNNAMED`]), in every fence.
    pub const UNNAMED: SourceId = SourceId(0);

    /// The id's number.
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// An id from its number, as received across an ABI; the fence checks it on use.
    pub const fn from_u32(raw: u32) -> SourceId {
        SourceId(raw)
    }
}

#[derive(Debug)]
pub(super) struct Sources {
    known: Mutex<Known>,
}

#[derive(Debug)]
struct Known {
    names: Vec<Source>,
    ids: HashMap<Source, SourceId>,
}

impl Sources {
    pub(super) fn new() -> Sources {
        let mut ids = HashMap::new();
        ids.insert(Source::UNNAMED, SourceId::UNNAMED);
        Sources {
            known: Mutex::new(Known {
                names: vec![Source::UNNAMED],
                ids,
            }),
        }
    }

    /// The id of `source`, given one if it is new.
    pub(super) fn intern(&self, source: &Source) -> Result<SourceId, FenceError> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&id) = known.ids.get(source) {
            return Ok(id);
        }
        if known.names.len() >= SOURCES_MAX {
            return Err(FenceFault::TooManySources { max: SOURCES_MAX }.into());
        }
        let id = SourceId(known.names.len() as u32);
        known.names.push(source.clone());
        known.ids.insert(source.clone(), id);
        Ok(id)
    }

    /// The source of `id`, or an error for an id this fence never gave.
    pub(super) fn name(&self, id: SourceId) -> Result<Source, FenceError> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.names.get(id.0 as usize).cloned().ok_or_else(|| {
            FenceFault::InvalidSource(format!("id {}: this fence gave no such id", id.0)).into()
        })
    }

    /// True if this fence gave `id`.
    pub(super) fn contains(&self, id: SourceId) -> bool {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        (id.0 as usize) < known.names.len()
    }
}
