//! A library built without the `plugins` feature: no WebAssembly host, so no policy can be
//! loaded, and every call that would load one answers `FK_STATUS_PLUGINS_DISABLED`.

use std::collections::HashMap;
use std::sync::Arc;

use kernel::{TieBreaker, WriteValidator};

use super::{fk_policy_kind, fk_policy_limits};
use crate::boundary::Failure;
use crate::status::*;

/// No plugin can exist in this build: an `fk_policy` is never made.
pub(super) enum Plugin {}

fn disabled() -> Failure {
    Failure::new(
        FK_STATUS_PLUGINS_DISABLED,
        "this libfencekit was built without the WebAssembly plugin host (the ffi crate's \
         `plugins` feature): policies cannot be loaded; rebuild with default features",
    )
}

pub(super) fn limits_default() -> Result<fk_policy_limits, Failure> {
    Err(disabled())
}

pub(super) fn load(
    _kind: fk_policy_kind,
    _module: &[u8],
    _limits: Option<&fk_policy_limits>,
) -> Result<(Plugin, Option<Arc<dyn WriteValidator>>), Failure> {
    Err(disabled())
}

pub(super) fn tie_breaker(
    plugin: &Plugin,
    _descriptors: HashMap<kernel::NodeId, Vec<u8>>,
) -> Result<Arc<dyn TieBreaker>, Failure> {
    match *plugin {}
}
