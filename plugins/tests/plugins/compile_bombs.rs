//! Compile bombs: modules small on disk that would keep wasmtime's compiler busy for seconds
//! to minutes (issue 20). Each is refused before compiling, quickly, by an error naming the
//! limit; the largest module the default limits admit loads and answers; one step over any
//! limit is refused.
//!
//! The timings in plugins/README.md ("Load limits") come from
//! `cargo test --release -p fencekit-plugins --test plugins compile_bombs -- --nocapture`.

use std::time::{Duration, Instant};

use fencekit::Validation;
use fencekit_plugins::{Plugin, PluginError, PluginLimits, WasmValidator};
use std::borrow::Cow;

use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, DataSection, ElementSection, Elements, ExportKind,
    ExportSection, Function, FunctionSection, GlobalSection, GlobalType, Instruction, MemArg,
    MemorySection, MemoryType, Module, RefType, TableSection, TableType, TypeSection, ValType,
};

use crate::support::check;

/// The ABI's own functions, defined before the extra ones: fk_abi_version, fk_input,
/// fk_input_capacity, fk_validate (which accepts everything).
fn abi_functions() -> Vec<Function> {
    [1, 4096, 61440, 0]
        .into_iter()
        .map(|answer| function(0, &[Instruction::I32Const(answer), Instruction::Return]))
        .collect()
}

const ABI_FUNCTIONS: usize = 4;

/// What a test module holds besides the validator ABI.
#[derive(Default)]
struct Shape {
    /// Extra functions `() -> i32`, after the ABI's four.
    functions: Vec<Function>,
    /// Extra function types `() -> ()`, after the ABI's two.
    types: u32,
    globals: u32,
    data_segments: u32,
    element_segments: u32,
}

/// An extra function with `locals` i32 locals and a body of `code` (to which `i32.const 0;
/// end` is added).
fn function(locals: u32, code: &[Instruction<'_>]) -> Function {
    let mut f = Function::new(if locals == 0 {
        vec![]
    } else {
        vec![(locals, ValType::I32)]
    });
    for instruction in code {
        f.instruction(instruction);
    }
    f.instruction(&Instruction::I32Const(0));
    f.instruction(&Instruction::End);
    f
}

/// An extra function of exactly `bytes` bytes (its body, as the limit counts it), of loads
/// from memory (more work for the compiler than `nop`s).
fn function_of_bytes(bytes: usize) -> Function {
    // No locals (1 byte), `i32.const 0` (2), `end` (1): the rest are loads of 6 bytes
    // (`i32.const 0; i32.load; drop`), then `nop`s.
    let room = bytes - 4;
    let load = [
        Instruction::I32Const(0),
        Instruction::I32Load(MemArg {
            offset: 0,
            align: 2,
            target: wasm_encoder::MemArgTarget::Memory(0),
            ordering: None,
        }),
        Instruction::Drop,
    ];
    let mut code: Vec<Instruction<'_>> = load.iter().cycle().take(room / 6 * 3).cloned().collect();
    code.extend(vec![Instruction::Nop; room % 6]);
    let f = function(0, &code);
    assert_eq!(f.byte_len(), bytes);
    f
}

/// An extra function whose code is `depth` nested `kind` blocks, 7 bytes a level (as the
/// 140 KB bomb of issue 20 was).
fn nested(depth: usize, kind: fn(BlockType) -> Instruction<'static>) -> Function {
    let mut code = Vec::new();
    for _ in 0..depth {
        code.extend([
            kind(BlockType::Empty),
            Instruction::I32Const(0),
            Instruction::Drop,
            Instruction::Nop,
        ]);
    }
    code.extend(vec![Instruction::End; depth]);
    function(0, &code)
}

/// A validator (it accepts everything) with `shape`'s extras, as a binary.
fn module(shape: Shape) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    types.ty().function([ValType::I32], [ValType::I32]);
    for _ in 0..shape.types {
        types.ty().function([], []);
    }
    let mut functions = FunctionSection::new();
    for ty in [0, 0, 0, 1] {
        functions.function(ty);
    }
    for _ in &shape.functions {
        functions.function(0);
    }
    let mut memory = MemorySection::new();
    memory.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut globals = GlobalSection::new();
    for _ in 0..shape.globals {
        globals.global(
            GlobalType {
                val_type: ValType::I32,
                mutable: false,
                shared: false,
            },
            &ConstExpr::i32_const(0),
        );
    }
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    for (i, name) in [
        "fk_abi_version",
        "fk_input",
        "fk_input_capacity",
        "fk_validate",
    ]
    .into_iter()
    .enumerate()
    {
        exports.export(name, ExportKind::Func, i as u32);
    }
    let mut tables = TableSection::new();
    let mut elements = ElementSection::new();
    if shape.element_segments > 0 {
        tables.table(TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            minimum: 1,
            maximum: Some(1),
            shared: false,
        });
        for _ in 0..shape.element_segments {
            elements.active(
                None,
                &ConstExpr::i32_const(0),
                Elements::Functions(Cow::Borrowed(&[0])),
            );
        }
    }
    let mut code = CodeSection::new();
    for f in &abi_functions() {
        code.function(f);
    }
    for f in &shape.functions {
        code.function(f);
    }
    let mut data = DataSection::new();
    for i in 0..shape.data_segments {
        data.active(0, &ConstExpr::i32_const(i as i32), [1u8]);
    }
    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&tables)
        .section(&memory)
        .section(&globals)
        .section(&exports)
        .section(&elements)
        .section(&code)
        .section(&data);
    module.finish()
}

