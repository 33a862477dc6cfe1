//! What a module must not exceed before it is compiled.
//!
//! wasmtime's compiler has no bound of its own: a 140 KB function of 20,000 nested loops
//! compiled for about a minute, 690,000 tiny functions took a minute and 3.7 GiB, 1,000
//! functions of 50,000 locals each took 3 s. Each of those shapes is cheap to see in the binary,
//! so the load path reads the module with `wasmparser` first (one pass, no validation, no
//! allocation that grows with the module) and refuses it, naming the limit and the value found,
//! before wasmtime sees it. What the prechecks let through still compiles under
//! [`PluginLimits::compile_deadline`](crate::PluginLimits::compile_deadline)
//! (`plugin::compile`).

use std::borrow::Cow;

use wasmparser::{Encoding, Operator, Parser, Payload};

use crate::error::PluginError;
use crate::limits::PluginLimits;

/// The module as a binary: WAT text is turned into one here, so that the prechecks and the
/// compiler see the same bytes. Checks `module_bytes_max` on the input and on the binary.
pub(crate) fn binary<'a>(
    bytes: &'a [u8],
    limits: &PluginLimits,
) -> Result<Cow<'a, [u8]>, PluginError> {
    check_size(bytes.len(), limits)?;
    let binary =
        wat::parse_bytes(bytes).map_err(|e| PluginError::Invalid(format!("WAT text: {e}")))?;
    check_size(binary.len(), limits)?;
    Ok(binary)
}

fn check_size(len: usize, limits: &PluginLimits) -> Result<(), PluginError> {
    if len > limits.module_bytes_max {
        return Err(PluginError::TooLarge {
            len,
            max: limits.module_bytes_max,
        });
    }
    Ok(())
}

