//! A validator plugin as a `fencekit::WriteValidator`.

use fencekit::{Rejection, Token, Validation, WriteValidator};

use crate::abi;
use crate::engine::Kind;
use crate::error::PluginError;
use crate::instance::{Entry, is_deadline, trap_reason, with_live};
use crate::plugin::Plugin;

/// A storage validator backed by a Wasm plugin. Attach it to a fence with
/// `Fence::set_validator(Some(Arc::new(validator)))`.
#[derive(Clone, Debug)]
pub struct WasmValidator {
    plugin: Plugin,
}

fn reject(code: u32, reason: String) -> Validation {
    Validation::Reject(Rejection { code, reason })
}

impl WasmValidator {
    /// Wraps a plugin loaded with [`Plugin::validator`].
    pub fn new(plugin: Plugin) -> Result<WasmValidator, PluginError> {
        if plugin.kind() != Kind::Validator {
            return Err(PluginError::Export {
                name: abi::EXPORT_VALIDATE,
                problem: "this plugin was loaded as a tie-breaker".into(),
            });
        }
        Ok(WasmValidator { plugin })
    }

    /// The plugin.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }
}

impl WriteValidator for WasmValidator {
    fn validate(
        &self,
        key: &[u8],
        token: Token,
        mark: Option<Token>,
        payload: &[u8],
    ) -> Validation {
        let shared = &self.plugin.shared;
        let len = abi::validate_len(key, payload);
        with_live(
            shared,
            |live| {
                if len > live.capacity() {
                    let reason = format!(
                        "the write's record is {len} bytes; the plugin's input buffer holds {}",
                        live.capacity()
                    );
                    return (reject(Rejection::TOO_LARGE, reason), true);
                }
                let Some(buffer) = live.input(len) else {
                    return (
                        reject(Rejection::FAILED, "input buffer out of memory".into()),
                        false,
                    );
                };
                abi::encode_validate(buffer, key, token, mark, payload);
                let Entry::Validator(validate) = &live.entry else {
                    return (reject(Rejection::FAILED, "not a validator".into()), false);
                };
                // `len` fits the buffer, whose capacity came from an i32.
                match validate.call(&mut live.store, len as i32) {
                    Ok(abi::VALIDATE_ACCEPT) => (Validation::Accept, true),
                    Ok(code @ 1..=abi::REASON_MAX) => (
                        reject(
                            code as u32,
                            format!("the plugin rejected the write (reason {code})"),
                        ),
                        true,
                    ),
                    Ok(other) => (
                        reject(
                            Rejection::BAD_ANSWER,
                            format!("the plugin answered {other}; the ABI allows 0 to 65535"),
                        ),
                        true,
                    ),
                    Err(error) => {
                        let code = if is_deadline(&error) {
                            Rejection::DEADLINE
                        } else {
                            Rejection::TRAPPED
                        };
                        (
                            reject(code, format!("the plugin {}", trap_reason(&error))),
                            false,
                        )
                    }
                }
            },
            |why| {
                reject(
                    Rejection::FAILED,
                    format!("the plugin could not be instantiated: {why}"),
                )
            },
        )
    }
}