/// Loads `bytes` as a validator with `limits`, and how long the load took.
fn load(bytes: &[u8], limits: PluginLimits) -> (Result<Plugin, PluginError>, Duration) {
    let started = Instant::now();
    let loaded = Plugin::validator(bytes, limits);
    (loaded, started.elapsed())
}

/// Asserts that `bytes` is refused within `within` by `limit`, and returns the message.
fn refused_by(
    name: &str,
    bytes: &[u8],
    limits: PluginLimits,
    limit: &str,
    within: Duration,
) -> String {
    let (loaded, took) = load(bytes, limits);
    let error = match loaded {
        Ok(_) => panic!("{name} ({} bytes) was loaded", bytes.len()),
        Err(e) => e,
    };
    let message = error.to_string();
    println!(
        "{name}: {} bytes, refused in {took:?}: {message}",
        bytes.len()
    );
    assert!(
        matches!(&error, PluginError::OverLimit { limit: l, .. } if *l == limit),
        "{name}: expected a refusal by {limit}, got: {message}"
    );
    assert!(
        message.contains(&format!("PluginLimits::{limit}")),
        "{message}"
    );
    assert!(took < within, "{name} took {took:?} to refuse");
    message
}

/// The default limits; in a debug build with a longer compile deadline, because wasmtime's
/// compiler unoptimised is about 15 times slower (the largest module the defaults admit takes
/// 0.4 s to compile in a release build, about 7 s in a debug one).
fn admitting() -> PluginLimits {
    PluginLimits {
        compile_deadline: if cfg!(debug_assertions) {
            Duration::from_secs(60)
        } else {
            PluginLimits::default().compile_deadline
        },
        ..PluginLimits::default()
    }
}

/// Asserts that `bytes` loads with the default limits (see `admitting`) and accepts a write.
fn admitted(name: &str, bytes: &[u8]) {
    let (loaded, took) = load(bytes, admitting());
    let plugin = loaded.unwrap_or_else(|e| panic!("{name} was refused: {e}"));
    println!("{name}: {} bytes, loaded in {took:?}", bytes.len());
    let validator = WasmValidator::new(plugin).unwrap();
    assert_eq!(check(&validator, b"k", b"v"), Validation::Accept, "{name}");
}

const SECOND: Duration = Duration::from_secs(1);

/// 20,000 nested loops in one 140 KB function kept the compiler busy for about a minute. Its
/// body is over the size limit; with that limit lifted, the nesting limit refuses it too.
#[test]
fn twenty_thousand_nested_loops_are_refused_at_once() {
    let bomb = module(Shape {
        functions: vec![nested(20_000, Instruction::Loop)],
        ..Shape::default()
    });
    let message = refused_by(
        "20,000 nested loops",
        &bomb,
        PluginLimits::default(),
        "function_bytes_max",
        SECOND,
    );
    assert!(
        message.starts_with("the body size of function 4 in bytes is 140004, over the limit of"),
        "{message}"
    );
    let roomy = PluginLimits {
        function_bytes_max: 1 << 20,
        ..PluginLimits::default()
    };
    let message = refused_by("20,000 nested loops", &bomb, roomy, "nesting_max", SECOND);
    assert_eq!(
        message,
        "the control-flow nesting depth of function 4 is 20000, over the limit of 128 \
         (PluginLimits::nesting_max)"
    );
}