/// Refuses the first limit `binary` exceeds. Reads every section header, every function's
/// locals and every operator once; stops at the first excess.
pub(crate) fn check(binary: &[u8], limits: &PluginLimits) -> Result<(), PluginError> {
    // The parameter count of each type (None for a non-function type), and of each defined
    // function, to count a function's parameters among its locals.
    let mut type_params: Vec<Option<u32>> = Vec::new();
    let mut function_params: Vec<u32> = Vec::new();
    let mut imported_functions: u32 = 0;
    let mut defined: u32 = 0;
    let mut total_locals: u64 = 0;
    let mut total_carried: u64 = 0;
    for payload in Parser::new(0).parse_all(binary) {
        match payload.map_err(invalid)? {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => {
                return Err(PluginError::Invalid(
                    "a component, not a core module; plugins are core modules".into(),
                ));
            }
            Payload::TypeSection(section) => {
                for group in section {
                    for sub in group.map_err(invalid)?.into_types() {
                        let params = match &sub.composite_type.inner {
                            wasmparser::CompositeInnerType::Func(f) => {
                                Some(u32::try_from(f.params().len()).unwrap_or(u32::MAX))
                            }
                            _ => None,
                        };
                        type_params.push(params);
                    }
                }
                over(
                    "types_max",
                    "the number of types",
                    type_params.len() as u64,
                    limits.types_max,
                )?;
            }
            Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    if matches!(import.map_err(invalid)?.ty, wasmparser::TypeRef::Func(_)) {
                        imported_functions = imported_functions.saturating_add(1);
                    }
                }
            }
            Payload::FunctionSection(section) => {
                over(
                    "functions_max",
                    "the number of functions defined",
                    section.count().into(),
                    limits.functions_max,
                )?;
                for ty in section {
                    let ty = ty.map_err(invalid)?;
                    let params =
                        type_params
                            .get(ty as usize)
                            .copied()
                            .flatten()
                            .ok_or_else(|| {
                                PluginError::Invalid(format!(
                                    "a function has type {ty}, which is not a function type"
                                ))
                            })?;
                    function_params.push(params);
                }
            }
            Payload::GlobalSection(section) => over(
                "globals_max",
                "the number of globals",
                section.count().into(),
                limits.globals_max,
            )?,
            Payload::DataSection(section) => over(
                "data_segments_max",
                "the number of data segments",
                section.count().into(),
                limits.data_segments_max,
            )?,
            Payload::ElementSection(section) => over(
                "element_segments_max",
                "the number of element segments",
                section.count().into(),
                limits.element_segments_max,
            )?,
            Payload::CodeSectionStart { count, range, .. } => {
                over(
                    "functions_max",
                    "the number of function bodies",
                    count.into(),
                    limits.functions_max,
                )?;
                over(
                    "code_bytes_max",
                    "the size of the code section in bytes",
                    range.len() as u64,
                    limits.code_bytes_max,
                )?;
            }
            Payload::CodeSectionEntry(body) => {
                let index = imported_functions.saturating_add(defined);
                let params = function_params.get(defined as usize).copied().unwrap_or(0);
                defined = defined.saturating_add(1);
                over(
                    "function_bytes_max",
                    &format!("the body size of function {index} in bytes"),
                    body.range().len() as u64,
                    limits.function_bytes_max,
                )?;
                // Counted, not allocated: one entry of five bytes can declare 4 billion.
                let mut locals = u64::from(params);
                for entry in body.get_locals_reader().map_err(invalid)? {
                    let (count, _) = entry.map_err(invalid)?;
                    locals = locals.saturating_add(count.into());
                }
                over(
                    "function_locals_max",
                    &format!("the number of locals (parameters included) of function {index}"),
                    locals,
                    limits.function_locals_max,
                )?;
                total_locals = total_locals.saturating_add(locals);
                over(
                    "locals_max",
                    &format!(
                        "the number of locals (parameters included) of functions \
                         {imported_functions} to {index}"
                    ),
                    total_locals,
                    limits.locals_max,
                )?;
                // Open blocks, innermost last: for a loop, the parameters of its block type;
                // `None` for any other block. Bounded by the body's size, checked above.
                let mut open: Vec<Option<u64>> = Vec::new();
                let mut deepest: u64 = 0;
                // What the back edges carry: a branch to a loop carries every local and the
                // loop's parameters into its header, which the compiler turns into block
                // parameters; its time grows with the square of their sum.
                let mut carried: u64 = 0;
                let mut operators = body.get_operators_reader().map_err(invalid)?;
                let to_loop = |open: &[Option<u64>], depth: u32| {
                    open.len()
                        .checked_sub(1 + depth as usize)
                        .and_then(|at| open[at])
                        .map_or(0, |params| locals.saturating_add(params))
                };
                while !operators.eof() {
                    match operators.read().map_err(invalid)? {
                        Operator::Loop { blockty } => {
                            let params = match blockty {
                                wasmparser::BlockType::FuncType(ty) => type_params
                                    .get(ty as usize)
                                    .copied()
                                    .flatten()
                                    .map_or(0, u64::from),
                                _ => 0,
                            };
                            open.push(Some(params));
                            deepest = deepest.max(open.len() as u64);
                        }
                        Operator::Block { .. }
                        | Operator::If { .. }
                        | Operator::TryTable { .. }
                        | Operator::Try { .. } => {
                            open.push(None);
                            deepest = deepest.max(open.len() as u64);
                        }
                        // The body's own `end` empties it; the compiler checks the rest.
                        Operator::End | Operator::Delegate { .. } => {
                            open.pop();
                        }
                        Operator::Br { relative_depth } | Operator::BrIf { relative_depth } => {
                            carried = carried.saturating_add(to_loop(&open, relative_depth));
                        }
                        Operator::BrTable { targets } => {
                            carried = carried.saturating_add(to_loop(&open, targets.default()));
                            for target in targets.targets() {
                                let target = target.map_err(invalid)?;
                                carried = carried.saturating_add(to_loop(&open, target));
                            }
                        }
                        _ => {}
                    }
                }
                over(
                    "nesting_max",
                    &format!("the control-flow nesting depth of function {index}"),
                    deepest,
                    limits.nesting_max,
                )?;
                over(
                    "loop_branch_locals_max",
                    &format!(
                        "the values function {index}'s branches back to a loop carry (its \
                         {locals} locals and the loop's parameters, for each such branch), \
                         what its compile time grows with the square of,"
                    ),
                    carried,
                    limits.loop_branch_locals_max,
                )?;
                total_carried = total_carried.saturating_add(carried);
                over(
                    "loop_branch_locals_max",
                    &format!(
                        "the values all branches back to a loop carry in functions \
                         {imported_functions} to {index}"
                    ),
                    total_carried,
                    limits.loop_branch_locals_max,
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses `found` over `max`, naming the limit.
fn over(limit: &'static str, what: &str, found: u64, max: usize) -> Result<(), PluginError> {
    if found > max as u64 {
        return Err(PluginError::OverLimit {
            limit,
            what: what.to_owned(),
            found,
            max,
        });
    }
    Ok(())
}

fn invalid(e: wasmparser::BinaryReaderError) -> PluginError {
    PluginError::Invalid(e.to_string())
}

/// The names a module exports, read from its export section without compiling it: what the
/// module says it is. Takes a `.wasm` binary or WAT text no larger than
/// `limits.module_bytes_max`.
pub fn export_names(bytes: &[u8], limits: &PluginLimits) -> Result<Vec<String>, PluginError> {
    let binary = binary(bytes, limits)?;
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(&binary) {
        if let Payload::ExportSection(section) = payload.map_err(invalid)? {
            for export in section {
                names.push(export.map_err(invalid)?.name.to_owned());
            }
        }
    }
    Ok(names)
}
