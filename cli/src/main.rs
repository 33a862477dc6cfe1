//! `fencekit`: run a node or a fenced store, audit a group, inspect a log, check a plugin, and
//! watch the split-brain demo.

mod certs;
mod client;
mod demo;
mod fence_cmd;
mod http;
mod logging;
mod node;
mod plugin_check;
mod status;
mod store;
mod store_api;
mod termination;
mod wal_inspect;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The simulator's planted bugs (core/src/planted.rs) exist only in its own build of the kernel
// (sim/kernel/): a `fencekit` binary that had them, whatever the cargo command, would not
// compile.
const _: () = assert!(
    !fencekit::PLANTED_COMPILED_IN,
    "the fencekit binary must not contain the simulator's planted bugs"
);

/// fencekit: split-brain prevention. Leaders elected with terms, leases that end before a
/// successor exists, and fencing tokens checked by the storage.
#[derive(Parser, Debug)]
#[command(name = "fencekit", version, about)]
struct Cli {
    /// How log lines on stderr are written: text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The split-brain drill: a zombie leader double-runs jobs under a naive TTL lock and is
    /// fenced under fencekit. Start here.
    Demo(demo::DemoArgs),
    /// Run one node of a group: Raft over mutual TLS, with /status, /metrics and /healthz.
    Node(Box<node::NodeArgs>),
    /// Development certificates for a secure group: a CA and one certificate per node.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// Serve a job ledger that checks every write's fencing token (or, --unfenced, none).
    Store(store::StoreArgs),
    /// Ask every node for its view, print a table, and audit the group for split brain.
    Status(status::StatusArgs),
    /// A fence's resources and their token sources; moving one to another source.
    Fence {
        #[command(subcommand)]
        command: fence_cmd::FenceCommand,
    },
    /// The write-ahead log.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Policy plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

impl Command {
    /// Commands whose output is made for a pipe (`| head`). Never the servers: their sockets'
    /// vectored writes (`writev`, which cannot pass MSG_NOSIGNAL) to a client that has gone
    /// away would raise SIGPIPE, and the default disposition would kill the process (a store
    /// paused past its clients' timeouts died of it on resuming).
    fn prints_for_a_pipe(&self) -> bool {
        match self {
            Command::Status(_)
            | Command::Wal { .. }
            | Command::Fence { .. }
            | Command::Plugin { .. }
            | Command::Certs { .. } => true,
            Command::Demo(_) | Command::Node(_) | Command::Store(_) => false,
        }
    }
}

#[derive(Subcommand, Debug)]
enum WalCommand {
    /// Verify a log without changing it and print its records.
    Inspect(wal_inspect::WalInspect),
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Load a plugin (.wasm or .wat), report its ABI and dry-run it.
    Check(plugin_check::PluginCheck),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.prints_for_a_pipe() {
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts, so
        // that `fencekit wal inspect DIR | head` ends quietly, as other Unix tools do, instead
        // of the Rust runtime's ignored SIGPIPE turning into a panic on the next print.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // The kernel's warnings (a refused peer, a certificate that did not reload) and the node's
    // leadership changes go to stderr, one line each; RUST_LOG=debug shows more.
    logging::init(cli.log_format);
    let result = match &cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Node(args) => node::run(args),
        Command::Certs { command } => certs::run(command),
        Command::Store(args) => store::run(args),
        Command::Status(args) => status::run(args),
        Command::Fence { command } => fence_cmd::run(command),
        Command::Wal {
            command: WalCommand::Inspect(args),
        } => wal_inspect::run(args),
        Command::Plugin {
            command: PluginCommand::Check(args),
        } => plugin_check::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the cause chain, outermost first; no backtrace. A JSON log stays JSON.
            match cli.log_format {
                logging::LogFormat::Text => eprintln!("fencekit: {e:#}"),
                logging::LogFormat::Json => {
                    log::error!(target: logging::OPS_TARGET, "fencekit: {e:#}");
                }
            }
            ExitCode::FAILURE
        }
    }
}