/// 690,000 tiny functions (4.1 MB) took about a minute and 3.7 GiB to compile.
#[test]
fn six_hundred_ninety_thousand_functions_are_refused_at_once() {
    let tiny = function(0, &[]);
    let bomb = module(Shape {
        functions: vec![tiny; 690_000],
        ..Shape::default()
    });
    // The module size alone does not stop it.
    assert!(bomb.len() <= PluginLimits::default().module_bytes_max);
    let message = refused_by(
        "690,000 functions",
        &bomb,
        PluginLimits::default(),
        "functions_max",
        SECOND,
    );
    assert_eq!(
        message,
        "the number of functions defined is 690004, over the limit of 5000 \
         (PluginLimits::functions_max)"
    );
}

/// 1,000 functions of 50,000 locals each (10 KB) took 3 s to compile.
#[test]
fn a_thousand_functions_of_fifty_thousand_locals_are_refused_at_once() {
    let bomb = module(Shape {
        functions: vec![function(50_000, &[]); 1000],
        ..Shape::default()
    });
    assert!(bomb.len() <= 10 << 10, "{}", bomb.len());
    let message = refused_by(
        "1,000 functions of 50,000 locals",
        &bomb,
        PluginLimits::default(),
        "function_locals_max",
        SECOND,
    );
    assert!(
        message.starts_with("the number of locals (parameters included) of function 4 is 50000"),
        "{message}"
    );
    // Under a higher per-function limit the total still refuses it.
    let roomy = PluginLimits {
        function_locals_max: 50_000,
        ..PluginLimits::default()
    };
    refused_by(
        "1,000 functions of 50,000 locals",
        &bomb,
        roomy,
        "locals_max",
        SECOND,
    );
}

/// One function of 4 MiB, and 64 functions of 64 KiB.
#[test]
fn huge_function_bodies_are_refused_at_once() {
    let limits = PluginLimits {
        module_bytes_max: 8 << 20,
        ..PluginLimits::default()
    };
    let one = module(Shape {
        functions: vec![function_of_bytes(4 << 20)],
        ..Shape::default()
    });
    refused_by(
        "a 4 MiB function",
        &one,
        limits.clone(),
        "code_bytes_max",
        SECOND,
    );
    let roomy = PluginLimits {
        code_bytes_max: 8 << 20,
        ..limits.clone()
    };
    refused_by(
        "a 4 MiB function",
        &one,
        roomy,
        "function_bytes_max",
        SECOND,
    );
    let many = module(Shape {
        functions: vec![function_of_bytes(64 << 10); 64],
        ..Shape::default()
    });
    refused_by(
        "64 functions of 64 KiB",
        &many,
        limits,
        "code_bytes_max",
        SECOND,
    );
}

/// The size of the code section's contents (what `code_bytes_max` counts) for `extra`
/// functions after the ABI's four.
fn code_section_bytes(extra: &[Function]) -> usize {
    let bodies: usize = abi_functions()
        .iter()
        .chain(extra)
        .map(|f| leb_len(f.byte_len()) + f.byte_len())
        .sum();
    leb_len(extra.len() + ABI_FUNCTIONS) + bodies
}

fn leb_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Extra functions whose code section is exactly `total` bytes: bodies of at most
/// `function_bytes_max`.
fn code_of_bytes(total: usize) -> Vec<Function> {
    let body = 64 << 10;
    let mut functions = Vec::new();
    while code_section_bytes(&functions) + leb_len(body) + body <= total {
        functions.push(function_of_bytes(body));
    }
    // The last body, whose size prefix has to be counted too.
    let room = total - code_section_bytes(&functions);
    let last = (1..room).rev().find(|n| leb_len(*n) + n == room).unwrap();
    functions.push(function_of_bytes(last));
    assert_eq!(code_section_bytes(&functions), total);
    functions
}

