//! The policies' WebAssembly host: fencekit-plugins on wasmtime (the `plugins` feature).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fencekit_plugins::{Kind, PluginLimits, WasmTieBreaker, WasmValidator};
use kernel::{TieBreaker, WriteValidator};

use super::{FK_POLICY_VALIDATOR, fk_policy_kind, fk_policy_limits};
use crate::boundary::Failure;
use crate::status::*;

/// A loaded plugin.
pub(super) type Plugin = fencekit_plugins::Plugin;

fn plugin_failure(error: fencekit_plugins::PluginError) -> Failure {
    Failure::new(FK_STATUS_POLICY_REFUSED, error.to_string())
}

fn usize_of(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

pub(super) fn limits_default() -> Result<fk_policy_limits, Failure> {
    let l = PluginLimits::default();
    Ok(fk_policy_limits {
        module_bytes_max: l.module_bytes_max as u64,
        memory_bytes_max: l.memory_bytes_max as u64,
        deadline_us: u64::try_from(l.deadline.as_micros()).unwrap_or(u64::MAX),
        fuel: l.fuel,
        table_elements_max: l.table_elements_max as u64,
    })
}

/// Loads `module` as `kind` (checked by the caller to be one of the two kinds) under `limits`
/// (`None`: the defaults); a validator comes with its `WriteValidator`.
pub(super) fn load(
    kind: fk_policy_kind,
    module: &[u8],
    limits: Option<&fk_policy_limits>,
) -> Result<(Plugin, Option<Arc<dyn WriteValidator>>), Failure> {
    let limits = match limits {
        None => PluginLimits::default(),
        Some(l) => PluginLimits {
            module_bytes_max: usize_of(l.module_bytes_max),
            memory_bytes_max: usize_of(l.memory_bytes_max),
            deadline: Duration::from_micros(l.deadline_us),
            fuel: l.fuel,
            table_elements_max: usize_of(l.table_elements_max),
            // The load limits (functions, locals, nesting, code size, compile deadline)
            // are not in fk_policy_limits yet: C callers get their defaults.
            ..PluginLimits::default()
        },
    };
    let kind = if kind == FK_POLICY_VALIDATOR {
        Kind::Validator
    } else {
        Kind::TieBreaker
    };
    let plugin = Plugin::load(kind, module, limits).map_err(plugin_failure)?;
    let validator: Option<Arc<dyn WriteValidator>> = match kind {
        Kind::Validator => Some(Arc::new(
            WasmValidator::new(plugin.clone()).map_err(plugin_failure)?,
        )),
        Kind::TieBreaker => None,
    };
    Ok((plugin, validator))
}

/// `plugin` as a tie-breaker, with `descriptors` for the candidates.
pub(super) fn tie_breaker(
    plugin: &Plugin,
    descriptors: HashMap<kernel::NodeId, Vec<u8>>,
) -> Result<Arc<dyn TieBreaker>, Failure> {
    if plugin.kind() != Kind::TieBreaker {
        return Err(Failure::new(
            FK_STATUS_INVALID_ARGUMENT,
            "this policy is a validator; load it with FK_POLICY_TIE_BREAKER",
        ));
    }
    let tie_breaker = WasmTieBreaker::new(plugin.clone(), descriptors);
    Ok(Arc::new(tie_breaker.map_err(plugin_failure)?))
}