/// The largest module at each default limit loads (within the default compile deadline in a
/// release build) and answers; one step further is refused, naming the limit.
#[test]
fn each_limit_admits_its_largest_module_and_refuses_one_more() {
    let d = PluginLimits::default();
    let within = SECOND;
    // (limit, the module at the limit, the module one step over)
    let functions = |n: usize| vec![function(0, &[]); n - ABI_FUNCTIONS];
    let locals = |n: u32| vec![function(n, &[])];
    // fk_validate's parameter is one local.
    let total_locals = |n: usize| {
        let mut f = vec![function(1000, &[]); (n - 1) / 1000];
        f.push(function(((n - 1) % 1000) as u32, &[]));
        f
    };
    let cases: Vec<(&str, Shape, Shape)> = vec![
        (
            "functions_max",
            Shape {
                functions: functions(d.functions_max),
                ..Shape::default()
            },
            Shape {
                functions: functions(d.functions_max + 1),
                ..Shape::default()
            },
        ),
        (
            "function_locals_max",
            Shape {
                functions: locals(d.function_locals_max as u32),
                ..Shape::default()
            },
            Shape {
                functions: locals(d.function_locals_max as u32 + 1),
                ..Shape::default()
            },
        ),
        (
            "locals_max",
            Shape {
                functions: total_locals(d.locals_max),
                ..Shape::default()
            },
            Shape {
                functions: total_locals(d.locals_max + 1),
                ..Shape::default()
            },
        ),
        (
            "nesting_max",
            Shape {
                functions: vec![nested(d.nesting_max, Instruction::Loop)],
                ..Shape::default()
            },
            Shape {
                functions: vec![nested(d.nesting_max + 1, Instruction::Block)],
                ..Shape::default()
            },
        ),
        (
            "function_bytes_max",
            Shape {
                functions: vec![function_of_bytes(d.function_bytes_max)],
                ..Shape::default()
            },
            Shape {
                functions: vec![function_of_bytes(d.function_bytes_max + 1)],
                ..Shape::default()
            },
        ),
        (
            "code_bytes_max",
            Shape {
                functions: code_of_bytes(d.code_bytes_max),
                ..Shape::default()
            },
            Shape {
                functions: code_of_bytes(d.code_bytes_max + 1),
                ..Shape::default()
            },
        ),
        (
            "types_max",
            Shape {
                types: d.types_max as u32 - 2,
                ..Shape::default()
            },
            Shape {
                types: d.types_max as u32 - 1,
                ..Shape::default()
            },
        ),
        (
            "globals_max",
            Shape {
                globals: d.globals_max as u32,
                ..Shape::default()
            },
            Shape {
                globals: d.globals_max as u32 + 1,
                ..Shape::default()
            },
        ),
        (
            "data_segments_max",
            Shape {
                data_segments: d.data_segments_max as u32,
                ..Shape::default()
            },
            Shape {
                data_segments: d.data_segments_max as u32 + 1,
                ..Shape::default()
            },
        ),
        (
            "element_segments_max",
            Shape {
                element_segments: d.element_segments_max as u32,
                ..Shape::default()
            },
            Shape {
                element_segments: d.element_segments_max as u32 + 1,
                ..Shape::default()
            },
        ),
    ];
    for (limit, at, over) in cases {
        admitted(&format!("at {limit}"), &module(at));
        refused_by(
            &format!("over {limit}"),
            &module(over),
            d.clone(),
            limit,
            within,
        );
    }
}

/// A module within the prechecks that compiles for longer than the deadline is refused by the
/// deadline, in a sentence; the same module loads under a longer one.
#[test]
fn a_compilation_past_its_deadline_is_refused() {
    let slow = module(Shape {
        functions: vec![function_of_bytes(
            PluginLimits::default().function_bytes_max,
        )],
        ..Shape::default()
    });
    let hurried = PluginLimits {
        compile_deadline: Duration::from_millis(1),
        ..PluginLimits::default()
    };
    let (loaded, took) = load(&slow, hurried);
    let error = loaded.expect_err("compiled within 1 ms");
    assert!(
        matches!(error, PluginError::CompileDeadline { .. }),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "compiling took more than 1 ms: the module is refused (PluginLimits::compile_deadline); \
         its compilation finishes in the background and is thrown away"
    );
    assert!(took < Duration::from_millis(500), "{took:?}");
    let patient = PluginLimits {
        compile_deadline: Duration::from_secs(60),
        ..PluginLimits::default()
    };
    assert!(load(&slow, patient).0.is_ok());
}

/// WAT text is checked as its binary is: the text of a bomb is refused like the bomb.
#[test]
fn wat_text_is_checked_like_its_binary() {
    let blocks = "(block ".repeat(200) + &")".repeat(200);
    let wat = crate::support::validator_wat("", &format!("{blocks} (i32.const 0)"));
    let (loaded, took) = load(wat.as_bytes(), PluginLimits::default());
    let message = loaded.expect_err("200 nested blocks loaded").to_string();
    assert_eq!(
        message,
        "the control-flow nesting depth of function 3 is 200, over the limit of 128 \
         (PluginLimits::nesting_max)"
    );
    assert!(took < SECOND, "{took:?}");
}

/// A validator whose `fk_validate` has `locals` locals (its parameter included) rotated
/// inside `depth` nested loops, each branched back to from the innermost: the outside
/// attacker's module, small and inside every other limit, whose compile time grows with the
/// square of locals times back edges.
fn rotating_loops(locals: usize, depth: usize) -> String {
    let declared: String = (1..locals).map(|i| format!("(local $l{i} i32) ")).collect();
    let rotate: String = (1..locals)
        .map(|i| format!("(local.set $l{i} (local.get {})) ", (i + 1) % locals))
        .collect();
    let branches: String = (0..depth)
        .map(|d| format!("(br_if {d} (local.get 0)) "))
        .collect();
    format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 4096))
  (func (export "fk_input_capacity") (result i32) (i32.const 61440))
  (func (export "fk_validate") (param i32) (result i32) {declared}
    {}{rotate}{branches}{}
    (i32.const 0)))"#,
        "(loop ".repeat(depth),
        ")".repeat(depth)
    )
}

#[test]
fn locals_times_back_edges_are_bounded_before_compiling() {
    // The attacker's: 1,000 locals under 127 loops, minutes of compiling in a release build.
    let message = refused_by(
        "1,000 locals rotated under 127 nested loops",
        rotating_loops(1000, 127).as_bytes(),
        PluginLimits::default(),
        "loop_branch_locals_max",
        SECOND,
    );
    assert!(message.contains("127000"), "{message}");
    // One step over the default (4,000): 1,000 locals and 5 back edges.
    refused_by(
        "1,000 locals under 5 loops",
        rotating_loops(1000, 5).as_bytes(),
        PluginLimits::default(),
        "loop_branch_locals_max",
        SECOND,
    );
    // A loop over a handful of locals, as real plugins have, loads.
    let (loaded, _) = load(rotating_loops(8, 2).as_bytes(), PluginLimits::default());
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

/// The second attacker's way around a count of locals alone: one local, and `n` values
/// carried as the parameters of `depth` nested loops, rotated by a call.
fn rotating_loop_params(n: usize, depth: usize) -> String {
    let values = "i32 ".repeat(n);
    let loads: String = (0..n)
        .map(|i| format!("(i32.load (i32.const {})) ", i * 4))
        .collect();
    let rotated: String = (1..n)
        .chain([0])
        .map(|i| format!("(local.get {i}) "))
        .collect();
    let branches: String = (0..depth)
        .map(|d| format!("(br_if {d} (local.get $c)) "))
        .collect();
    format!(
        r#"(module
  (type $t (func (param {values}) (result {values})))
  (memory (export "memory") 1)
  (func $rotate (type $t) {rotated})
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 4096))
  (func (export "fk_input_capacity") (result i32) (i32.const 61440))
  (func (export "fk_validate") (param $c i32) (result i32)
    {loads}{}(call $rotate) {branches}{}
    {}(i32.const 0)))"#,
        "(loop (type $t) ".repeat(depth),
        ")".repeat(depth),
        "(drop) ".repeat(n)
    )
}

#[test]
fn loop_parameters_count_like_locals_and_the_module_has_one_budget() {
    let message = refused_by(
        "100 values carried through 127 nested loops' parameters",
        rotating_loop_params(100, 127).as_bytes(),
        PluginLimits::default(),
        "loop_branch_locals_max",
        SECOND,
    );
    assert!(message.contains("loop's parameters"), "{message}");
    // Two functions each within the per-function bound (3,000), over it together.
    let twice = rotating_loops(1000, 3).replacen(
        "(func (export \"fk_abi_version\")",
        &format!(
            "(func $twin (param i32) (result i32) {}(i32.const 0))\n  (func (export \"fk_abi_version\")",
            rotating_body(1000, 3)
        ),
        1,
    );
    let message = refused_by(
        "two functions of 1,000 locals under 3 loops each",
        twice.as_bytes(),
        PluginLimits::default(),
        "loop_branch_locals_max",
        SECOND,
    );
    assert!(message.contains("all branches back to a loop"), "{message}");
}

/// The locals and loops of [`rotating_loops`]'s function, for a second function.
fn rotating_body(locals: usize, depth: usize) -> String {
    let declared = "(local i32) ".repeat(locals - 1);
    let rotate: String = (1..locals)
        .map(|i| format!("(local.set {i} (local.get {})) ", (i + 1) % locals))
        .collect();
    let branches: String = (0..depth)
        .map(|d| format!("(br_if {d} (local.get 0)) "))
        .collect();
    format!(
        "{declared}{}{rotate}{branches}{}",
        "(loop ".repeat(depth),
        ")".repeat(depth)
    )
}
